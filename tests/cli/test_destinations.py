"""What `llmint8 quantize` (and the commands that write tables and charts) may and may not do to
the file system: never touch SRC, never pull content in from outside it, never leave a false
report, never let two runs both claim one destination, and refuse bad options before any work."""

import os
import threading
from pathlib import Path

import pytest
import torch

import llmint8
from llmint8 import cli
from llmint8.tools import UsageError
from llmint8.tools import quantize as tool

from .conftest import assert_one_line_error
from .conftest import llmint8 as run


def _tree(path: Path) -> dict[str, bytes]:
    """Every file under `path` (links not followed) with its bytes: to check nothing changed."""
    out = {}
    for item in sorted(path.rglob("*")):
        if item.is_symlink():
            out[str(item.relative_to(path))] = b"-> " + os.fsencode(os.readlink(item))
        elif item.is_file():
            out[str(item.relative_to(path))] = item.read_bytes()
    return out


@pytest.fixture
def small_model(tmp_path):
    """A model directory (one safetensors file, a side file) inside a folder with a neighbour."""
    root = tmp_path / "work"
    model = root / "m"
    model.mkdir(parents=True)
    torch.manual_seed(0)
    llmint8.save_state_dict(
        {"fc.weight": torch.randn(16, 32), "fc.bias": torch.randn(16)}, model / "model.safetensors"
    )
    (model / "notes.txt").write_text("side file\n")
    (root / "neighbour.txt").write_text("not part of the model\n")
    return model


@pytest.mark.parametrize(
    "make_dst",
    [
        lambda m: m / "model.safetensors",  # a weight file of SRC (a directory DST over it)
        lambda m: m / "out",  # inside SRC
        lambda m: m,  # SRC itself
        lambda m: m.parent,  # SRC's parent: replacing it deletes SRC and its neighbours
        lambda m: m / "." / ".." / "m" / "nested",  # inside SRC, spelled another way
    ],
)
@pytest.mark.parametrize("overwrite", [True, False])
def test_dst_overlapping_src_is_refused_before_anything_is_touched(
    small_model, make_dst, overwrite
):
    root = small_model.parent
    before = _tree(root)
    args = ["quantize", small_model, make_dst(small_model), "--quiet"]
    result = run(*args, *(["--overwrite"] if overwrite else []))
    assert_one_line_error(result, "must not overlap SRC")
    assert _tree(root) == before


def test_a_file_src_and_a_dst_directory_holding_it_are_refused(small_model):
    root = small_model.parent
    before = _tree(root)
    src = small_model / "model.safetensors"
    # A .safetensors-named directory that holds SRC.
    nested = small_model / "x.safetensors"
    nested.mkdir()
    (nested / "model.safetensors").write_bytes(src.read_bytes())
    before = _tree(root)
    result = run("quantize", nested / "model.safetensors", nested, "--overwrite", "--quiet")
    assert_one_line_error(result, "must not overlap SRC")
    assert _tree(root) == before


def test_side_file_links_out_of_the_model_directory_are_never_copied(small_model, tmp_path):
    secret = tmp_path / "token"
    secret.write_text("hf_secret_token\n")
    outside_dir = tmp_path / "elsewhere"
    outside_dir.mkdir()
    (outside_dir / "private.txt").write_text("private\n")
    (small_model / "token.json").symlink_to(secret)
    (small_model / "linked_dir").symlink_to(outside_dir)
    (small_model / "tokenizer.json").symlink_to("notes.txt")  # a link inside: its content
    sub = small_model / "1_Pooling"
    sub.mkdir()
    (sub / "config.json").write_text("{}")
    (sub / "leak.txt").symlink_to(secret)
    (sub / "up").symlink_to("..")  # a loop back up the tree
    dst = tmp_path / "out"
    result = run("quantize", small_model, dst, "--quiet")
    assert result.returncode == 0, result.stderr
    copied = _tree(dst)
    assert not any(b"hf_secret_token" in data or b"private" in data for data in copied.values())
    assert copied["tokenizer.json"] == b"side file\n"
    assert not (dst / "tokenizer.json").is_symlink()
    assert copied["1_Pooling/config.json"] == b"{}"
    for name in ("token.json", "linked_dir", "1_Pooling/leak.txt", "1_Pooling/up"):
        assert not os.path.lexists(dst / name), name
        assert name in result.stdout  # the report names what was left out
    assert "not copied" in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--threshold", "nan"], "--threshold: must be a finite number"),
        (["--threshold", "inf"], "--threshold: must be a finite number"),
        (["--threshold", "-1"], "--threshold: must be a finite number"),
        (["--threshold", "six"], "--threshold: must be a number"),
        (["--min-fraction", "5"], "--min-fraction: must be a share in (0, 1]"),
        (["--min-fraction", "0"], "--min-fraction: must be a share in (0, 1]"),
        (["--min-fraction", "nan"], "--min-fraction: must be a share in (0, 1]"),
    ],
)
@pytest.mark.parametrize("source", ["file", "directory"])
def test_every_option_is_checked_before_any_work(small_model, tmp_path, args, message, source):
    src = small_model / "model.safetensors" if source == "file" else small_model
    dst = tmp_path / ("o.safetensors" if source == "file" else "o")
    result = run("quantize", src, dst, *args)
    assert_one_line_error(result, message)
    assert not dst.exists()


def test_the_python_api_checks_the_same_options(small_model, tmp_path):
    for kwargs in ({"threshold": float("nan")}, {"min_fraction": 5.0}):
        with pytest.raises(UsageError):
            tool.quantize(small_model, tmp_path / "o", progress=False, **kwargs)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["eval", "{m}", "--text", "{t}", "--max-lines", "0"], "--max-lines: must be at least 1"),
        (["demo", "--sentences", "0"], "--sentences: must be at least 1"),
        (["demo", "--threshold", "nan"], "--threshold: must be a finite number"),
        (["inspect", "{m}", "--plot", "{d}/nowhere/x.png"], "does not exist"),
        (["inspect", "{m}", "--plot", "{d}/x.txt"], "expected a .png file name"),
        (["inspect", "{m}", "--plot", "{d}"], "expected a .png file name"),
        (["bench", "--quick", "--device", "cpu", "--out", "{d}/nowhere/t.md"], "does not exist"),
        (["bench", "--quick", "--device", "cpu", "--plot", "{d}/nowhere/p.png"], "does not exist"),
    ],
)
def test_output_paths_and_counts_are_checked_before_the_work(small_model, tmp_path, args, message):
    (tmp_path / "t.txt").write_text("hello\n")
    values = {"m": small_model, "t": tmp_path / "t.txt", "d": tmp_path}
    result = run(*[a.format(**values) for a in args], timeout=60)
    assert_one_line_error(result, message)


def test_a_missing_destination_directory_is_named_before_the_work(small_model, tmp_path):
    for src, dst in [
        (small_model, tmp_path / "no" / "out"),
        (small_model / "model.safetensors", tmp_path / "no" / "o.safetensors"),
    ]:
        result = run("quantize", src, dst, "--quiet")
        assert_one_line_error(result, f"its directory {dst.parent} does not exist")
        assert ".tmp" not in result.stderr and "partial" not in result.stderr


def test_nan_weights_are_named_as_the_user_names_them(tmp_path):
    weight = torch.randn(4, 8)
    weight[2, 3] = float("nan")
    llmint8.save_state_dict({"layer.weight": weight}, tmp_path / "w.safetensors")
    result = run("quantize", tmp_path / "w.safetensors", tmp_path / "o.safetensors", "--quiet")
    assert_one_line_error(result, "layer.weight: rows [2] hold NaN or Inf")
    assert "SCB" not in result.stderr
    assert not (tmp_path / "o.safetensors").exists()


@pytest.mark.parametrize("source", ["file", "directory"])
def test_of_two_racing_runs_without_overwrite_only_one_writes(small_model, tmp_path, monkeypatch,
                                                              source):  # fmt: skip
    """Both runs pass the up-front "exists" check (held at a barrier right after it); the
    atomic move into place lets exactly one of them write DST."""
    src = small_model / "model.safetensors" if source == "file" else small_model
    dst = tmp_path / ("o.safetensors" if source == "file" else "o")
    barrier = threading.Barrier(2, timeout=30)
    checked = tool._check_destination

    def check_then_wait(*args):
        checked(*args)
        barrier.wait()

    monkeypatch.setattr(tool, "_check_destination", check_then_wait)
    outcomes = []

    def attempt():
        try:
            tool.quantize(src, dst, progress=False)
            outcomes.append("wrote")
        except UsageError as err:
            outcomes.append(str(err))

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes)[-1] == "wrote", outcomes
    assert sum(o == "wrote" for o in outcomes) == 1, outcomes
    assert any("already exists" in o for o in outcomes), outcomes
    llmint8.load_state_dict(dst if source == "file" else dst / "model.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "work") == [dst.name]


def _interrupt_after(monkeypatch, name, module=tool):
    """Makes `module.name` finish its work and then raise KeyboardInterrupt, as a Ctrl-C that
    arrives while it runs is delivered the moment it returns to Python."""
    real = getattr(module, name)

    def then_interrupt(*args, **kwargs):
        real(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(module, name, then_interrupt)


@pytest.mark.parametrize("source", ["file", "directory"])
@pytest.mark.parametrize("existing", [False, True])
def test_ctrl_c_during_the_final_write_reports_what_is_true(
    small_model, tmp_path, monkeypatch, capsys, source, existing
):
    src = small_model / "model.safetensors" if source == "file" else small_model
    dst = tmp_path / ("o.safetensors" if source == "file" else "o")
    if existing:
        assert cli.main(["quantize", str(src), str(dst), "--quiet", "--threshold", "4"]) == 0
    capsys.readouterr()
    if source == "file":
        _interrupt_after(monkeypatch, "write_checkpoint", tool._core)
    else:
        _interrupt_after(monkeypatch, "_replace")
    extra = ["--overwrite"] if existing else []
    assert cli.main(["quantize", str(src), str(dst), "--quiet", *extra]) == 130
    message = capsys.readouterr().err
    assert "was written in full" in message and "nothing was written" not in message, message
    _, metadata = llmint8.load_state_dict(dst if source == "file" else dst / "model.safetensors")
    assert metadata["llmint8.threshold"] == "6.0"  # the new copy, complete


@pytest.mark.parametrize("existing", [False, True])
def test_ctrl_c_before_the_final_write_says_dst_is_unchanged(
    small_model, tmp_path, monkeypatch, capsys, existing
):
    dst = tmp_path / "o"
    if existing:
        assert cli.main(["quantize", str(small_model), str(dst), "--quiet"]) == 0
    before = _tree(tmp_path)
    capsys.readouterr()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tool, "_copy_side_files", interrupted)
    extra = ["--overwrite"] if existing else []
    assert cli.main(["quantize", str(small_model), str(dst), "--quiet", *extra]) == 130
    message = capsys.readouterr().err
    expected = "was left as it was" if existing else "nothing was written"
    assert expected in message, message
    assert _tree(tmp_path) == before
