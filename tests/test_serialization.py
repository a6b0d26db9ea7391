"""save_quantized / load_quantized and the file format, through the Rust core."""

import json
import os

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import llmint8
from llmint8 import _core
from llmint8.nn import Linear8bitLt


class Block(nn.Module):
    def __init__(self, width=32, vocab=50):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.norm = nn.LayerNorm(width)
        self.up = nn.Linear(width, 2 * width)
        self.down = nn.Linear(2 * width, width, bias=False)
        self.lm_head = nn.Linear(width, vocab)

    def forward(self, ids):
        h = self.norm(self.embed(ids))
        return self.lm_head(h + self.down(torch.relu(self.up(h))))


def quantized_block(seed=0, threshold=6.0):
    torch.manual_seed(seed)
    model = llmint8.replace_linear(Block(), threshold=threshold)
    return model.to("cpu")


def test_save_load_is_bit_exact(tmp_path):
    model = quantized_block()
    path = tmp_path / "block.safetensors"
    llmint8.save_quantized(model, path)
    fresh = llmint8.load_quantized(Block(), path)  # a floating-point model, converted on load
    assert isinstance(fresh.up, Linear8bitLt) and not isinstance(fresh.lm_head, Linear8bitLt)
    for name, tensor in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], tensor), name
    ids = torch.randint(0, 50, (3, 7))
    assert torch.equal(fresh(ids), model(ids))


def test_metadata_records_the_conversion(tmp_path):
    model = quantized_block(threshold=4.0)
    path = tmp_path / "block.safetensors"
    llmint8.save_quantized(model, path, metadata={"note": "test"})
    _, metadata = llmint8.load_state_dict(path)
    assert metadata["llmint8.format"] == "llmint8"
    assert metadata["llmint8.format_version"] == llmint8.FORMAT_VERSION
    assert metadata["llmint8.threshold"] == "4.0"
    assert metadata["llmint8.original_dtype"] == "float32"
    assert json.loads(metadata["llmint8.skipped_modules"]) == ["lm_head"]
    assert set(json.loads(metadata["llmint8.layers"])) == {"up", "down"}
    assert metadata["note"] == "test"
    checksums = json.loads(metadata["llmint8.checksums"])
    assert set(checksums) == set(model.state_dict())


def test_load_into_a_meta_model(tmp_path):
    accelerate = pytest.importorskip("accelerate")
    model = quantized_block()
    path = tmp_path / "block.safetensors"
    llmint8.save_quantized(model, path)
    with accelerate.init_empty_weights():
        empty = llmint8.replace_linear(Block())
    assert empty.up.weight.device.type == "meta"
    loaded = llmint8.load_quantized(empty, path)
    assert all(t.device.type == "cpu" for t in loaded.state_dict().values())
    ids = torch.randint(0, 50, (2, 5))
    assert torch.equal(loaded(ids), model(ids))


def _flip(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def test_corrupted_copies_are_refused(tmp_path):
    model = quantized_block()
    path = tmp_path / "block.safetensors"
    llmint8.save_quantized(model, path)
    original = path.read_bytes()
    header_len = int.from_bytes(original[:8], "little")
    rng = np.random.default_rng()
    for offset in rng.integers(8 + header_len, len(original), size=20):
        path.write_bytes(original)
        _flip(path, int(offset))
        with pytest.raises(llmint8.FormatError, match="checksum"):
            llmint8.load_quantized(Block(), path)
    # With verification off, a flip inside float data goes unnoticed (the opt-out is for speed).
    header = json.loads(original[8 : 8 + header_len])
    start, end = header["embed.weight"]["data_offsets"]
    path.write_bytes(original)
    _flip(path, 8 + header_len + (start + end) // 2)
    loaded = llmint8.load_quantized(Block(), path, verify_checksums=False)
    assert not torch.equal(loaded.embed.weight, model.embed.weight)


def test_truncated_files_are_refused(tmp_path):
    model = quantized_block()
    path = tmp_path / "block.safetensors"
    llmint8.save_quantized(model, path)
    original = path.read_bytes()
    for cut in (0, 7, 8, 100, len(original) // 2, len(original) - 1):
        path.write_bytes(original[:cut])
        with pytest.raises(llmint8.FormatError):
            llmint8.load_quantized(Block(), path)


def test_header_corruption_is_refused(tmp_path):
    model = quantized_block()
    path = tmp_path / "block.safetensors"
    llmint8.save_quantized(model, path)
    original = path.read_bytes()
    header_len = int.from_bytes(original[:8], "little")
    refused = 0
    for offset in range(8, 8 + header_len, max(1, header_len // 40)):
        path.write_bytes(original)
        _flip(path, offset)
        try:
            loaded = llmint8.load_quantized(Block(), path)
        except llmint8.FormatError:
            refused += 1
        else:  # a flip that leaves a valid file must load the same tensors
            for name, tensor in model.state_dict().items():
                assert torch.equal(loaded.state_dict()[name], tensor)
    assert refused > 0


def test_reader_reports_tensors_without_reading_them(tmp_path):
    path = tmp_path / "block.safetensors"
    llmint8.save_quantized(quantized_block(), path)
    reader = _core.CheckpointReader(str(path))
    assert reader.info("up.weight") == ("int8", [64, 32])
    assert reader.info("up.SCB") == ("float32", [64])
    with pytest.raises(llmint8.FormatError, match="no such tensor"):
        reader.info("missing.weight")


def test_missing_file_and_wrong_model():
    with pytest.raises(FileNotFoundError):
        llmint8.load_quantized(Block(), "/nonexistent/llmint8.safetensors")


def test_model_without_the_layer_is_a_format_error(tmp_path):
    path = tmp_path / "block.safetensors"
    llmint8.save_quantized(quantized_block(), path)
    with pytest.raises(llmint8.FormatError, match="has no module"):
        llmint8.load_quantized(nn.Sequential(nn.Linear(2, 2)), path)


def test_invalid_state_dicts_are_never_written(tmp_path):
    model = quantized_block()
    state = dict(model.state_dict())
    state["up.SCB"] = state["up.SCB"][:-1]
    path = tmp_path / "bad.safetensors"
    with pytest.raises(llmint8.FormatError, match=r"up\.SCB"):
        llmint8.save_state_dict(state, path)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_save_keeps_the_existing_file(tmp_path):
    path = tmp_path / "block.safetensors"
    llmint8.save_quantized(quantized_block(), path)
    before = path.read_bytes()
    model = quantized_block(seed=1)
    model.up.weight.SCB[0] = float("nan")
    with pytest.raises(llmint8.FormatError):
        llmint8.save_quantized(model, path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["block.safetensors"]


def test_meta_weights_cannot_be_saved(tmp_path):
    with torch.device("meta"):
        model = llmint8.replace_linear(Block())
    with pytest.raises(llmint8.FormatError, match="meta"):
        llmint8.save_quantized(model, tmp_path / "x.safetensors")


dtypes = st.sampled_from(
    [
        torch.float16,
        torch.bfloat16,
        torch.float32,
        torch.float64,
        torch.int8,
        torch.uint8,
        torch.int32,
        torch.int64,
        torch.bool,
    ]
)


@given(
    tensors=st.dictionaries(
        st.from_regex(r"[a-z][a-z0-9_.]{0,20}", fullmatch=True).filter(
            lambda n: (
                n.split(".")[-1]
                not in {
                    "weight",
                    "SCB",
                    "weight_format",
                    "bias",
                    "outlier_cols",
                    "outlier_counts",
                    "outlier_batches",
                }
            )
        ),
        st.tuples(dtypes, st.lists(st.integers(0, 5), max_size=3), st.integers(0, 2**31)),
        max_size=6,
    )
)
def test_any_state_dict_round_trips(tmp_path_factory, tensors):
    state = {}
    for name, (dtype, shape, seed) in tensors.items():
        generator = torch.Generator().manual_seed(seed)
        values = torch.randint(-100, 100, shape, generator=generator)
        state[name] = values.to(dtype) if dtype != torch.bool else values > 0
    path = tmp_path_factory.mktemp("rt") / "state.safetensors"
    llmint8.save_state_dict(state, path)
    loaded, _ = llmint8.load_state_dict(path)
    assert loaded.keys() == state.keys()
    for name, tensor in state.items():
        assert loaded[name].dtype == tensor.dtype and torch.equal(loaded[name], tensor)


def test_bitsandbytes_layout_without_llmint8_metadata_loads(tmp_path):
    # A file as transformers writes for bitsandbytes 8-bit models: no llmint8 header, no checksums.
    safetensors_torch = pytest.importorskip("safetensors.torch")
    model = quantized_block()
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    path = tmp_path / "bnb.safetensors"
    safetensors_torch.save_file(state, str(path), metadata={"format": "pt"})
    reader = _core.CheckpointReader(str(path))
    assert not reader.is_llmint8
    loaded = llmint8.load_quantized(Block(), path)
    ids = torch.randint(0, 50, (2, 5))
    assert torch.equal(loaded(ids), model(ids))
