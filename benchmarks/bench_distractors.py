"""Accuracy with many look-alike distractors: a harder companion to bench_accuracy.py.

bench_accuracy.py gives every picture 17 copies, so nearly every image has duplicates. Real
collections are mostly unique images with a few duplicates, and unique images that merely look
alike are what makes a threshold hard to set. This script builds such a set from the accuracy
benchmark's data set (run bench_accuracy.py first, same ``--seed``):

- each original with 2 of its copies (drawn at random): the true groups;
- ``--distractors`` further astronomy photos from Debian stellarium-data that are not among the
  benchmark's originals, as they ship (no copies): globular clusters, open clusters, planetary
  nebulae that look much alike but are different objects.

It runs dupscope's built-in models through ``compute_similarity`` and ``evaluate``, and pHash,
and prints AP, recall at precision 0.95, best F1, and precision/recall at the threshold
``dupscope report`` would suggest (:func:`dupscope.threshold.suggest_threshold`).

Usage::

    python benchmarks/bench_distractors.py [--seed 0] [--distractors 600]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _machine import cpu_model, reexec_without_blas_overrides, table  # noqa: E402
import bench_accuracy as acc  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def build(data: Path, seed: int, n_distractors: int, out: Path) -> tuple[list[str], list[list[str]]]:
    folder = data / f"accuracy-v{acc.DATASET_VERSION}-n160-s{seed}"
    if not (folder / "manifest.json").exists():
        raise SystemExit(f"{folder} is missing: run python benchmarks/bench_accuracy.py --seed {seed} first")
    manifest = json.loads((folder / "manifest.json").read_text())
    groups = json.loads((folder / "groups.json").read_text())["groups"]
    rng = random.Random(seed)
    paths, truth = [], []
    for g in groups:
        pick = [str(folder / p) for p in [g[0]] + rng.sample(g[1:], 2)]
        paths += pick
        truth.append(pick)
    used = {os.path.basename(v) for v in manifest["origins"].values()}
    removed = {name for pair in manifest.get("removed", []) for name in pair[:2]}
    pool = [p for p in acc.find_sources(data)["stellarium"] if p.name not in used and p.name not in removed]
    rng.shuffle(pool)
    paths += [str(p) for p in pool[:n_distractors]]
    out.mkdir(parents=True, exist_ok=True)
    (out / "images.txt").write_text("\n".join(paths) + "\n")
    (out / "groups.json").write_text(json.dumps({"groups": truth}))
    return paths, truth


def main() -> int:
    reexec_without_blas_overrides()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT / "bench-data"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--distractors", type=int, default=600)
    ap.add_argument("--models", default="dupscope-v3,efficientnet-lite0")
    args = ap.parse_args()

    from dupscope.evaluate import evaluate, evaluate_scores
    from dupscope.pipeline import compute_similarity
    from dupscope.threshold import nearest_neighbor_similarity, suggest_threshold

    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical cores")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths, truth = build(Path(args.data), args.seed, args.distractors, tmp)
        n_true = sum(len(g) for g in truth)
        print(f"{len(paths)} images: {len(truth)} pictures x 3 (original + 2 copies) = {n_true}, "
              f"{len(paths) - n_true} distractors")
        for model in args.models.split(","):
            h5 = tmp / f"{model}.h5"
            t = time.perf_counter()
            compute_similarity(tmp / "images.txt", h5, model=model, dense=True, progress=False)
            seconds = time.perf_counter() - t
            r = evaluate(h5, tmp / "groups.json")
            sug = suggest_threshold(nearest_neighbor_similarity(h5))
            at = evaluate(h5, tmp / "groups.json", threshold=sug.threshold)
            rows.append([f"dupscope {model}", f"{r.average_precision:.4f}", f"{r.recall_at_precision:.4f}",
                         f"{r.best_f1:.4f} @ {r.best_f1_threshold:.3f}",
                         f"{sug.threshold:.3f} ({sug.method}): P {at.precision:.3f} R {at.recall:.3f}",
                         f"{seconds:.0f} s"])
        gid = {p: k for k, g in enumerate(truth) for p in g}
        group = np.array([gid.get(p, -1 - i) for i, p in enumerate(paths)])
        iu = np.triu_indices(len(paths), 1)
        same = group[iu[0]] == group[iu[1]]
        t = time.perf_counter()
        ph = acc.phash_similarity(acc.phash_bits(paths))[iu]
        r = evaluate_scores(ph, ph[same], n_images=len(paths), source="phash")
        rows.append(["imagehash pHash", f"{r.average_precision:.4f}", f"{r.recall_at_precision:.4f}",
                     f"{r.best_f1:.4f} @ {r.best_f1_threshold:.3f}", "-", f"{time.perf_counter() - t:.0f} s"])
    print(table(rows, ["method", "AP", "R@P0.95", "best F1", "suggested threshold: precision / recall", "time"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
