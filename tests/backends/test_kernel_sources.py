"""The CUDA kernels compile (NVRTC needs no GPU) and the launcher's checks, on any machine."""

import importlib.util
from pathlib import Path

import pytest
import torch

import llmint8

kernels = pytest.importorskip("llmint8.backends.cuda_kernels")
nvrtc = pytest.importorskip("cupy_backends.cuda.libs.nvrtc")


def cuda_include_dir() -> Path:
    """CUDA's headers as the nvidia-cuda-runtime wheel (a torch dependency) installs them."""
    spec = importlib.util.find_spec("nvidia")
    for root in spec.submodule_search_locations if spec else []:
        layouts = [*sorted(Path(root).glob("cu*/include")), Path(root) / "cuda_runtime/include"]
        for candidate in layouts:
            if (candidate / "cuda_fp16.h").exists():
                return candidate
    pytest.fail("CUDA headers (cuda_fp16.h) not found in the nvidia-* wheels")


@pytest.mark.parametrize(
    "file, arch",
    [
        ("quantize_rows.cu", "compute_75"),
        ("int8_gemv.cu", "compute_75"),
        ("int8_gemm.cu", "compute_80"),
        ("gather_outlier_columns.cu", "compute_75"),
        ("weight_only_linear.cu", "compute_80"),
        ("weight_only_gemm.cu", "compute_80"),  # split K compiled out (no clusters)
        ("weight_only_gemm.cu", "compute_90"),
        ("weight_only_wgmma.cu", "compute_80"),  # compiled out: a trap
        ("weight_only_wgmma.cu", "sm_90a"),  # the target it runs on (through ptxas)
        ("int8_wgmma.cu", "compute_80"),  # compiled out: a trap
        ("int8_wgmma.cu", "sm_90a"),
        ("weight_only_tma.cu", "compute_80"),  # compiled out: a trap
        ("weight_only_tma.cu", "sm_90a"),
        ("int8_wgmma_tokens.cu", "compute_80"),  # compiled out: a trap
        ("int8_wgmma_tokens.cu", "sm_90a"),
    ],
)
def test_every_kernel_instantiation_compiles(file, arch):
    """Every instantiation compiles for `arch`; for sm_90a (through ptxas) with no wgmma that ptxas
    serializes (its C75xx "Potential Performance Loss": every wgmma of the kernel then waits
    for the one before; 2-3 us a forward, benches/NOTES.md v44)."""
    source = (kernels.KERNEL_DIR / file).read_text()
    program = nvrtc.createProgram(source, file, [], [])
    for expression in kernels.EXPRESSIONS[file]:
        nvrtc.addNameExpression(program, expression)
    # The options CuPy's RawModule passes to NVRTC (it adds the default execution space itself).
    options = [
        "--device-as-default-execution-space",
        "--std=c++17",
        f"-I{kernels.KERNEL_DIR}",
        f"-I{cuda_include_dir()}",
        f"-arch={arch}",
        *(["-Xptxas=-v"] if arch.startswith("sm_") else []),
    ]
    try:
        nvrtc.compileProgram(program, options)
    except Exception as err:  # the log says which line failed
        pytest.fail(f"{file}: {err}\n{nvrtc.getProgramLog(program)}")
    serialized = [line for line in nvrtc.getProgramLog(program).splitlines()
                  if "wgmma.mma_async instructions are serialized" in line]  # fmt: skip
    assert not serialized, f"{file}: ptxas serializes wgmmas:\n" + "\n".join(serialized[:4])
    for expression in kernels.EXPRESSIONS[file]:
        assert nvrtc.getLoweredName(program, expression)
    assert ".entry" in nvrtc.getPTX(program).decode(errors="replace")


@pytest.mark.parametrize(
    "rows, cols, width, expected",
    [
        (1, 4096, 8, 512),  # one vector of 8 fp16 per thread
        (128, 8192, 8, 1024),
        (128, 11008, 8, 1024),  # wider than the widest block: 1024, two steps
        (128, 2048, 8, 256),  # never narrower than 256
        (128, 4096, 1, 1024),  # element by element
        (128, 4096, 4, 1024),  # fp32
        (264, 8192, 8, 256),  # the rows alone fill every SM twice
        (4096, 8192, 8, 256),
    ],
)
def test_quantize_block_widens_only_for_few_rows(rows, cols, width, expected):
    threads = kernels.quantize_threads(rows, cols, width, sms=132)
    assert threads == expected
    name = kernels.quantize_name("__half", True, threads)
    assert name in kernels.EXPRESSIONS["quantize_rows.cu"]
    assert kernels.EXPRESSION_THREADS[name] == threads


def test_arch_specific_binaries_compile_once_and_are_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("CUPY_CACHE_DIR", str(tmp_path))
    file = "weight_only_wgmma.cu"
    names = kernels.EXPRESSIONS[file][:2]
    binary, lowered = kernels.arch_specific_binary(file, names)
    assert binary[:4] == b"\x7fELF" and set(lowered) == set(names)
    cached = sorted(p.suffix for p in (tmp_path / "llmint8").iterdir())
    assert cached == [".cubin", ".json"]
    compile_program = nvrtc.compileProgram
    monkeypatch.setattr(nvrtc, "compileProgram", lambda *a: pytest.fail("compiled again"))
    assert kernels.arch_specific_binary(file, names) == (binary, lowered)
    monkeypatch.setattr(nvrtc, "compileProgram", compile_program)
    # Other names are another binary; a cache that cannot be written (a file where the
    # directory would go) is skipped.
    blocked = tmp_path / "blocked"
    blocked.write_text("")
    monkeypatch.setenv("CUPY_CACHE_DIR", str(blocked))
    other, _ = kernels.arch_specific_binary(file, names[:1])
    assert other[:4] == b"\x7fELF" and other != binary
    assert blocked.read_text() == ""


def test_arch_specific_kernels_refuse_other_gpus(monkeypatch):
    monkeypatch.setattr(kernels, "_capabilities", {0: (8, 0)})
    with pytest.raises(llmint8.UnsupportedDeviceError, match=r"sm_90 only.*sm_80"):
        kernels._compile_arch_specific(0, "weight_only_wgmma.cu", ["x"])


def test_parameter_offsets_follow_native_alignment():
    assert kernels.parameter_offsets("PiPiPPiiiiPi") == [0, 8, 16, 24, 32, 40, 48, 52, 56, 60,
                                                         64, 72]  # fmt: skip
    # Tensor maps first (64-byte aligned in the kernel), then the scalars packed after them.
    assert kernels.parameter_offsets("128s128sPPiiiiPi") == [0, 128, 256, 264, 272, 276, 280,
                                                             284, 288, 296]  # fmt: skip
    assert kernels.parameter_offsets("iqi") == [0, 8, 16]


def test_kernels_ship_with_the_package():
    names = {p.name for p in kernels.KERNEL_DIR.glob("*.cu")}
    assert set(kernels.EXPRESSIONS) <= names


def test_gpus_older_than_sm75_get_a_clear_error(monkeypatch):
    monkeypatch.setattr(kernels, "_capabilities", {})
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: (7, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: "Tesla V100")
    with pytest.raises(llmint8.UnsupportedDeviceError, match=r"sm_70.*sm_75"):
        kernels.check_device(0)


def test_wgmma_tokens_header_is_what_its_generator_writes_for_the_tiles():
    """cuda/wgmma_tokens.cuh equals scripts/gen_wgmma_tokens.py's output for the weight-row
    counts of INT8_TOKENS_TILES and int8_wgmma.cu's token tiles (no kernel takes another)."""
    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("gen", root / "scripts/gen_wgmma_tokens.py")
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    counts = {rows for rows, _, _ in kernels.INT8_TOKENS_TILES}
    tokens = {t for t, _ in kernels.INT8_WGMMA_TOKEN_TILES} | {kernels.INT8_WGMMA_PAIR_TILE[0]}
    counts = sorted(counts | tokens)
    header = (kernels.KERNEL_DIR / "wgmma_tokens.cuh").read_text()
    assert header == generator.source(counts)
