"""The walkthrough of the LLM.int8() blog post, as written, with llmint8 in place of bitsandbytes
(on the CPU; tests/nn/test_linear_gpu.py runs it on cuda:0)."""

import torch
from torch import nn

from llmint8 import functional as F
from llmint8.nn import Linear8bitLt

from .helpers import (
    assert_within_bound,
    dequantization_bound,
    int8_linear_bound,
    reference_linear,
)


def run_walkthrough(tmp_path, device):
    fp16_model = nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 64)).half()
    torch.save(fp16_model.state_dict(), tmp_path / "model.pt")

    int8_model = nn.Sequential(
        Linear8bitLt(64, 64, has_fp16_weights=False),
        Linear8bitLt(64, 64, has_fp16_weights=False),
    )
    int8_model.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True))
    int8_model = int8_model.to(device)  # quantization happens here

    weight = int8_model[0].weight
    assert weight.dtype == torch.int8 and weight.device.type == torch.device(device).type
    fp16_weight = fp16_model[0].weight.detach().double()
    restored = (weight.CB * weight.SCB[:, None]) / 127
    bound = dequantization_bound(fp16_weight.abs().amax(dim=1), fp16_weight)
    assert_within_bound(restored.cpu(), fp16_weight, bound, "CB * SCB / 127")

    input_ = torch.randn((1, 64), dtype=torch.float16)
    hidden_states = int8_model(input_.to(device))
    assert hidden_states.dtype == torch.float16 and hidden_states.shape == (1, 64)

    # Layer by layer, each int8 output is within the quantization bound of the fp16 layer.
    x = input_
    for fp16_layer, int8_layer in zip(fp16_model, int8_model):
        y = int8_layer(x.to(device)).cpu()
        w, b = fp16_layer.weight.detach(), fp16_layer.bias.detach()
        bound = int8_linear_bound(x, w, int8_layer.threshold, torch.float16, b)
        assert_within_bound(y, reference_linear(x, w, b), bound, "walkthrough layer")
        x = y
    return int8_model


def test_blog_walkthrough_on_cpu(tmp_path):
    model = run_walkthrough(tmp_path, "cpu")
    state = model.state_dict()
    assert state["0.weight"].dtype == torch.int8
    assert state["0.SCB"].dtype == torch.float32
    assert state["0.weight_format"].item() == 0
    assert F.quantize_weight(torch.ones(1, 1))[0].item() == 127
