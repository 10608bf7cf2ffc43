"""Fit the pair score's coefficients (dupscope.scoring.COEFFICIENTS) and show how they do.

The score is ``sigmoid(b0 + b1 log(1 + inliers) + b2 sqrt(coverage) + b3 cos)`` (see
dupscope/scoring.py). This script:

1. runs dupscope-v3's phase-1 steps (embedding, the shipped fusion, top-32 neighbours, the
   candidate bar, the geometric check) on the accuracy benchmark's seed-0 images
   (bench_accuracy.py's data set: every picture with 17 copies, astronomy look-alikes, and copies
   of *different* pictures that carry the same watermark text) and collects, per candidate pair,
   the raw head cosines, the engine's similarity, the inliers, the coverage and whether the two
   images are copies of one picture;
2. fits a logistic regression to those pairs (classes weighted equally, a small ridge);
3. reports AP and recall at precision 0.95 of the fitted score on the fit's own pairs and on the
   held-out realistic benchmark (realistic_data.py, seed 0), which the fit never sees.

The per-pair evidence is cached in ``bench-data/fit-pairs-<name>.npz`` (delete it after
changing the verifier). Usage:

    python3 benchmarks/fit_pair_score.py [--data bench-data]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_model  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def collect(paths: list[str], group: np.ndarray, cache: Path) -> dict:
    """Candidate pairs of dupscope-v3 on ``paths`` with their evidence and labels."""
    if cache.exists():
        return dict(np.load(cache))
    from dupscope.embed import embed_images
    from dupscope.engine import topk
    from dupscope.models import get_model
    from dupscope.pairs import neighbor_pairs
    from dupscope.fusion import fuse_embeddings
    from dupscope.scoring import candidate_bar
    from dupscope.verify import VerifyConfig, verify_pairs

    spec = get_model("dupscope-v3")
    t = time.perf_counter()
    res = embed_images(paths, spec, dtype="float16")
    fused = fuse_embeddings(res.embeddings, res.ok, spec.fusion).embeddings
    index, sim = topk(fused, 32, "cpu", valid=res.ok)
    a, b, s = neighbor_pairs(index, sim)
    keep = s.astype(np.float32) >= candidate_bar("dupscope-v3")[0]
    a, b = a[keep].astype(np.int64), b[keep].astype(np.int64)
    ev = verify_pairs(paths, a, b, VerifyConfig())
    d0 = spec.fusion.branches[0].dim

    def cos(block):
        x = block.astype(np.float32)
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        return (x[a] * x[b]).sum(1)

    out = {"a": a, "b": b, "cos": cos(res.embeddings[:, :d0]), "cos_second": cos(res.embeddings[:, d0:]),
           "engine": s[keep].astype(np.float32), "inliers": ev.inliers, "coverage": ev.coverage,
           "mirrored": ev.mirrored, "label": (group[a] >= 0) & (group[a] == group[b])}
    np.savez(cache, **out)
    print(f"  {len(paths)} images, {len(a)} candidate pairs ({int(out['label'].sum())} true) in "
          f"{time.perf_counter() - t:.0f} s")
    return out


def design(d: dict) -> np.ndarray:
    return np.stack([np.ones(len(d["cos"])), np.log1p(np.maximum(d["inliers"], 0)),
                     np.sqrt(np.clip(d["coverage"], 0, 1)), d["cos"].astype(np.float64)], 1)


def fit_logistic(x: np.ndarray, y: np.ndarray, ridge: float = 1e-2) -> np.ndarray:
    """Newton's method on the class-balanced logistic loss (the intercept not penalised)."""
    w = np.where(y, 0.5 / max(y.sum(), 1), 0.5 / max((~y).sum(), 1)) * len(y)
    beta = np.zeros(x.shape[1])
    pen = ridge * np.r_[0.0, np.ones(x.shape[1] - 1)]
    for _ in range(100):
        p = 1 / (1 + np.exp(-(x @ beta)))
        grad = x.T @ (w * (p - y)) + pen * beta
        hess = (x * (w * p * (1 - p))[:, None]).T @ x + np.diag(pen)
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.abs(step).max() < 1e-10:
            break
    return beta


def ap_r95(score: np.ndarray, label: np.ndarray, n_true: int) -> tuple[float, float]:
    order = np.argsort(-score, kind="stable")
    lab = label[order]
    tp = np.cumsum(lab)
    prec = tp / np.arange(1, len(lab) + 1)
    ok = prec >= 0.95
    return float((prec * lab).sum() / n_true), float(tp[ok].max() / n_true) if ok.any() else 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT / "bench-data"))
    args = ap.parse_args()
    data = Path(args.data)
    print(f"CPU: {cpu_model()}")
    import realistic_data

    acc_folder = data / "accuracy-v3-n160-s0"
    if not (acc_folder / "manifest.json").exists():
        print(f"{acc_folder} is missing: run benchmarks/bench_accuracy.py --seed 0 once first")
        return 1
    rows = json.loads((acc_folder / "manifest.json").read_text())["rows"]
    acc = collect([str(acc_folder / r["path"]) for r in rows], np.array([r["group"] for r in rows]),
                  data / "fit-pairs-accuracy-s0.npz")
    groups = np.bincount(np.array([r["group"] for r in rows]))
    acc_true = int(sum(c * (c - 1) // 2 for c in groups))

    real_folder = realistic_data.build(data, 0)
    m = json.loads((real_folder / "manifest.json").read_text())
    rrows = m["rows"]
    rgroup = np.array([r["group"] for r in rrows])
    real = collect([str(real_folder / r["path"]) for r in rrows], rgroup, data / "fit-pairs-realistic-s0.npz")
    pos = {r["path"]: i for i, r in enumerate(rrows)}
    junk = {(min(pos[x], pos[y]), max(pos[x], pos[y])) for x, y in m["junk"]}
    keep = np.array([(int(x), int(y)) not in junk for x, y in zip(real["a"], real["b"])])
    real = {k: v[keep] for k, v in real.items()}
    counts = np.bincount(rgroup[rgroup >= 0])
    real_true = int(sum(c * (c - 1) // 2 for c in counts))

    beta = fit_logistic(design(acc), acc["label"].astype(bool))
    print("COEFFICIENTS = (" + ", ".join(f"{v:.3f}" for v in beta) + ")")
    for name, d, n_true in (("accuracy seed 0 (fit)", acc, acc_true), ("realistic seed 0 (held out)", real, real_true)):
        s = design(d) @ beta
        print(f"{name}: {len(s)} candidate pairs, {int(d['label'].sum())} of {n_true} true pairs among them; "
              "AP %.4f, R@P0.95 %.4f" % ap_r95(s, d["label"].astype(bool), n_true))
        neg = np.flatnonzero(~d["label"].astype(bool))
        top = neg[np.argsort(-s[neg])[:5]]
        print("  highest false pairs (score, inliers, coverage, cos): " + "; ".join(
            f"{1 / (1 + np.exp(-s[t])):.3f} {int(d['inliers'][t])} {d['coverage'][t]:.2f} {d['cos'][t]:.2f}" for t in top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
