"""Crash safety: writers killed with SIGKILL at random moments never leave a partial or corrupt
destination, and an existing destination survives intact (50 kills each for save_quantized and
for `llmint8 quantize --overwrite`)."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

import llmint8

from .cli.conftest import llmint8 as run

TRIALS = int(os.environ.get("LLMINT8_KILL_TRIALS", "50"))

SAVER = r"""
import sys, itertools, torch, llmint8
from torch import nn
dst = sys.argv[1]
models = []
for seed in (1, 2):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(1024, 2048), nn.Linear(2048, 512))
    models.append(llmint8.replace_linear(model).to("cpu"))
for i in itertools.count():
    llmint8.save_quantized(models[i % 2], dst)
    if i == 0:
        print("saved", flush=True)
"""


def _reference_states(tmp_path):
    from torch import nn

    states = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(1024, 2048), nn.Linear(2048, 512))
        model = llmint8.replace_linear(model).to("cpu")
        llmint8.save_quantized(model, tmp_path / f"ref{seed}.safetensors")
        states.append(llmint8.load_state_dict(tmp_path / f"ref{seed}.safetensors")[0])
    return states


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _kill_after_ready(command, ready: str, delay: float):
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    if ready:
        assert process.stdout.readline().strip() == ready
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return process.returncode


def test_save_quantized_killed_at_random_leaves_a_complete_file(tmp_path):
    references = _reference_states(tmp_path)
    dst = tmp_path / "model.safetensors"
    rng = random.Random(1234)
    killed = 0
    for _ in range(TRIALS):
        code = _kill_after_ready(
            [sys.executable, "-c", SAVER, str(dst)], "saved", rng.uniform(0.0, 0.3)
        )
        killed += code == -signal.SIGKILL
        state, _ = llmint8.load_state_dict(dst)  # complete and checksum-clean
        assert any(_same(state, ref) for ref in references)
    assert killed == TRIALS
    # The next save clears the temporary files the killed writers left.
    state = llmint8.load_state_dict(dst)[0]
    llmint8.save_state_dict(state, dst)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    print(f"save_quantized: {TRIALS} kills, destination intact after each")


@pytest.fixture(scope="module")
def float_shards(tmp_path_factory):
    """A sharded floating-point checkpoint of about 8 MB (no config: names decide)."""
    from torch import nn

    torch.manual_seed(5)
    model = nn.Sequential(*[nn.Linear(512, 512) for _ in range(8)])
    directory = tmp_path_factory.mktemp("shards")
    weight_map = {}
    names = list(model.state_dict().items())
    for shard in range(4):
        file = f"model-{shard + 1:05d}-of-00004.safetensors"
        part = dict(names[shard * 4 : shard * 4 + 4])
        llmint8.save_state_dict(part, directory / file)
        weight_map.update(dict.fromkeys(part, file))
    index = {"metadata": {}, "weight_map": weight_map}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index))
    return directory


def _load_directory(directory):
    index = json.loads((directory / "model.safetensors.index.json").read_text())
    state = {}
    for file in sorted(set(index["weight_map"].values())):
        state.update(llmint8.load_state_dict(directory / file)[0])
    assert state.keys() == index["weight_map"].keys()
    return state


def test_quantize_killed_at_random_leaves_the_old_or_the_new_copy(float_shards, tmp_path):
    dst = tmp_path / "int8"
    start = time.monotonic()
    assert run("quantize", float_shards, dst, "--quiet").returncode == 0
    duration = time.monotonic() - start
    reference = _load_directory(dst)
    rng = random.Random(99)
    outcomes = {"old or new copy intact": 0}
    for _ in range(TRIALS):
        command = [sys.executable, "-m", "llmint8.cli", "quantize", str(float_shards), str(dst),
                   "--overwrite", "--quiet"]  # fmt: skip
        _kill_after_ready(command, "", rng.uniform(0.0, duration * 1.2))
        assert _same(_load_directory(dst), reference)
        outcomes["old or new copy intact"] += 1
    # A run after the kills completes and clears what the killed runs left beside DST.
    assert run("quantize", float_shards, dst, "--overwrite", "--quiet").returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["int8"]
    print(f"llmint8 quantize: {TRIALS} kills; {outcomes}")
