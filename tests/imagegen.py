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
from PIL import Image, ImageDraw, ImageEnhance, ImageFont

WORDS = ("harbour", "granite", "lantern", "meadow", "quartz", "saffron", "tundra", "velvet", "walnut", "zephyr")


def pink_noise(rng: np.random.Generator, h: int, w: int, beta: float = 1.2) -> np.ndarray:
    """Zero-mean, unit-variance noise with a 1/f^beta spectrum (cloud- or foliage-like texture)."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fx**2 + fy**2)
    f[0, 0] = 1.0
    spectrum = (rng.normal(size=f.shape) + 1j * rng.normal(size=f.shape)) / f**beta
    x = np.fft.irfft2(spectrum, (h, w))
    return (x - x.mean()) / x.std()


def scene(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A distinct RGB picture for each seed.

    A coloured 1/f texture (structure at every scale, like natural images, so that resizing and
    JPEG keep most of it), shapes filled with stripes of random period and angle, and a word of
    text. Flat shapes on smooth gradients were tried first: an ImageNet CNN sees all of those as
    much the same "abstract art" (distinct pictures at cosine 0.9), which makes a weak test.
    """
    rng = np.random.default_rng(seed)
    w, h = size
    texture = np.stack([pink_noise(rng, h, w) for _ in range(3)], -1)
    arr = np.clip(rng.uniform(60, 200, 3) + texture @ (rng.normal(size=(3, 3)) * 40), 0, 255)
    img = Image.fromarray(arr.astype(np.uint8), "RGB")
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(int(rng.integers(4, 8))):
        lo = min(20, max(4, min(w, h) // 4))  # smallest shape side; smaller for tiny pictures
        x0, y0 = int(rng.integers(0, max(1, w - lo))), int(rng.integers(0, max(1, h - lo)))
        x1 = x0 + int(rng.integers(lo, max(lo + 1, w // 2)))
        y1 = y0 + int(rng.integers(lo, max(lo + 1, h // 2)))
        mask = Image.new("L", size, 0)
        shape = ImageDraw.Draw(mask)
        kind = rng.integers(0, 3)
        if kind == 0:
            shape.ellipse((x0, y0, x1, y1), fill=255)
        elif kind == 1:
            shape.rectangle((x0, y0, x1, y1), fill=255)
        else:
            shape.polygon([(x0, y1), ((x0 + x1) // 2, y0), (x1, y1)], fill=255)
        period, theta = rng.uniform(6, 30), rng.uniform(0, np.pi)
        stripes = np.sin((np.cos(theta) * xx + np.sin(theta) * yy) * 2 * np.pi / period) > 0
        fill = np.where(stripes[..., None], rng.integers(0, 256, 3), rng.integers(0, 256, 3))
        img.paste(Image.fromarray(fill.astype(np.uint8), "RGB"), (0, 0), mask)
    font = ImageFont.load_default(size=max(12, h // 8))
    ImageDraw.Draw(img).text((w // 10, h // 2), WORDS[seed % len(WORDS)],
                             fill=tuple(int(v) for v in rng.integers(0, 256, 3)), font=font)
    # A little sensor-like noise so that a JPEG round trip really changes pixels.
    noisy = np.asarray(img, np.int16) + rng.normal(0, 2, (h, w, 3)).astype(np.int16)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


def noise(seed: int, size: tuple[int, int] = (64, 48)) -> Image.Image:
    """Uniform RGB noise."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")


# ---- planted copies -------------------------------------------------------------------------

def resized(img: Image.Image, factor: float = 0.5) -> Image.Image:
    """The same picture at another resolution."""
    w, h = img.size
    return img.resize((max(1, round(w * factor)), max(1, round(h * factor))), Image.Resampling.LANCZOS)


def jpeg(img: Image.Image, quality: int = 40) -> Image.Image:
    """The picture after a round trip through JPEG at ``quality``."""
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    buf.seek(0)
    out = Image.open(buf)
    out.load()
    return out


def cropped(img: Image.Image, keep: float = 0.85) -> Image.Image:
    """A centre crop keeping ``keep`` of each side."""
    w, h = img.size
    cw, ch = round(w * keep), round(h * keep)
    left, top = (w - cw) // 2, (h - ch) // 2
    return img.crop((left, top, left + cw, top + ch))


def brighter(img: Image.Image, factor: float = 1.3) -> Image.Image:
    """The picture with brightness scaled by ``factor``."""
    return ImageEnhance.Brightness(img).enhance(factor)


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
