"""Plain transformers loads a directory llmint8 wrote in a process that never imports llmint8:
the start-up hook the wheel installs (``llmint8_autoload.pth`` runs ``import _llmint8_autoload``;
see python/_llmint8_autoload.py). The subprocesses here do what the .pth does, then nothing but
transformers; the wheel smoke test checks that the installed .pth runs at start-up."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")
hf = pytest.importorskip("llmint8.integrations.transformers")

PYTHON_SOURCE = Path(__file__).resolve().parents[2] / "python"

PLAIN_TRANSFORMERS = r"""
import sys
import _llmint8_autoload  # what llmint8_autoload.pth does when the interpreter starts
import torch, transformers
assert "llmint8" not in sys.modules
model = transformers.AutoModelForCausalLM.from_pretrained(sys.argv[1], device_map="cpu").eval()
layer = model.model.layers[0].mlp.up_proj
print(type(layer).__module__, type(layer).__name__, layer.weight.dtype)
with torch.no_grad():
    logits = model(torch.load(sys.argv[2])).logits
torch.save(logits, sys.argv[3])
"""


def _run(*args):
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture(scope="module")
def int8_dir(llama_dir, tmp_path_factory):
    model = transformers.AutoModelForCausalLM.from_pretrained(
        llama_dir, quantization_config=hf.Int8Config(), device_map="cpu"
    )
    path = tmp_path_factory.mktemp("int8")
    model.save_pretrained(path)
    return path


def test_plain_transformers_loads_the_int8_model_as_llmint8_does(int8_dir, input_ids, tmp_path):
    torch.save(input_ids, tmp_path / "ids.pt")
    result = _run("-c", PLAIN_TRANSFORMERS, int8_dir, tmp_path / "ids.pt", tmp_path / "out.pt")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "llmint8.nn.linear Linear8bitLt torch.int8" in result.stdout
    assert "Unknown quantization type" not in result.stderr
    expected = transformers.AutoModelForCausalLM.from_pretrained(int8_dir, device_map="cpu")
    with torch.no_grad():
        assert torch.equal(torch.load(tmp_path / "out.pt"), expected.eval()(input_ids).logits)


def test_without_llmint8_transformers_reads_a_bitsandbytes_directory(int8_dir, input_ids, tmp_path):
    """Where llmint8 is missing (here: its hook taken out and llmint8 never imported), the
    config's bitsandbytes fields make transformers read the directory as bitsandbytes' (the same
    tensors): it loads into bitsandbytes' layers where bitsandbytes is installed, and otherwise
    fails naming it — never skipping the method and casting the int8 codes to floats."""
    # Where llmint8 is installed from its wheel the .pth has already run: take the hook out.
    script = PLAIN_TRANSFORMERS.replace(
        "import _llmint8_autoload", "import _llmint8_autoload; _llmint8_autoload._uninstall()"
    )
    torch.save(input_ids, tmp_path / "ids.pt")
    result = _run("-c", script, int8_dir, tmp_path / "ids.pt", tmp_path / "out.pt")
    assert "Unknown quantization type" not in result.stderr
    assert "Linear8bitLt torch.int8" not in result.stdout or "bitsandbytes" in result.stdout
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        assert result.returncode != 0
        assert "requires bitsandbytes" in result.stderr, result.stderr[-2000:]
    else:
        assert result.returncode == 0 and "bitsandbytes" in result.stdout, result.stderr[-2000:]


def test_the_config_carries_bitsandbytes_fields_and_reads_back():
    config = hf.Int8Config(threshold=4.0, skip_modules=["mlp.down_proj"])
    saved = config.to_dict()
    assert saved["quant_method"] == "llmint8" and saved["load_in_8bit"] is True
    assert saved["llm_int8_threshold"] == 4.0
    assert saved["llm_int8_skip_modules"] == ["mlp.down_proj", "lm_head"]
    again = hf.Int8Config.from_dict(saved)
    assert (again.threshold, again.skip_modules) == (4.0, ["mlp.down_proj"])
    bnb = transformers.BitsAndBytesConfig.from_dict(
        {k: v for k, v in saved.items() if k != "quant_method"}
    )
    assert bnb.load_in_8bit and bnb.llm_int8_threshold == 4.0


def test_the_hook_imports_nothing_heavy_at_start_up():
    script = (
        "import sys, _llmint8_autoload\n"
        "heavy = {m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'llmint8'}\n"
        "print(sorted(heavy))"
    )
    result = _run("-c", script)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result


def test_the_hook_registers_when_transformers_is_already_imported(int8_dir):
    script = (
        "import transformers, transformers.quantizers.auto as auto, _llmint8_autoload\n"
        "assert 'llmint8' in auto.AUTO_QUANTIZATION_CONFIG_MAPPING\n"
        f"m = transformers.AutoModelForCausalLM.from_pretrained({str(int8_dir)!r})\n"
        "print(type(m.model.layers[0].mlp.up_proj).__name__)"
    )
    result = _run("-c", script)
    assert result.returncode == 0 and "Linear8bitLt" in result.stdout, result.stderr[-2000:]


def test_the_wheel_installs_the_hook_at_the_top_of_site_packages():
    assert (PYTHON_SOURCE / "llmint8_autoload.pth").read_text() == "import _llmint8_autoload\n"
    pyproject = (PYTHON_SOURCE.parent / "pyproject.toml").read_text()
    assert '{ path = "llmint8_autoload.pth", format = "wheel" }' in pyproject
    assert '{ path = "_llmint8_autoload.py", format = "wheel" }' in pyproject
