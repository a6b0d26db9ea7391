"""Finding PyTorch's cuBLAS library for the capturable int8 GEMM (runs without a GPU)."""

import pytest

from llmint8.backends.cublas import loaded_cublas

LIB = "/site-packages/nvidia/cu13/lib"
MAPS = f"""\
7f0000000000-7f0000001000 r--p 00000000 08:01 100 {LIB}/libcublasLt.so.13
7f0000002000-7f0000003000 r-xp 00001000 08:01 101 {LIB}/libcublas.so.13
7f0000004000-7f0000005000 r--p 00002000 08:01 101 {LIB}/libcublas.so.13
7f0000006000-7f0000007000 rw-p 00000000 00:00 0
7ffd00000000-7ffd00001000 rw-p 00000000 00:00 0 [stack]
"""


def test_the_one_mapped_libcublas_is_found_and_cublaslt_is_not_it():
    assert loaded_cublas(MAPS) == f"{LIB}/libcublas.so.13"


@pytest.mark.parametrize(
    "maps, found",
    [
        (MAPS.replace(f"{LIB}/libcublas.so.13", ""), "none"),
        (MAPS + "7f0000008000-7f0000009000 r-xp 0 08:01 102 /opt/cuda/lib/libcublas.so.12\n",
         "/opt/cuda/lib/libcublas.so.12"),
    ],
)  # fmt: skip
def test_no_or_two_libcublas_are_refused_naming_what_was_found(maps, found):
    with pytest.raises(OSError, match="expected one loaded libcublas") as error:
        loaded_cublas(maps)
    assert found in str(error.value)
