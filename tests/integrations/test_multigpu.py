"""A model larger than one GPU's budget, split layer by layer across GPUs by accelerate's device
map (through from_pretrained with Int8Config), against the same int8 model on one GPU."""

import pytest
import torch

import llmint8
from llmint8 import functional as F

pytestmark = pytest.mark.multigpu
transformers = pytest.importorskip("transformers")
hf = pytest.importorskip("llmint8.integrations.transformers")


@pytest.fixture(scope="module")
def medium_llama(tmp_path_factory):
    config = transformers.LlamaConfig(
        vocab_size=2000, hidden_size=512, intermediate_size=1408, num_hidden_layers=6,
        num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=256,
    )  # fmt: skip
    torch.manual_seed(8)
    model = transformers.LlamaForCausalLM(config).half()
    with torch.no_grad():
        model.model.embed_tokens.weight[:, [7, 300]] *= 60.0
    path = tmp_path_factory.mktemp("llama-split")
    model.save_pretrained(path, max_shard_size="5MB")
    return path


def test_split_across_gpus_quantizes_each_layer_once_on_its_gpu_and_matches_one_gpu(
    medium_llama, monkeypatch
):
    calls = []
    quantize = F.quantize_weight

    def counting(weight):
        calls.append(weight.device)
        return quantize(weight)

    monkeypatch.setattr(F, "quantize_weight", counting)
    # About 1.8 MB of int8 weights per decoder layer: 5 MB per GPU forces a split.
    split = transformers.AutoModelForCausalLM.from_pretrained(
        medium_llama, quantization_config=hf.Int8Config(), device_map="auto",
        max_memory={0: "5MB", 1: "5MB", "cpu": "2GB"}, dtype=torch.float16,
    ).eval()  # fmt: skip
    layers = {n: m for n, m in split.named_modules() if isinstance(m, llmint8.Linear8bitLt)}
    devices = {m.weight.device for m in layers.values()}
    assert {torch.device("cuda", 0), torch.device("cuda", 1)} <= devices, devices
    assert len(calls) == len(layers)  # each layer quantized once ...
    assert sorted(map(str, calls)) == sorted(str(m.weight.device) for m in layers.values())
    monkeypatch.undo()  # ... on the device it lives on

    one = transformers.AutoModelForCausalLM.from_pretrained(
        medium_llama, quantization_config=hf.Int8Config(), device_map="cuda:0",
        dtype=torch.float16,
    ).eval()  # fmt: skip
    ids = torch.randint(0, 2000, (2, 24), generator=torch.Generator().manual_seed(3)).cuda()
    with torch.no_grad():
        a, b = split(ids).logits.float().cpu(), one(ids).logits.float().cpu()
        assert ((a - b).norm() / b.norm()).item() < 1e-3  # same int8 products; fp16 rounding
        tokens_split = split.generate(ids, max_new_tokens=8, do_sample=False)
        tokens_one = one.generate(ids, max_new_tokens=8, do_sample=False)
    assert torch.equal(tokens_split.cpu(), tokens_one.cpu())
    for i in range(torch.cuda.device_count()):
        print(f"cuda:{i}: {torch.cuda.memory_allocated(i) / 2**20:.1f} MiB allocated")
