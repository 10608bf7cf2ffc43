"""GPU benchmarks, for an H100/H200 or an A100-class card, each against its baseline in one run.

1. kernel: TFLOP/s of dupscope's tensor-core tile kernel (float16 in, float32 accumulate) vs a
   plain cuBLAS float16 GEMM (cublasGemmEx, float32 compute) of the same shape, both on device
   data, timed with CUDA events; plus the largest difference between their outputs. cuBLAS is
   loaded at run time (pip install nvidia-cublas-cu12 or the card's CUDA toolkit).
2. topk:   dupscope.topk(device="cuda") vs dupscope.topk(device="cpu") on the same data, and vs
           torch (float16 ``mm`` of row blocks, then ``torch.topk``) where torch sees a GPU; the
           lists are compared with the CPU's on the rows both computed.
3. dense:  write_similarity(device="cuda") to HDF5 vs the disk's own sequential write speed
           (the same number of bytes written with os.write and fsync).

Usage: python benchmarks/bench_gpu.py [--n 50000] [--d 512] [--k 32] [--tmp DIR]
Prints a note and exits 0 when no GPU is usable.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from _machine import describe_machine, table  # noqa: E402


def disk_write_speed(folder: str, nbytes: int) -> float:
    """Seconds to write nbytes sequentially (1 MiB blocks) and fsync, in folder."""
    block = os.urandom(1 << 20)
    path = os.path.join(folder, "disk_speed.bin")
    t = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        left = nbytes
        while left > 0:
            left -= os.write(fd, block[: min(len(block), left)])
        os.fsync(fd)
    finally:
        os.close(fd)
        os.unlink(path)
    return time.perf_counter() - t


def torch_topk(e, k: int, block: int = 8192, device: str = "cuda"):
    """Seconds for torch's exact top-k on the GPU (normalised float16 rows, ``mm`` per row block,
    self excluded) and its lists; (None, None) without a CUDA torch."""
    try:
        import torch
    except ImportError:
        return None, None
    if device == "cuda" and not torch.cuda.is_available():
        return None, None
    import numpy as np

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    x = torch.from_numpy(e).to(device)
    sync()
    t = time.perf_counter()
    x = torch.nn.functional.normalize(x, dim=1).half()
    out = []
    for i in range(0, len(x), block):
        s = x[i:i + block] @ x.T
        s[torch.arange(len(s), device=s.device), torch.arange(i, i + len(s), device=s.device)] = -2
        out.append(torch.topk(s, k, dim=1).indices)
    idx = torch.cat(out)
    sync()
    return time.perf_counter() - t, idx.cpu().numpy().astype(np.int32)


def main() -> None:
    import numpy as np

    import dupscope
    from dupscope import _core

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50000)
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--tmp", default=None, help="folder for the dense HDF5 file")
    a = ap.parse_args()
    print(describe_machine())
    ok, why = _core.cuda_available()
    if not ok:
        print(f"\nno GPU benchmark: {why}")
        return

    rows = []
    for m, n, d in [(4096, 4096, 512), (8192, 8192, 512), (8192, 8192, 1280), (16384, 16384, 256)]:
        r = _core.cuda_benchmark(m, n, d, 20)
        cub = r["tflops_cublas"]
        rows.append([f"{m}x{n}x{d}", f"{r['tflops_ours']:.1f}",
                     f"{cub:.1f}" if r["ms_cublas"] > 0 else "n/a",
                     f"{r['tflops_ours'] / cub:.2f}" if r["ms_cublas"] > 0 else "-",
                     f"{r['max_abs_diff']:.1e}" if r["ms_cublas"] > 0 else "-"])
    print(f"\n## Tile kernel vs cuBLAS fp16 GEMM on {r['device']}")
    print(table(rows, ["m x n x d", "ours TFLOP/s", "cuBLAS TFLOP/s", "ratio", "max |diff|"]))
    print("target: ratio >= 0.7")

    rng = np.random.default_rng(0)
    e = rng.standard_normal((a.n, a.d), dtype=np.float32)
    t = time.perf_counter()
    gi, _ = dupscope.topk(e, a.k, device="cuda")
    t_gpu = time.perf_counter() - t
    n_cpu = min(a.n, 20000)
    t = time.perf_counter()
    dupscope.topk(e[:n_cpu], a.k, device="cpu")
    t_cpu = (time.perf_counter() - t) * (a.n / n_cpu) ** 2  # quadratic work, scaled
    rows = [["dupscope cuda (device filter, candidates only over PCIe)", f"{t_gpu:.2f}", f"{a.n / t_gpu:.0f}"],
            [f"dupscope cpu (measured at N={n_cpu}, scaled by N^2)", f"{t_cpu:.2f}", f"{a.n / t_cpu:.0f}"]]
    t_torch, ti = torch_topk(e, a.k)
    if t_torch is not None:
        rows.append(["torch float16 mm + topk (row blocks of 8192)", f"{t_torch:.2f}", f"{a.n / t_torch:.0f}"])
    print(f"\n## Top-k (N={a.n}, D={a.d}, k={a.k})")
    print(table(rows, ["method", "seconds", "queries/s"]))
    # Agreement on the first rows: the CPU's float32 lists against the GPU's float16 ones.
    m = min(2000, a.n)
    ci, _ = dupscope.topk(e, a.k, device="cpu") if a.n <= 50000 else (None, None)
    if ci is not None:
        same = np.mean([len(set(gi[i]) & set(ci[i])) / a.k for i in range(m)])
        print(f"cuda lists vs cpu lists (first {m} rows): {same:.2%} of entries in common (float16 inputs on the GPU)")
    if ti is not None:
        same = np.mean([len(set(gi[i]) & set(ti[i])) / a.k for i in range(m)])
        print(f"cuda lists vs torch lists (first {m} rows): {same:.2%} of entries in common")

    with tempfile.TemporaryDirectory(dir=a.tmp) as tmp:
        n_dense = min(a.n, 40000)
        path = os.path.join(tmp, "sim.h5")
        t = time.perf_counter()
        dupscope.write_similarity(e[:n_dense], path, k=a.k, device="cuda")
        t_dense = time.perf_counter() - t
        nbytes = os.path.getsize(path)
        os.unlink(path)
        t_disk = disk_write_speed(tmp, nbytes)
    print(f"\n## Dense HDF5 writing (N={n_dense}, {nbytes / 1e9:.2f} GB)")
    print(table([["write_similarity(device='cuda')", f"{t_dense:.2f}", f"{nbytes / t_dense / 1e9:.2f}"],
                 ["disk sequential write + fsync", f"{t_disk:.2f}", f"{nbytes / t_disk / 1e9:.2f}"]],
                ["what", "seconds", "GB/s"]))


if __name__ == "__main__":
    main()
