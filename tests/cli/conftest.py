"""Small checkpoints the command-line tests run on, made here from a transformers config: a
Llama-style causal LM with a word-level tokenizer and two planted outlier features, and real
English text (CPython's language reference)."""

import shutil
import subprocess
import sys
from collections import Counter

import pytest
import torch

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

OUTLIER_FEATURES = [5, 60]


def llmint8(*args, timeout=600):
    exe = shutil.which("llmint8")
    command = [exe] if exe else [sys.executable, "-m", "llmint8.cli"]
    return subprocess.run(
        [*command, *map(str, args)], capture_output=True, text=True, timeout=timeout, check=False
    )


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


@pytest.fixture(scope="session")
def sentences():
    from llmint8.demo import real_sentences

    return real_sentences(48)


@pytest.fixture(scope="session")
def text_file(tmp_path_factory, sentences):
    path = tmp_path_factory.mktemp("text") / "sentences.txt"
    path.write_text("\n".join(sentences) + "\n")
    return path


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory, sentences):
    """A sharded float32 Llama-style model directory with its tokenizer."""
    split = tokenizers.pre_tokenizers.Whitespace()
    words = Counter(w for s in sentences for w, _ in split.pre_tokenize_str(s))
    vocab = {"[PAD]": 0, "[UNK]": 1, "[BOS]": 2, "[EOS]": 3}
    for word, _ in words.most_common(400):
        vocab[word] = len(vocab)
    tokenizer = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = split
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", bos_token="[BOS]",
        eos_token="[EOS]",
    )  # fmt: skip
    config = transformers.LlamaConfig(
        vocab_size=len(vocab), hidden_size=96, intermediate_size=200, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        pad_token_id=0, bos_token_id=2, eos_token_id=3,
    )  # fmt: skip
    torch.manual_seed(99)
    model = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():
        model.model.embed_tokens.weight[:, OUTLIER_FEATURES] *= 60.0
    path = tmp_path_factory.mktemp("llama") / "fp32"
    model.save_pretrained(path, max_shard_size="200KB")
    fast.save_pretrained(path)
    return path
