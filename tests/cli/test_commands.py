"""`llmint8 quantize / inspect / eval / bench`, run as a user runs them (subprocesses), on
checkpoints made by conftest.py; plus the atomicity of quantize, checked in-process."""

import json

import pytest
import torch

import llmint8

from .conftest import OUTLIER_FEATURES, assert_one_line_error, png_size
from .conftest import llmint8 as run

transformers = pytest.importorskip("transformers")
from llmint8.integrations.transformers import Int8Config  # noqa: E402


@pytest.fixture(scope="module")
def int8_dir(llama_dir, tmp_path_factory):
    dst = tmp_path_factory.mktemp("out") / "int8"
    result = run("quantize", llama_dir, dst)
    assert result.returncode == 0, result.stderr
    assert "quantizing" in result.stderr  # the progress bar (bytes and tensors)
    assert "int8 layers  14" in result.stdout
    assert "load it: transformers.LlamaForCausalLM.from_pretrained(" in result.stdout
    return dst


@pytest.mark.parametrize("command", ["quantize", "inspect", "eval", "bench", "demo"])
def test_every_subcommand_has_help(command):
    result = run(command, "--help")
    assert result.returncode == 0 and "usage: llmint8" in result.stdout


def test_quantized_directory_loads_with_from_pretrained_bit_exact(llama_dir, int8_dir):
    index = json.loads((int8_dir / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 2  # shard for shard
    assert (int8_dir / "tokenizer.json").is_file()  # side files copied
    config = json.loads((int8_dir / "config.json").read_text())["quantization_config"]
    assert config["quant_method"] == "llmint8" and config["threshold"] == 6.0
    loaded = transformers.AutoModelForCausalLM.from_pretrained(int8_dir, device_map="cpu")
    direct = transformers.AutoModelForCausalLM.from_pretrained(
        llama_dir, quantization_config=Int8Config(), device_map="cpu"
    )
    assert isinstance(loaded.model.layers[1].mlp.up_proj, llmint8.Linear8bitLt)
    ids = torch.randint(4, 200, (2, 11))
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, direct(ids).logits)


def test_calibrated_copy_stores_and_plots_the_planted_outlier_features(
    llama_dir, text_file, tmp_path
):
    dst = tmp_path / "calibrated"
    result = run("quantize", llama_dir, dst, "--calibrate", text_file, "--quiet")
    assert result.returncode == 0, result.stderr
    assert "static outlier columns" in result.stdout
    model = transformers.AutoModelForCausalLM.from_pretrained(dst, device_map="cpu")
    columns = model.model.layers[0].self_attn.q_proj.outlier_cols.tolist()
    assert set(OUTLIER_FEATURES) <= set(columns), columns

    png = tmp_path / "inspect.png"
    result = run("inspect", dst, "--plot", png)
    assert result.returncode == 0, result.stderr
    width, height = png_size(png)
    assert width >= 1000 and height >= 700
    from llmint8.tools.inspect import inspect_checkpoint

    names, heat = inspect_checkpoint(dst).outlier_heatmap()
    row = names.index("model.layers.0.self_attn.q_proj")
    hot = set(heat[row].nonzero()[0].tolist())
    assert set(OUTLIER_FEATURES) <= hot  # the planted features light up in the heatmap
    assert heat[row, OUTLIER_FEATURES].min() >= 0.5


def test_inspect_tables_and_json(llama_dir, int8_dir):
    result = run("inspect", int8_dir)
    assert result.returncode == 0, result.stderr
    assert "int8 checkpoint" in result.stdout and "total (14 int8 layers" in result.stdout
    report = json.loads(run("inspect", int8_dir, "--json").stdout)
    assert report["quantized"] and len(report["layers"]) == 14
    assert report["bytes_after"] < 0.6 * report["bytes_before"]
    layer = next(x for x in report["layers"] if x["name"].endswith("layers.0.mlp.up_proj"))
    assert layer["shape"] == [200, 96] and layer["dtype_out"] == "int8"
    assert layer["error_estimated"] and 0 < layer["weight_error"] < 0.02
    fp = json.loads(run("inspect", llama_dir, "--json").stdout)
    assert not fp["quantized"] and len(fp["layers"]) == 14
    exact = next(x for x in fp["layers"] if x["name"].endswith("layers.0.mlp.up_proj"))
    assert not exact["error_estimated"]
    # The estimate from the row scales is close to the exact error.
    assert abs(layer["weight_error"] - exact["weight_error"]) < 0.25 * exact["weight_error"]


def test_a_single_file_in_gives_a_file_out(llama_dir, tmp_path):
    src = sorted(llama_dir.glob("model-*.safetensors"))[1]
    dst = tmp_path / "one.safetensors"
    result = run("quantize", src, dst, "--quiet")
    assert result.returncode == 0, result.stderr
    state, metadata = llmint8.load_state_dict(dst)
    assert metadata["llmint8.format"] == "llmint8"
    assert any(v.dtype == torch.int8 for v in state.values())


def test_eval_prints_perplexities_with_standard_errors(llama_dir, text_file):
    result = run("eval", llama_dir, "--text", text_file, "--max-lines", 12)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("perplexity (12 lines")
    for name in ("original", "int8, threshold 6.0", "int8, threshold 0 (absmax)"):
        assert name in out
    row = next(line for line in out.splitlines() if line.startswith("int8, threshold 6.0"))
    ppl, diff, se = (float(v) for v in row.split()[-3:])
    assert ppl > 1 and se >= 0 and abs(diff) < 0.05 * ppl


def test_bench_on_cpu_prints_the_table_and_plots(tmp_path):
    png = tmp_path / "bench.png"
    result = run("bench", "--quick", "--device", "cpu", "--rows", "2", "3", "--plot", png)
    assert result.returncode == 0, result.stderr
    assert "| K×N | M | fp32 | ours t=0 | ours t=6 |" in result.stdout
    assert result.stdout.count("| 1024×1024 |") == 2
    assert "| 1024×1024 | 2 |" in result.stdout and "| 1024×1024 | 3 |" in result.stdout
    width, height = png_size(png)
    assert width > 300 and height > 300


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda d, t: ["quantize", t / "nowhere", t / "dst"], "no such file or directory"),
        (lambda d, t: ["quantize", t, t / "dst"], "not a checkpoint"),
        (lambda d, t: ["quantize", d, d], "must not overlap SRC"),
        (lambda d, t: ["quantize", d, t / "exists"], "already exists (pass --overwrite"),
        (lambda d, t: ["quantize", d, t / "x", "--threshold", "-1"], "--threshold: must be"),
        (lambda d, t: ["quantize", t / "junk.safetensors", t / "y.safetensors"], "junk"),
        (lambda d, t: ["quantize", d, t / "z", "--calibrate", t / "none.txt"], "no such text"),
        (lambda d, t: ["inspect", t / "notes.txt"], "not a checkpoint file"),
        (lambda d, t: ["eval", d, "--text", t / "none.txt"], "no such text file"),
        (lambda d, t: ["eval", t / "exists", "--text", t / "notes.txt"], "already quantized"),
        (lambda d, t: ["bench", "--device", "tpu"], "--device"),
        (lambda d, t: ["bench", "--rows", "0"], "--rows"),
        (lambda d, t: ["bench", "--outliers", "--rows", "0"], "--rows"),
        (lambda d, t: ["bench", "--shapes", "4096"], "--shapes"),
        (lambda d, t: ["bench", "--shapes", "0x16"], "--shapes"),
        (lambda d, t: ["quantize", t / "f64.safetensors", t / "o.safetensors"], "float64 weights"),
        (lambda d, t: ["quantize", t / "norms.safetensors", t / "o.safetensors"], "no linear"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    llama_dir, tmp_path, make_args, message
):
    from safetensors.torch import save_file

    (tmp_path / "junk.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    save_file({"fc.weight": torch.randn(4, 4, dtype=torch.float64)}, tmp_path / "f64.safetensors")
    save_file({"norm.weight": torch.ones(4)}, tmp_path / "norms.safetensors")
    (tmp_path / "notes.txt").write_text("hello\n")
    exists = tmp_path / "exists"
    exists.mkdir()
    (exists / "config.json").write_text('{"quantization_config": {"quant_method": "llmint8"}}')
    (exists / "model.safetensors").write_bytes(b"")
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run(*make_args(llama_dir, tmp_path))
    assert_one_line_error(result, message)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_an_interrupted_quantize_leaves_no_destination(llama_dir, tmp_path, monkeypatch):
    from llmint8.tools import quantize as tool

    real = tool._quantize_file
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(tool, "_quantize_file", failing)
    with pytest.raises(KeyboardInterrupt):
        tool.quantize(llama_dir, tmp_path / "dst", progress=False)
    assert list(tmp_path.iterdir()) == []  # neither DST nor a partial directory


def test_overwrite_replaces_an_existing_destination(llama_dir, int8_dir, tmp_path):
    dst = tmp_path / "again"
    dst.mkdir()
    (dst / "stale.txt").write_text("old")
    result = run("quantize", llama_dir, dst, "--overwrite", "--threshold", "4", "--quiet")
    assert result.returncode == 0, result.stderr
    assert not (dst / "stale.txt").exists()
    config = json.loads((dst / "config.json").read_text())["quantization_config"]
    assert config["threshold"] == 4.0
    assert [p.name for p in tmp_path.iterdir()] == ["again"]


def test_a_pytorch_format_model_directory_becomes_safetensors_int8(llama_dir, int8_dir, tmp_path):
    import shutil

    src = tmp_path / "bin"
    src.mkdir()
    state = {}
    for file in sorted(llama_dir.glob("model-*.safetensors")):
        state.update(llmint8.load_state_dict(file)[0])
    torch.save(state, src / "pytorch_model.bin")  # plain tensors: loads with weights_only=True
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(llama_dir / name, src / name)
    result = run("quantize", src, tmp_path / "out", "--quiet")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "model.safetensors").is_file()
    loaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out", device_map="cpu")
    reference = transformers.AutoModelForCausalLM.from_pretrained(int8_dir, device_map="cpu")
    for (name, a), (_, b) in zip(loaded.state_dict().items(), reference.state_dict().items()):
        assert torch.equal(a, b), name


def test_dtype_stores_the_floating_point_tensors_in_half_precision(llama_dir, int8_dir, tmp_path):
    """The source is float32: without --dtype its embeddings and norms stay float32; with
    --dtype float16 they are stored (and load) in float16 and the copy is about a third of the
    float32 checkpoint; the int8 tensors are the same either way."""
    dst = tmp_path / "half"
    result = run("quantize", llama_dir, dst, "--dtype", "float16", "--quiet")
    assert result.returncode == 0, result.stderr
    config = json.loads((dst / "config.json").read_text())
    assert config["dtype"] == "float16"
    half = {}
    for file in sorted(dst.glob("*.safetensors")):
        half.update(llmint8.load_state_dict(file)[0])
    full = {}
    for file in sorted(int8_dir.glob("*.safetensors")):
        full.update(llmint8.load_state_dict(file)[0])
    assert half["model.embed_tokens.weight"].dtype == torch.float16
    assert full["model.embed_tokens.weight"].dtype == torch.float32
    for name, tensor in full.items():
        if tensor.dtype == torch.int8 or name.endswith("SCB"):
            assert torch.equal(half[name], tensor), name
    size = sum(f.stat().st_size for f in dst.glob("*.safetensors"))
    source = sum(f.stat().st_size for f in llama_dir.glob("*.safetensors"))
    assert size < 0.4 * source, (size, source)
    model = transformers.AutoModelForCausalLM.from_pretrained(dst, device_map="cpu")
    assert model.model.embed_tokens.weight.dtype == torch.float16


def test_dtype_refuses_values_float16_cannot_hold(tmp_path):
    llmint8.save_state_dict(
        {"fc.weight": torch.randn(4, 4), "norm.weight": torch.full((4,), 1e6)},
        tmp_path / "m.safetensors",
    )
    result = run("quantize", tmp_path / "m.safetensors", tmp_path / "o.safetensors",
                 "--dtype", "float16", "--quiet")  # fmt: skip
    assert_one_line_error(result, "norm.weight holds values beyond its range")
    assert not (tmp_path / "o.safetensors").exists()


def test_version():
    result = run("--version")
    assert result.returncode == 0 and result.stdout.startswith(f"llmint8 {llmint8.__version__}")
