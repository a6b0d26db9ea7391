"""from_pretrained / save_pretrained with Int8Config (CPU backend; GPU variants in test_gpu.py)."""

import json
import logging

import pytest
import torch

import llmint8
from llmint8 import functional as F

transformers = pytest.importorskip("transformers")
hf = pytest.importorskip("llmint8.integrations.transformers")
Int8Config = hf.Int8Config


def load(path, **kwargs):
    kwargs.setdefault("device_map", "cpu")
    model, info = transformers.AutoModelForCausalLM.from_pretrained(
        path, output_loading_info=True, **kwargs
    )
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert not info["mismatched_keys"], info
    return model.eval()


def int8_layers(model):
    return {name: m for name, m in model.named_modules() if isinstance(m, llmint8.Linear8bitLt)}


def test_from_pretrained_quantizes_every_linear_but_lm_head(llama_dir, input_ids):
    model = load(llama_dir, quantization_config=Int8Config())
    layers = int8_layers(model)
    assert len(layers) == 2 * 7  # q, k, v, o, gate, up, down per decoder layer
    assert type(model.lm_head) is torch.nn.Linear
    assert model.is_loaded_in_8bit
    for layer in layers.values():
        assert layer.weight.dtype == torch.int8 and layer.weight.SCB.dtype == torch.float32
        assert layer.threshold == 6.0
    # Loading quantized exactly what replace_linear on the float model gives: same logits.
    reference = transformers.AutoModelForCausalLM.from_pretrained(llama_dir).eval()
    llmint8.replace_linear(reference, threshold=6.0)
    with torch.no_grad():
        assert torch.equal(model(input_ids).logits, reference(input_ids).logits)


def test_skip_modules_stay_in_original_precision(llama_dir):
    config = Int8Config(skip_modules=["mlp.down_proj", "v_proj"])
    model = load(llama_dir, quantization_config=config)
    names = set(int8_layers(model))
    assert len(names) == 2 * 5
    assert not any(n.endswith(("down_proj", "v_proj")) for n in names)
    assert type(model.model.layers[1].mlp.down_proj) is torch.nn.Linear


def test_save_pretrained_round_trip_is_bit_exact_without_requantizing(
    llama_dir, input_ids, tmp_path, monkeypatch
):
    model = load(llama_dir, quantization_config=Int8Config(threshold=4.5))
    model.save_pretrained(tmp_path, max_shard_size="100KB")
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1  # sharded, with the index file
    config = json.loads((tmp_path / "config.json").read_text())["quantization_config"]
    assert config["quant_method"] == "llmint8" and config["threshold"] == 4.5

    def no_quantization(*args, **kwargs):
        raise AssertionError("an int8 checkpoint must load without quantizing again")

    monkeypatch.setattr(F, "quantize_weight", no_quantization)
    loaded = load(tmp_path)
    before, after = int8_layers(model), int8_layers(loaded)
    assert before.keys() == after.keys()
    for name, layer in after.items():
        assert torch.equal(layer.weight.data, before[name].weight.data), name
        assert torch.equal(layer.weight.SCB, before[name].weight.SCB), name
        assert layer.threshold == 4.5
    with torch.no_grad():
        assert torch.equal(loaded(input_ids).logits, model(input_ids).logits)
        generated = loaded.generate(input_ids, max_new_tokens=5, do_sample=False)
        assert torch.equal(generated, model.generate(input_ids, max_new_tokens=5, do_sample=False))


def test_static_outliers_apply_and_travel_in_the_files(llama_dir, tmp_path):
    name = "model.layers.1.mlp.up_proj"
    model = load(llama_dir, quantization_config=Int8Config(static_outliers={name: [60, 5, 5]}))
    assert model.get_submodule(name).outlier_cols.tolist() == [5, 60]
    model.save_pretrained(tmp_path)
    loaded = load(tmp_path)
    assert loaded.get_submodule(name).outlier_cols.tolist() == [5, 60]
    assert loaded.get_submodule("model.layers.0.mlp.up_proj").outlier_cols is None


def test_static_outliers_must_name_int8_layers(llama_dir):
    with pytest.raises(ValueError, match=r"lm_head.*not an int8 layer"):
        load(llama_dir, quantization_config=Int8Config(static_outliers={"lm_head": [1]}))


def test_has_fp16_weights_keeps_trainable_master_weights(llama_dir):
    model = load(llama_dir, quantization_config=Int8Config(has_fp16_weights=True))
    reference = transformers.AutoModelForCausalLM.from_pretrained(llama_dir)
    layer = model.model.layers[0].self_attn.q_proj
    assert layer.weight.dtype == torch.float32 and layer.weight.requires_grad
    assert torch.equal(layer.weight.data, reference.model.layers[0].self_attn.q_proj.weight.data)


def test_bitsandbytes_directory_loads_into_llmint8(llama_dir, input_ids, tmp_path):
    """A directory in bitsandbytes' 8-bit layout (config and tensor names) as transformers saves
    it: the same tensors, read as they are."""
    model = load(llama_dir, quantization_config=Int8Config(threshold=6.0))
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["quantization_config"] = hf.bitsandbytes_config(model.config.quantization_config)
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = hf.from_bitsandbytes_pretrained(tmp_path, device_map="cpu").eval()
    assert isinstance(loaded.config.quantization_config, Int8Config)
    with torch.no_grad():
        assert torch.equal(loaded(input_ids).logits, model(input_ids).logits)


def test_config_errors_are_clear():
    with pytest.raises(ValueError, match="threshold"):
        Int8Config(threshold=-1.0)
    with pytest.raises(TypeError, match="skip_modules"):
        Int8Config(skip_modules="lm_head")
    with pytest.raises(TypeError, match=r"unknown arguments.*tresh"):
        Int8Config(tresh=3)
    with pytest.raises(ValueError, match="arithmetic must be one of auto, int8, weight_only"):
        Int8Config(arithmetic="fast")
    with pytest.raises(ValueError, match="load_in_8bit"):
        Int8Config.from_bitsandbytes({"quant_method": "bitsandbytes", "load_in_4bit": True})
    with pytest.raises(TypeError, match="fuse_siblings"):
        Int8Config(fuse_siblings="yes")
    with pytest.raises(ValueError, match="fuse_siblings needs int8"):
        Int8Config(fuse_siblings=True, has_fp16_weights=True)
    with pytest.raises(ValueError, match="static outlier"):
        hf.bitsandbytes_config(Int8Config(static_outliers={"a": [1]}))


def test_config_round_trips_through_json():
    config = Int8Config(threshold=3.0, skip_modules=["x"], static_outliers={"a.b": [4, 2]},
                        arithmetic="int8")  # fmt: skip
    again = transformers.AutoConfig.for_model("llama").__class__  # noqa: F841 (import check)
    restored = Int8Config.from_dict(json.loads(config.to_json_string()))
    assert restored.to_dict() == config.to_dict() and restored.arithmetic == "int8"


def test_fuse_siblings_at_load_gives_the_same_logits_and_survives_a_save(
    llama_dir, input_ids, tmp_path
):
    plain = load(llama_dir, quantization_config=Int8Config())
    fused = load(llama_dir, quantization_config=Int8Config(fuse_siblings=True))
    assert llmint8.fuse_siblings(fused) == []  # every q/k/v and gate/up group fused already
    attention = fused.model.layers[0].self_attn
    group = attention.q_proj.__dict__["_siblings"]
    assert [m for m in group.members] == [attention.q_proj, attention.k_proj, attention.v_proj]
    for name, layer in int8_layers(plain).items():  # the same int8 rows, now views of one tensor
        assert torch.equal(fused.get_submodule(name).weight.data, layer.weight.data), name
    with torch.no_grad():
        expected = plain(input_ids).logits
        torch.testing.assert_close(fused(input_ids).logits, expected, rtol=1e-5, atol=1e-5)
    # save_pretrained writes each member's rows (transformers clones views of one tensor) and
    # the flag: the directory loads fused again, with the same logits.
    fused.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())["quantization_config"]
    assert config["fuse_siblings"] is True
    again = load(tmp_path)
    assert "_siblings" in again.model.layers[1].mlp.up_proj.__dict__
    with torch.no_grad():
        torch.testing.assert_close(again(input_ids).logits, expected, rtol=1e-5, atol=1e-5)


def test_the_config_sets_each_layers_arithmetic(llama_dir):
    model = load(llama_dir, quantization_config=Int8Config(arithmetic="weight_only"))
    layers = [m for m in model.modules() if isinstance(m, llmint8.Linear8bitLt)]
    assert layers and all(layer.arithmetic == "weight_only" for layer in layers)


def test_disk_offload_is_refused(llama_dir):
    with pytest.raises(ValueError, match="disk"):
        transformers.AutoModelForCausalLM.from_pretrained(
            llama_dir,
            quantization_config=Int8Config(),
            device_map={"model": "cpu", "lm_head": "disk"},
            offload_folder="/tmp/llmint8-offload",
        )


def test_corrupt_scales_in_a_checkpoint_are_refused_and_named(llama_dir, tmp_path, caplog):
    from safetensors.torch import load_file, save_file

    model = load(llama_dir, quantization_config=Int8Config())
    model.save_pretrained(tmp_path)
    file = tmp_path / "model.safetensors"
    tensors = load_file(file)
    key = "model.layers.0.self_attn.k_proj.SCB"
    tensors[key] = -tensors[key]
    save_file(tensors, file, metadata={"format": "pt"})
    # transformers reports the conversion error (ours, naming the tensor) and refuses the model.
    caplog.set_level(logging.WARNING, logger="transformers")
    with pytest.raises(RuntimeError, match="conversion"):
        transformers.AutoModelForCausalLM.from_pretrained(tmp_path, device_map="cpu")
    assert "FormatError: model.layers.0.self_attn.k_proj.SCB: row scales must be finite" in (
        caplog.text
    )


def test_nan_weights_are_refused_on_the_fly(llama_dir, tmp_path, caplog):
    model = transformers.AutoModelForCausalLM.from_pretrained(llama_dir)
    with torch.no_grad():
        model.model.layers[1].mlp.gate_proj.weight[3, 4] = float("nan")
    model.save_pretrained(tmp_path)
    caplog.set_level(logging.WARNING, logger="transformers")
    with pytest.raises(RuntimeError, match="conversion"):
        load(tmp_path, quantization_config=Int8Config())
    assert "QuantizationError: weight: rows [3] hold NaN or Inf" in caplog.text


def test_an_old_transformers_gets_a_clear_error(monkeypatch):
    import importlib

    # The module the integration imports (after a model load, transformers' lazy imports may have
    # replaced the sys.modules entry this file imported first).
    monkeypatch.setattr(importlib.import_module("transformers"), "__version__", "5.22.2")
    with pytest.raises(ImportError, match=r"transformers >= 5\.23 \(found 5\.22\.2\)"):
        importlib.reload(hf)
    monkeypatch.undo()
    importlib.reload(hf)  # registered again, idempotently
    assert transformers.quantizers.auto.AUTO_QUANTIZER_MAPPING["llmint8"] is hf.Int8HfQuantizer
