"""What an append and a reference run cost against a full run, on real decoded images.

Generates N pictures (dupscope.demo.scene, 320x240 PNG, a few with an edited copy, most without),
runs phase 1 on them (the default model, verified), then:

- append: M = 1% more images (copies of old pictures among them) with ``--append``, against a
  full run on all N + M images, measured in the same run;
- reference: the same M images as queries with ``--reference``.

It prints each wall time, the append's share of a full run, and whether the appended file's
lists equal the union run's (up to pairs within 0.002 of each other).

    python3 benchmarks/bench_incremental.py [--n 4000] [--share 0.01]
    python3 benchmarks/bench_incremental.py --n 100000 --quick-images --no-union   # the 100k figure
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import sys
import tempfile
import time
from pathlib import Path


sys.path.insert(0, os.path.dirname(__file__))
from _machine import cpu_model, reexec_without_blas_overrides  # noqa: E402


def quick_picture(seed: int):
    """A cheap distinct 224x168 picture (for large N, where dupscope.demo.scene's 100 ms per image
    would dominate the run): a random colour grid, smoothly upsampled, with random boxes on it."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize((224, 168), Image.Resampling.BICUBIC)
    d = ImageDraw.Draw(img)
    for _ in range(12):
        x, y = int(rng.integers(0, 204)), int(rng.integers(0, 150))
        d.rectangle((x, y, x + int(rng.integers(8, 50)), y + int(rng.integers(8, 30))),
                    fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    return img


def make(root: Path, n: int, m: int, quick: bool = False) -> tuple[list[str], list[str]]:
    from dupscope.demo import cropped, jpeg, resized
    from dupscope.demo import scene as slow_scene

    scene = quick_picture if quick else slow_scene
    ext = "jpg" if quick else "png"  # JPEG: PNG compression alone takes 20 ms an image

    root.mkdir(parents=True)
    old = []
    for s in range(n):
        img = scene(s)
        if s % 20 == 5:  # 5% of the pictures come with an edited copy in the old set
            img = jpeg(scene(s - 1))
        p = root / f"o{s:06d}.{ext}"
        img.save(p)
        old.append(str(p))
    new = []
    edits = (cropped, resized, jpeg)
    for j in range(m):
        img = edits[j % 3](scene(j * 7 % n)) if j % 2 == 0 else scene(10_000_000 + j)
        p = root / f"n{j:06d}.{ext}"
        img.save(p)
        new.append(str(p))
    return old, new


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> int:
    reexec_without_blas_overrides()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--share", type=float, default=0.01)
    ap.add_argument("--quick-images", action="store_true",
                    help="cheap generated pictures instead of dupscope.demo.scene (for large N)")
    ap.add_argument("--no-union", action="store_true",
                    help="compare with the full run on N only (skip the run on N + M and the agreement check)")
    args = ap.parse_args()
    from dupscope.append import append_similarity
    from dupscope.pipeline import compute_similarity
    from dupscope.reference import reference_similarity
    from dupscope.store import SimilarityFile

    m = max(1, round(args.n * args.share))
    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical cores; N = {args.n}, M = {m}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t_make, (old, new) = timed(lambda: make(tmp / "img", args.n, m, args.quick_images))
        print(f"generated {args.n + m} images in {t_make:.0f} s", flush=True)
        (tmp / "old.txt").write_text("\n".join(old) + "\n")
        (tmp / "new.txt").write_text("\n".join(new) + "\n")
        (tmp / "all.txt").write_text("\n".join(old + new) + "\n")
        t_old, _ = timed(lambda: compute_similarity(tmp / "old.txt", tmp / "grown.h5", progress=False))
        print(f"full run on N: {t_old:.1f} s", flush=True)
        import shutil

        shutil.copy(tmp / "grown.h5", tmp / "ref.h5")
        t_union = float("nan")
        if not args.no_union:
            t_union, _ = timed(lambda: compute_similarity(tmp / "all.txt", tmp / "union.h5", progress=False))
        t_append, s_app = timed(lambda: append_similarity(tmp / "new.txt", tmp / "grown.h5", progress=False))
        t_ref, s_ref = timed(lambda: reference_similarity(tmp / "new.txt", tmp / "ref.h5", tmp / "q.h5", progress=False))
        differ = None
        if not args.no_union:  # agreement with the union run
            with SimilarityFile(tmp / "grown.h5") as f, SimilarityFile(tmp / "union.h5") as g:
                assert f.paths == g.paths
                ia, sa = f.neighbors()
                ib, sb = g.neighbors()
            differ = 0
            for r in range(len(ia)):
                da = {int(i): float(s) for i, s in zip(ia[r], sa[r]) if i >= 0 and s >= 0.5}
                db = {int(i): float(s) for i, s in zip(ib[r], sb[r]) if i >= 0 and s >= 0.5}
                differ += len(da.keys() ^ db.keys()) + sum(abs(da[i] - db[i]) > 2e-3 for i in da.keys() & db.keys())
    full = t_old if args.no_union else t_union
    what = "N" if args.no_union else "N + M"
    print(f"| run | images embedded | wall s | share of the full run on {what} |")
    print("|---|---:|---:|---:|")
    print(f"| full run on N | {args.n} | {t_old:.1f} | {'100%' if args.no_union else ''} |")
    if not args.no_union:
        print(f"| full run on N + M | {args.n + m} | {t_union:.1f} | 100% |")
    print(f"| append M | {m} | {t_append:.1f} | {100 * t_append / full:.1f}% |")
    print(f"| reference, M queries | {m} | {t_ref:.1f} | {100 * t_ref / full:.1f}% |")
    print(f"append: embedding {s_app['embed_seconds']:.1f} s, {s_app['pairs_verified']} pairs verified; "
          f"reference: {s_ref['query_reference_pairs']} query-reference pairs >= 0.5, "
          f"{s_ref['n_reference_shown']} reference images written")
    if differ is not None:
        print(f"pairs scoring >= 0.5 that differ between the appended file and the union run: {differ}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
