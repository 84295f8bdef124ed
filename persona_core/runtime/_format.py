"""The disk cache's one-file-per-pack format.

::

    header   72 bytes: magic, index offset+length, document offset+length, sha256(index)
    matrices each embedding blob's exact bytes (.npy), placed so its data is 64-byte aligned
    document the pack's canonical JSON, exactly as fetched (its sha256 is the pack_ref)
    index    the selection index JSON (runtime.index) plus pack_ref and the matrix table

The index comes last because it records the matrices' offsets. Loading reads the file,
checks the index against the header's hash, the document against the index's pack_ref and
the alignment padding for zeros, and parses only the small index; matrices are hashed on
first use. So no byte of a file is used, or left standing, unchecked.
"""

from __future__ import annotations

import hashlib
import json
import struct
from typing import Any

from persona_core.errors import IntegrityError

# The last two bytes are the format version; files of another version are re-fetched.
MAGIC_PREFIX = b"PCPACK"
MAGIC = MAGIC_PREFIX + b"\x00\x02"
HEADER = struct.Struct("<8sQQQQ32s")

# OpenSSL sets a digest up on its first use (~40 us); pay that at import, not in the first load.
hashlib.sha256(b"")
ALIGN = 64


class StaleFormatError(Exception):
    """A well-formed cache file written by another version of this format."""


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def encode(
    index_doc: dict[str, Any], document: bytes, matrices: dict[str, tuple[bytes, int, int, int]]
) -> bytes:
    """One cache file. ``matrices`` maps blob ref -> (blob bytes, data offset in the blob,
    rows, cols); the index gets ``matrices`` = ref -> [offset, length, data offset, rows, cols]."""
    body = bytearray()
    table: dict[str, list[int]] = {}
    pos = HEADER.size
    for ref in sorted(matrices):
        blob, data_off, rows, cols = matrices[ref]
        start = _align(pos + data_off) - data_off
        body += b"\x00" * (start - pos)
        body += blob
        table[ref] = [start, len(blob), data_off, rows, cols]
        pos = start + len(blob)
    doc_off = pos
    body += document
    pos += len(document)
    index_bytes = json.dumps({**index_doc, "matrices": table}, separators=(",", ":")).encode()
    header = HEADER.pack(
        MAGIC, pos, len(index_bytes), doc_off, len(document), hashlib.sha256(index_bytes).digest()
    )
    return header + bytes(body) + index_bytes


def decode(buf: memoryview, where: str) -> tuple[dict[str, Any], memoryview]:
    """Verify a cache file; return its index document and a view of the pack document.
    Raises IntegrityError on any mismatch (``where`` names the file in the message)."""
    if len(buf) < HEADER.size:
        raise IntegrityError(f"{where}: truncated cache file")
    magic, index_off, index_len, doc_off, doc_len, index_sha = HEADER.unpack_from(buf)
    if magic != MAGIC and magic.startswith(MAGIC_PREFIX):
        raise StaleFormatError(
            f"{where}: cache format {magic[-2:].hex()}, this code reads {MAGIC[-2:].hex()}"
        )
    if magic != MAGIC:
        raise IntegrityError(f"{where}: not a pack cache file (bad magic)")
    if index_off + index_len != len(buf) or doc_off + doc_len != index_off or doc_off < HEADER.size:
        raise IntegrityError(f"{where}: section offsets do not fit the file")
    index_view = buf[index_off : index_off + index_len]
    if hashlib.sha256(index_view).digest() != index_sha:
        raise IntegrityError(f"{where}: selection index does not match its hash")
    try:
        index_doc = json.loads(bytes(index_view))
    except ValueError:
        raise IntegrityError(f"{where}: selection index is not JSON") from None
    if not isinstance(index_doc, dict):
        raise IntegrityError(f"{where}: selection index is not a JSON object")
    doc_view = buf[doc_off : doc_off + doc_len]
    pack_ref = index_doc.get("pack_ref", "")
    if "sha256:" + hashlib.sha256(doc_view).hexdigest() != pack_ref:
        raise IntegrityError(f"{where}: pack document does not match its hash {pack_ref}")
    _check_matrix_layout(buf, index_doc.get("matrices"), doc_off, where)
    return index_doc, doc_view


def _check_matrix_layout(buf: memoryview, table: Any, end: int, where: str) -> None:
    """The matrices tile the bytes between the header and the document, in order, with only
    zero padding between them (their own bytes are hashed when first read)."""
    if not isinstance(table, dict):
        raise IntegrityError(f"{where}: matrix table is not a JSON object")
    pos = HEADER.size
    try:
        entries = sorted((int(e[0]), int(e[1])) for e in table.values())
    except (TypeError, ValueError, IndexError):
        raise IntegrityError(f"{where}: unreadable matrix table") from None
    for start, length in entries:
        if start < pos or length < 0 or any(buf[pos:start]):
            raise IntegrityError(f"{where}: matrix table does not fit the file")
        pos = start + length
    if pos != end:
        raise IntegrityError(f"{where}: matrix table does not fit the file")
