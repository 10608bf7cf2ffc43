"""Engine benchmarks on the CPU, each against its baseline in the same run.

1. dense:  N x N similarity into HDF5, dupscope vs the naive numpy pipeline a user would write
           (e @ e.T in float32, map to [0, 1], astype(float16), h5py write): wall time and
           peak RSS, each in a fresh process.
2. kernel: GFLOP/s of the in-memory similarity matrix vs numpy's float32 matmul (OpenBLAS) of
           the same shape, counting only the work each does (dupscope computes each symmetric
           tile once).
3. topk:   top-k alone vs faiss IndexFlatIP exact search of the same k (k + 1 with self).

Usage: python benchmarks/bench_engine.py [--only dense,kernel,topk] [--n 20000] [--d 512]
       [--topk-n 100000] [--topk-d 256] [--k 32]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from _machine import (describe_machine, reexec_without_blas_overrides, run_child,  # noqa: E402
                      table)

CHILD_PRELUDE = """
import resource, sys, time
import numpy as np
n, d = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
e = rng.standard_normal((n, d), dtype=np.float32)
e /= np.linalg.norm(e, axis=1, keepdims=True)
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
"""

NAIVE_DENSE = CHILD_PRELUDE + """
import h5py
path = sys.argv[3]
t = time.perf_counter()
s = e @ e.T
s += 1.0
s *= 0.5
np.clip(s, 0.0, 1.0, out=s)
s16 = s.astype(np.float16)
del s
with h5py.File(path, "w") as f:
    f.create_dataset("similarity", data=s16, chunks=True)
dt = time.perf_counter() - t
print(dict(seconds=dt, peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           base_mb=rss0 / 1024))
"""

DUPSCOPE_DENSE = CHILD_PRELUDE + """
import dupscope
path = sys.argv[3]
t = time.perf_counter()
dupscope.write_similarity(e, path, k=32, dense=True, device="cpu")
dt = time.perf_counter() - t
print(dict(seconds=dt, peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           base_mb=rss0 / 1024))
"""

KERNEL = CHILD_PRELUDE + """
import statistics, dupscope
def best(fn, r=3):
    fn()
    ts = []
    for _ in range(r):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    return statistics.median(ts)
t_np = best(lambda: e @ e.T)
out = np.empty((n, n), np.float16)
t_ds = best(lambda: dupscope.similarity_matrix(e, device="cpu", out=out))
from dupscope.engine import SimilarityJob
t_tiles = best(lambda: SimilarityJob(e, k=0, device="cpu", output="none").start().wait())
tile = 256
b = -(-n // tile)
# Work dupscope does: every tile of the upper triangle once (diagonal tiles in full).
pairs = sum(min(tile, n - i * tile) * min(tile, n - j * tile)
            for i in range(b) for j in range(i, b))
print(dict(t_np=t_np, t_ds=t_ds, t_tiles=t_tiles, gf_tiles=2 * pairs * d / t_tiles / 1e9,
           gf_np=2 * n * n * d / t_np / 1e9,
           gf_ds=2 * pairs * d / t_ds / 1e9, simd=dupscope.build_info()["simd_selected"]))
"""

TOPK_FAISS = CHILD_PRELUDE + """
import faiss
k = int(sys.argv[3])
t = time.perf_counter()
index = faiss.IndexFlatIP(d)
index.add(e)
D, I = index.search(e, k + 1)
dt = time.perf_counter() - t
np.save(sys.argv[4], I[:, 1:])
print(dict(seconds=dt, threads=faiss.omp_get_max_threads()))
"""

TOPK_DUPSCOPE = CHILD_PRELUDE + """
from dupscope.engine import SimilarityJob
k, precision = int(sys.argv[3]), sys.argv[5]
t = time.perf_counter()
job = SimilarityJob(e, k=k, device="cpu", output="none", precision=precision)
job.start().wait()
I, S = job.topk()
dt = time.perf_counter() - t
np.save(sys.argv[4], I)
np.save(sys.argv[4] + ".sim.npy", S)
print(dict(seconds=dt, fallback_rows=job.fallback_rows if precision != "fp32" else 0,
           float32_tiles=job.float32_tiles, tiles=job.tiles_total))
"""


def bench_dense(n: int, d: int) -> None:
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        naive = run_child(NAIVE_DENSE, str(n), str(d), os.path.join(tmp, "naive.h5"))
        ours = run_child(DUPSCOPE_DENSE, str(n), str(d), os.path.join(tmp, "ours.h5"))
    rows = [
        ["naive numpy + h5py", f"{naive['seconds']:.2f}", f"{naive['peak_mb']:.0f}", "1.00", "1.00"],
        ["dupscope.write_similarity", f"{ours['seconds']:.2f}", f"{ours['peak_mb']:.0f}",
         f"{ours['seconds'] / naive['seconds']:.2f}", f"{ours['peak_mb'] / naive['peak_mb']:.2f}"],
    ]
    print(f"\n## Dense N x N to HDF5 (N={n}, D={d}); embeddings alone: "
          f"{naive['base_mb']:.0f} MB RSS at start")
    print(table(rows, ["pipeline", "wall s", "peak RSS MB", "time ratio", "memory ratio"]))
    print("targets: time ratio <= 0.5, memory ratio <= 0.25")


def bench_kernel(n: int, d: int) -> None:
    r = run_child(KERNEL, str(n), str(d))
    rows = [
        ["numpy float32 e @ e.T (full matrix)", f"{r['t_np']:.2f}", f"{r['gf_np']:.1f}", "1.00"],
        [f"dupscope similarity_matrix ({r['simd']}, fp16 out)", f"{r['t_ds']:.2f}",
         f"{r['gf_ds']:.1f}", f"{r['gf_ds'] / r['gf_np']:.2f}"],
        [f"dupscope tiles alone ({r['simd']}, [0,1] map, no output)", f"{r['t_tiles']:.2f}",
         f"{r['gf_tiles']:.1f}", f"{r['gf_tiles'] / r['gf_np']:.2f}"],
    ]
    print(f"\n## Kernel throughput (N={n}, D={d}), GFLOP/s of the work each does")
    print(table(rows, ["kernel", "median s", "GFLOP/s", "ratio"]))
    print("target: GFLOP/s ratio >= 0.9")


def bench_topk(n: int, d: int, k: int, repeat: int = 1, methods: str = "") -> None:
    """Each method in a fresh process; with ``repeat`` > 1 the methods take turns, ``repeat``
    rounds, and the table shows each method's median time, the median over the rounds of its
    speed against fp32 in the same round, and the ratio of the best times (the shared VMs we
    measure on drift by tens of percent within minutes, so only runs side by side compare).
    ``methods``: comma-separated precisions besides fp32 (default: every bf16 and int8 hardware
    kernel here)."""
    import statistics

    import numpy as np

    import dupscope

    lowp = [p for p in ("bf16-avx512", "bf16-amx", "int8-vnni", "int8-amx")
            if p in dupscope.build_info().get("lowp_kernels", [])]
    if methods:
        lowp = [p for p in methods.split(",") if p and p != "fp32"]
    with tempfile.TemporaryDirectory() as tmp:
        fi = os.path.join(tmp, "faiss.npy")
        try:  # once: the baseline of the "vs faiss" column
            fa = run_child(TOPK_FAISS, str(n), str(d), str(k), fi)
        except RuntimeError as exc:
            print(f"\n## Top-k: faiss unavailable ({exc.args[0].splitlines()[-1]})")
            fa = None
        runs, times = {}, {}
        for turn in range(max(1, repeat)):
            for precision in ["fp32"] + lowp:
                out = os.path.join(tmp, f"{precision}.npy")
                r = run_child(TOPK_DUPSCOPE, str(n), str(d), str(k), out, precision)
                r["index"] = np.load(out)
                r["sim"] = np.load(out + ".sim.npy")
                runs.setdefault(precision, r)
                times.setdefault(precision, []).append(r["seconds"])
                print(f"turn {turn + 1}: {precision} {r['seconds']:.2f} s", file=sys.stderr, flush=True)
        for name, ts in times.items():
            runs[name]["seconds"] = statistics.median(ts)
        agree = ""
        if fa is not None:
            a = np.load(fi)
            agree = f"{np.mean(a[:, 0] == runs['fp32']['index'][:, 0]) * 100:.2f}% same nearest neighbour as faiss"
    print(f"\n## Top-k alone (N={n}, D={d}, k={k}, random unit vectors) {agree}")
    rows = []
    base = runs["fp32"]
    if fa is not None:
        rows.append(["faiss IndexFlatIP", f"{fa['seconds']:.2f}", f"{n / fa['seconds']:.0f}", "1.00", "", "", ""])
    for precision, r in runs.items():
        same = (np.array_equal(r["index"], base["index"])
                and np.array_equal(r["sim"].view(np.uint16), base["sim"].view(np.uint16)))
        paired = [f / t for f, t in zip(times["fp32"], times[precision])]
        rows.append([f"dupscope.topk ({precision})", f"{r['seconds']:.2f}", f"{n / r['seconds']:.0f}",
                     f"{fa['seconds'] / r['seconds']:.2f}" if fa else "-",
                     f"{statistics.median(paired):.2f}",
                     f"{min(times['fp32']) / min(times[precision]):.2f}",
                     f"{'same lists' if same else 'DIFFERENT lists'}; "
                     + (f"{r['float32_tiles']} of {r['tiles']} tiles computed again in float32"
                        if precision.startswith("int8") else f"{r['fallback_rows']} rows searched again")])
    print(table(rows, ["method", "wall s (median)", "queries/s", "vs faiss", "vs fp32 (median of rounds)",
                       "vs fp32 (best times)", "lists"]))
    if repeat > 1:
        print("each run, in turn order: " + (f"faiss {fa['seconds']:.2f}; " if fa else "") + "; ".join(
            f"{name} " + ", ".join(f"{t:.2f}" for t in ts) for name, ts in times.items()))
    print("targets: fp32 >= 1.5x faiss; bf16 >= 1.8x fp32 with the same lists")


def main() -> None:
    reexec_without_blas_overrides()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="dense,kernel,topk")
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--topk-n", type=int, default=100000)
    ap.add_argument("--topk-d", type=int, default=256)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=1,
                    help="top-k: rounds of turns (each method once per round); the table shows medians")
    ap.add_argument("--methods", default="", help="top-k: precisions besides fp32, comma-separated "
                    "(default: every bf16 and int8 hardware kernel this CPU runs)")
    a = ap.parse_args()
    print(describe_machine())
    parts = a.only.split(",")
    if "dense" in parts:
        bench_dense(a.n, a.d)
    if "kernel" in parts:
        bench_kernel(a.n, a.d)
    if "topk" in parts:
        bench_topk(a.topk_n, a.topk_d, a.k, a.repeat, a.methods)


if __name__ == "__main__":
    main()
