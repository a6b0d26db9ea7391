"""Crash safety: writers killed with SIGKILL at random moments never leave a partial or corrupt
destination, and an existing destination survives intact (50 kills each for save_quantized and
for `llmint8 quantize --overwrite`).

Each writer is a process forked from a "zygote" that imported torch and llmint8 once per test,
so a trial costs its write rather than an interpreter's start-up, and the random kills land in
the writing rather than in the imports."""

import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import pytest
import torch

import llmint8

TRIALS = int(os.environ.get("LLMINT8_KILL_TRIALS", "50"))

# Reads one job a line (JSON: ["save", DST] or the `llmint8` command's arguments) and forks a
# writer for it. The writer says "pid N" (and, saving, "saved" after its first save); the zygote
# says "exit CODE" when it has ended, and reaps it only when told "reap" (or at the end of
# input), so that the pid the test kills stays the writer's. No tensor op runs here: torch's
# thread pools must start in the writers, after the fork.
ZYGOTE = r"""
import itertools, json, os, sys, traceback
import torch, llmint8, llmint8.cli, llmint8.demo, llmint8.tools.quantize
from torch import nn


def say(fd, line):
    os.write(fd, (line + "\n").encode())


def save_forever(dst, report):
    models = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(1024, 2048), nn.Linear(2048, 512))
        models.append(llmint8.replace_linear(model).to("cpu"))
    for i in itertools.count():
        llmint8.save_quantized(models[i % 2], dst)
        if i == 0:
            say(report, "saved")


def writer(job):
    report = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)  # what the command prints
    say(report, f"pid {os.getpid()}")
    if job[0] == "save":
        save_forever(job[1], report)
    return llmint8.cli.main(job)


def run_writer(job):
    try:
        code = writer(job)
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stderr.flush()
    os._exit(code)


print("ready", flush=True)
for line in iter(sys.stdin.readline, ""):
    pid = os.fork()
    if pid == 0:
        run_writer(json.loads(line))
    info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # ended, not reaped
    code = info.si_status if info.si_code == os.CLD_EXITED else -info.si_status
    print(f"exit {code}", flush=True)
    sys.stdin.readline()  # "reap" (or the end of input)
    os.waitpid(pid, 0)
    print("reaped", flush=True)
os._exit(0)  # all is flushed: skip torch's slow interpreter shut-down
"""


class Zygote:
    """A Python process that imports torch and llmint8 once, then forks a writer per job."""

    def __init__(self, stderr):
        self.stderr = stderr  # a file, for the zygote's and its writers' error messages
        self.process = subprocess.Popen(
            [sys.executable, "-c", ZYGOTE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            bufsize=1,  # line-buffered
        )
        self.writer = None  # the pid of the writer not yet reaped
        self.expect("ready")

    def line(self) -> str:
        """The zygote's next line."""
        line = self.process.stdout.readline()
        assert line, f"the zygote has exited:\n{self.errors()}"
        return line.strip()

    def expect(self, expected: str) -> None:
        line = self.line()
        assert line == expected, f"{line!r} instead of {expected!r}:\n{self.errors()}"

    def errors(self) -> str:
        """The end of what the zygote and its writers wrote on stderr."""
        self.stderr.seek(0)
        return self.stderr.read()[-4000:]

    def fork(self, *job) -> int:
        """Starts a writer on `job` (("save", DST) or the `llmint8` command's arguments): its
        pid."""
        print(json.dumps([str(part) for part in job]), file=self.process.stdin, flush=True)
        self.writer = int(self.said("pid"))
        return self.writer

    def said(self, word: str) -> str:
        """What the zygote's next line, ``WORD VALUE``, says."""
        line = self.line()
        assert line.startswith(f"{word} "), f"{line!r} instead of {word} ...:\n{self.errors()}"
        return line[len(word) + 1 :]

    def kill(self) -> None:
        """Sends SIGKILL to the writer, ended or not: until `exit_code` has it reaped (and while
        the zygote lives) its pid is still its own."""
        assert self.process.poll() is None, f"the zygote has exited:\n{self.errors()}"
        os.kill(self.writer, signal.SIGKILL)

    def exit_code(self) -> int:
        """Waits for the writer to end and has it reaped: its exit code, or -N when signal N
        killed it."""
        code = self.said("exit")
        print("reap", file=self.process.stdin, flush=True)
        self.expect("reaped")
        self.writer = None
        return int(code)

    def close(self) -> None:
        """Kills a writer left running (by a failed trial) and shuts the zygote down."""
        if self.writer is not None and self.process.poll() is None:
            self.kill()
        self.process.stdin.close()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()


@pytest.fixture
def zygote():
    """A zygote for one test, shut down (with any writer left running) when the test ends."""
    with tempfile.TemporaryFile("w+") as stderr:
        zygote = Zygote(stderr)
        yield zygote
        zygote.close()


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


def _kill_after_ready(zygote, job, ready: str, delay: float) -> int:
    """Forks a writer on `job`, waits for its `ready` line (if any) and `delay` seconds, kills it
    with SIGKILL; its exit code (-SIGKILL, or what it returned if it finished first)."""
    zygote.fork(*job)
    if ready:
        zygote.expect(ready)
    time.sleep(delay)
    zygote.kill()
    return zygote.exit_code()


def _run_to_the_end(zygote, job) -> tuple[int, float]:
    """Runs `job` in a writer forked as the killed ones are: (exit code, seconds it took)."""
    start = time.monotonic()
    zygote.fork(*job)
    code = zygote.exit_code()
    return code, time.monotonic() - start


def test_save_quantized_killed_at_random_leaves_a_complete_file(tmp_path, zygote):
    references = _reference_states(tmp_path)
    dst = tmp_path / "model.safetensors"
    rng = random.Random(1234)
    killed = 0
    for _ in range(TRIALS):
        code = _kill_after_ready(zygote, ("save", dst), "saved", rng.uniform(0.0, 0.3))
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


def test_quantize_killed_at_random_leaves_the_old_or_the_new_copy(float_shards, tmp_path, zygote):
    dst = tmp_path / "int8"
    quantize = ("quantize", float_shards, dst, "--quiet")
    overwrite = (*quantize, "--overwrite")
    assert _run_to_the_end(zygote, quantize)[0] == 0
    reference = _load_directory(dst)
    # How long a killed run would take in full (replacing DST included): the median of three,
    # which one run slowed down by a busy machine does not stretch.
    runs = [_run_to_the_end(zygote, overwrite) for _ in range(3)]
    assert [code for code, _ in runs] == [0, 0, 0]
    duration = statistics.median(seconds for _, seconds in runs)
    rng = random.Random(99)
    outcomes = {"killed": 0, "finished first": 0}
    for _ in range(TRIALS):
        code = _kill_after_ready(zygote, overwrite, "", rng.uniform(0.0, duration * 1.2))
        assert code in (0, -signal.SIGKILL), zygote.errors()
        assert _same(_load_directory(dst), reference)
        outcomes["killed" if code == -signal.SIGKILL else "finished first"] += 1
    # A run after the kills completes and clears what the killed runs left beside DST.
    assert _run_to_the_end(zygote, overwrite)[0] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["int8"]
    print(f"llmint8 quantize ({duration:.2f} s a run): {outcomes}; old or new copy intact")
