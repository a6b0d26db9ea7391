"""accelerate's empty-weight construction, then llmint8's shard-by-shard loading (CPU)."""

import json

import pytest
import torch

import llmint8

accelerate = pytest.importorskip("accelerate")
transformers = pytest.importorskip("transformers")


def empty_int8_llama(path):
    config = transformers.AutoConfig.from_pretrained(path)
    with accelerate.init_empty_weights():
        model = transformers.AutoModelForCausalLM.from_config(config)
    return llmint8.replace_linear(model, threshold=6.0)


def test_shard_by_shard_loading_equals_converting_the_loaded_model(llama_dir, input_ids):
    index = json.loads((llama_dir / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 2  # really sharded
    model = llmint8.load_checkpoint_shards(empty_int8_llama(llama_dir), llama_dir, progress=False)
    layers = [m for m in model.modules() if isinstance(m, llmint8.Linear8bitLt)]
    assert len(layers) == 14 and all(m.weight.dtype == torch.int8 for m in layers)
    reference = transformers.AutoModelForCausalLM.from_pretrained(llama_dir).eval()
    llmint8.replace_linear(reference, threshold=6.0)
    with torch.no_grad():
        assert torch.equal(model.eval()(input_ids).logits, reference(input_ids).logits)


def test_each_shard_is_quantized_before_the_next_is_read(llama_dir, monkeypatch):
    model = empty_int8_llama(llama_dir)
    float_weights_seen = []
    read = llmint8.loading.read_state

    def reading(path, *args, **kwargs):
        float_weights_seen.append(
            sum(
                1
                for m in model.modules()
                if isinstance(m, llmint8.Linear8bitLt)
                and m.weight.device.type != "meta"
                and m.weight.dtype != torch.int8
            )
        )
        return read(path, *args, **kwargs)

    monkeypatch.setattr(llmint8.loading, "read_state", reading)
    llmint8.load_checkpoint_shards(model, llama_dir, progress=False)
    assert len(float_weights_seen) > 2 and not any(float_weights_seen)


def test_missing_unexpected_and_misshapen_tensors_are_named(llama_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    state = {}
    for file in sorted(llama_dir.glob("*.safetensors")):
        state.update(load_file(file))
    dropped = dict(state)
    del dropped["model.layers.1.mlp.up_proj.weight"]
    save_file(dropped, tmp_path / "missing.safetensors")
    with pytest.raises(llmint8.FormatError, match=r"no shard holds.*layers\.1\.mlp\.up_proj"):
        llmint8.load_checkpoint_shards(
            empty_int8_llama(llama_dir), tmp_path / "missing.safetensors", progress=False
        )
    save_file({**state, "model.extra": torch.zeros(2)}, tmp_path / "extra.safetensors")
    with pytest.raises(llmint8.FormatError, match=r"does not have.*model\.extra"):
        llmint8.load_checkpoint_shards(
            empty_int8_llama(llama_dir), tmp_path / "extra.safetensors", progress=False
        )
    bad = {**state, "model.norm.weight": torch.ones(7)}
    save_file(bad, tmp_path / "shape.safetensors")
    with pytest.raises(llmint8.FormatError, match=r"model.norm.weight has shape \(7,\)"):
        llmint8.load_checkpoint_shards(
            empty_int8_llama(llama_dir), tmp_path / "shape.safetensors", progress=False
        )
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors"):
        llmint8.load_checkpoint_shards(empty_int8_llama(llama_dir), tmp_path / "nowhere")


def test_modules_offloaded_to_the_cpu_run_on_the_cpu_backend(llama_dir, input_ids):
    """What `dispatch_model` leaves for device-map entries "cpu" beside a GPU (a plain hook on
    each offloaded block, an offload hook with the weights on the meta device on every module
    below it that holds tensors) becomes a module resident on the CPU. The hooks are attached
    by accelerate's own function with dispatch_model's arguments; only the execution device is
    the CPU here, where dispatch would name the GPU."""
    from accelerate.hooks import attach_align_device_hook_on_blocks
    from accelerate.utils import OffloadedWeightsLoader, extract_submodules_state_dict

    from llmint8.integrations.accelerate import run_cpu_modules_on_cpu

    hf = pytest.importorskip("llmint8.integrations.transformers")
    load = transformers.AutoModelForCausalLM.from_pretrained
    model = load(llama_dir, quantization_config=hf.Int8Config(), device_map="cpu").eval()
    with torch.no_grad():
        expected = model(input_ids).logits
    device_map = {"model.embed_tokens": 0, "model.rotary_emb": 0, "model.layers.0": 0,
                  "model.layers.1": "cpu", "model.norm": 0, "lm_head": "cpu"}  # fmt: skip
    offloaded = [name for name, device in device_map.items() if device == "cpu"]
    state = extract_submodules_state_dict(model.state_dict(), offloaded)
    execution = {name: "cpu" for name in device_map} | {"": "cpu"}
    attach_align_device_hook_on_blocks(
        model,
        execution_device=execution,
        offload={name: device == "cpu" for name, device in device_map.items()},
        weights_map=OffloadedWeightsLoader(state_dict=state),
    )
    layer = model.model.layers[1].mlp.up_proj
    assert layer.weight.is_meta and layer._hf_hook.offload  # the hook is on the leaf
    assert not model.model.layers[1]._hf_hook.offload
    model.hf_device_map = device_map
    assert run_cpu_modules_on_cpu(model) == offloaded
    assert layer.weight.device.type == "cpu" and layer.weight.is_int8
    assert torch.equal(layer.weight.SCB, state["model.layers.1.mlp.up_proj.SCB"])
    assert not hasattr(layer, "_hf_hook")  # one hook, on the block, runs it on the CPU
    assert not model.model.layers[1]._hf_hook.offload
    with torch.no_grad():
        assert torch.equal(model(input_ids).logits, expected)
    assert run_cpu_modules_on_cpu(model) == []  # nothing left offloaded
