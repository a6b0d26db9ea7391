"""A small Llama-style decoder (random weights, from a transformers config) saved once per session,
for the integration tests."""

import pytest
import torch

transformers = pytest.importorskip("transformers")


def tiny_llama_config():
    return transformers.LlamaConfig(
        vocab_size=320,
        hidden_size=96,
        intermediate_size=200,  # not a multiple of the kernels' tiles
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
    )


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory):
    """A float32 Llama-style checkpoint with a few outlier input features planted in its
    embeddings (so that threshold 6 takes columns out), sharded in several files."""
    torch.manual_seed(1234)
    model = transformers.LlamaForCausalLM(tiny_llama_config()).eval()
    with torch.no_grad():
        model.model.embed_tokens.weight[:, [5, 60]] *= 60.0
    path = tmp_path_factory.mktemp("llama-fp32")
    model.save_pretrained(path, max_shard_size="200KB")
    return path


@pytest.fixture
def input_ids():
    generator = torch.Generator().manual_seed(7)
    return torch.randint(0, 320, (3, 12), generator=generator)
