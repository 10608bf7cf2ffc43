"""Speed of the geometric verification's features and descriptor matching, against OpenCV in the
same run.

Features: on the prepared grey images (dupscope.verify.prepared_grey, 384 px) of the realistic
benchmark (realistic_data.py), one thread each, median of the repeats, milliseconds per image:

- dupscope: the compiled core's detector (``dupscope._core.keypoints``, the SIMD path and the
  portable one), and the mirror image's features from the direct ones
  (``dupscope.verify.mirrored_features``: positions mirrored, descriptor bit pairs swapped);
- OpenCV: ``cv2.ORB_create`` with the same number of features, levels and scale
  (``detectAndCompute``), and the mirror image's descriptors as dupscope computed them before
  (the direct keypoints mirrored, ``ORB.compute`` on the flipped image).

Matching: for pairs of those images, features are computed once
(dupscope.verify.image_features); then mutual ratio-test matching is timed two ways:

- dupscope: the compiled core's one-pass Hamming matcher (``dupscope._core.hamming_matches``),
  once per kernel this CPU runs (``build_info()["hamming_kernels"]``: portable, AVX-512 with a
  table-lookup popcount, AVX-512 with VPOPCNTDQ);
- OpenCV: ``cv2.BFMatcher(NORM_HAMMING).knnMatch(k=2)`` both ways plus the ratio test and the
  mutual check in Python (what dupscope did before).

All must give the same matches on every pair (checked). The table gives milliseconds per pair
(median of the repeats) and the speed-up.

Usage:
    python3 benchmarks/bench_verify.py [--data bench-data] [--pairs 40] [--images 200] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe_machine, reexec_without_blas_overrides, table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def opencv_mutual(d1: np.ndarray, d2: np.ndarray, ratio: float):
    import cv2

    matcher = cv2.BFMatcher(cv2.NORM_HAMMING)

    def best(q, t):
        out = np.full(len(q), -1, np.int64)
        for m in matcher.knnMatch(q, t, k=2):
            if len(m) == 2 and m[0].distance < ratio * m[1].distance:
                out[m[0].queryIdx] = m[0].trainIdx
        return out

    fwd, back = best(d1, d2), best(d2, d1)
    i = np.flatnonzero(fwd >= 0)
    i = i[back[fwd[i]] == i]
    return i, fwd[i]


def main() -> int:
    reexec_without_blas_overrides()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT / "bench-data"))
    ap.add_argument("--pairs", type=int, default=40)
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    import cv2

    import realistic_data
    from dupscope import build_info
    from dupscope._core import hamming_matches, keypoints
    from dupscope.verify import VerifyConfig, image_features, mirrored_features, prepared_grey

    folder = realistic_data.build(Path(args.data), 0)
    paths = [str(folder / line) for line in (folder / "images.txt").read_text().split()]
    cfg = VerifyConfig()
    cv2.setNumThreads(1)  # one thread each: the verifier runs pairs in parallel threads itself
    greys = [prepared_grey(p, cfg) for p in paths[: args.images]]
    orb = cv2.ORB_create(nfeatures=cfg.features, scaleFactor=cfg.scale_factor, nlevels=cfg.levels,
                         fastThreshold=cfg.fast_threshold)

    def per_image(fn) -> float:
        runs = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            for i, g in enumerate(greys):
                fn(i, g)
            runs.append((time.perf_counter() - t) / len(greys) * 1e3)
        return statistics.median(runs)

    def orb_mirror(g, kps):
        w = g.shape[1]
        flipped = np.ascontiguousarray(g[:, ::-1])
        moved = [cv2.KeyPoint(w - 1 - k.pt[0], k.pt[1], k.size, (180.0 - k.angle) % 360.0, k.response, k.octave)
                 for k in kps]
        return orb.compute(flipped, moved)

    direct = [image_features(g, cfg) for g in greys]
    orb_kps = [orb.detect(g, None) for g in greys]
    frows = []
    simd = build_info()["keypoint_kernel"]
    for kernel in dict.fromkeys([simd, "portable"]):
        ms = per_image(lambda i, g, k=kernel: keypoints(g, cfg.features, cfg.levels, cfg.scale_factor,
                                                     cfg.fast_threshold, k))
        frows.append([f"dupscope keypoints, {kernel}", f"{ms:.2f}"])
    ms_mirror = per_image(lambda i, g: mirrored_features(g, direct[i], cfg))
    frows.append(["dupscope mirror image's features (from the direct ones)", f"{ms_mirror:.3f}"])
    ms_orb = per_image(lambda i, g: orb.detectAndCompute(g, None))
    frows.append(["OpenCV ORB detectAndCompute", f"{ms_orb:.2f}"])
    ms_orb_mirror = per_image(lambda i, g: orb_mirror(g, orb_kps[i]))
    frows.append(["OpenCV ORB mirror image's descriptors (compute on the flipped image)", f"{ms_orb_mirror:.2f}"])
    n_ours = int(np.mean([len(f.points) for f in direct]))
    n_orb = int(np.mean([len(k) for k in orb_kps]))
    feats = [image_features(p, cfg) for p in paths[: 2 * args.pairs]]
    pairs = [(feats[2 * k], feats[2 * k + 1]) for k in range(args.pairs)]
    kernels = build_info()["hamming_kernels"]
    for a, b in pairs:
        want = opencv_mutual(a.descriptors, b.descriptors, cfg.ratio)
        for kernel in kernels:
            got = hamming_matches(a.descriptors, b.descriptors, cfg.ratio, kernel)
            assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1]), f"{kernel}: matches differ"

    def per_pair(fn) -> float:
        runs = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            for a, b in pairs:
                fn(a.descriptors, b.descriptors, cfg.ratio)
            runs.append((time.perf_counter() - t) / len(pairs) * 1e3)
        return statistics.median(runs)

    theirs = per_pair(opencv_mutual)
    rows = []
    for kernel in kernels:
        ours = per_pair(lambda x, y, r, k=kernel: hamming_matches(x, y, r, k))
        rows.append([f"dupscope hamming_matches, {kernel} kernel", f"{ours:.3f}", f"{theirs / ours:.1f}x"])
    rows.append(["OpenCV knnMatch both ways + Python ratio/mutual", f"{theirs:.3f}", "1.0x"])
    n_desc = int(np.mean([len(a.descriptors) for a, _ in pairs]))
    print(describe_machine())
    print(f"features: {len(greys)} realistic-benchmark images at {cfg.side} px; about {n_ours} keypoints each "
          f"(OpenCV ORB: {n_orb}); {cfg.features} features, {cfg.levels} levels x {cfg.scale_factor}")
    print(table(frows, ["features", "ms per image"]))
    print()
    print(f"{args.pairs} pairs of realistic-benchmark images, about {n_desc} descriptors each; "
          "identical matches on every pair and kernel")
    print(table(rows, ["matcher", "ms per pair", "speed-up"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
