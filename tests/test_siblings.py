"""Sibling projections fused (`llmint8.fuse_siblings`): one product per input for layers that
read it together, each member's output as it alone computes it (within fp32 accumulation order),
no memory added, and every way of leaving the group (moves, loads, copies, changed settings)
back to the member's own product."""

import copy
import gc
import weakref

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import llmint8
from llmint8.siblings import DEFAULT_SIBLINGS, SiblingGroup

from .helpers import assert_within_bound, weight_only_bound

CUDA = torch.cuda.is_available()


class Attention(nn.Module):
    def __init__(self, hidden: int, kv: int) -> None:
        super().__init__()
        self.q_proj = nn.Linear(hidden, hidden)
        self.k_proj = nn.Linear(hidden, kv)
        self.v_proj = nn.Linear(hidden, kv, bias=False)
        self.o_proj = nn.Linear(hidden, hidden)

    def forward(self, x):
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        return self.o_proj(q * torch.cat([k, v], -1).sum(-1, keepdim=True))


class Mlp(nn.Module):
    def __init__(self, hidden: int, inner: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(hidden, inner, bias=False)
        self.up_proj = nn.Linear(hidden, inner, bias=False)
        self.down_proj = nn.Linear(inner, hidden, bias=False)

    def forward(self, x):
        return self.down_proj(nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, hidden: int = 64, kv: int = 16, inner: int = 96) -> None:
        super().__init__()
        self.self_attn = Attention(hidden, kv)
        self.mlp = Mlp(hidden, inner)

    def forward(self, x):
        return self.mlp(x + self.self_attn(x))


def _model(arithmetic="auto", device="cpu", seed=3, **sizes):
    torch.manual_seed(seed)
    model = Block(**sizes)
    return llmint8.replace_linear(model, threshold=6.0, arithmetic=arithmetic).to(device).eval()


def _x(rows, hidden=64, device="cpu", dtype=torch.float32, seed=5):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, hidden, generator=g)
    x[:, [3, hidden * 5 // 8]] *= 20  # outlier columns
    return x.to(device=device, dtype=dtype)


def _members(model):
    attn, mlp = model.self_attn, model.mlp
    return [attn.q_proj, attn.k_proj, attn.v_proj], [mlp.gate_proj, mlp.up_proj]


def _alone(layer, x):
    """The layer's own product (a copy outside any group)."""
    return copy.deepcopy(layer)(x)


def _assert_as_alone(layer, x, got, what=""):
    expected = _alone(layer, x)
    bias = None if layer.bias is None else layer.bias.cpu().float()
    CB, SCB = layer.weight.CB.cpu(), layer.weight.SCB.cpu()
    bound = weight_only_bound(x.cpu().float(), CB, SCB, got.dtype, bias)
    assert_within_bound(got.cpu(), expected.cpu(), 2 * bound, what)


def test_fuse_names_the_groups_and_shares_one_storage_per_group():
    model = _model()
    before = sum(p.numel() * p.element_size() for p in model.parameters())
    fused = llmint8.fuse_siblings(model)
    assert fused == ["self_attn: q_proj, k_proj, v_proj", "mlp: gate_proj, up_proj"]
    for group in _members(model):
        storages = {m.weight.untyped_storage().data_ptr() for m in group}
        assert len(storages) == 1
        scales = {m.weight.SCB.untyped_storage().data_ptr() for m in group}
        assert len(scales) == 1
    after = sum(p.numel() * p.element_size() for p in model.parameters())
    assert after == before
    assert llmint8.fuse_siblings(model) == []  # fused already


def test_fusing_frees_the_members_former_tensors():
    model = _model()
    former = [weakref.ref(t) for group in _members(model) for m in group
              for t in (m.weight, m.weight.SCB)]  # fmt: skip
    llmint8.fuse_siblings(model)
    gc.collect()
    assert all(ref() is None for ref in former)


@pytest.mark.parametrize("arithmetic", ["int8", "weight_only"])
@pytest.mark.parametrize("rows", [1, 7])
def test_each_member_gets_its_own_product_from_one_launch(arithmetic, rows):
    model = _model(arithmetic)
    plain = copy.deepcopy(model)
    llmint8.fuse_siblings(model)
    x = _x(rows)
    attention, mlp = _members(model)
    calls = []
    for member in (attention[0], mlp[0]):
        group = member.__dict__["_siblings"]
        forward = group.fused.forward
        group.fused.forward = lambda x, forward=forward: calls.append(1) or forward(x)
    with torch.no_grad():
        for member in attention + mlp:
            _assert_as_alone(member, x, member(x), f"{arithmetic}: {member}")
        assert len(calls) == 2  # one product per group
        assert all(m.__dict__["_siblings"]._kept is None for m in attention + mlp)
        _assert_close_models(model(x), plain(x))


def _assert_close_models(got, expected):
    # The whole block through fused and plain layers: the same arithmetic in another fp32 order.
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_a_changed_input_or_a_member_called_again_is_multiplied_again():
    model = _model()
    llmint8.fuse_siblings(model)
    q, k, v = _members(model)[0]
    with torch.no_grad():
        x = _x(4)
        q(x)
        x[0, 0] += 1.0  # in place: k and v must see it
        _assert_as_alone(k, x, k(x), "k after an in-place change")
        _assert_as_alone(v, x, v(x), "v after an in-place change")
        y = _x(4, seed=9)
        _assert_as_alone(q, y, q(y))
        _assert_as_alone(q, y, q(y), "q twice")
        equal = y.clone()  # equal values, another tensor: multiplied again, same answer
        _assert_as_alone(k, equal, k(equal))


def test_members_with_other_settings_run_alone():
    model = _model()
    llmint8.fuse_siblings(model)
    q, k, v = _members(model)[0]
    k.arithmetic = "weight_only"
    v.threshold = 0.0
    x = _x(5)
    with torch.no_grad():
        for member in (q, k, v):
            _assert_as_alone(member, x, member(x), f"{member}")


def test_groups_with_unequal_settings_are_left_alone():
    model = _model()
    model.mlp.up_proj.threshold = 0.0
    model.self_attn.k_proj.set_outlier_columns([3])
    assert llmint8.fuse_siblings(model) == []


def test_moves_loads_and_copies_end_the_group():
    model = _model()
    llmint8.fuse_siblings(model)
    q = model.self_attn.q_proj
    twin = copy.deepcopy(model)
    assert "_siblings" not in twin.self_attn.q_proj.__dict__ or not twin.self_attn.q_proj._siblings
    x = _x(3)
    with torch.no_grad():
        _assert_as_alone(twin.self_attn.k_proj, x, twin.self_attn.k_proj(x), "copy")
        model.to("cpu")
        assert "_siblings" not in q.__dict__
        _assert_as_alone(q, x, q(x), "after a move")
    model = _model()
    llmint8.fuse_siblings(model)
    other = _model(seed=11)
    model.load_state_dict(other.state_dict())
    assert all("_siblings" not in m.__dict__ for m in _members(model)[0])
    with torch.no_grad():
        torch.testing.assert_close(model(x), other(x))


def test_state_dicts_and_files_of_fused_models_are_the_plain_ones(tmp_path):
    model = _model()
    plain = copy.deepcopy(model)
    llmint8.fuse_siblings(model)
    state, expected = model.state_dict(), plain.state_dict()
    assert state.keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.equal(state[name], tensor), name
    path = tmp_path / "fused.safetensors"
    llmint8.save_quantized(model, path)
    loaded = llmint8.replace_linear(Block(), threshold=6.0)
    llmint8.load_quantized(loaded, path)
    x = _x(6)
    with torch.no_grad():
        assert torch.equal(loaded(x), plain(x))


def test_unfuse_gives_each_member_its_own_rows():
    model = _model()
    llmint8.fuse_siblings(model)
    x = _x(2)
    with torch.no_grad():
        before = model(x)
    assert llmint8.unfuse_siblings(model) == 2
    for group in _members(model):
        assert len({m.weight.untyped_storage().data_ptr() for m in group}) == len(group)
        assert all("_siblings" not in m.__dict__ for m in group)
    with torch.no_grad():
        _assert_close_models(model(x), before)
    assert llmint8.unfuse_siblings(model) == 0


def test_layers_not_quantized_are_refused():
    model = llmint8.replace_linear(Block(), threshold=6.0)  # floating point until moved
    with pytest.raises(llmint8.QuantizationError, match="self_attn: q_proj, k_proj, v_proj"):
        llmint8.fuse_siblings(model)
    with pytest.raises(ValueError, match="two or more distinct"):
        llmint8.fuse_siblings(_model(), [("q_proj",)])


def test_custom_groups_and_the_default_names():
    assert ("q_proj", "k_proj", "v_proj") in DEFAULT_SIBLINGS
    model = _model()
    assert llmint8.fuse_siblings(model, [("k_proj", "v_proj")]) == ["self_attn: k_proj, v_proj"]


def test_compiled_models_trace_the_group_as_one_product():
    torch._dynamo.reset()
    model = _model()
    plain = copy.deepcopy(model)
    llmint8.fuse_siblings(model)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    with torch.no_grad():
        for seed in range(3):
            x = _x(4, seed=seed)
            _assert_close_models(compiled(x), plain(x))
    assert model.self_attn.q_proj._siblings._kept is None


def test_gradients_reach_the_input_through_the_group():
    model = _model()
    plain = copy.deepcopy(model)
    llmint8.fuse_siblings(model)
    x1 = _x(3).requires_grad_(True)
    x2 = x1.detach().clone().requires_grad_(True)
    model(x1).square().sum().backward()
    plain(x2).square().sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-4, atol=1e-3)


@settings(max_examples=25, deadline=None)
@given(
    hidden=st.sampled_from([16, 48, 64]),
    kv=st.integers(1, 40),
    inner=st.integers(1, 70),
    rows=st.integers(1, 9),
    arithmetic=st.sampled_from(["int8", "weight_only"]),
)
def test_property_fused_members_match_their_own_products(hidden, kv, inner, rows, arithmetic):
    model = _model(arithmetic, hidden=hidden, kv=kv, inner=inner)
    llmint8.fuse_siblings(model)
    x = _x(rows, hidden)
    with torch.no_grad():
        for group in _members(model):
            for member in group:
                _assert_as_alone(member, x, member(x), f"{member}")


def test_groups_are_not_pickled_with_their_members():
    model = _model()
    llmint8.fuse_siblings(model)
    group = model.self_attn.q_proj._siblings
    assert isinstance(group, SiblingGroup)
    assert copy.deepcopy(group) is None


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a GPU")
@pytest.mark.parametrize("arithmetic", ["auto", "int8", "weight_only"])
@pytest.mark.parametrize("rows", [1, 16, 96, 300])
def test_gpu_fused_members_match_their_own_products(arithmetic, rows):
    model = _model(arithmetic, device="cuda", hidden=256, kv=64, inner=512).half()
    llmint8.fuse_siblings(model)
    x = _x(rows, 256, device="cuda", dtype=torch.float16)
    with torch.no_grad():
        for group in _members(model):
            outputs = [m(x) for m in group]
            for member, got in zip(group, outputs):
                _assert_as_alone(member, x, got, f"{arithmetic} {rows}: {member}")


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a GPU")
def test_gpu_graph_replay_of_a_fused_block_equals_eager():
    model = _model(device="cuda", hidden=256, kv=64, inner=512).half()
    llmint8.fuse_siblings(model)
    static = _x(8, 256, device="cuda", dtype=torch.float16)
    with torch.no_grad():
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            model(static)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = model(static)
        for seed in (1, 2):
            fresh = _x(8, 256, device="cuda", dtype=torch.float16, seed=seed)
            static.copy_(fresh)
            graph.replay()
            torch.testing.assert_close(out, model(fresh), rtol=0, atol=0)
