"""Accuracy on data shaped like a real collection, score stability and the cost of verification.

The data set (benchmarks/realistic_data.py): every Debian stellarium-data astronomy photo,
wallpaper parts and the scikit-image / scikit-learn sample photos, over 80% of them with no copy,
the rest with 1-2 edited copies; look-alikes and two photos of one object or scene as hard
negatives; the collection's own re-cuts and near-identical pictures marked as junk and left out
of scoring. One run reports, per method, AP and recall at precision 0.95 over all
pairs (a true pair missing from a method's neighbour lists is a miss), recall per transform
family at that threshold, and precision / recall at the threshold ``dupscope report`` suggests:

- dupscope's default on this machine (``dupscope.models.default_model``: ``dupscope-v3-int8``
  on CPUs with VNNI, else ``dupscope-v3``; with verification), the same without verification
  (``--no-verify``), the other of the two networks, and ``efficientnet-lite0``, verified;
- the plain network (cosine of efficientnet-lite0's pooled output over all pairs), pHash
  (imagehash, all pairs), and fastdup 2.54 with its bundled model when its virtual environment
  exists (``bench-data/fastdup-venv``: ``python3 -m venv bench-data/fastdup-venv &&
  bench-data/fastdup-venv/bin/pip install fastdup==2.54``; a benchmark baseline only).

Stability: dupscope's default on a random 25% of the images; of the pairs scoring >= 0.7 in
either run and listed in both, the share that moved by at most 0.03.

Usage::

    bash benchmarks/accuracy_setup.sh
    python3 benchmarks/bench_realistic.py [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _machine import cpu_model, reexec_without_blas_overrides, table  # noqa: E402
import bench_accuracy as acc  # noqa: E402
import realistic_data  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FAMILIES = acc.FAMILIES


class Truth:
    def __init__(self, folder: Path):
        m = json.loads((folder / "manifest.json").read_text())
        self.rows = m["rows"]
        self.n = len(self.rows)
        self.paths = [str(folder / r["path"]) for r in self.rows]
        pos = {r["path"]: i for i, r in enumerate(self.rows)}
        self.group = np.array([r["group"] for r in self.rows])
        self.family = [r["family"] for r in self.rows]
        self.junk = {self.key(pos[x], pos[y]) for x, y in m["junk"]}
        counts = np.bincount(self.group[self.group >= 0])
        self.n_true = int(sum(c * (c - 1) // 2 for c in counts))

    def key(self, i, j):
        return min(i, j) * self.n + max(i, j)

    def score(self, a, b, s, suggested: float | None = None) -> dict:
        """Metrics of a scored pair list (each pair once)."""
        a, b, s = np.asarray(a, np.int64), np.asarray(b, np.int64), np.asarray(s, np.float64)
        keep = ~np.isnan(s) & (a != b)
        keys = np.minimum(a, b) * self.n + np.maximum(a, b)
        keep &= ~np.isin(keys, np.fromiter(self.junk, np.int64, len(self.junk)))
        a, b, s = a[keep], b[keep], s[keep]
        lab = (self.group[a] >= 0) & (self.group[a] == self.group[b])
        order = np.argsort(-s, kind="stable")
        a, b, s, lab = a[order], b[order], s[order], lab[order]
        tp = np.cumsum(lab)
        prec = tp / np.arange(1, len(lab) + 1)
        rec = tp / self.n_true
        ap = float((prec * lab).sum() / self.n_true)
        ok = np.flatnonzero(prec >= 0.95)
        cut = ok.max() if len(ok) else -1
        r95 = float(rec[cut]) if cut >= 0 else 0.0
        thr = float(s[cut]) if cut >= 0 else float("nan")
        fam = {}
        for f in FAMILIES:
            # Original-copy pairs of this family: found when at or above the P0.95 threshold.
            sel = lab & np.array([(self.family[x] == "original") != (self.family[y] == "original") and
                                  f in (self.family[x], self.family[y]) for x, y in zip(a, b)], bool)
            total = sum(1 for i, r in enumerate(self.rows) if r["family"] == f)
            fam[f] = float((s[sel] >= thr).sum() / total) if total else float("nan")
        out = {"ap": ap, "r95": r95, "family": fam}
        if suggested is not None:
            at = s >= suggested
            out["suggested"] = (suggested, float(lab[at].sum() / max(at.sum(), 1)), float(lab[at].sum() / self.n_true))
        return out


def stability_subset(truth: Truth, rng) -> np.ndarray:
    """Rows of a random quarter of the pictures (each group whole, a quarter of the images with no
    copy), sorted."""
    groups = np.unique(truth.group[truth.group >= 0])
    keep = rng.choice(groups, max(1, len(groups) // 4), replace=False)
    lone = np.flatnonzero(truth.group < 0)
    rows = np.r_[np.flatnonzero(np.isin(truth.group, keep)), rng.choice(lone, len(lone) // 4, replace=False)]
    return np.sort(rows)


DEFAULT_ROW = NO_VERIFY_ROW = ""  # set in main(): they name this machine's default model


def run_dupscope(images: Path, out: Path, **kw) -> tuple[Path, float]:
    from dupscope.pipeline import compute_similarity

    t = time.perf_counter()
    compute_similarity(images, out, dense=False, progress=False, **kw)
    return out, time.perf_counter() - t


def file_pairs(h5: Path):
    from dupscope.pairs import neighbor_pairs
    from dupscope.store import SimilarityFile
    from dupscope.threshold import suggest_threshold

    with SimilarityFile(h5) as f:
        idx, sim = f.neighbors()
    a, b, s = neighbor_pairs(idx, sim)
    return a, b, s.astype(np.float32), suggest_threshold(sim[:, 0].astype(np.float32))


def all_pairs(sim: np.ndarray):
    iu = np.triu_indices(len(sim), 1)
    return iu[0], iu[1], sim[iu].astype(np.float32)


def fastdup_pairs(paths: list[str], tmp: Path, venv: Path):
    """fastdup's similarity.csv (its nearest neighbours with their similarity) as a pair list."""
    script = tmp / "fd.py"
    lst = tmp / "fd_files.txt"
    lst.write_text("\n".join(paths) + "\n")
    script.write_text(
        "import sys, fastdup, pandas as pd\n"
        "fd = fastdup.create(work_dir=sys.argv[2], input_dir=sys.argv[1])\n"
        "fd.run(nearest_neighbors_k=32, threshold=0.0, overwrite=True, verbose=False)\n"
    )
    work = tmp / "fd_work"
    subprocess.run([str(venv / "bin/python"), str(script), str(lst), str(work)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=1800)
    import csv

    feats = list(csv.DictReader(open(work / "atrain_features.dat.csv")))
    where = {os.path.abspath(r["filename"]): int(r["index"]) for r in feats}
    row_of = {where[os.path.abspath(p)]: i for i, p in enumerate(paths) if os.path.abspath(p) in where}
    best: dict[tuple[int, int], float] = {}
    for r in csv.DictReader(open(work / "similarity.csv")):
        i, j = row_of.get(int(r["from"])), row_of.get(int(r["to"]))
        if i is None or j is None or i == j:
            continue
        k = (min(i, j), max(i, j))
        best[k] = max(best.get(k, -1.0), float(r["distance"]))
    a = np.array([k[0] for k in best]), np.array([k[1] for k in best])
    return a[0], a[1], np.array(list(best.values()), np.float32)


def main() -> int:
    global DEFAULT_ROW, NO_VERIFY_ROW
    reexec_without_blas_overrides()
    from dupscope.models import default_model

    default = default_model("cpu")  # the model a run uses here when none is named
    DEFAULT_ROW, NO_VERIFY_ROW = f"dupscope default ({default}, verified)", f"{default} --no-verify"
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT / "bench-data"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cost-repeats", type=int, default=3,
                    help="warm alternating runs with and without verification for the cost ratio")
    args = ap.parse_args()
    data = Path(args.data)
    folder = realistic_data.build(data, args.seed)
    truth = Truth(folder)
    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical cores")
    print(f"{truth.n} images, {truth.n_true} true pairs, {len(truth.junk)} junk pairs left out; "
          f"{(truth.group < 0).sum() + sum(1 for g in set(truth.group[truth.group >= 0]) if (truth.group == g).sum() == 1)} "
          "images with no copy")
    results, times = {}, {}
    default_h5 = None
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        images = folder / "images.txt"
        other = "dupscope-v3-int8" if default == "dupscope-v3" else "dupscope-v3"
        for name, kw in ((DEFAULT_ROW, {}),
                         (NO_VERIFY_ROW, {"verify": False}),
                         (f"{other}, verified", {"model": other}),
                         ("efficientnet-lite0, verified", {"model": "efficientnet-lite0"}),
                         ("efficientnet-lite0 --no-verify", {"model": "efficientnet-lite0", "verify": False})):
            h5, sec = run_dupscope(images, tmp / f"{len(times)}.h5", **kw)
            a, b, s, sug = file_pairs(h5)
            results[name] = truth.score(a, b, s, suggested=sug.threshold)
            results[name]["suggest_method"] = sug.method
            times[name] = sec
            default_h5 = default_h5 or h5
        emb, _ = acc.plain_embeddings(truth.paths)
        e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
        results["plain network (all pairs)"] = truth.score(*all_pairs((1 + e @ e.T) / 2))
        results["imagehash pHash (all pairs)"] = truth.score(*all_pairs(acc.phash_similarity(acc.phash_bits(truth.paths))))
        venv = data / "fastdup-venv"
        if (venv / "bin/python").exists():
            try:
                t = time.perf_counter()
                results["fastdup 2.54 (its bundled model)"] = truth.score(*fastdup_pairs(truth.paths, tmp, venv))
                times["fastdup 2.54 (its bundled model)"] = time.perf_counter() - t
            except Exception as exc:  # noqa: BLE001 - a peer's failure is reported, not fatal
                print(f"fastdup failed: {exc}")
        # Stability: the default on a random 25% of the pictures, each with all its copies (a
        # uniform 25% of the images would keep one copy pair in 16: too few to measure).
        rng = np.random.default_rng(args.seed)
        sub = stability_subset(truth, rng)
        (tmp / "sub.txt").write_text("".join(truth.paths[i] + "\n" for i in sub))
        h5s, _ = run_dupscope(tmp / "sub.txt", tmp / "sub.h5")
        fa, fb, fs, _ = file_pairs(default_h5)
        sa, sb, ss, _ = file_pairs(h5s)
        full = {(int(x), int(y)): float(v) for x, y, v in zip(fa, fb, fs)}
        part = {(int(min(sub[x], sub[y])), int(max(sub[x], sub[y]))): float(v) for x, y, v in zip(sa, sb, ss)}
        inside = set(sub.tolist())
        moved, only_one = [], 0
        for key in set(full) | set(part):
            if key[0] not in inside or key[1] not in inside:
                continue
            v, w = part.get(key), full.get(key)
            if v is None or w is None:
                only_one += max(v or 0.0, w or 0.0) >= 0.7  # listed in one run only
            elif max(v, w) >= 0.7:
                moved.append(abs(v - w))
        moved = np.array(moved)
        # The cost of verification, warm: the table's first run also pays the cold start (model
        # file, page cache), so the ratio comes from alternating runs after it, median of each.
        warm: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(args.cost_repeats):
            for verify in (False, True):
                warm[verify].append(run_dupscope(images, tmp / "cost.h5", verify=verify)[1])
    rows = []
    for name, r in results.items():
        sug = r.get("suggested")
        rows.append([name, f"{r['ap']:.4f}", f"{r['r95']:.4f}",
                     "" if sug is None else f"{sug[0]:.3f} ({r['suggest_method']}): P {sug[1]:.3f} R {sug[2]:.3f}",
                     f"{times[name]:.1f} s" if name in times else ""])
    print(table(rows, ["method", "AP", "recall @ P0.95", "suggested threshold: precision / recall", "phase 1"]))
    print()
    print(table([[name] + [f"{r['family'][f]:.2f}" for f in FAMILIES] for name, r in results.items()],
                ["recall per family at P0.95"] + FAMILIES))
    print()
    print(f"stability ({len(sub)} images: 25% of the pictures with all their copies): {len(moved)} pairs scoring "
          f">= 0.7 listed in both the full run and the subset run; {(moved <= 0.03).mean():.1%} moved by <= 0.03 "
          f"(largest move {moved.max() if len(moved) else 0:.4f}); {only_one} pairs >= 0.7 listed in one run only")
    base = times[NO_VERIFY_ROW]
    print(f"verification cost, the table's runs: {times[DEFAULT_ROW]:.1f} s vs "
          f"{base:.1f} s without ({times[DEFAULT_ROW] / base:.2f}x; the first run is cold)")
    if args.cost_repeats:
        on, off = float(np.median(warm[True])), float(np.median(warm[False]))
        print(f"verification cost, warm ({args.cost_repeats} alternating runs each, median): {on:.2f} s vs "
              f"{off:.2f} s without: {on / off:.2f}x (with: {', '.join(f'{x:.2f}' for x in warm[True])}; "
              f"without: {', '.join(f'{x:.2f}' for x in warm[False])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
