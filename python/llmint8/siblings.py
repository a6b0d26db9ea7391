"""Sibling projections as one product: int8 layers of one parent that read the same input (q, k
and v; gate and up) share one int8 weight, multiplied once per input.

`fuse_siblings` concatenates each group's int8 rows, row scales and biases into one tensor each
and gives every member views of its rows (no memory added). The first member called with an
input multiplies it by the whole group's weight as one product (the activations quantized once
for LLM.int8()) and keeps the other members' columns of the product; a member then called with
that same tensor, unchanged, gets its columns without any work. A member returns a column view of
the group's product, whose rows are strided (code that needs its output contiguous calls
``.contiguous()``). The members stay ordinary `Linear8bitLt` layers: one called alone, with
other settings or weights than the group's, runs its own product.

Moving or casting a member (``.to``, ``.cuda``, ``.half``), loading a state dict into it or copying
it ends its group (the members keep their rows, now each its own tensor after a move).
`unfuse_siblings` ends every group and gives each member a copy of its own rows: needed before
saving with savers that refuse tensors sharing memory (safetensors' ``save_file``);
`save_quantized` and transformers' ``save_pretrained`` (which copies views of one tensor) take
fused models as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Optional

import torch
from torch import Tensor, nn

from .errors import DeviceMismatchError, QuantizationError
from .nn import Int8Params, Linear8bitLt
from .nn.linear import SIBLINGS as SIBLINGS_ATTRIBUTE

DEFAULT_SIBLINGS = (
    ("q_proj", "k_proj", "v_proj"),
    ("gate_proj", "up_proj"),
    ("query", "key", "value"),
    ("w1", "w3"),
)
"""Child names of sibling projections in common models: Llama-style attention and MLP
(transformers' Llama, Mistral, Qwen, OPT...), BERT-style attention, Mixtral-style experts."""


def _no_group() -> None:
    return None


class SiblingGroup:
    """Layers multiplied as one: `fused` (a `Linear8bitLt` of the concatenated rows, not a
    submodule of the model) and its `members`, each holding views of its rows. Holds between
    calls the last input, the product's columns per member and which members have not taken
    theirs yet; cleared once every member has."""

    def __init__(self, members: Sequence[Linear8bitLt], fused: Linear8bitLt) -> None:
        self.members = list(members)
        self.fused = fused
        self.sizes = [m.out_features for m in members]
        self.weights = [m.weight for m in members]
        self.biases = [m.bias for m in members]
        self.addresses = [m.weight.data_ptr() for m in members]
        self.everyone = (1 << len(members)) - 1
        # (input, its version, stream, the product's columns per member, members still to take)
        self._kept: Optional[tuple] = None
        for index, member in enumerate(members):
            member.__dict__[SIBLINGS_ATTRIBUTE] = self
            member.__dict__["_sibling_index"] = index

    def forward(self, member: Linear8bitLt, x: Tensor) -> Optional[Tensor]:
        """`member`'s output for `x` from the group's product, or None where the member must run
        its own (its weight, bias or settings no longer the group's)."""
        index = member.__dict__["_sibling_index"]
        fused = self.fused
        compiling = torch.compiler.is_compiling()
        if (
            member.weight is not self.weights[index]
            or member.bias is not self.biases[index]
            or member.threshold != fused.threshold
            or member.arithmetic != fused.arithmetic
            or member.outlier_cols is not None
            or (not compiling and member.weight.data_ptr() != self.addresses[index])
        ):
            return None
        # Under torch.compile the input's version cannot be read (the traced graph is
        # functional) and the stream is the graph's.
        version = 0 if compiling else x._version
        stream = (
            0 if compiling or not x.is_cuda else torch._C._cuda_getCurrentRawStream(x.get_device())
        )
        kept = self._kept
        bit = 1 << index
        if (
            kept is not None
            and kept[0] is x
            and kept[1] == version
            and kept[2] == stream
            and kept[4] & bit
        ):
            left = kept[4] & ~bit
            self._kept = (x, version, stream, kept[3], left) if left else None
            return kept[3][index]
        outputs = fused(x).split(self.sizes, dim=-1)
        left = self.everyone & ~bit
        self._kept = (x, version, stream, outputs, left) if left else None
        return outputs[index]

    def dissolve(self) -> None:
        """Ends the group: every member runs alone from now on (on its views of the rows)."""
        for member in self.members:
            if member.__dict__.get(SIBLINGS_ATTRIBUTE) is self:
                del member.__dict__[SIBLINGS_ATTRIBUTE]
                member.__dict__.pop("_sibling_index", None)
        self._kept = None

    # Copies and pickles of members do not share the group (they run alone).
    def __deepcopy__(self, memo: dict) -> None:
        return None

    def __reduce__(self):
        return (_no_group, ())


def fuse_siblings(
    model: nn.Module, siblings: Iterable[Sequence[str]] = DEFAULT_SIBLINGS
) -> list[str]:
    """Fuses, in place, each group of `siblings` child names found together under one parent
    of `model`: int8 `Linear8bitLt` layers (quantized: after the move to their device) with the
    same input size, device, threshold, arithmetic and bias dtype, and no static outlier
    columns. Returns the dotted names of the fused members' parents with their group, e.g.
    ``"model.layers.0.self_attn: q_proj, k_proj, v_proj"``; a parent whose children differ in
    those settings is left as it is.

    Raises `QuantizationError` for members not quantized yet (floating-point weights, or
    ``has_fp16_weights``) and `DeviceMismatchError` for members on different devices.
    """
    groups = [tuple(group) for group in siblings]
    for group in groups:
        if len(group) < 2 or len(set(group)) != len(group):
            raise ValueError(f"a sibling group names two or more distinct children, got {group}")
    fused = []
    for parent_name, parent in list(model.named_modules()):
        children = dict(parent.named_children())
        for group in groups:
            members = [children.get(name) for name in group]
            if not all(isinstance(m, Linear8bitLt) for m in members):
                continue
            where = f"{parent_name or type(model).__name__}: {', '.join(group)}"
            if _fusable(members, where):
                _fuse(members)
                fused.append(where)
    return fused


def _fusable(members: list[Linear8bitLt], where: str) -> bool:
    """Whether `members` can share one product (raising for members that cannot be fused at
    all: not quantized, or on different devices)."""
    for member in members:
        if member.has_fp16_weights or not member.weight.is_int8:
            raise QuantizationError(
                f"{where}: fuse_siblings needs int8 layers; quantize them first (move the "
                "model to its device, or load a quantized state dict)"
            )
        if SIBLINGS_ATTRIBUTE in member.__dict__:
            return False  # fused already
    devices = {m.weight.device for m in members}
    if len(devices) != 1:
        raise DeviceMismatchError(
            f"{where}: siblings on different devices {sorted(map(str, devices))}"
        )
    first = members[0]
    bias_dtypes = {m.bias.dtype for m in members if m.bias is not None}
    return (
        all(m.in_features == first.in_features for m in members)
        and all(m.threshold == first.threshold for m in members)
        and all(m.arithmetic == first.arithmetic for m in members)
        and all(m.outlier_cols is None for m in members)
        and all(m.weight.is_contiguous() for m in members)
        and len(bias_dtypes) <= 1
    )


@torch.no_grad()
def _fuse(members: list[Linear8bitLt]) -> SiblingGroup:
    first = members[0]
    CB = torch.cat([m.weight.data for m in members])
    SCB = torch.cat([m.weight.SCB for m in members])
    bias = None
    if any(m.bias is not None for m in members):
        dtype = next(m.bias.dtype for m in members if m.bias is not None)
        bias = torch.cat([
            m.bias.data if m.bias is not None
            else torch.zeros(m.out_features, dtype=dtype, device=CB.device)
            for m in members
        ])  # fmt: skip
    fused = Linear8bitLt(
        first.in_features, CB.shape[0], bias=bias is not None, has_fp16_weights=False,
        threshold=first.threshold, device="meta", arithmetic=first.arithmetic,
    )  # fmt: skip
    fused.weight = Int8Params(
        CB, has_fp16_weights=False, SCB=SCB, original_dtype=first.weight.original_dtype
    )
    if bias is not None:
        fused.bias = nn.Parameter(bias, requires_grad=False)
    start = 0
    for member in members:
        rows = slice(start, start + member.out_features)
        start = rows.stop
        _set_rows(member, CB[rows], SCB[rows], None if bias is None else bias[rows])
    return SiblingGroup(members, fused)


def _set_rows(member: Linear8bitLt, CB: Tensor, SCB: Tensor, bias: Optional[Tensor]) -> None:
    """Gives `member` these int8 rows, scales and (where it has one) bias, keeping its flags."""
    member.weight = Int8Params(
        CB, has_fp16_weights=False, SCB=SCB, original_dtype=member.weight.original_dtype
    )
    if member.bias is not None:
        member.bias = nn.Parameter(bias, requires_grad=member.bias.requires_grad)
    member.__dict__.pop("_prepared_forwards", None)  # they hold the former tensors


@torch.no_grad()
def unfuse_siblings(model: nn.Module) -> int:
    """Ends every sibling group in `model` and gives each member its own copy of its rows, scales
    and bias (one group's worth of memory more at a time). Returns the number of groups ended."""
    groups = []
    for module in model.modules():
        group = (
            module.__dict__.get(SIBLINGS_ATTRIBUTE) if isinstance(module, Linear8bitLt) else None
        )
        if group is not None and group not in groups:
            groups.append(group)
    for group in groups:
        group.dissolve()
        for member in group.members:
            bias = None if member.bias is None else member.bias.data.clone()
            _set_rows(member, member.weight.data.clone(), member.weight.SCB.clone(), bias)
        group.members, group.fused = [], None
    return len(groups)
