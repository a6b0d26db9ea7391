"""LoRA adapters (peft) over frozen int8 layers, on the CPU backend."""

import pytest
import torch

import llmint8
from llmint8 import functional as F

peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")
from llmint8.integrations.peft import Linear8bitLtLora, lora_config  # noqa: E402
from llmint8.integrations.transformers import Int8Config  # noqa: E402

from .training import LORA_TARGETS, train  # noqa: E402


def int8_model(path):
    return transformers.AutoModelForCausalLM.from_pretrained(
        path, quantization_config=Int8Config(), device_map="cpu"
    )


def test_lora_wraps_int8_layers_and_trains_with_gradient_checkpointing(llama_dir, input_ids):
    model = peft.prepare_model_for_kbit_training(int8_model(llama_dir))
    assert model.is_gradient_checkpointing
    model = peft.get_peft_model(model, lora_config(r=4, lora_alpha=8, target_modules=LORA_TARGETS))
    wrapped = [m for m in model.modules() if isinstance(m, Linear8bitLtLora)]
    assert len(wrapped) == 2 * len(LORA_TARGETS)
    assert all(isinstance(m.get_base_layer(), llmint8.Linear8bitLt) for m in wrapped)
    frozen = {n: p.clone() for n, p in model.named_parameters() if p.dtype == torch.int8}

    def every_adapter_has_a_gradient(step):  # through the frozen int8 layers
        for m in wrapped:
            assert m.lora_B["default"].weight.grad.abs().sum() > 0
            if step:  # lora_B starts at zero, so lora_A's first gradient is zero
                assert m.lora_A["default"].weight.grad.abs().sum() > 0

    losses = train(model, input_ids, after_backward=every_adapter_has_a_gradient)
    assert losses[-1] < 0.9 * losses[0], losses
    for name, param in model.named_parameters():
        if name in frozen:
            assert torch.equal(param, frozen[name]) and not param.requires_grad


def test_gradient_reaches_the_input_through_an_int8_layer(llama_dir):
    model = peft.get_peft_model(int8_model(llama_dir), lora_config(r=2, target_modules=["q_proj"]))
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    x = torch.randn(5, 96, requires_grad=True)
    layer(x).sum().backward()
    base = layer.get_base_layer()
    dense = F.dequantize_rowwise(base.weight.CB, base.weight.SCB)
    lora_a, lora_b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    expected = (dense + layer.scaling["default"] * lora_b @ lora_a).sum(0)
    torch.testing.assert_close(x.grad, expected.expand(5, -1), rtol=1e-4, atol=1e-5)


def test_merge_requantizes_the_sum_and_unmerge_restores(llama_dir):
    model = peft.get_peft_model(int8_model(llama_dir), lora_config(r=4, target_modules=["v_proj"]))
    layer = model.base_model.model.model.layers[1].self_attn.v_proj
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_(0, 0.05)  # a non-zero update
    base = layer.get_base_layer()
    before = F.dequantize_rowwise(base.weight.CB, base.weight.SCB)
    delta = layer.get_delta_weight("default")
    layer.merge()
    merged = layer.get_base_layer().weight
    assert merged.dtype == torch.int8 and merged.is_int8
    # Within half an int8 step of the exact sum, per row.
    step = merged.SCB[:, None] / 127
    error = (F.dequantize_rowwise(merged.CB, merged.SCB) - (before + delta)).abs()
    assert (error <= step / 2 + 1e-6).all()
    layer.unmerge()
    restored_weight = layer.get_base_layer().weight
    restored = F.dequantize_rowwise(restored_weight.CB, restored_weight.SCB)
    assert (restored - before).abs().max() <= (step + merged.SCB[:, None] / 127).max()


def test_dora_over_int8_is_refused_clearly(llama_dir):
    config = lora_config(r=2, target_modules=["q_proj"], use_dora=True)
    with pytest.raises(NotImplementedError, match=r"DoRA.*int8"):
        peft.get_peft_model(int8_model(llama_dir), config)
