"""The built-in demo: a generated dataset with planted duplicates, run through both phases.

Nothing is downloaded. Every picture is generated from a seed (a coloured 1/f texture, striped
shapes and a word), so the dataset is the same on every machine, and the planted copies give a
known ground truth: ``dupscope evaluate`` can score the result.
"""

from __future__ import annotations

import io
import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps

WORDS = ("harbour", "granite", "lantern", "meadow", "quartz", "saffron", "tundra", "velvet",
         "walnut", "zephyr")
CATEGORIES = ("coast", "forest", "city", "desert")


def pink_noise(rng: np.random.Generator, h: int, w: int, beta: float = 1.2) -> np.ndarray:
    """Zero-mean, unit-variance noise with a 1/f^beta spectrum (cloud- or foliage-like texture)."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fx**2 + fy**2)
    f[0, 0] = 1.0
    spectrum = (rng.normal(size=f.shape) + 1j * rng.normal(size=f.shape)) / f**beta
    x = np.fft.irfft2(spectrum, (h, w))
    return (x - x.mean()) / x.std()


def scene(seed: int, size: Tuple[int, int] = (320, 240)) -> Image.Image:
    """A distinct RGB picture for each seed.

    A coloured 1/f texture (structure at every scale, like natural images, so that resizing and
    JPEG keep most of it), shapes filled with stripes of random period and angle, and a word of
    text. Flat shapes on smooth gradients look alike to an ImageNet network (distinct pictures
    at cosine 0.9), which would make a weak demo and a weak test.
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


# ---- planted copies -------------------------------------------------------------------------

def resized(img: Image.Image, factor: float = 0.5) -> Image.Image:
    """The same picture at another resolution."""
    w, h = img.size
    return img.resize((max(1, round(w * factor)), max(1, round(h * factor))),
                      Image.Resampling.LANCZOS)


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


def bordered(img: Image.Image, frac: float = 0.06) -> Image.Image:
    """The picture inside a white frame."""
    pad = max(1, round(min(img.size) * frac))
    return ImageOps.expand(img, border=pad, fill=(255, 255, 255))


def grayscale(img: Image.Image) -> Image.Image:
    """The picture in shades of grey (kept as RGB)."""
    return img.convert("L").convert("RGB")


#: Kinds of planted copy in the demo, each a function of the original picture. Frames and
#: grayscale copies are left out: on these generated pictures the default network ranks them
#: below unrelated pictures (measured: 0 of 14 framed and 1 of 18 grayscale copies at rank 1),
#: so they would only show its weakness; the accuracy benchmark measures them on real photos.
COPY_KINDS: Dict[str, Callable[[Image.Image], Image.Image]] = {
    "exact": lambda im: im.copy(),
    "resized": lambda im: resized(im, 0.5),
    "jpeg": lambda im: jpeg(im, 35),
    "crop": lambda im: cropped(im, 0.9),
    "brightness": lambda im: brighter(im, 1.25),
}


@dataclass
class DemoDataset:
    """Where the generated demo dataset lies and what was planted in it."""

    folder: Path
    annotations: Path
    predictions: Path
    ground_truth: Path
    n_images: int
    groups: List[List[str]] = field(default_factory=list)


def make_demo_dataset(folder: "Path | str", n_originals: int = 240, n_copied: int = 60,
                      size: Tuple[int, int] = (448, 336), seed: int = 7) -> DemoDataset:
    """Generate the demo dataset: originals, planted copies, COCO annotations and predictions.

    Parameters
    ----------
    folder : path-like
        Created if needed; gets ``images/``, ``annotations.json``, ``predictions.pkl`` and
        ``ground_truth.json`` (the planted duplicate groups, for ``dupscope evaluate``).
    n_originals : int
        Distinct generated pictures.
    n_copied : int
        How many originals get planted copies (one or two each, of the kinds in COPY_KINDS).
    size : (int, int)
        Width and height of the originals.
    seed : int
        Seed of everything random here (the dataset is reproducible).
    """
    folder = Path(folder)
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    kinds = list(COPY_KINDS)
    splits = ("train", "train", "train", "val", "test")

    records: List[dict] = []
    groups: List[List[str]] = []

    def add(img: Image.Image, name: str, label: int, split: str, fmt: str = "PNG") -> str:
        rel = f"images/{name}"
        if fmt == "JPEG":
            # Fixed encoder settings, so an exact copy of a JPEG original is byte-identical.
            img.convert("RGB").save(folder / rel, "JPEG", quality=92)
        else:
            img.save(folder / rel)
        records.append({"file_name": rel, "category_id": label + 1, "split": split})
        return rel

    copied = set(rng.choice(n_originals, size=min(n_copied, n_originals), replace=False).tolist())
    for i in range(n_originals):
        img = scene(seed * 100_000 + i, size)
        label = int(rng.integers(0, len(CATEGORIES)))
        split = str(rng.choice(splits))
        fmt = "JPEG" if i % 2 else "PNG"
        name = f"{CATEGORIES[label]}_{i:04d}.{'jpg' if fmt == 'JPEG' else 'png'}"
        rel = add(img, name, label, split, fmt)
        if i not in copied:
            continue
        group = [rel]
        for kind in rng.choice(kinds, size=int(rng.integers(1, 3)), replace=False):
            copy = COPY_KINDS[str(kind)](img)
            # Most copies share their original's label and split; some do not, as in real data
            # (a labelling mistake, or a leak between training and test).
            c_label = label if rng.random() > 0.15 else int(rng.integers(0, len(CATEGORIES)))
            c_split = split if rng.random() > 0.3 else str(rng.choice(splits))
            # An exact copy is the same file under another name; other copies are JPEGs.
            c_fmt, c_ext = (fmt, name.rsplit(".", 1)[1]) if kind == "exact" else ("JPEG", "jpg")
            group.append(add(copy, f"{CATEGORIES[c_label]}_{i:04d}_{kind}.{c_ext}", c_label,
                             c_split, c_fmt))
        groups.append(group)

    # Shuffle so copies do not sit next to their originals.
    order = rng.permutation(len(records))
    records = [records[j] for j in order]
    coco = {
        "info": {"description": "dupscope demo: generated pictures with planted duplicates"},
        "categories": [{"id": c + 1, "name": name} for c, name in enumerate(CATEGORIES)],
        "images": [dict(r, id=j + 1) for j, r in enumerate(records)],
    }
    ann = folder / "annotations.json"
    ann.write_text(json.dumps(coco, indent=1))

    # A stand-in for "another model's predictions": class scores that mostly agree with the
    # labels, in annotation order, as a user's classifier would produce them.
    labels = np.array([r["category_id"] - 1 for r in records])
    logits = rng.normal(0, 1, (len(records), len(CATEGORIES)))
    logits[np.arange(len(records)), labels] += 2.5
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    pred = folder / "predictions.pkl"
    with open(pred, "wb") as f:
        pickle.dump(probs.astype(np.float32), f)

    gt = folder / "ground_truth.json"
    gt.write_text(json.dumps({"groups": groups}, indent=1))
    return DemoDataset(folder, ann, pred, gt, len(records), groups)
