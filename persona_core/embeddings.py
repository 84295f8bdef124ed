"""The on-blob format of embedding matrices: one ``float32`` 2-D ``.npy`` per kind.

``.npy`` carries its own shape and dtype, so a reader needs nothing but the bytes; pickles
are refused on read. A pack points at one row with ``sha256:<hex>#<row>`` (see refs.py).
"""

from __future__ import annotations

import io
import re
import struct

import numpy as np

from persona_core.errors import InvalidInputError

# numpy's own reader parses the header with `ast`, which on CPython 3.11.7 raises
# "AST constructor recursion depth mismatch" when threads parse at once (publish verifies
# blobs from a thread pool). Only float32 C-order arrays are ever written here, so a strict
# regex over that one header shape is both thread-safe and faster.
_MAGIC = b"\x93NUMPY"
_HEADER_RE = re.compile(
    r"^\{'descr': '<f4', 'fortran_order': False, 'shape': \(((?:\d+, ?)*\d*)\), \} *\n$"
)


def float32_to_npy(array: np.ndarray) -> bytes:
    """``.npy`` bytes of a float32 C-order copy of ``array`` (deterministic for equal input)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)
    return buf.getvalue()


def float32_from_npy(data: bytes) -> np.ndarray:
    """A read-only float32 array from bytes written by :func:`float32_to_npy`."""
    if data[:6] != _MAGIC or len(data) < 10:
        raise InvalidInputError("not an embedding matrix: missing .npy magic")
    major = data[6]
    if major == 1:
        (header_len,), start = struct.unpack_from("<H", data, 8), 10
    elif major in (2, 3):
        (header_len,), start = struct.unpack_from("<I", data, 8), 12
    else:
        raise InvalidInputError(f"not an embedding matrix: .npy version {major}")
    match = _HEADER_RE.fullmatch(data[start : start + header_len].decode("latin1"))
    if match is None:
        raise InvalidInputError("not an embedding matrix: only little-endian float32 C-order .npy")
    shape = tuple(int(d) for d in match.group(1).replace(" ", "").split(",") if d)
    offset = start + header_len
    count = int(np.prod(shape, dtype=np.int64))
    if len(data) - offset != count * 4:
        raise InvalidInputError(f"not an embedding matrix: {len(data) - offset} data bytes for shape {shape}")
    return np.frombuffer(data, dtype=np.float32, count=count, offset=offset).reshape(shape)


def matrix_to_bytes(matrix: np.ndarray) -> bytes:
    """Serialise an (N, D) matrix as float32 ``.npy`` bytes (deterministic for equal input)."""
    if np.ndim(matrix) != 2:
        raise InvalidInputError(f"embedding matrix must be 2-D, got shape {np.shape(matrix)}")
    return float32_to_npy(matrix)


def matrix_from_bytes(data: bytes) -> np.ndarray:
    """Parse bytes written by :func:`matrix_to_bytes`; a typed error for anything else."""
    arr = float32_from_npy(data)
    if arr.ndim != 2:
        raise InvalidInputError(f"embedding matrix must be 2-D float32, got {arr.dtype} {arr.shape}")
    return arr


def matrix_row(data: bytes, row: int) -> np.ndarray:
    """One row (a 1-D float32 vector) of a matrix blob."""
    arr = matrix_from_bytes(data)
    if not 0 <= row < arr.shape[0]:
        raise InvalidInputError(f"row {row} out of range for a matrix of {arr.shape[0]} rows")
    return arr[row]
