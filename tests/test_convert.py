"""replace_linear on ordinary and empty-weight models."""

import pytest
import torch
from torch import nn

import llmint8
from llmint8.convert import matches_module
from llmint8.nn import Int8Params, Linear8bitLt


def tiny_model():
    return nn.ModuleDict(
        {
            "encoder": nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 8)),
            "lm_head": nn.Linear(8, 4),
            "lm_head2": nn.Linear(8, 4),
        }
    )


def test_replaces_every_linear_but_the_skipped():
    model = tiny_model()
    weight = model["encoder"][0].weight
    llmint8.replace_linear(model, threshold=5.0)
    assert isinstance(model["encoder"][0], Linear8bitLt)
    assert isinstance(model["encoder"][2], Linear8bitLt)
    assert isinstance(model["lm_head2"], Linear8bitLt)
    assert type(model["lm_head"]) is nn.Linear
    layer = model["encoder"][0]
    assert layer.threshold == 5.0 and not layer.has_fp16_weights
    assert layer.weight.data_ptr() == weight.data_ptr()  # shared, not copied


def test_skip_patterns_match_whole_components():
    assert matches_module("model.lm_head", ["lm_head"])
    assert matches_module("lm_head", ["lm_head"])
    assert not matches_module("lm_head2", ["lm_head"])
    assert matches_module("model.layers.0.mlp", ["layers.0"])
    assert not matches_module("model.layers.10.mlp", ["layers.1"])


def test_converted_model_matches_the_original_within_int8_error():
    torch.manual_seed(0)
    model = tiny_model()
    x = torch.randn(5, 8)
    expected = model["encoder"](x)
    llmint8.replace_linear(model, threshold=6.0)
    got = model.to("cpu")["encoder"](x)
    assert (got - expected).abs().max() < 0.05 * expected.abs().max()


def test_works_under_init_empty_weights():
    accelerate = pytest.importorskip("accelerate")
    with accelerate.init_empty_weights():
        model = tiny_model()
    llmint8.replace_linear(model)
    layer = model["encoder"][0]
    assert isinstance(layer, Linear8bitLt) and isinstance(layer.weight, Int8Params)
    assert layer.weight.device.type == "meta"
    state = tiny_model().state_dict()
    model.load_state_dict(state, assign=True)
    model = model.to("cpu")
    assert model["encoder"][0].weight.dtype == torch.int8


@pytest.mark.gpu
def test_accelerate_set_module_tensor_to_device_quantizes_once():
    # accelerate special-cases parameters named Int8Params: it quantizes them on cuda:0 (also
    # for CPU targets), so this path needs a GPU.
    accelerate = pytest.importorskip("accelerate")
    from accelerate.utils import set_module_tensor_to_device

    with accelerate.init_empty_weights():
        model = llmint8.replace_linear(tiny_model())
    source = tiny_model().state_dict()
    for name, tensor in source.items():
        set_module_tensor_to_device(model, name, 0, value=tensor)
    layer = model["encoder"][0]
    assert layer.weight.dtype == torch.int8 and layer.weight.device.type == "cuda"
    layer = layer.to(0)
    # accelerate casts fp32 values to fp16 before it hands them to an Int8Params.
    expected, _ = llmint8.functional.quantize_weight(source["encoder.0.weight"].half())
    assert torch.equal(layer.weight.CB.cpu(), expected)


def test_a_bare_linear_is_returned_converted():
    layer = llmint8.replace_linear(nn.Linear(4, 3))
    assert isinstance(layer, Linear8bitLt)


def test_negative_threshold_is_refused():
    with pytest.raises(ValueError, match="threshold"):
        llmint8.replace_linear(tiny_model(), threshold=-1)
