"""What a file is, from its first bytes: the formats the upload gate accepts, and the common
ones it only recognises, so that a skipped file is skipped with a reason a person can act on.

A name's suffix and a client's declared type never decide anything here: a WebP saved as
``.jpg`` is a WebP, an MP4 named ``.mov`` is an MP4, and a HEIC photo is a HEIC photo even
though its container (ISO BMFF, ``ftyp``) is the one MP4 uses.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["ACCEPTED_FORMATS", "HEAD_BYTES", "SNIFFED_MEDIA_TYPES", "Kind", "sniff", "unsupported_reason"]

Kind = Literal["image", "video", "voice"]
# Bytes a sniff needs: every signature below lies within them.
HEAD_BYTES = 16
ACCEPTED_FORMATS = "JPEG, PNG, WebP; WAV, FLAC, OGG (Vorbis, Opus), MP3, M4A; MP4, MOV, AVI, WebM"

# (offset, magic, kind, media type), checked in order; RIFF and ftyp containers need a second look.
_MAGIC: tuple[tuple[int, bytes, Kind, str], ...] = (
    (0, b"\xff\xd8\xff", "image", "image/jpeg"),
    (0, b"\x89PNG\r\n\x1a\n", "image", "image/png"),
    (8, b"WEBP", "image", "image/webp"),
    (8, b"WAVE", "voice", "audio/wav"),
    (8, b"AVI ", "video", "video/x-msvideo"),
    (0, b"fLaC", "voice", "audio/flac"),
    (0, b"OggS", "voice", "audio/ogg"),
    (0, b"ID3", "voice", "audio/mpeg"),
    (8, b"M4A ", "voice", "audio/mp4"),
    (8, b"M4B ", "voice", "audio/mp4"),
    (8, b"qt  ", "video", "video/quicktime"),
    (0, b"\x1a\x45\xdf\xa3", "video", "video/webm"),
)
_CONTAINER = {
    b"WEBP": b"RIFF",
    b"WAVE": b"RIFF",
    b"AVI ": b"RIFF",
    b"M4A ": b"ftyp",
    b"M4B ": b"ftyp",
    b"qt  ": b"ftyp",
}
# ISO BMFF major brands of still images (HEIF / HEIC as phones save them, AVIF): the MP4
# container, not a video.
_STILL_IMAGE_BRANDS = {
    b"heic": "a HEIC photo",
    b"heix": "a HEIC photo",
    b"heim": "a HEIC photo",
    b"heis": "a HEIC photo",
    b"hevc": "a HEIC photo sequence",
    b"hevx": "a HEIC photo sequence",
    b"mif1": "a HEIF photo",
    b"msf1": "a HEIF photo sequence",
    b"avif": "an AVIF image",
    b"avis": "an AVIF image sequence",
}
# Formats recognised only to name them in the reason a file is skipped.
_NAMED: tuple[tuple[bytes, str], ...] = (
    (b"BM", "a BMP image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"MZ", "a Windows program"),
    (b"\x7fELF", "a program"),
)

# Every media type sniff() can answer: what a served blob's Content-Type may be besides
# application/octet-stream (the registry's OpenAPI lists them).
SNIFFED_MEDIA_TYPES: tuple[str, ...] = tuple(sorted({m for *_, m in _MAGIC} | {"video/mp4", "audio/mpeg"}))


def sniff(head: bytes) -> tuple[Kind, str] | None:
    """(kind, media type) from a file's first :data:`HEAD_BYTES` bytes, or None for anything
    not accepted."""
    head = head[:HEAD_BYTES]
    for offset, magic, kind, media_type in _MAGIC:
        if head[offset : offset + len(magic)] != magic:
            continue
        container = _CONTAINER.get(magic)
        if container is None or head[0:4] == container or head[4:8] == container:
            return kind, media_type
    if head[4:8] == b"ftyp":
        return None if head[8:12] in _STILL_IMAGE_BRANDS else ("video", "video/mp4")
    # MPEG audio without an ID3 tag starts with an 11-bit frame sync.
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return "voice", "audio/mpeg"
    return None


def unsupported_reason(head: bytes) -> str:
    """Why a file sniff() refused is skipped, naming its format when it is a common one."""
    what = _STILL_IMAGE_BRANDS.get(head[8:12]) if head[4:8] == b"ftyp" else None
    if what is None:
        what = next((name for magic, name in _NAMED if head.startswith(magic)), None)
    if what is None:
        return f"not a photo, video clip or voice file in an accepted format ({ACCEPTED_FORMATS})"
    return f"{what}, not an accepted format ({ACCEPTED_FORMATS}); convert it to one of those"
