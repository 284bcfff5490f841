#!/usr/bin/env python3
"""Draws packaging/mcpb/icon.png: a white SIM card with a gold chip on a teal tile, drawn on a
256-pixel grid and written at 512x512 (the size Claude Desktop recommends).

Standard library only (zlib, struct), so the icon can be redrawn anywhere:
    python3 packaging/mcpb/make-icon.py
"""
import struct
import zlib
from pathlib import Path

SIZE = 256
TEAL = (0, 122, 135, 255)
WHITE = (255, 255, 255, 255)
GOLD = (222, 176, 64, 255)
LINE = (150, 112, 30, 255)
CLEAR = (0, 0, 0, 0)


def inside_rounded(x, y, x0, y0, x1, y1, r):
    if not (x0 <= x < x1 and y0 <= y < y1):
        return False
    cx = min(max(x, x0 + r), x1 - 1 - r)
    cy = min(max(y, y0 + r), y1 - 1 - r)
    return (x - cx) ** 2 + (y - cy) ** 2 <= r * r


def pixel(x, y):
    # The SIM card: a rounded rectangle with its top-right corner cut off.
    card = inside_rounded(x, y, 72, 40, 184, 216, 12) and (x - 148) < (y - 40)
    chip = inside_rounded(x, y, 96, 112, 160, 172, 8)
    if chip:
        # The chip's contact lines.
        if y in (131, 132, 151, 152) or x in (127, 128):
            return LINE
        return GOLD
    if card:
        return WHITE
    if inside_rounded(x, y, 0, 0, SIZE, SIZE, 48):
        return TEAL
    return CLEAR


def png(width, height, rows):
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"".join(b"\x00" + bytes(c for px in row for c in px) for row in rows)
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


SCALE = 2
rows = [[pixel(x // SCALE, y // SCALE) for x in range(SIZE * SCALE)] for y in range(SIZE * SCALE)]
out = Path(__file__).with_name("icon.png")
out.write_bytes(png(SIZE * SCALE, SIZE * SCALE, rows))
print(f"wrote {out} ({out.stat().st_size} bytes)")
