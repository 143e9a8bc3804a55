"""Real, decodable test images (no imaging library needed): PNGs of any size, written
with zlib as the PNG specification describes, and the classic 1x1 GIF."""

from __future__ import annotations

import os
import struct
import zlib


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int, height: int, noise: bool = False) -> bytes:
    """An RGB PNG; `noise` makes it incompressible (to reach a file size)."""
    def row() -> bytes:
        return b"\0" + (os.urandom(width * 3) if noise else bytes([200, 30, 90]) * width)

    raw = b"".join(row() for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(raw, 0 if noise else 9)) + _chunk(b"IEND", b""))


GIF_1X1 = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
           b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")


def jpeg_header(width: int, height: int) -> bytes:
    """SOI, an APP0 segment and a baseline start-of-frame: what a size check reads."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app0 + sof0 + b"\xff\xd9"
