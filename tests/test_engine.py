"""The compiled engine against a float64 numpy reference, on every path this machine has."""

from __future__ import annotations

import os

import numpy as np
import pytest

import dupscope
from dupscope import _core, engine
from seeding import fresh_rng

ERR = 1e-3  # allowed error in [0, 1] similarity units
POISON = np.array([0x7C01], dtype=np.uint16).view(np.float16)[0]  # a signalling-NaN pattern

SIMD_LEVELS = _core.build_info()["simd_supported"]


def reference(e: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """(1 + cos) / 2 in float64, zero rows giving cos 0, diagonal 1, invalid rows/cols NaN."""
    x = e.astype(np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    s = (1.0 + x @ x.T) / 2.0
    np.fill_diagonal(s, 1.0)
    s = np.clip(s, 0.0, 1.0)
    if valid is not None:
        s[~valid, :] = np.nan
        s[:, ~valid] = np.nan
    return s


def reference_topk(s: np.ndarray, k: int, valid: np.ndarray | None = None):
    """Sorted neighbours (self and invalid excluded), ties to the lower index, -1/NaN padded."""
    n = len(s)
    idx = np.full((n, k), -1, np.int64)
    val = np.full((n, k), np.nan)
    for i in range(n):
        if valid is not None and not valid[i]:
            continue
        cand = [j for j in range(n) if j != i and (valid is None or valid[j])]
        order = sorted(cand, key=lambda j: (-s[i, j], j))[:k]
        idx[i, : len(order)] = order
        val[i, : len(order)] = s[i, order]
    return idx, val


def random_embeddings(rng, n, d, dtype=np.float32):
    return rng.standard_normal((n, d)).astype(dtype)


def clustered_embeddings(rng, n, d):
    """Groups of near-copies at several noise levels: neighbour gaps well above the error."""
    centres = rng.standard_normal((max(1, n // 5), d))
    e = centres[rng.integers(0, len(centres), n)]
    noise = rng.uniform(0.05, 1.5, size=(n, 1))
    return (e + noise * rng.standard_normal((n, d))).astype(np.float32)


@pytest.fixture(params=SIMD_LEVELS)
def simd(request, monkeypatch):
    monkeypatch.setenv("DUPSCOPE_SIMD", request.param)
    return request.param


def check_topk(e, idx, sim, s_ref, k, valid=None):
    n = len(e)
    ref_idx, ref_val = reference_topk(s_ref, k, valid)
    assert idx.shape == (n, k) and idx.dtype == np.int32
    assert sim.shape == (n, k) and sim.dtype == np.float16
    # Padding agrees exactly.
    np.testing.assert_array_equal(idx == -1, ref_idx == -1)
    assert np.all(np.isnan(sim[idx == -1]))
    has = idx >= 0
    # Each reported similarity is the true similarity of the reported pair.
    rows = np.nonzero(has)[0]
    true = s_ref[rows, idx[has]]
    assert np.max(np.abs(sim[has].astype(np.float64) - true), initial=0) <= ERR
    # ... and matches the reference's value at the same rank.
    assert np.max(np.abs(sim[has].astype(np.float64) - ref_val[has]), initial=0) <= ERR
    # Indices equal the reference wherever the rank is unambiguous (gaps above the error).
    padded = np.concatenate([np.full((n, 1), np.inf), ref_val, np.full((n, 1), -np.inf)], 1)
    full = np.array([sorted((s_ref[i, j] for j in range(n)
                             if j != i and (valid is None or valid[j])), reverse=True)
                     for i in range(n)], dtype=object)
    checked = 0
    for i in range(n):
        vals = list(full[i]) + [-np.inf]
        for t in range(k):
            if ref_idx[i, t] < 0:
                break
            before = padded[i, t] - vals[t] if t > 0 else np.inf
            after = vals[t] - vals[t + 1]
            if before > 2 * ERR and after > 2 * ERR:
                assert idx[i, t] == ref_idx[i, t], (i, t)
                checked += 1
    return checked


@pytest.mark.parametrize("n", [1, 2, 7, 1000, 1500])
@pytest.mark.parametrize("d", [1, 3, 64, 513])
def test_dense_matches_reference(simd, n, d):
    rng = fresh_rng()
    e = random_embeddings(rng, n, d)
    out = np.full((n, n), POISON, dtype=np.float16)
    got = dupscope.similarity_matrix(e, device="cpu", out=out)
    assert got is out
    ref = reference(e)
    assert not np.isnan(got).any(), "some outputs were never written"
    assert np.max(np.abs(got.astype(np.float64) - ref)) <= ERR
    np.testing.assert_array_equal(got, got.T)
    np.testing.assert_array_equal(np.diag(got), np.ones(n, np.float16))
    assert got.min() >= 0 and got.max() <= 1


@pytest.mark.parametrize("tile", [16, 48, 100, 256])
def test_tile_sizes_agree(simd, tile):
    rng = fresh_rng()
    e = random_embeddings(rng, 333, 37)
    got = dupscope.similarity_matrix(e, device="cpu", tile=tile)
    assert np.max(np.abs(got.astype(np.float64) - reference(e))) <= ERR


@pytest.mark.parametrize("n,d,k", [(1, 5, 3), (2, 3, 4), (7, 64, 32), (1000, 64, 32),
                                   (1500, 513, 10), (300, 1, 5)])
def test_topk_matches_reference(simd, n, d, k):
    rng = fresh_rng()
    e = clustered_embeddings(rng, n, d)
    idx, sim = dupscope.topk(e, k, device="cpu", tile=128)
    check_topk(e, idx, sim, reference(e), k)


def test_topk_checks_many_ranks(simd):
    # On clustered data most ranks are unambiguous, so the index check really bites.
    rng = fresh_rng()
    e = clustered_embeddings(rng, 400, 16)
    idx, sim = dupscope.topk(e, 8, device="cpu", tile=64)
    assert check_topk(e, idx, sim, reference(e), 8) > 400


def test_topk_ties_go_to_lower_index(simd):
    e = np.ones((6, 4), np.float32)
    e[5] = [-1, -1, -1, -1]
    idx, sim = dupscope.topk(e, 5, device="cpu", tile=16)
    np.testing.assert_array_equal(idx[4], [0, 1, 2, 3, 5])
    np.testing.assert_array_equal(idx[0], [1, 2, 3, 4, 5])
    assert sim[4, 0] == 1 and sim[4, 4] == 0


def test_k_larger_than_n_pads():
    e = np.eye(3, dtype=np.float32)
    idx, sim = dupscope.topk(e, 4, device="cpu")
    assert (idx[:, 2:] == -1).all() and np.isnan(sim[:, 2:]).all()
    assert sorted(idx[0, :2]) == [1, 2]


def test_zero_vectors_give_no_nan(simd):
    rng = fresh_rng()
    e = random_embeddings(rng, 50, 8)
    e[[0, 17]] = 0
    s = dupscope.similarity_matrix(e, device="cpu", tile=16)
    assert not np.isnan(s).any()
    assert s[0, 17] == 0.5 and s[0, 0] == 1 and s[17, 3] == 0.5
    idx, sim = dupscope.topk(e, 3, device="cpu")
    assert not np.isnan(sim).any()


def test_float16_input_equals_float32_of_same_values(simd):
    rng = fresh_rng()
    e16 = random_embeddings(rng, 200, 33, np.float16)
    a = dupscope.similarity_matrix(e16, device="cpu")
    b = dupscope.similarity_matrix(e16.astype(np.float32), device="cpu")
    np.testing.assert_array_equal(a, b)


def test_valid_mask_gives_nan_and_excludes_from_topk(simd):
    rng = fresh_rng()
    e = clustered_embeddings(rng, 120, 10)
    valid = np.ones(120, bool)
    valid[[3, 64, 119]] = False
    s = dupscope.similarity_matrix(e, device="cpu", tile=32, valid=valid)
    ref = reference(e, valid)
    np.testing.assert_array_equal(np.isnan(s), np.isnan(ref))
    ok = ~np.isnan(ref)
    assert np.max(np.abs(s[ok].astype(np.float64) - ref[ok])) <= ERR
    idx, sim = dupscope.topk(e, 6, device="cpu", tile=32, valid=valid)
    check_topk(e, idx, sim, reference(e), 6, valid)
    assert (idx[~valid] == -1).all()
    assert not np.isin(idx, [3, 64, 119]).any()


def test_threads_do_not_change_results(simd):
    rng = fresh_rng()
    e = clustered_embeddings(rng, 700, 24)
    a = dupscope.topk(e, 16, device="cpu", tile=64, threads=1)
    b = dupscope.topk(e, 16, device="cpu", tile=64, threads=4)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_simd_levels_agree_with_each_other():
    # Every level against the others, within one float16 step, on the same inputs.
    if len(SIMD_LEVELS) < 2:
        pytest.skip("only one SIMD level on this machine")
    rng = fresh_rng()
    e = rng.integers(-3, 4, size=(97, 40)).astype(np.float32)
    results = []
    import os
    for level in SIMD_LEVELS:
        os.environ["DUPSCOPE_SIMD"] = level
        try:
            results.append(dupscope.similarity_matrix(e, device="cpu", tile=32))
        finally:
            del os.environ["DUPSCOPE_SIMD"]
    for r in results[1:]:
        np.testing.assert_allclose(r.astype(np.float32), results[0].astype(np.float32),
                                   atol=2 ** -11)


def test_unknown_or_unsupported_simd_is_refused(monkeypatch):
    monkeypatch.setenv("DUPSCOPE_SIMD", "sse9")
    with pytest.raises(ValueError, match="unknown SIMD level"):
        dupscope.similarity_matrix(np.ones((2, 2), np.float32), device="cpu")
    if "avx512" not in SIMD_LEVELS:
        monkeypatch.setenv("DUPSCOPE_SIMD", "avx512")
        with pytest.raises(RuntimeError, match="not supported"):
            dupscope.similarity_matrix(np.ones((2, 2), np.float32), device="cpu")


@pytest.mark.parametrize(
    "bad, exc, match",
    [
        (np.ones(5, np.float32), ValueError, "2-D"),
        (np.ones((4, 3), np.float64), TypeError, "astype"),
        (np.ones((4, 3), np.int32), TypeError, "float32 or float16"),
        (np.ones((4, 6), np.float32)[:, ::2], ValueError, "ascontiguousarray"),
        (np.ones((0, 3), np.float32), ValueError, "N == 0"),
        (np.ones((3, 0), np.float32), ValueError, "D == 0"),
        ([[1.0, 2.0]], TypeError, "numpy array"),
    ],
)
def test_bad_input_errors_say_what_to_do(bad, exc, match):
    with pytest.raises(exc, match=match):
        dupscope.similarity_matrix(bad, device="cpu")
    with pytest.raises(exc, match=match):
        dupscope.topk(bad, 3, device="cpu")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_input_names_the_row(value):
    e = np.ones((10, 4), np.float32)
    e[6, 2] = value
    with pytest.raises(ValueError, match="row 6"):
        dupscope.topk(e, 3, device="cpu")


def test_bad_parameters():
    e = np.ones((4, 3), np.float32)
    with pytest.raises(ValueError, match="device"):
        dupscope.topk(e, 2, device="tpu")
    with pytest.raises(ValueError, match="tile"):
        dupscope.topk(e, 2, device="cpu", tile=8)
    with pytest.raises(ValueError, match="k must be"):
        dupscope.topk(e, 0, device="cpu")
    with pytest.raises(ValueError, match="valid"):
        dupscope.topk(e, 2, device="cpu", valid=np.ones(3, bool))


def test_cuda_request_without_gpu_says_why():
    ok, why = _core.cuda_available()
    if ok:
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="no usable GPU was found|built without CUDA"):
        dupscope.topk(np.ones((4, 3), np.float32), 2, device="cuda")
    assert engine.resolve_device("auto") == "cpu"


def test_build_info_reports_build_and_selection():
    info = dupscope.build_info()
    assert info["simd_selected"] in info["simd_supported"]
    assert set(info["simd_supported"]) <= set(info["simd_compiled"].split(","))
    assert "portable" in info["simd_supported"]
    assert isinstance(info["cuda_compiled"], bool) and isinstance(info["cuda_available"], bool)
    assert info["compiler"]


@pytest.mark.gpu
@pytest.mark.parametrize("n,d", [(1, 3), (7, 64), (1000, 513), (1500, 64)])
def test_cuda_matches_reference(n, d):
    rng = fresh_rng()
    e = clustered_embeddings(rng, n, d)
    out = np.full((n, n), POISON, dtype=np.float16)
    got = dupscope.similarity_matrix(e, device="cuda", out=out, tile=256)
    ref = reference(e)
    assert not np.isnan(got).any()
    assert np.max(np.abs(got.astype(np.float64) - ref)) <= ERR
    np.testing.assert_array_equal(got, got.T)
    k = min(8, max(1, n - 1))
    idx, sim = dupscope.topk(e, k, device="cuda", tile=512)
    check_topk(e, idx, sim, ref, k)


@pytest.mark.gpu
@pytest.mark.parametrize("n,d,k", [(1000, 513, 8), (2600, 64, 32)])
def test_cuda_topk_equals_the_cpu_lists_up_to_near_ties(n, d, k):
    """The device filters each tile against the rows' thresholds and sends back only candidates:
    the lists hold the CPU's neighbours wherever their float64 similarities are more than the
    float16 inputs' error apart, with invalid rows too."""
    rng = fresh_rng()
    e = clustered_embeddings(rng, n, d)
    valid = rng.random(n) > 0.05
    gi, _ = dupscope.topk(e, k, device="cuda", valid=valid)
    ci, _ = dupscope.topk(e, k, device="cpu", valid=valid)
    ref = reference(e)
    for i in range(n):
        if not valid[i]:
            assert (gi[i] == -1).all()
            continue
        g, c = np.sort(ref[i, gi[i][gi[i] >= 0]]), np.sort(ref[i, ci[i][ci[i] >= 0]])
        assert len(g) == len(c)
        np.testing.assert_allclose(g, c, atol=2e-3)


@pytest.mark.gpu
@pytest.mark.parametrize("n,d,tile", [(300, 65, 256), (1100, 129, 512)])
def test_cuda_float16_epilogue_matches_the_cpu(n, d, tile, tmp_path):
    """The device maps and converts the dense tiles itself (and filters the same products for the
    top-k): the dense array and the chunked HDF5 file equal the CPU's within the float16 inputs'
    error, with NaN rows and columns exactly where rows are invalid and 1 on the diagonal."""
    import h5py

    rng = fresh_rng()
    e = clustered_embeddings(rng, n, d)
    valid = rng.random(n) > 0.1
    cpu = dupscope.similarity_matrix(e, device="cpu", tile=tile, valid=valid)
    out = np.full((n, n), POISON, dtype=np.float16)
    got = dupscope.similarity_matrix(e, device="cuda", out=out, tile=tile, valid=valid)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(cpu))
    both = ~np.isnan(cpu)
    assert np.max(np.abs(got[both].astype(np.float64) - cpu[both].astype(np.float64))) <= ERR
    assert (np.diag(got)[valid] == 1).all()
    np.testing.assert_array_equal(got.view(np.uint16), got.T.view(np.uint16))
    for dev in ("cpu", "cuda"):
        dupscope.write_similarity(e, tmp_path / f"{dev}.h5", k=8, dense=True, tile=tile, device=dev, valid=valid)
        with h5py.File(tmp_path / f"{dev}.h5") as f:
            dense, idx = f["similarity"][:], f["neighbors/index"][:]
        np.testing.assert_array_equal(np.isnan(dense), np.isnan(cpu))
        assert np.max(np.abs(dense[both].astype(np.float64) - cpu[both].astype(np.float64))) <= ERR
        ref = reference(e, valid)
        for i in np.flatnonzero(valid)[:50]:
            near = np.sort(ref[i, idx[i][idx[i] >= 0]])
            best = np.sort(np.where(valid & (np.arange(n) != i), ref[i], -np.inf))[-len(near):]
            np.testing.assert_allclose(near, best, atol=2e-3)


@pytest.mark.gpu
def test_cuda_kernel_benchmark_runs_and_agrees():
    r = _core.cuda_benchmark(512, 512, 256, 3)
    assert r["tflops_ours"] > 0
    if r["ms_cublas"] > 0:
        assert r["max_abs_diff"] < 1e-2


# ---- pairs of row blocks (the Ray backend's top-k tasks) ------------------------------------

@pytest.mark.parametrize("n,d,k,rows,tile", [(1100, 30, 12, 256, 128), (300, 5, 40, 16, 16), (97, 7, 4, 64, 64)])
def test_pairs_of_row_blocks_merged_equal_one_job(simd, n, d, k, rows, tile):
    """The Ray backend's decomposition: each block alone plus every pair of blocks
    (:func:`dupscope.engine.pair_topk`), merged per row, gives the one-job lists exactly."""
    from dupscope.cluster import row_blocks

    rng = fresh_rng()
    e = clustered_embeddings(rng, n, d)
    valid = rng.random(n) > 0.05
    want = dupscope.topk(e, k, device="cpu", tile=tile, valid=valid)
    blocks = row_blocks(n, -(-n // rows), tile)
    assert blocks[0][0] == 0 and blocks[-1][1] == n and all((b - a) % tile == 0 for a, b in blocks[:-1])
    index = np.full((n, k), -1, np.int32)
    sim = np.full((n, k), np.nan, np.float32)
    for p, (a0, a1) in enumerate(blocks):
        for b0, b1 in blocks[p:]:
            if b0 == a0:
                job = engine.SimilarityJob(e[a0:a1], k=k, tile=tile, device="cpu", valid=valid[a0:a1])
                job.start().wait()
                li, ls = job.topk_values()
                rows_ = np.arange(a0, a1)
            else:
                li, ls = engine.pair_topk(e[a0:a1], e[b0:b1], k, tile=tile, valid=(valid[a0:a1], valid[b0:b1]))
                rows_ = np.r_[np.arange(a0, a1), np.arange(b0, b1)]
            glob = np.where(li >= 0, rows_[np.maximum(li, 0)], -1).astype(np.int32)
            index[rows_], sim[rows_] = engine.merge_topk((index[rows_], sim[rows_]), (glob, ls))
    np.testing.assert_array_equal(index, want[0])
    np.testing.assert_array_equal(sim.astype(np.float16).view(np.uint16), want[1].view(np.uint16))
    check_topk(e, index, sim.astype(np.float16), reference(e, valid), k, valid)


def test_pairs_and_merge_refuse_bad_input():
    e = np.eye(40, 8, dtype=np.float32)
    with pytest.raises(ValueError, match="top-k lists only"):
        engine.SimilarityJob(e, k=3, tile=16, device="cpu", output="chunks", rect=(0, 1, 1, 3))
    with pytest.raises(ValueError, match="multiple of the tile"):
        engine.pair_topk(e[:20], e[20:], 3, tile=16)
    with pytest.raises(ValueError, match="above the diagonal"):
        engine.SimilarityJob(e, k=3, tile=16, device="cpu", rect=(0, 2, 1, 3))
    a = (np.zeros((4, 3), np.int32), np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match="one shape"):
        engine.merge_topk(a, (np.zeros((4, 2), np.int32), np.zeros((4, 2), np.float32)))


# ---- bf16 candidate tiles -------------------------------------------------------------------

BF16_KERNELS = ["bf16-emulated", "bf16-avx512", "bf16-amx"]


def _lowp_kernels():
    """The bf16 kernels this CPU runs, and "bf16" (the fastest of them) where it has one."""
    have = [k for k in BF16_KERNELS if k in dupscope.build_info()["lowp_kernels"]]
    return have + (["bf16"] if len(have) > 1 else [])


def _bf16(x: np.ndarray) -> np.ndarray:
    """float32 -> bf16 -> float64, round to nearest even (the kernels' conversion)."""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    return r.astype(np.uint32).view(np.float32).astype(np.float64)


@pytest.mark.parametrize("kernel", BF16_KERNELS)
@pytest.mark.parametrize("m,n,d", [(1, 1, 1), (13, 37, 33), (12, 32, 64), (25, 70, 320), (7, 3, 1281),
                                   (50, 45, 100), (16, 33, 32), (83, 97, 257)])
def test_bf16_products_against_float64(kernel, m, n, d):
    """The bf16 tile products equal float64 products of the bf16-rounded rows within float32
    summation, and the float32 products of the rows themselves within the stated bound; the
    AVX512_BF16 kernel gives the emulation's bits. The sizes cover the AMX kernel's 32-row and
    16-row blocks, the rows left to the AVX-512 kernel and a depth padded to 32."""
    if kernel not in _lowp_kernels():
        pytest.skip(f"this CPU cannot run {kernel} (the emulation covers the instruction)")
    rng = fresh_rng()
    a = random_embeddings(rng, m, d)
    b = random_embeddings(rng, n, d)
    a /= np.linalg.norm(a, axis=1, keepdims=True)  # the bound is for unit rows, as the engine has
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    got = _core.bf16_products(a, b, kernel)
    assert got.shape == (m, n) and np.isfinite(got).all()
    exact_rounded = _bf16(a) @ _bf16(b).T
    assert np.max(np.abs(got - exact_rounded)) <= 2 * d * 2.0**-24 + 1e-7
    bound = _core.bf16_error_bound(d)
    assert np.max(np.abs(got - a.astype(np.float64) @ b.astype(np.float64).T)) <= bound
    if kernel == "bf16-avx512":
        np.testing.assert_array_equal(got.view(np.uint32), _core.bf16_products(a, b, "bf16-emulated").view(np.uint32))


@pytest.mark.parametrize("m,n,d", [(1, 1, 1), (3, 31, 7), (5, 33, 191), (2, 64, 193), (4, 97, 320), (3, 150, 513)])
def test_one_row_products_have_the_tile_kernels_bits(simd, m, n, d):
    """The bf16 re-rank multiplies one row at a time (row_gemm, without the micro-tile's rows of
    padding). Its float32 products must be the tile kernel's bits, or the re-ranked lists would
    differ from the float32 path's; and both must match float64 within float32 summation. The
    depths cross the kernels' depth blocks (192 and 256), the widths their strips."""
    rng = fresh_rng()
    a = random_embeddings(rng, m, d)
    b = random_embeddings(rng, n, d)
    whole = _core.float32_products(a, b, simd)
    rows = _core.float32_products(a, b, simd, one_row=True)
    np.testing.assert_array_equal(rows.view(np.uint32), whole.view(np.uint32))
    ref = a.astype(np.float64) @ b.astype(np.float64).T
    scale = np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64).T
    assert np.all(np.abs(rows - ref) <= d * 2.0**-23 * scale + 1e-30)


def test_huge_pages_can_be_declined(monkeypatch):
    """DUPSCOPE_HUGE_PAGES=0 (read once per process) stops the request; the lists do not change."""
    import subprocess
    import sys

    code = ("import dupscope, numpy as np; e = np.random.default_rng(0).standard_normal((4500, 300)).astype(np.float32); "
            "i, s = dupscope.topk(e, 4, device='cpu'); print(dupscope.build_info()['huge_pages'], int(i.sum()))")
    out = {}
    for value in ("0", "1"):
        monkeypatch.setenv("DUPSCOPE_HUGE_PAGES", value)
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        out[value] = r.stdout.split()
    assert out["0"][0] == "False" and out["1"][0] == "True"
    assert out["0"][1] == out["1"][1]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_topk_with_buffers_on_huge_pages(precision):
    """Inputs of more than 4 MB live in buffers that ask for 2 MB pages (huge_pages.hpp): the
    lists still match float64 (blocked numpy reference), and bf16 equals float32 where it runs."""
    if precision == "bf16" and "bf16" not in _lowp_kernels():
        pytest.skip("no hardware bf16 kernel here (the emulation would take minutes at this size)")
    rng = fresh_rng()
    n, d, k = 4500, 300, 6  # 5.4 MB of float32 rows
    e = clustered_embeddings(rng, n, d)
    idx, sim = dupscope.topk(e, k, device="cpu", precision=precision)
    x = e.astype(np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    for r0 in range(0, n, 900):
        s = (1.0 + x[r0:r0 + 900] @ x.T) / 2.0
        s[np.arange(len(s)), np.arange(r0, r0 + len(s))] = -np.inf
        order = np.argsort(-s, axis=1, kind="stable")[:, : k + 1]
        top = np.take_along_axis(s, order, 1)
        np.testing.assert_allclose(sim[r0:r0 + 900].astype(np.float64), top[:, :k], atol=ERR)
        above = np.c_[np.full(len(s), np.inf), top[:, :-1]]  # the value one rank better
        clear = np.minimum(above - top, np.c_[top[:, :-1] - top[:, 1:], np.full(len(s), np.inf)])[:, :k] > 2 * ERR
        assert clear.mean() > 0.5
        np.testing.assert_array_equal(idx[r0:r0 + 900][clear], order[:, :k][clear])
    assert dupscope.build_info()["huge_pages"] is (os.environ.get("DUPSCOPE_HUGE_PAGES") != "0")
    if precision == "bf16":
        want = dupscope.topk(e, k, device="cpu")
        np.testing.assert_array_equal(idx, want[0])
        np.testing.assert_array_equal(sim.view(np.uint16), want[1].view(np.uint16))


@pytest.mark.parametrize("rows", ["random", "aligned"])
@pytest.mark.parametrize("d", [7, 64, 320])
def test_bf16_rows_bound_holds_and_is_tighter(rows, d):
    """The bound from the rows' own rounding residuals covers every product between them, also
    for rows whose rounding errors all add up in their products, and is tighter than the general bound for
    random rows."""
    rng = fresh_rng()
    x = random_embeddings(rng, 60, d)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    if rows == "aligned":  # every element rounds down by about half a bf16 step: errors all add up
        x = (np.sign(x) * _bf16(np.abs(x)) * (1 + 0.99 * 2.0**-9)).astype(np.float32)
    bound = _core.bf16_rows_bound(x)
    assert bound <= _core.bf16_error_bound(d)
    got = _core.bf16_products(x, x, "bf16-emulated")
    err = np.max(np.abs(got - x.astype(np.float64) @ x.astype(np.float64).T))
    assert err <= bound
    if rows == "random":
        assert bound < 0.8 * _core.bf16_error_bound(d)
    else:
        assert err > 0.5 * bound  # and close to the truth where the errors add up


@pytest.mark.parametrize("kernel", BF16_KERNELS + ["bf16"])
@pytest.mark.parametrize("tile", [64, 48])
@pytest.mark.parametrize("n,d,k,data", [(600, 40, 10, "random"), (517, 33, 32, "clustered"), (40, 7, 50, "random"),
                                        (300, 64, 5, "ties")])
def test_bf16_topk_lists_equal_the_float32_lists(kernel, tile, n, d, k, data):
    """Candidates from bf16 tiles, re-ranked with the float32 kernel, give the float32 path's
    lists exactly (indices and float16 values), with invalid rows and exact ties; with tiles of
    whole 32-column strips (packed once) and without (packed per tile)."""
    if kernel not in _lowp_kernels():
        pytest.skip(f"this CPU cannot run {kernel} (the emulation covers the instruction)")
    rng = fresh_rng()
    e = clustered_embeddings(rng, n, d) if data == "clustered" else random_embeddings(rng, n, d)
    if data == "ties":
        e[1::3] = e[0::3][: len(e[1::3])]
    valid = rng.random(n) > 0.05
    want = dupscope.topk(e, k, device="cpu", tile=tile, valid=valid)
    got = dupscope.topk(e, k, device="cpu", tile=tile, valid=valid, precision=kernel)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1].view(np.uint16), want[1].view(np.uint16))


def test_bf16_rows_without_a_proof_are_searched_again():
    """With no slack (candidates = k) the bound cannot prove most random rows; those are searched
    again in float32 and the lists still equal the float32 path's."""
    rng = fresh_rng()
    e = random_embeddings(rng, 400, 24)
    want = dupscope.topk(e, 8, device="cpu", tile=64)
    job = engine.SimilarityJob(e, k=8, tile=64, device="cpu", precision="bf16-emulated", candidates=8)
    job.start().wait()
    assert job.fallback_rows > 0
    got = job.topk()
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1].view(np.uint16), want[1].view(np.uint16))
    roomy = engine.SimilarityJob(e, k=8, tile=64, device="cpu", precision="bf16-emulated", candidates=200)
    roomy.start().wait()
    assert roomy.fallback_rows == 0
    np.testing.assert_array_equal(roomy.topk()[0], want[0])


@pytest.mark.parametrize("spare", [3, 6, 12])
def test_bf16_near_misses_that_barely_fit(spare):
    """A few places for near misses: full buffers are compacted as rows' k-th best rises, rows
    whose near misses still do not fit are searched again, and every list equals float32's."""
    rng = fresh_rng()
    e = random_embeddings(rng, 700, 24)
    want = dupscope.topk(e, 8, device="cpu", tile=96)
    job = engine.SimilarityJob(e, k=8, tile=96, device="cpu", precision="bf16-emulated", candidates=8 + spare)
    job.start().wait()
    assert job.fallback_rows < 700
    if spare < 12:  # about 540 and 36 rows of 700 overflow on such data; 12 places hold them all
        assert job.fallback_rows > 0
    got = job.topk()
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1].view(np.uint16), want[1].view(np.uint16))


def test_bf16_refusals():
    e = np.eye(32, 8, dtype=np.float32)
    with pytest.raises(ValueError, match="precision must be"):
        engine.SimilarityJob(e, k=3, device="cpu", precision="int4")
    with pytest.raises(ValueError, match="top-k lists only"):
        engine.SimilarityJob(e, k=3, device="cpu", output="chunks", precision="bf16-emulated")
    with pytest.raises(ValueError, match="rectangle"):
        engine.SimilarityJob(np.ones((40, 8), np.float32), k=3, tile=16, device="cpu", rect=(0, 1, 1, 3),
                             precision="bf16-emulated")
    if "bf16" not in _lowp_kernels():
        with pytest.raises(ValueError, match="AVX512_BF16"):
            engine.SimilarityJob(e, k=3, device="cpu", precision="bf16")
    for kernel in ("bf16-avx512", "bf16-amx"):
        if kernel not in _lowp_kernels():
            with pytest.raises(ValueError, match="AVX512_BF16|AMX"):
                engine.SimilarityJob(e, k=3, device="cpu", precision=kernel)
            with pytest.raises(ValueError, match="cannot run"):
                _core.bf16_products(e, e, kernel)
    with pytest.raises(ValueError, match="kernel must be"):
        _core.bf16_products(e, e, "bf16-fast")
    assert engine.resolve_precision("auto", "cuda") == "fp32"
    assert engine.resolve_precision("auto", "cpu", engine.BF16_MAX_DIM + 1) == "fp32"  # wide rows: no gain


@pytest.mark.parametrize("kernels,vendor,simd,want", [
    (["bf16-emulated", "bf16-avx512", "bf16-amx"], "intel", "avx512", "bf16"),
    (["bf16-emulated", "bf16-avx512"], "intel", "avx512", "fp32"),  # measured slower than float32
    (["bf16-emulated", "bf16-avx512"], "amd", "avx512", "bf16"),
    (["bf16-emulated", "bf16-avx512", "bf16-amx"], "intel", "avx2", "fp32"),  # DUPSCOPE_SIMD=avx2
    (["bf16-emulated"], "amd", "avx512", "fp32"),
])
def test_auto_precision_picks_bf16_only_where_it_was_measured_faster(monkeypatch, kernels, vendor, simd, want):
    """The "auto" rule, given what the CPU reports (the hardware facts are replaced; the rule is
    what is tested)."""
    real = _core.build_info()
    monkeypatch.setattr(engine._core, "build_info",
                        lambda: {**real, "lowp_kernels": kernels, "simd_selected": simd, "cpu_vendor": vendor})
    assert engine.resolve_precision("auto", "cpu", 320) == want
    assert engine.resolve_precision("auto", "cpu", engine.BF16_MAX_DIM + 1) == "fp32"


# ---- int8 tiles ---------------------------------------------------------------------------------

INT8_KERNELS = ["int8-emulated", "int8-vnni", "int8-amx"]


def _int8_kernels():
    """The int8 kernels this CPU runs, and "int8" (the fastest of them) where it has one."""
    have = [k for k in INT8_KERNELS if k in dupscope.build_info()["lowp_kernels"]]
    return have + (["int8"] if len(have) > 1 else [])


def _int8_reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The int8 tiles' products restated in numpy: per-row scale max|x| / 127 (float32), q the
    nearest integer of x / s, the exact integer dot product, then float32(dot) * s_a * s_b in
    float32, left to right."""
    def quantise(x):
        s = np.abs(x).max(axis=1).astype(np.float32) / np.float32(127)
        q = np.rint(x.astype(np.float64) / np.where(s > 0, s, 1).astype(np.float64)[:, None])
        return np.clip(q, -127, 127).astype(np.int64), s
    qa, sa = quantise(a)
    qb, sb = quantise(b)
    dot = (qa @ qb.T).astype(np.float32)
    return (dot * sa[:, None]) * sb[None, :]


@pytest.mark.parametrize("kernel", INT8_KERNELS)
@pytest.mark.parametrize("m,n,d", [(1, 1, 1), (13, 37, 33), (12, 32, 64), (17, 70, 320), (7, 3, 1024),
                                   (50, 45, 100), (16, 33, 65), (83, 97, 257)])
def test_int8_products_against_float64(kernel, m, n, d):
    """Every int8 kernel gives the numpy restatement's bits (its sums are exact), and the products
    are within the rows' stated bound of float64 products of the rows themselves. The sizes cover
    the AMX kernel's 32- and 16-row blocks, the rows left to the VNNI kernel, depths padded to 4
    and to 64, and the widest row taken; the output is poisoned with NaN first."""
    if kernel not in _int8_kernels():
        pytest.skip(f"this CPU cannot run {kernel} (tests/test_kernel_emulated.py covers its logic)")
    rng = fresh_rng()
    a = random_embeddings(rng, m, d)
    b = random_embeddings(rng, n, d)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    got = _core.int8_products(a, b, kernel)
    assert got.shape == (m, n) and np.isfinite(got).all()
    np.testing.assert_array_equal(got.view(np.uint32), _int8_reference(a, b).view(np.uint32))
    bound = _core.int8_rows_bound(np.vstack([a, b]))
    err = np.max(np.abs(got - a.astype(np.float64) @ b.astype(np.float64).T))
    assert err <= bound


@pytest.mark.parametrize("rows", ["random", "aligned"])
@pytest.mark.parametrize("d", [7, 64, 320])
def test_int8_rows_bound_holds_and_is_not_loose_where_errors_add_up(rows, d):
    """The bound covers every product between the rows; for rows whose rounding errors all point
    the way of the row (each element half a step from its integer, with its sign), a row's product
    with itself comes close to it."""
    rng = fresh_rng()
    x = random_embeddings(rng, 60, d)
    if rows == "aligned":
        q = rng.integers(20, 120, size=(60, d)) * rng.choice([-1, 1], size=(60, d))
        q[:, 0] = 127  # the largest element sets the scale: exactly 127 steps
        x = ((q + 0.49 * np.sign(q)) * (q[:, :1] != 0)).astype(np.float32)
        x[:, 0] = 127
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    bound = _core.int8_rows_bound(x)
    got = _core.int8_products(x, x, "int8-emulated")
    err = np.abs(got - x.astype(np.float64) @ x.astype(np.float64).T)
    assert err.max() <= bound
    if rows == "aligned" and d > 7:
        assert np.diag(err).max() > 0.5 * bound


def _int8_job(e, k, tile, precision, **kw):
    job = engine.SimilarityJob(e, k=k, tile=tile, device="cpu", output="none", precision=precision, **kw)
    job.start().wait()
    return job


@pytest.mark.parametrize("kernel", INT8_KERNELS + ["int8"])
@pytest.mark.parametrize("tile", [64, 48])
@pytest.mark.parametrize("n,d,k,data", [(2000, 40, 4, "clustered"), (517, 33, 32, "clustered"), (40, 7, 50, "random"),
                                        (300, 64, 5, "ties"), (900, 130, 8, "random")])
def test_int8_topk_lists_equal_the_float32_lists(kernel, tile, n, d, k, data):
    """int8 tiles filter, the float32 kernel decides: the lists are the float32 path's exactly
    (indices and float16 values), with invalid rows and exact ties; with tiles of whole 32-column
    strips (packed once) and without (packed per tile)."""
    if kernel not in _int8_kernels():
        pytest.skip(f"this CPU cannot run {kernel} (tests/test_kernel_emulated.py covers its logic)")
    rng = fresh_rng()
    e = clustered_embeddings(rng, n, d) if data == "clustered" else random_embeddings(rng, n, d)
    if data == "ties":
        e[1::3] = e[0::3][: len(e[1::3])]
    valid = rng.random(n) > 0.05
    want = dupscope.topk(e, k, device="cpu", tile=tile, valid=valid)
    job = _int8_job(e, k, tile, kernel, valid=valid)
    got = job.topk()
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1].view(np.uint16), want[1].view(np.uint16))
    assert 0 <= job.float32_tiles <= job.tiles_total
    np.testing.assert_array_equal(job.topk_values()[1], _int8_job(e, k, tile, "fp32", valid=valid).topk_values()[1])


def test_int8_tiles_take_both_ways_and_the_filter_matters():
    """On a larger set some tiles go whole to float32 (while the lists fill) and the others are
    re-scored value by value; the lists still equal float32's. The int8 products alone would
    pick other neighbours on these rows, so the float32 step is what makes them equal."""
    rng = fresh_rng()
    e = clustered_embeddings(rng, 3000, 48)
    want = dupscope.topk(e, 6, device="cpu", tile=64)
    job = _int8_job(e, 6, 64, "int8-emulated")
    assert 0 < job.float32_tiles < job.tiles_total
    got = job.topk()
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1].view(np.uint16), want[1].view(np.uint16))
    x = e / np.linalg.norm(e, axis=1, keepdims=True)
    approx = _core.int8_products(x, x, "int8-emulated")
    np.fill_diagonal(approx, -np.inf)
    order = np.argsort(-approx, axis=1, kind="stable")[:, :6]
    assert (order != want[0]).any(axis=1).mean() > 0.05


def test_int8_rectangles_of_tiles_equal_float32():
    """A rectangle of tiles (a distributed run's task) with int8 tiles gives float32's lists: no
    row is ever searched again, so rectangles are allowed."""
    rng = fresh_rng()
    e = random_embeddings(rng, 200, 24)
    kw = dict(k=5, tile=32, device="cpu", output="none", rect=(0, 2, 3, 7))
    want = engine.SimilarityJob(e, **kw)
    want.start().wait()
    got = engine.SimilarityJob(e, precision="int8-emulated", **kw)
    got.start().wait()
    np.testing.assert_array_equal(got.topk_values()[0], want.topk_values()[0])
    np.testing.assert_array_equal(got.topk_values()[1], want.topk_values()[1])


def test_int8_refusals():
    e = np.eye(32, 8, dtype=np.float32)
    with pytest.raises(ValueError, match="top-k lists only"):
        engine.SimilarityJob(e, k=3, device="cpu", output="chunks", precision="int8-emulated")
    with pytest.raises(ValueError, match="at most 1024"):
        engine.SimilarityJob(np.ones((40, 1025), np.float32), k=3, device="cpu", precision="int8-emulated")
    with pytest.raises(ValueError, match="at most 1024"):
        _core.int8_products(np.ones((2, 1025), np.float32), np.ones((2, 1025), np.float32))
    with pytest.raises(ValueError, match="kernel must be"):
        _core.int8_products(e, e, "int8-fast")
    if "int8" not in _int8_kernels():
        with pytest.raises(ValueError, match="AVX512_VNNI"):
            engine.SimilarityJob(e, k=3, device="cpu", precision="int8")
    for kernel in ("int8-vnni", "int8-amx"):
        if kernel not in _int8_kernels():
            with pytest.raises(ValueError, match="AVX512_VNNI|AMX"):
                engine.SimilarityJob(e, k=3, device="cpu", precision=kernel)
            with pytest.raises(ValueError, match="cannot run"):
                _core.int8_products(e, e, kernel)
    assert engine.resolve_precision("auto", "cpu", 320) != "int8"  # measured slower: never the default


# ---- the CUDA path's selection (candidate lists), run on the host -------------------------------

@pytest.mark.parametrize("n,d,k,tile,data", [(517, 33, 10, 64, "random"), (300, 16, 5, 32, "ties"),
                                             (40, 7, 50, 16, "random"), (700, 24, 32, 96, "clustered")])
def test_candidate_lists_give_the_tile_selection_lists(n, d, k, tile, data):
    """Thresholds read before each tile, the tile filtered against them, the survivors offered
    as a list (what the device does, so that only candidates cross PCIe): the lists equal the
    ordinary selection's, with invalid rows, exact ties, k > N and every tile shape, and both
    equal the float64 reference."""
    rng = fresh_rng()
    e = clustered_embeddings(rng, n, d) if data == "clustered" else random_embeddings(rng, n, d)
    if data == "ties":
        e[1::3] = e[0::3][: len(e[1::3])]
    valid = rng.random(n) > 0.05
    lists = []
    for selection in ("tile", "candidates"):
        job = engine.SimilarityJob(e, k=k, tile=tile, device="cpu", valid=valid, selection=selection)
        job.start().wait()
        lists.append(job.topk())
    np.testing.assert_array_equal(lists[1][0], lists[0][0])
    np.testing.assert_array_equal(lists[1][1].view(np.uint16), lists[0][1].view(np.uint16))
    x = e.astype(np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ref = np.clip((1 + x @ x.T) / 2, 0, 1)
    idx, sim = lists[1]
    for i in np.flatnonzero(valid)[:50]:
        row = ref[i].copy()
        row[i] = -1
        row[~valid] = -1
        got = idx[i][idx[i] >= 0]
        assert len(got) == min(k, valid.sum() - 1)
        np.testing.assert_allclose(sim[i][: len(got)].astype(np.float64), row[got], atol=2e-3)
        assert np.sort(row)[::-1][len(got) - 1] <= row[got].min() + 2e-3  # nothing better was left out
    with pytest.raises(ValueError, match="selection"):
        engine.SimilarityJob(e, k=k, device="cpu", selection="heap")
