"""Helpers for the explorer tests: a generated dataset with planted duplicates, and Chromium.

The dataset is small real PNG images plus a similarity file written with h5py exactly as
``docs/SCHEMA.md`` describes, with a similarity structure the tests know in advance.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CHROMIUM = os.environ.get("DUPSCOPE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

XSS_NAME = "<img src=x onerror=alert(1)>.png"

# Planted similarities (i, j, s): a triple with a label conflict and a cross-split pair, a pair,
# the XSS-named image's pair, and one pair just below the default threshold.
PLANTED = [
    (0, 1, 0.99), (0, 2, 0.97), (1, 2, 0.96),
    (3, 4, 0.93),
    (5, 6, 0.91),
    (8, 9, 0.88),
]
FAILED = 7
# Image 3 is larger than its thumbnail, so the compare view can tell an original from a thumbnail.
SIZES = {3: (256, 192)}


@dataclass
class Dataset:
    """A generated dataset: the h5 file, its image folder and what was planted."""

    h5: Path
    image_dir: Path
    paths: list[str]
    similarity: np.ndarray  # dense float16 matrix, NaN rows/columns for the failed image
    labels: list[str]
    splits: list[str]


def _top_k(sim: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k other images per row, most similar first, ties by lower index (per SCHEMA.md)."""
    n = sim.shape[0]
    idx = np.full((n, k), -1, dtype=np.int32)
    val = np.full((n, k), np.nan, dtype=np.float16)
    for i in range(n):
        cand = [(-float(sim[i, j]), j) for j in range(n) if j != i and np.isfinite(sim[i, j])]
        cand.sort()
        for c, (negs, j) in enumerate(cand[:k]):
            idx[i, c] = j
            val[i, c] = np.float16(-negs)
    return idx, val


def write_similarity_file(
    h5_path: Path,
    sim: np.ndarray,
    *,
    k: int,
    paths: list[str],
    resolved: list[str],
    labels: list[str],
    splits: list[str],
    ok: np.ndarray,
    dense: bool = True,
    complete: bool = True,
    sizes: list[tuple[int, int]] | None = None,
) -> None:
    """Write a similarity file following docs/SCHEMA.md (schema version 1)."""
    import h5py

    n = sim.shape[0]
    idx, val = _top_k(sim, k)
    s = h5py.string_dtype("utf-8")
    with h5py.File(h5_path, "w") as f:
        if dense:
            tile = max(1, min(n, 8))
            f.create_dataset("similarity", data=sim.astype(np.float16), chunks=(tile, tile))
        f.create_dataset("neighbors/index", data=idx)
        f.create_dataset("neighbors/similarity", data=val)
        f.create_dataset("images/path", data=paths, dtype=s)
        f.create_dataset("images/resolved_path", data=resolved, dtype=s)
        f.create_dataset("images/label", data=labels, dtype=s)
        f.create_dataset("images/split", data=splits, dtype=s)
        f.create_dataset("images/ok", data=ok.astype(bool))
        f.create_dataset("images/error", data=["" if o else "cannot identify image file" for o in ok], dtype=s)
        w, h = (np.array(sizes).T if sizes is not None else (np.full(n, 64), np.full(n, 48)))
        f.create_dataset("images/width", data=np.where(ok, w, 0).astype(np.int32))
        f.create_dataset("images/height", data=np.where(ok, h, 0).astype(np.int32))
        f.attrs.update({
            "schema_version": 1, "dupscope_version": "0.0.test", "created": "2024-01-01T00:00:00Z",
            "n_images": n, "k": k, "tile": 8, "dense": dense, "metric": "(1+cos)/2", "device": "cpu",
            "model": "test-model", "model_sha256": "0" * 64, "annotations": "annotations.csv",
            "annotations_sha256": "0" * 64, "image_root": str(Path(resolved[0]).parent) if n else "",
        })
        # Last write, as the real writer does.
        f.attrs["complete"] = complete


def make_dataset(root: Path, n: int = 14, k: int = 4) -> Dataset:
    """Images with planted duplicate groups, one failed image, labels and splits."""
    from PIL import Image, ImageDraw

    image_dir = root / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = [f"img_{i:02d}.png" for i in range(n)]
    names[5] = XSS_NAME
    names[FAILED] = "broken.png"
    palette = [(239, 68, 68), (249, 115, 22), (234, 179, 8), (34, 197, 94), (6, 182, 212),
               (59, 130, 246), (139, 92, 246), (236, 72, 153)]
    for i, name in enumerate(names):
        if i == FAILED:
            (image_dir / name).write_bytes(b"this is not a png")
            continue
        group = {0: 0, 1: 0, 2: 0, 3: 1, 4: 1, 5: 2, 6: 2}.get(i, 3 + i)
        im = Image.new("RGB", SIZES.get(i, (64, 48)), palette[group % len(palette)])
        d = ImageDraw.Draw(im)
        d.ellipse((8 + 2 * (i % 4), 6, 40, 38), fill=(255, 255, 255))
        d.text((44, 18), str(i), fill=(0, 0, 0))
        im.save(image_dir / name)

    sim = rng.uniform(0.55, 0.80, size=(n, n))
    sim = (sim + sim.T) / 2
    for i, j, s in PLANTED:
        sim[i, j] = sim[j, i] = s
    np.fill_diagonal(sim, 1.0)
    sim[FAILED, :] = np.nan
    sim[:, FAILED] = np.nan
    sim = sim.astype(np.float16)

    labels = ["cat", "cat", "dog", "dog", "dog", "<b>bird</b>", "bird", "", "cat", "cat"]
    labels += ["dog"] * (n - len(labels))
    splits = ["train", "test", "train", "val", "val", "train", "train", "", "train", "train"]
    splits += ["train"] * (n - len(splits))
    ok = np.ones(n, dtype=bool)
    ok[FAILED] = False
    paths = [f"images/{name}" for name in names]
    resolved = [str(image_dir / name) for name in names]
    h5 = root / "sim.h5"
    write_similarity_file(h5, sim, k=k, paths=paths, resolved=resolved, labels=labels,
                          splits=splits, ok=ok, sizes=[SIZES.get(i, (64, 48)) for i in range(n)])
    return Dataset(h5=h5, image_dir=image_dir, paths=paths, similarity=sim, labels=labels,
                   splits=splits)


def expected_pairs(h5_path: Path, threshold: float) -> dict[tuple[int, int], float]:
    """Pairs ``(a, b)`` with ``a < b`` at or above the threshold, straight from the file.

    Similarities are compared as float64 (never by casting the threshold to float16), the same
    comparison the page makes.
    """
    import h5py

    with h5py.File(h5_path, "r") as f:
        idx = f["neighbors/index"][()]
        sim = f["neighbors/similarity"][()].astype(np.float64)
    out: dict[tuple[int, int], float] = {}
    for i in range(idx.shape[0]):
        for j, s in zip(idx[i], sim[i]):
            if j < 0 or not np.isfinite(s) or s < threshold:
                continue
            key = (min(i, int(j)), max(i, int(j)))
            out.setdefault(key, float(s))
    return out


def browser_missing_reason() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright (python) is not installed"
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        return f"no Chromium at {CHROMIUM} (set DUPSCOPE_CHROMIUM)"
    return None


def launch(playwright):  # type: ignore[no-untyped-def]
    """Launch the system Chromium headless; never lets Playwright download a browser."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
