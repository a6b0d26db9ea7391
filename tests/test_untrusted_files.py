"""Files from strangers: pickles never run, shard indices cannot point outside the checkpoint."""

import json

import pytest
import torch
from torch import nn

import llmint8
from llmint8.loading import checkpoint_files, read_state

from .cli.conftest import assert_one_line_error
from .cli.conftest import llmint8 as run


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_with_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "ran"
    model = tmp_path / "model"
    model.mkdir()
    evil = model / "pytorch_model.bin"
    torch.save({"fc.weight": torch.randn(3, 3), "payload": _RunsCode(marker)}, evil)
    (model / "config.json").write_text('{"model_type": "llama"}')
    (tmp_path / "lines.txt").write_text("some text\n")
    with pytest.raises(llmint8.FormatError, match="could run code"):
        read_state(evil)
    assert_one_line_error(run("quantize", evil, tmp_path / "out.safetensors"), "could run code")
    assert_one_line_error(run("quantize", model, tmp_path / "out"), "could run code")
    # eval hands the directory to transformers: the refusal is still one line, exit 2.
    result = run("eval", model, "--text", tmp_path / "lines.txt")
    assert_one_line_error(result, "pytorch_model.bin", "could run code")
    assert not marker.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lines.txt", "model"]


def test_plain_pytorch_weights_load_with_weights_only(tmp_path):
    model = nn.Sequential(nn.Linear(8, 6), nn.Linear(6, 4))
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    state = read_state(tmp_path / "pytorch_model.bin")
    assert state.keys() == model.state_dict().keys()
    result = run("quantize", tmp_path / "pytorch_model.bin", tmp_path / "int8.safetensors")
    assert result.returncode == 0, result.stderr
    loaded, _ = llmint8.load_state_dict(tmp_path / "int8.safetensors")
    assert loaded["0.weight"].dtype == torch.int8 and loaded["0.SCB"].shape == (6,)


@pytest.mark.parametrize("shard", ["../outside.safetensors", "/etc/passwd", "sub/../../x"])
def test_index_entries_outside_the_directory_are_refused(tmp_path, shard):
    directory = tmp_path / "ckpt"
    directory.mkdir()
    llmint8.save_state_dict({"a": torch.zeros(2)}, tmp_path / "outside.safetensors")
    index = {"metadata": {}, "weight_map": {"a": shard}}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(llmint8.FormatError, match="outside the checkpoint directory"):
        checkpoint_files(directory)
    assert_one_line_error(run("inspect", directory), "outside the checkpoint directory")


def test_a_shard_that_links_outside_is_refused(tmp_path):
    directory = tmp_path / "ckpt"
    directory.mkdir()
    llmint8.save_state_dict({"a": torch.zeros(2)}, tmp_path / "outside.safetensors")
    (directory / "model-1.safetensors").symlink_to(tmp_path / "outside.safetensors")
    index = {"metadata": {}, "weight_map": {"a": "model-1.safetensors"}}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(llmint8.FormatError, match="outside the checkpoint directory"):
        checkpoint_files(directory)
