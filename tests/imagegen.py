"""Small real test images made with Pillow, and planted copies of them.

Every picture is generated from a seed, so tests are reproducible, and each seed gives a clearly
different picture (a coloured 1/f texture, striped shapes and a word of text), which makes "the
copy is the nearest neighbour of its original" a real test.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

# The generated pictures and planted-copy transforms live in the package (the demo uses them);
# the tests take the very same ones.
from dupscope.demo import WORDS, brighter, cropped, jpeg, pink_noise, resized, scene  # noqa: E402,F401


def noise(seed: int, size: tuple[int, int] = (64, 48)) -> Image.Image:
    """Uniform RGB noise."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")


def save(img: Image.Image, path: Path, **kwargs) -> Path:
    """Save ``img`` (format from the extension), creating folders; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kwargs)
    return path


# ---- broken files -------------------------------------------------------------------------

def write_truncated_jpeg(path: Path, seed: int = 0) -> Path:
    """A JPEG cut off after 40% of its bytes (the header is intact, the scan data is not)."""
    buf = io.BytesIO()
    scene(seed).save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    Path(path).write_bytes(data[: int(len(data) * 0.4)])
    return Path(path)


def write_png_bomb(path: Path, side: int = 20000) -> Path:
    """A tiny PNG whose header claims ``side`` x ``side`` pixels (400 M by default).

    Pillow reads only the header before its decompression-bomb check, so the missing pixel data is
    never reached; this is the shape of a real decompression bomb without the gigabytes.
    """
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit greyscale
    idat = zlib.compress(b"\x00" * 1024)
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return Path(path)


def write_not_an_image(path: Path) -> Path:
    """A text file with an image extension."""
    Path(path).write_text("this is a shopping list, not a picture\n")
    return Path(path)
