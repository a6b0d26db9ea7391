"""Files that change under the reader, are not what their name says, or carry edited or forged
metadata: every case is a named error (never a signal, a hang or a silently different model)."""

import json
import os
import struct
import subprocess
import sys
import threading
import zlib

import pytest
import torch
from torch import nn

import llmint8
from llmint8.nn import Linear8bitLt

from .cli.conftest import assert_one_line_error
from .cli.conftest import llmint8 as run


def _saved_model(path, threshold=6.0):
    torch.manual_seed(3)
    model = llmint8.replace_linear(nn.Sequential(nn.Linear(32, 24), nn.Linear(24, 8)), threshold)
    llmint8.save_quantized(model.to("cpu"), path)
    return model


def _header(path):
    data = path.read_bytes()
    length = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8 : 8 + length]), data[8 + length :]


def _metadata_checksum(metadata: dict) -> str:
    """The format's metadata checksum, computed from its description in the README: CRC-32 over
    every other entry in key order, each key and value preceded by its length (u64 LE)."""
    crc = 0
    for key in sorted(k for k in metadata if k != "llmint8.metadata_checksum"):
        for part in (key.encode(), metadata[key].encode()):
            crc = zlib.crc32(struct.pack("<Q", len(part)) + part, crc)
    return f"{crc:08x}"


def _forge(path, **edits):
    """Rewrites the header's metadata with `edits` and a recomputed checksum, as a forger would."""
    header, data = _header(path)
    metadata = header["__metadata__"]
    metadata.update({k.replace("__", "."): v for k, v in edits.items()})
    metadata["llmint8.metadata_checksum"] = _metadata_checksum(metadata)
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)


def test_the_metadata_checksum_is_the_documented_one(tmp_path):
    _saved_model(tmp_path / "m.safetensors")
    metadata = _header(tmp_path / "m.safetensors")[0]["__metadata__"]
    assert metadata["llmint8.format_version"] == "2"
    assert metadata["llmint8.metadata_checksum"] == _metadata_checksum(metadata)


def test_an_edited_threshold_is_refused(tmp_path):
    path = tmp_path / "m.safetensors"
    _saved_model(path)
    data = path.read_bytes()
    assert data.count(b'"llmint8.threshold":"6.0"') == 1
    path.write_bytes(data.replace(b'"llmint8.threshold":"6.0"', b'"llmint8.threshold":"0.0"'))
    fresh = nn.Sequential(nn.Linear(32, 24), nn.Linear(24, 8))
    with pytest.raises(llmint8.FormatError, match=r"llmint8\.metadata_checksum: .*changed"):
        llmint8.load_quantized(fresh, path)


@pytest.mark.parametrize(
    "key, value",
    [
        ("llmint8.threshold", "nan"),
        ("llmint8.threshold", "-3"),
        ("llmint8.layers", '{"0": {"threshold": NaN, "has_fp16_weights": false}}'),
        ("llmint8.layers", '{"0": 6.0}'),
        ("llmint8.layers", '{"0": {"threshold": "6"}}'),
        ("llmint8.layers", "[" * 3000 + "]" * 3000),
        ("llmint8.layers", "not json"),
        ("llmint8.original_dtype", "pickle"),
        ("llmint8.skipped_modules", '{"lm_head": 1}'),
    ],
)
def test_forged_metadata_values_are_refused_naming_the_key(tmp_path, key, value):
    path = tmp_path / "m.safetensors"
    _saved_model(path)
    _forge(path, **{key.replace(".", "__"): value})
    fresh = nn.Sequential(nn.Linear(32, 24), nn.Linear(24, 8))
    with pytest.raises(llmint8.FormatError, match=f"^{key}: "):
        llmint8.load_quantized(fresh, path)
    # Writing such values is refused the same way.
    with pytest.raises(llmint8.FormatError, match=f"^{key}: "):
        llmint8.save_state_dict({"x": torch.zeros(1)}, tmp_path / "w.safetensors", {key: value})
    assert not (tmp_path / "w.safetensors").exists()


def test_a_forged_per_layer_threshold_is_what_loads(tmp_path):
    """A well-formed, resealed setting loads as written: the checksum guards against damage,
    validation against nonsense; a deliberate valid edit is the file's content."""
    path = tmp_path / "m.safetensors"
    _saved_model(path)
    layers = json.loads(_header(path)[0]["__metadata__"]["llmint8.layers"])
    layers["0"]["threshold"] = 2.5
    _forge(path, llmint8__layers=json.dumps(layers))
    loaded = llmint8.load_quantized(nn.Sequential(nn.Linear(32, 24), nn.Linear(24, 8)), path)
    assert loaded[0].threshold == 2.5 and loaded[1].threshold == 6.0


def test_loading_into_a_module_that_is_not_a_linear_is_refused(tmp_path):
    path = tmp_path / "m.safetensors"
    _saved_model(path)
    model = nn.Sequential(nn.Embedding(24, 32), nn.Linear(24, 8))
    before = model[0].weight.detach().clone()
    for strict in (True, False):
        with pytest.raises(llmint8.FormatError, match="'0' is a Embedding"):
            llmint8.load_quantized(model, path, strict=strict)
    assert torch.equal(model[0].weight, before)


def _raw_file(path, header: str, data: bytes):
    path.write_bytes(struct.pack("<Q", len(header)) + header.encode() + data)


def test_repeated_tensor_names_and_empty_names_are_refused(tmp_path):
    entry = '{"dtype":"F32","shape":[1],"data_offsets":[0,4]}'
    cases = {
        "twice": f'{{"w":{entry},"w":{entry}}}',
        "meta": f'{{"__metadata__":{{"a":"1","a":"2"}},"w":{entry}}}',
        "empty": f'{{"":{entry}}}',
    }
    for name, header in cases.items():
        path = tmp_path / f"{name}.safetensors"
        _raw_file(path, header, b"\0\0\x80?")
        with pytest.raises(llmint8.FormatError, match=r"appears twice|empty name"):
            llmint8.load_state_dict(path)


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    outcome = []

    def load():
        try:
            llmint8.load_state_dict(fifo)
        except llmint8.FormatError as err:
            outcome.append(str(err))

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    thread.join(timeout=20)
    assert outcome and "not a regular file" in outcome[0], "opening a FIFO blocked or loaded"
    assert_one_line_error(run("inspect", fifo, timeout=60), "not a regular file")


def test_a_directory_given_as_a_file_is_named(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a directory, not a checkpoint file"):
        llmint8.load_state_dict(tmp_path)
    with pytest.raises(IsADirectoryError, match="is a directory"):
        llmint8.save_state_dict({"x": torch.zeros(1)}, tmp_path)


def test_write_errors_name_the_destination_not_a_temporary_file(tmp_path):
    target = tmp_path / "missing" / "m.safetensors"
    with pytest.raises(FileNotFoundError) as caught:
        llmint8.save_state_dict({"x": torch.zeros(1)}, target)
    message = str(caught.value)
    assert message.startswith(str(target)) and "does not exist" in message
    assert ".tmp" not in message.replace(str(tmp_path), "")


@pytest.mark.parametrize(
    "weight_format",
    [torch.tensor(0.5), torch.tensor(0.0), torch.tensor(True), torch.tensor([0, 0])],
)
def test_a_weight_format_that_is_not_one_integer_zero_is_refused(weight_format):
    layer = Linear8bitLt(8, 4, has_fp16_weights=False)
    state = {
        "weight": torch.randint(-127, 128, (4, 8), dtype=torch.int8),
        "SCB": torch.rand(4) + 0.1,
        "bias": torch.zeros(4),
        "weight_format": weight_format,
    }
    with pytest.raises(llmint8.FormatError, match="weight_format"):
        layer.load_state_dict(state)


_TRUNCATE_UNDER_THE_READER = r"""
import os, sys
import torch, llmint8
from llmint8 import _core
path, mode = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
llmint8.save_state_dict({f"l{i}.weight": torch.randn(256, 1024) for i in range(4)}, path)
real = _core.CheckpointReader

def opened_then_truncated(file, verify_checksums=True):
    reader = real(file, verify_checksums)
    if verify_checksums:  # the reader that reads tensor data, not the header-only look
        os.truncate(file, 4096)
    return reader

if mode == "api":
    reader = opened_then_truncated(path)
    try:
        for name in reader.names():
            reader.read(name)
    except llmint8.FormatError as err:
        print("refused:", err)
else:
    _core.CheckpointReader = opened_then_truncated
    from llmint8 import cli
    print("exit", cli.main(["quantize", path, path + ".int8.safetensors", "--quiet"]))
"""


@pytest.mark.parametrize("mode", ["api", "quantize"])
def test_a_file_truncated_while_it_is_read_gives_an_error_not_a_signal(tmp_path, mode):
    path = tmp_path / "m.safetensors"
    result = subprocess.run(
        [sys.executable, "-c", _TRUNCATE_UNDER_THE_READER, str(path), mode],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, f"died with {result.returncode}: {result.stderr[-400:]}"
    if mode == "api":
        assert "refused:" in result.stdout and "truncated" in result.stdout, result.stdout
    else:
        assert "exit 2" in result.stdout, result.stdout
        assert "truncated while it was being read" in result.stderr, result.stderr
        assert not (tmp_path / "m.safetensors.int8.safetensors").exists()
