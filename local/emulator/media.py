"""Small, real media files for the emulated image and video models: PNG and MP4 written with the stdlib only.

The files are valid (any decoder opens them) and deterministic (the same request gives the same bytes), but tiny:
``png`` scales the requested size down to fit ``MAX_PNG_SIDE`` pixels, keeping the aspect ratio, and its header
(IHDR) states the size actually drawn. ``mp4`` writes the smallest structure players and parsers accept: ``ftyp``,
``moov`` with an ``mvhd`` (timescale and duration of the requested video) and an ``mdat`` of deterministic bytes.
"""

from __future__ import annotations

import hashlib
import struct
import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_PNG_SIDE = 64  # actual pixels on the longest side of every emulated image
MP4_TIMESCALE = 1000  # mvhd units per second


def colour_for(*parts: object) -> tuple[int, int, int]:
    """A deterministic RGB colour per seed parts (e.g. prompt, seed, image index)."""
    digest = hashlib.sha256("\0".join(str(part) for part in parts).encode()).digest()
    return digest[0], digest[1], digest[2]


def scaled_size(width: int, height: int, limit: int = MAX_PNG_SIDE) -> tuple[int, int]:
    """``width`` x ``height`` scaled down (never up) so the longest side is at most ``limit``; each side >= 1."""
    scale = min(1.0, limit / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(width: int, height: int, colour: tuple[int, int, int]) -> bytes:
    """An 8-bit RGB PNG of ``width`` x ``height`` pixels: ``colour`` shading to a darker tone from top to bottom."""
    rows = []
    for y in range(height):
        shade = 1.0 - 0.5 * y / max(1, height - 1)
        pixel = bytes(int(channel * shade) for channel in colour)
        rows.append(b"\x00" + pixel * width)  # filter type 0 (None) per scanline
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # bit depth 8, colour type 2 (RGB)
    return (
        PNG_SIGNATURE
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"".join(rows), 9))
        + _png_chunk(b"IEND", b"")
    )


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def mp4(duration_seconds: int, seed_text: str) -> bytes:
    """A minimal MP4 (ISO BMFF): ``ftyp`` + ``moov``/``mvhd`` + ``mdat``, the same bytes for the same arguments."""
    ftyp = _box(b"ftyp", b"isom" + struct.pack(">I", 512) + b"isomiso2avc1mp41")
    matrix = struct.pack(">9I", 0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000)
    mvhd = _box(
        b"mvhd",
        struct.pack(">B3xIIII", 0, 0, 0, MP4_TIMESCALE, duration_seconds * MP4_TIMESCALE)  # version 0, times 0
        + struct.pack(">IH10x", 0x00010000, 0x0100)  # rate 1.0, volume 1.0, reserved
        + matrix
        + bytes(24)  # pre_defined
        + struct.pack(">I", 1),  # next_track_ID
    )
    payload = b"".join(hashlib.sha256(f"{seed_text}/{i}".encode()).digest() for i in range(8))
    return ftyp + _box(b"moov", mvhd) + _box(b"mdat", payload)
