"""TMA tensor maps (``CUtensorMap``) of 2-D tensors, for kernels that load tiles through Hopper's
tensor memory accelerator (weight_only_wgmma.cu, int8_wgmma.cu).

A tensor map describes a tensor in global memory (address, sizes, row stride) and the box one
copy moves into shared memory (its size and swizzle). The CUDA driver encodes it on the host
(``cuTensorMapEncodeTiled``, called through ctypes: neither PyTorch nor CuPy binds it), and the
kernel receives its 128 bytes by value as a parameter, so CUDA graphs capture it with the launch.
An encoding is a pure function of its arguments, so it is cached by them: a weight's is encoded
once, an activation's again only where it lies at a new address or has a new shape. A launch
prepared once per shape (`prepared.py`) instead keeps one encoding and moves it to each call's
input with `replace_address` (``cuTensorMapReplaceAddress``).
"""

from __future__ import annotations

import ctypes

import torch
from torch import Tensor

from ..errors import UnsupportedDeviceError
from .driver import driver_function

MAP_BYTES = 128
# CUtensorMapDataType, CUtensorMapSwizzle and CUtensorMapL2promotion values (cuda.h).
_DATA_TYPES = {torch.int8: 0, torch.float16: 6, torch.bfloat16: 9}  # UINT8 (bit patterns), ...
_SWIZZLES = {0: 0, 32: 1, 64: 2, 128: 3}
_L2_PROMOTION_256B = 3
_MAX_CACHED = 4096

_cache: dict[tuple, bytes] = {}


def _encoder() -> ctypes._CFuncPtr:
    u32, u64, pointer = ctypes.c_uint32, ctypes.c_uint64, ctypes.POINTER
    return driver_function("cuTensorMapEncodeTiled", [
        ctypes.c_void_p, ctypes.c_int, u32, ctypes.c_void_p, pointer(u64), pointer(u64),
        pointer(u32), pointer(u32), ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int,
    ])  # fmt: skip


def _replacer() -> ctypes._CFuncPtr:
    return driver_function("cuTensorMapReplaceAddress", [ctypes.c_void_p, ctypes.c_void_p])


def replace_address(tensor_map: int, address: int) -> None:
    """Points the encoded tensor map at host address `tensor_map` (64-byte aligned) to a tensor
    of the same shape, strides and type at device address `address` (16-byte aligned)."""
    status = _replacer()(tensor_map, address)
    if status != 0:
        raise UnsupportedDeviceError(
            f"cuTensorMapReplaceAddress refused address {address:#x}: CUresult {status}"
        )


def available() -> bool:
    """Whether the driver can encode tensor maps and move them to another address."""
    try:
        _encoder()
        _replacer()
    except UnsupportedDeviceError:
        return False
    return True


def tensor_map_2d(t: Tensor, box_cols: int, box_rows: int, swizzle: int) -> bytes:
    """The tensor map of the 2-D tensor `t` (int8, fp16 or bf16; rows contiguous, its address
    and row stride 16-byte aligned) for boxes of `box_cols` x `box_rows` elements laid out in
    shared memory with a `swizzle`-byte swizzle (0, 32, 64 or 128); elements a box reaches
    outside `t` are read as zeros. 128 bytes, as the kernel parameter takes them."""
    rows, cols = t.shape
    stride = t.stride(0) * t.element_size()
    return tensor_map_at(t.data_ptr(), t.dtype, rows, cols, stride, box_cols, box_rows, swizzle)


def tensor_map_at(
    address: int,
    dtype: torch.dtype,
    rows: int,
    cols: int,
    stride: int,
    box_cols: int,
    box_rows: int,
    swizzle: int,
) -> bytes:
    """`tensor_map_2d` of a `rows` x `cols` matrix of `dtype` at device address `address`, rows
    `stride` bytes apart (memory that is no tensor of its own: a workspace's region)."""
    key = (address, dtype, rows, cols, stride, box_cols, box_rows, swizzle)
    found = _cache.get(key)
    if found is not None:
        return found
    encode = _encoder()
    encoded = (ctypes.c_uint64 * (MAP_BYTES // 8))()
    status = encode(
        ctypes.addressof(encoded), _DATA_TYPES[dtype], 2, address,
        (ctypes.c_uint64 * 2)(cols, rows), (ctypes.c_uint64 * 1)(stride),
        (ctypes.c_uint32 * 2)(box_cols, box_rows), (ctypes.c_uint32 * 2)(1, 1), 0,
        _SWIZZLES[swizzle], _L2_PROMOTION_256B, 0,
    )  # fmt: skip
    if status != 0:
        raise UnsupportedDeviceError(
            f"cuTensorMapEncodeTiled refused a {dtype} tensor of {rows}x{cols} (row stride "
            f"{stride} bytes, address {address:#x}) with {box_cols}x{box_rows} boxes: "
            f"CUresult {status}"
        )
    data = bytes(encoded)
    if len(_cache) >= _MAX_CACHED:
        _cache.clear()
    _cache[key] = data
    return data
