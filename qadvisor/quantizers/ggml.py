"""llama.cpp's own quantize and dequantize routines, called per tensor through the `libggml-base` that
llama-cpp-python ships: a tensor rounded to a GGUF type exactly as `llama_model_quantize` writes it and llama.cpp
reads it back, without a GGUF file or a llama.cpp model."""

from __future__ import annotations

import ctypes
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path


class _Traits(ctypes.Structure):
    _fields_ = [("type_name", ctypes.c_char_p), ("blck_size", ctypes.c_int64), ("blck_size_interleave", ctypes.c_int64),
                ("type_size", ctypes.c_size_t), ("is_quantized", ctypes.c_bool), ("to_float", ctypes.c_void_p),
                ("from_float_ref", ctypes.c_void_p)]  # ggml.h's struct ggml_type_traits


_TO_FLOAT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)


@lru_cache(maxsize=1)
def _lib():
    import llama_cpp

    folder = Path(llama_cpp.__file__).parent / "lib"
    path = next(iter(sorted(folder.glob("libggml-base.*")) or sorted(folder.glob("ggml-base.*"))), None)
    if path is None:
        raise RuntimeError(f"llama-cpp-python's libggml-base is missing from {folder}")
    lib = ctypes.CDLL(str(path))
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
    lib.ggml_row_size.restype = ctypes.c_size_t
    lib.ggml_get_type_traits.argtypes = [ctypes.c_int]
    lib.ggml_get_type_traits.restype = ctypes.POINTER(_Traits)
    return lib


def row_bytes(kind: str, k: int) -> int:
    """Bytes of one row of `k` values stored as GGUF type `kind`."""
    from gguf import GGMLQuantizationType

    return _lib().ggml_row_size(GGMLQuantizationType[kind].value, k)


def quantize(kind: str, rows, importance=None, threads: int = 1):
    """`rows` ([n, k], any float dtype) as GGUF type `kind` (Q4_K, Q6_K…): the packed bytes, [n, row bytes] uint8.
    `importance` (k floats): llama.cpp's importance matrix for these weights, which the k-quants weigh errors by."""
    import numpy as np
    from gguf import GGMLQuantizationType

    type_id = GGMLQuantizationType[kind].value
    lib = _lib()
    src = rows.float().contiguous().numpy()
    n, k = src.shape
    packed = np.empty((n, row_bytes(kind, k)), np.uint8)
    weights = None if importance is None else np.ascontiguousarray(importance, np.float32)

    def part(span: tuple[int, int]) -> None:  # rows are independent: ctypes lets go of the GIL, so threads share them
        start, stop = span
        # `start` counts elements; ggml offsets the source and the packed rows by it itself
        lib.ggml_quantize_chunk(type_id, src.ctypes.data, packed.ctypes.data, start * k, stop - start, k,
                                None if weights is None else weights.ctypes.data)

    _in_parts(part, n, threads)
    return packed


def round_trip(kind: str, rows, threads: int = 1):
    """`rows` ([n, k], any float dtype) stored as GGUF type `kind` (Q4_K, Q6_K, F16…) and read back, float32."""
    import numpy as np
    import torch
    from gguf import GGMLQuantizationType

    if kind == "F16":
        return rows.to(torch.float16).float()
    packed = quantize(kind, rows, threads=threads)
    n, k = rows.shape
    out = np.empty((n, k), np.float32)
    to_float = _TO_FLOAT(_lib().ggml_get_type_traits(GGMLQuantizationType[kind].value).contents.to_float)

    def part(span: tuple[int, int]) -> None:
        start, stop = span
        to_float(packed[start:].ctypes.data, out[start:].ctypes.data, (stop - start) * k)

    _in_parts(part, n, threads)
    return torch.from_numpy(out)


def _in_parts(work, n: int, threads: int) -> None:
    """`work((start, stop))` over n rows, split among `threads` threads."""
    step = -(-n // max(1, threads))
    with ThreadPoolExecutor(max(1, threads)) as pool:
        list(pool.map(work, [(s, min(n, s + step)) for s in range(0, n, step)]))


# the type llama.cpp's CPU matmul rounds the activations to against a weight of each type (ggml-cpu's vec_dot_type);
# Q8_1 (for Q4_1/Q5_1) rounds its values as Q8_0 does
DOT_TYPE = {"Q4_0": "Q8_0", "Q4_1": "Q8_0", "Q5_0": "Q8_0", "Q5_1": "Q8_0", "Q8_0": "Q8_0", "F16": "F16",
            **dict.fromkeys(("Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"), "Q8_K")}
_Q8_K = [("d", "<f4"), ("qs", "i1", 256), ("bsums", "<i2", 16)]  # ggml's block_q8_K


@lru_cache(maxsize=1)
def _cpu_lib():
    import llama_cpp

    folder = Path(llama_cpp.__file__).parent / "lib"
    lib = ctypes.CDLL(str(next(iter(sorted(folder.glob("libggml-cpu.*")) or sorted(folder.glob("ggml-cpu.*"))))))
    for name in ("quantize_row_q8_0", "quantize_row_q8_K"):
        getattr(lib, name).argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    return lib


def dot_rounded(weight_kind: str, x):
    """Activations as llama.cpp's CPU matmul reads them against a weight of `weight_kind`: rounded to its dot type
    by the CPU backend's own quantize_row (what llama.cpp runs), and read back."""
    import numpy as np
    import torch
    from gguf import GGMLQuantizationType

    dot = DOT_TYPE.get(weight_kind)
    if dot is None:
        return x
    if dot == "F16":
        return x.half().to(x.dtype)
    flat = x.detach().float().contiguous().reshape(-1, x.shape[-1]).numpy()
    n, k = flat.shape
    type_id = GGMLQuantizationType[dot].value
    packed = np.empty(_lib().ggml_row_size(type_id, k) * n, np.uint8)
    getattr(_cpu_lib(), f"quantize_row_{dot[0].lower()}{dot[1:]}")(flat.ctypes.data, packed.ctypes.data, n * k)
    if dot == "Q8_K":
        blocks = packed.view(np.dtype(_Q8_K))
        out = blocks["qs"].astype(np.float32) * blocks["d"][:, None]
    else:
        out = np.empty(n * k, np.float32)
        _TO_FLOAT(_lib().ggml_get_type_traits(type_id).contents.to_float)(packed.ctypes.data, out.ctypes.data, n * k)
    return torch.from_numpy(out.reshape(x.shape)).to(x.dtype)
