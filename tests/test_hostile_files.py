"""Damaged files through the Python API: a saved checkpoint with bytes changed anywhere is either
refused with FormatError or loads to exactly the tensors that were saved."""

import json
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import llmint8


def _saved_model(directory: Path) -> tuple[Path, dict]:
    torch.manual_seed(3)
    model = llmint8.replace_linear(nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 5)))
    model = model.to("cpu")
    path = directory / "model.safetensors"
    llmint8.save_quantized(model, path)
    state, _ = llmint8.load_state_dict(path)
    return path, state


@settings(max_examples=300)
@given(data=st.data())
def test_bytes_changed_anywhere_are_refused_or_harmless(data):
    with tempfile.TemporaryDirectory() as directory:
        path, expected = _saved_model(Path(directory))
        raw = bytearray(path.read_bytes())
        for _ in range(data.draw(st.integers(1, 4), label="changes")):
            at = data.draw(st.integers(0, len(raw) - 1), label="offset")
            raw[at] ^= data.draw(st.integers(1, 255), label="xor")
        if data.draw(st.booleans(), label="truncate"):
            del raw[data.draw(st.integers(0, len(raw) - 1), label="length") :]
        path.write_bytes(bytes(raw))
        try:
            loaded, _ = llmint8.load_state_dict(path)
        except llmint8.FormatError:
            return
        assert loaded.keys() == expected.keys()
        for name, tensor in expected.items():
            assert loaded[name].dtype == tensor.dtype and torch.equal(loaded[name], tensor), name


def test_without_verification_a_changed_byte_in_data_goes_unnoticed(tmp_path):
    """The opt-out (verify_checksums=False) skips exactly the checksums, for speed."""
    path, expected = _saved_model(tmp_path)
    raw = bytearray(path.read_bytes())
    header_len = int.from_bytes(raw[:8], "little")
    start, _ = json.loads(raw[8 : 8 + header_len])["0.weight"]["data_offsets"]
    raw[8 + header_len + start] ^= 0x40  # a byte of an int8 weight
    path.write_bytes(bytes(raw))
    with pytest.raises(llmint8.FormatError, match="checksum mismatch"):
        llmint8.load_state_dict(path)
    loaded, _ = llmint8.load_state_dict(path, verify_checksums=False)
    assert any(not torch.equal(loaded[k], v) for k, v in expected.items())


def test_a_damaged_format_marker_does_not_turn_off_the_checksums(tmp_path):
    """Once found by the test above: a flipped byte in the key `llmint8.format` made the file look
    foreign (read without checksums), so a flipped weight byte then loaded silently."""
    path, _ = _saved_model(tmp_path)
    raw = bytearray(path.read_bytes())
    header_len = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + header_len])
    marker = raw.index(b'"llmint8.format"', 8)
    raw[marker + 4] ^= 0x01  # "llmint8.format" -> "llmjnt8.format"
    start, _ = header["0.weight"]["data_offsets"]
    raw[8 + header_len + start] ^= 0x40
    path.write_bytes(bytes(raw))
    with pytest.raises(llmint8.FormatError, match="marker"):
        llmint8.load_state_dict(path)


def test_the_same_model_saves_to_the_same_bytes(tmp_path):
    saved = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        saved.append(_saved_model(tmp_path / name)[0].read_bytes())
    assert saved[0] == saved[1]
