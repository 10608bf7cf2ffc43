"""Which tile edge (and HDF5 chunk edge) is fastest: the measurement behind DEFAULT_TILE.

For each tile size, times top-k alone and dense HDF5 writing on the same data, interleaving the
sizes over several rounds so that a busy machine affects them alike; prints medians.

Usage: python benchmarks/bench_tile_size.py [--n 12000] [--d 512] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from _machine import describe_machine, reexec_without_blas_overrides, table  # noqa: E402


def main() -> None:
    reexec_without_blas_overrides()
    import numpy as np

    import dupscope

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=12000)
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tiles", default="128,192,256,384,512")
    a = ap.parse_args()
    print(describe_machine())
    tiles = [int(t) for t in a.tiles.split(",")]
    e = np.random.default_rng(0).standard_normal((a.n, a.d), dtype=np.float32)
    topk_t = {t: [] for t in tiles}
    dense_t = {t: [] for t in tiles}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(a.rounds):
            for t in tiles:
                s = time.perf_counter()
                dupscope.topk(e, 32, device="cpu", tile=t)
                topk_t[t].append(time.perf_counter() - s)
                path = os.path.join(tmp, f"{t}.h5")
                s = time.perf_counter()
                dupscope.write_similarity(e, path, k=32, tile=t, device="cpu", overwrite=True)
                dense_t[t].append(time.perf_counter() - s)
    flops = a.n * a.n * a.d  # symmetric half of 2 N^2 D
    rows = [[str(t), f"{statistics.median(topk_t[t]):.2f}",
             f"{flops / statistics.median(topk_t[t]) / 1e9:.1f}",
             f"{statistics.median(dense_t[t]):.2f}"] for t in tiles]
    print(f"\n## Tile size (N={a.n}, D={a.d}, k=32, medians of {a.rounds})")
    print(table(rows, ["tile", "topk s", "topk GFLOP/s", "dense HDF5 s"]))


if __name__ == "__main__":
    main()
