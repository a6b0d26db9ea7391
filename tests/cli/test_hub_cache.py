"""A model as the Hugging Face cache keeps it: ``models--org--name/snapshots/<revision>/`` whose
files are relative links into ``models--org--name/blobs/``. Links that stay inside the
repository folder are followed; links that leave it are still refused (weights) or not copied
(side files)."""

import hashlib
import json
import os

import pytest

import llmint8
from llmint8.loading import checkpoint_files

from .conftest import assert_one_line_error
from .conftest import llmint8 as run

transformers = pytest.importorskip("transformers")


def _cache_layout(source, root):
    """`source`'s files as the hub cache stores them under `root`; returns the snapshot."""
    repo = root / "models--org--tiny-llama"
    blobs, snapshot = repo / "blobs", repo / "snapshots" / "0123abcd"
    blobs.mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for file in sorted(source.iterdir()):
        data = file.read_bytes()
        blob = blobs / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / file.name).symlink_to(os.path.relpath(blob, snapshot))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    return snapshot


def test_a_sharded_model_in_the_cache_layout_quantizes_and_loads(llama_dir, tmp_path):
    snapshot = _cache_layout(llama_dir, tmp_path / "hub")
    assert len(checkpoint_files(snapshot)) > 2  # every shard a link into blobs/
    dst = tmp_path / "int8"
    result = run("quantize", snapshot, dst, "--quiet")
    assert result.returncode == 0, result.stderr
    assert "not copied" not in result.stdout
    assert (dst / "tokenizer.json").is_file() and not (dst / "tokenizer.json").is_symlink()
    model = transformers.AutoModelForCausalLM.from_pretrained(dst, device_map="cpu")
    assert isinstance(model.model.layers[0].mlp.up_proj, llmint8.Linear8bitLt)
    assert run("inspect", snapshot).returncode == 0


def test_links_out_of_the_repository_folder_are_still_refused(llama_dir, tmp_path):
    snapshot = _cache_layout(llama_dir, tmp_path / "hub")
    secret = tmp_path / "secret.txt"
    secret.write_text("token\n")
    (snapshot / "special_tokens_map.json").unlink(missing_ok=True)
    (snapshot / "special_tokens_map.json").symlink_to(os.path.relpath(secret, snapshot))
    result = run("quantize", snapshot, tmp_path / "int8", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "special_tokens_map.json (a link out of the model directory)" in result.stdout
    assert not (tmp_path / "int8" / "special_tokens_map.json").exists()
    # A shard that leaves the repository folder: the whole checkpoint is refused.
    index = json.loads((snapshot / "model.safetensors.index.json").read_text())
    shard = sorted(set(index["weight_map"].values()))[0]
    outside = tmp_path / "outside.safetensors"
    outside.write_bytes((snapshot / shard).read_bytes())
    (snapshot / shard).unlink()
    (snapshot / shard).symlink_to(outside)
    with pytest.raises(llmint8.FormatError, match="outside the checkpoint directory"):
        checkpoint_files(snapshot)
    assert_one_line_error(run("quantize", snapshot, tmp_path / "again"), "outside the checkpoint")
