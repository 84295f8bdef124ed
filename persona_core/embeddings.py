"""The on-blob format of embedding matrices: one ``float32`` 2-D ``.npy`` per kind.

``.npy`` carries its own shape and dtype, so a reader needs nothing but the bytes; pickles
are refused on read. A pack points at one row with ``sha256:<hex>#<row>`` (see refs.py).
"""

from __future__ import annotations

import io

import numpy as np

from persona_core.errors import InvalidInputError


def matrix_to_bytes(matrix: np.ndarray) -> bytes:
    """Serialise an (N, D) matrix as float32 ``.npy`` bytes (deterministic for equal input)."""
    arr = np.ascontiguousarray(matrix, dtype=np.float32)
    if arr.ndim != 2:
        raise InvalidInputError(f"embedding matrix must be 2-D, got shape {arr.shape}")
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def matrix_from_bytes(data: bytes) -> np.ndarray:
    """Parse bytes written by :func:`matrix_to_bytes`; a typed error for anything else."""
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InvalidInputError(f"not an embedding matrix: {exc}") from None
    if arr.ndim != 2 or arr.dtype != np.float32:
        raise InvalidInputError(f"embedding matrix must be 2-D float32, got {arr.dtype} {arr.shape}")
    return arr


def matrix_row(data: bytes, row: int) -> np.ndarray:
    """One row (a 1-D float32 vector) of a matrix blob."""
    arr = matrix_from_bytes(data)
    if not 0 <= row < arr.shape[0]:
        raise InvalidInputError(f"row {row} out of range for a matrix of {arr.shape[0]} rows")
    return arr[row]
