"""Exact top-k at 100k-1M images in-process and on a local Ray cluster, and what 10M-100M cost.

For each N, synthetic embeddings of the default model's dimension (dupscope-v3's 320 columns;
random normal, seed 0) go through:

- the in-process engine (``dupscope.topk``, every core), and
- the Ray backend's top-k (``dupscope.cluster.topk`` on ``ray.init(num_cpus=C)``: tasks over
  pairs of row blocks, one CPU each, merged per row by the driver).

Each runs in its own process, so that the peak memory (``ru_maxrss``) is its own; Ray's tasks
report their workers' peaks. The lists of both are compared (they must be equal). The table
gives time, Ray's overhead, peak memory per process, and the cost per tile measured in Ray's
tasks; a second table projects, from that measured cost, 10M and 100M images on M machines of C
cores (tiles scale as N^2 / 2; the data each task reads and the driver's memory are stated).

Usage::

    python3 benchmarks/bench_scale.py [--sizes 100000 300000 1000000] [--cpus 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _machine import cpu_model, reexec_without_blas_overrides, table  # noqa: E402

D, K = 320, 32


def embeddings(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    x = np.empty((n, D), np.float32)
    for s in range(0, n, 1 << 16):  # in blocks: no float64 temporary of the whole set
        x[s:s + (1 << 16)] = rng.standard_normal((min(n, s + (1 << 16)) - s, D), dtype=np.float32)
    return x


def child(mode: str, n: int, cpus: int, out: Path) -> None:
    import dupscope

    x = embeddings(n)
    stats: list = []
    t = time.perf_counter()
    if mode == "inprocess":
        index, sim = dupscope.topk(x, K, device="cpu", threads=cpus)
        seconds = time.perf_counter() - t
        extra = {}
    else:
        import ray

        from dupscope import cluster

        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        t = time.perf_counter()
        with cluster.ray_session() as s:
            index, sim = cluster.topk(x, K, session=s, stats=stats)
        seconds = time.perf_counter() - t
        ray.shutdown()
        extra = {"tasks": len(stats), "task_peak": max(r["peak_bytes"] for r in stats),
                 "task_seconds": sum(r["seconds"] for r in stats), "tiles": sum(r["tiles"] for r in stats),
                 "slowest_task": max(r["seconds"] for r in stats)}
    np.save(out.with_suffix(".index.npy"), index)
    np.save(out.with_suffix(".sim.npy"), sim)
    out.write_text(json.dumps({"seconds": seconds, "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                               **extra}))


def run(mode: str, n: int, cpus: int, tmp: Path) -> dict:
    out = tmp / f"{mode}-{n}.json"
    subprocess.run([sys.executable, __file__, "--child", mode, "--n", str(n), "--cpus", str(cpus), "--out", str(out)],
                   check=True)
    r = json.loads(out.read_text())
    r["index"] = np.load(out.with_suffix(".index.npy"))
    r["sim"] = np.load(out.with_suffix(".sim.npy"))
    return r


def gb(x: float) -> str:
    return f"{x / 1e9:.2f}"


def main() -> int:
    reexec_without_blas_overrides()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    ap.add_argument("--cpus", type=int, default=os.cpu_count())
    ap.add_argument("--child", choices=("inprocess", "ray"))
    ap.add_argument("--n", type=int)
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.child:
        child(args.child, args.n, args.cpus, Path(args.out))
        return 0
    import ray

    from dupscope.engine import DEFAULT_TILE

    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical cores; {args.cpus} used; Ray {ray.__version__}; "
          f"D = {D}, k = {K}, tile {DEFAULT_TILE['cpu']}")
    rows, cost = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            local = run("inprocess", n, args.cpus, Path(tmp))
            dist = run("ray", n, args.cpus, Path(tmp))
            same = (np.array_equal(local["index"], dist["index"])
                    and np.array_equal(local["sim"].view(np.uint16), dist["sim"].view(np.uint16)))
            per_tile = dist["task_seconds"] / dist["tiles"]  # CPU-seconds per tile (one CPU per task)
            cost = per_tile
            rows.append([f"{n:,}", f"{local['seconds']:.1f}", f"{dist['seconds']:.1f}",
                         f"{100 * (dist['seconds'] / local['seconds'] - 1):+.1f}%", gb(local["peak"]), gb(dist["peak"]),
                         gb(dist["task_peak"]), str(dist["tasks"]), f"{dist['slowest_task']:.1f}",
                         f"{1e3 * per_tile:.2f}", "yes" if same else "NO"])
            print(table(rows[-1:], HEAD), flush=True)
    print()
    print(table(rows, HEAD))
    tile = DEFAULT_TILE["cpu"]
    print()
    print(f"Projection from the last measured cost, {1e3 * cost:.2f} ms per {tile} x {tile} tile on one core "
          f"(D = {D}): CPU time = tiles x cost; wall = CPU time / (M x C), plus the overhead measured above.")
    from dupscope.cluster import TASK_BYTES

    proj = []
    for n in (10_000_000, 100_000_000):
        b = -(-n // tile)
        tiles = b * (b + 1) // 2
        cpu_h = tiles * cost / 3600
        per_block = TASK_BYTES // (16 * D + 16 * K)
        for m, c in ((1, 64), (10, 64), (100, 64)):
            # As cluster.topk picks them: enough blocks for ~8 tasks per CPU, and small enough
            # that a task stays within TASK_BYTES.
            blocks = max(-(-n // per_block), int(np.ceil(np.sqrt(16 * m * c))))
            tasks = blocks * (blocks + 1) // 2
            read = blocks * n * D * 4  # every task reads two blocks: S(S+1)/2 tasks x 2 x (N/S) rows
            proj.append([f"{n:,}", f"{m} x {c}", f"{cpu_h:,.0f}", f"{cpu_h / (m * c):,.2f}", f"{blocks}",
                         f"{tasks:,}", f"{3600 * cpu_h / tasks / 60:.1f}", f"{read / 1e12:.1f}",
                         gb(n * (D * 4 + K * 8))])
    print(table(proj, ["N", "machines x cores", "CPU-hours", "wall hours", "row blocks", "tasks",
                       "minutes per task", "TB read by tasks", "driver GB (embeddings + lists)"]))
    return 0


HEAD = ["N", "in-process s", "Ray s", "Ray overhead", "in-process peak GB", "Ray driver peak GB",
        "Ray task peak GB", "tasks", "slowest task s", "ms per tile (1 CPU)", "lists equal"]

if __name__ == "__main__":
    sys.exit(main())
