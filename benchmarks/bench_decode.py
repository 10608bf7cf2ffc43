"""What decoding costs in phase 1, and whether another decoder would beat dupscope's.

On the phase-1 benchmark's images (benchmarks/phase1_setup.sh: JPEG re-encodings at 500, 640 and
1024 px, the astronomy PNGs, large wallpapers), each image decoded and resized to the network's
224 x 224, in one process, methods interleaved, best of ``--repeat``:

- Pillow, full decode: ``Image.open().convert("RGB").resize((224, 224))`` (what the naive loop
  does);
- dupscope: ``dupscope.images.load_image`` (JPEG draft mode: libjpeg-turbo scales by 1/2, 1/4 or
  1/8 while decoding, as long as both sides stay >= 224; then the same resize);
- simplejpeg (if installed): ``decode_jpeg(min_height=224, min_width=224)``, libjpeg-turbo's same
  DCT scaling without Pillow's objects, then the same resize; JPEG only;
- PyTurboJPEG (if it finds libturbojpeg): ``decode(scaling_factor=...)`` likewise.

It also reports whether the pixels equal dupscope's (a decoder that gives other pixels changes the
embeddings), and dupscope's decode rate with 1 and with all threads.

Usage: python benchmarks/bench_decode.py [--data bench-data] [--limit 600] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_model  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SIDE = 224


def images(data: Path, limit: int) -> list[str]:
    """Every k-th image of the phase-1 COCO file (so the mix of sizes and formats stays)."""
    coco = data / "phase1_coco.json"
    if not coco.exists():
        raise SystemExit(f"{coco} is missing: run bash benchmarks/phase1_setup.sh first")
    doc = json.loads(coco.read_text())
    paths = [str(coco.parent / im["file_name"]) for im in doc["images"]]
    step = max(1, len(paths) // limit)
    return paths[::step][:limit]


def pillow_full(path: str) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("RGB").resize((SIDE, SIDE)))  # Pillow's default filter


def dupscope_decode(path: str) -> np.ndarray:
    from dupscope.images import load_image

    return load_image(path, SIDE).pixels


def _resized(rgb: np.ndarray) -> np.ndarray:
    from PIL import Image

    from dupscope.images import _resize

    return np.asarray(_resize(Image.fromarray(rgb), SIDE, SIDE, "stretch"))


def simplejpeg_decode(path: str) -> np.ndarray:
    import simplejpeg

    data = Path(path).read_bytes()
    return _resized(simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=SIDE, min_width=SIDE))


def turbojpeg_decoder():
    try:
        from turbojpeg import TJPF_RGB, TurboJPEG

        tj = TurboJPEG()
    except Exception:
        return None

    def decode(path: str) -> np.ndarray:
        data = Path(path).read_bytes()
        w, h, _, _ = tj.decode_header(data)
        factor = (1, 1)
        for num, den in ((1, 8), (1, 4), (1, 2)):
            if w * num // den >= SIDE and h * num // den >= SIDE:
                factor = (num, den)
                break
        return _resized(tj.decode(data, pixel_format=TJPF_RGB, scaling_factor=factor))

    return decode


def rate(fn, paths: list[str], threads: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        with ThreadPoolExecutor(threads) as ex:
            for _ in ex.map(fn, paths):
                pass
        best = min(best, time.perf_counter() - t)
    return len(paths) / best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT / "bench-data"))
    ap.add_argument("--limit", type=int, default=600)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    paths = images(Path(a.data), a.limit)
    jpegs = [p for p in paths if p.lower().endswith((".jpg", ".jpeg"))]
    pngs = [p for p in paths if p.lower().endswith(".png")]
    cores = os.cpu_count() or 1
    print(f"CPU: {cpu_model()}, {cores} logical cores; {len(jpegs)} JPEG, {len(pngs)} PNG images")
    # (name, decoder, whether it reads PNG)
    methods = [("Pillow, full decode + resize", pillow_full, True), ("dupscope load_image (JPEG draft)", dupscope_decode, True)]
    import importlib.util

    if importlib.util.find_spec("simplejpeg") is not None:
        methods.append(("simplejpeg, DCT-scaled + resize", simplejpeg_decode, False))
    else:
        print("simplejpeg not installed: left out")
    tj = turbojpeg_decoder()
    if tj is not None:
        methods.append(("PyTurboJPEG, DCT-scaled + resize", tj, False))
    else:
        print("PyTurboJPEG cannot load libturbojpeg here: left out")
    rows = []
    for name, fn, reads_png in methods:
        jpeg_rate = rate(fn, jpegs, cores, a.repeat)
        png_rate = rate(fn, pngs, cores, a.repeat) if pngs and reads_png else None
        same = np.mean([np.array_equal(fn(p), dupscope_decode(p)) for p in jpegs[:50]])
        rows.append((name, jpeg_rate, png_rate, same))
    one = rate(dupscope_decode, jpegs, 1, a.repeat)
    print("\n| method | JPEG images/s | PNG images/s | same pixels as dupscope (50 JPEGs) |")
    print("|---|---|---|---|")
    for name, j, p, same in rows:
        print(f"| {name} | {j:.0f} | {'' if p is None else f'{p:.0f}'} | {same:.0%} |")
    print(f"\ndupscope load_image on JPEGs: {one:.0f} images/s on 1 thread, {rows[1][1]:.0f} on {cores} "
          f"({rows[1][1] / one:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
