"""llmint8's forward as a PyTorch custom operator (``torch.library.custom_op``), with a fake
(meta) implementation and an autograd formula, so that ``torch.compile(fullgraph=True)`` traces
through int8 layers without a graph break (the kernels themselves run opaquely inside the op).

Eager calls do not go through the operator (its dispatch costs host time on every forward); only
code being compiled does.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .backends import dequantized, linear, transient_workspaces


@torch.library.custom_op("llmint8::int8_linear", mutates_args=())
def int8_linear_op(
    x: Tensor,
    CB: Tensor,
    SCB: Tensor,
    bias: Optional[Tensor],
    threshold: float,
    outlier_cols: Optional[Tensor],
    arithmetic: str,
) -> Tensor:
    """``x`` [M, K] (2-D) -> [M, N] in ``x.dtype``; see `llmint8.functional.int8_linear`."""
    # Compiled graphs may run under CUDA-graph memory pools: no scratch memory kept past the call.
    with transient_workspaces():
        return linear(x, CB, SCB, bias, threshold, outlier_cols, arithmetic)


@int8_linear_op.register_fake
def _int8_linear_fake(x, CB, SCB, bias, threshold, outlier_cols, arithmetic):
    return x.new_empty((x.shape[0], CB.shape[0]))


def _setup_context(ctx, inputs, output):
    x, CB, SCB, bias, _threshold, _outlier_cols, _arithmetic = inputs
    ctx.save_for_backward(CB, SCB)
    ctx.x_dtype = x.dtype
    ctx.bias_dtype = None if bias is None else bias.dtype


def _backward(ctx, grad):
    CB, SCB = ctx.saved_tensors
    grad_x = grad_bias = None
    if ctx.needs_input_grad[0]:
        grad_x = (grad @ dequantized(CB, SCB, grad.dtype)).to(ctx.x_dtype)
    if ctx.bias_dtype is not None and ctx.needs_input_grad[3]:
        grad_bias = grad.float().sum(0).to(ctx.bias_dtype)
    return grad_x, None, None, grad_bias, None, None, None


int8_linear_op.register_autograd(_backward, setup_context=_setup_context)
