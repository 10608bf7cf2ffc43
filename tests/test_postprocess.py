"""dupscope.postprocess.fuse_embeddings: the maths against numpy, the small-N fallback, bad rows."""

from __future__ import annotations

import numpy as np
import pytest

from dupscope.postprocess import DUPSCOPE_V1, Branch, Fusion, fuse_embeddings

SMALL = Fusion("toy", (Branch("a", 12, 1.0, whiten=True), Branch("b", 5, 0.5)), whiten_dims=4, min_whiten=40)


def _l2(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _random(n, d, seed=0):
    rng = np.random.default_rng(seed)
    # correlated columns and an offset, so centring and whitening both change something
    mix = rng.standard_normal((d, d)) * np.linspace(3, 0.2, d)[:, None]
    return (rng.standard_normal((n, d)) @ mix + 2.0).astype(np.float32)


def _numpy_reference(x, fusion, whiten):
    """The documented steps with numpy's SVD."""
    parts, start = [], 0
    for b in fusion.branches:
        xb = _l2(x[:, start:start + b.dim].astype(np.float64))
        start += b.dim
        xb = xb - xb.mean(0)
        if b.whiten and whiten:
            _, s, vt = np.linalg.svd(xb, full_matrices=False)
            xb = xb @ vt[:fusion.whiten_dims].T / s[:fusion.whiten_dims]
        parts.append(_l2(xb) * b.weight)
    return np.concatenate(parts, axis=1)


def test_whitening_matches_numpy_svd():
    x = _random(60, 17)
    got = fuse_embeddings(x, None, SMALL)
    ref = _numpy_reference(x, SMALL, whiten=True)
    assert got.whitened and got.n_valid == 60
    assert got.embeddings.shape == (60, 4 + 5) and got.embeddings.dtype == np.float32
    # Principal axes are defined up to sign: compare the Gram matrices (what cosine sees), and
    # each whitened column up to its sign.
    np.testing.assert_allclose(got.embeddings @ got.embeddings.T, ref @ ref.T, atol=1e-5)
    for k in range(4):
        col, rcol = got.embeddings[:, k], ref[:, k]
        assert min(np.abs(col - rcol).max(), np.abs(col + rcol).max()) < 1e-5
    np.testing.assert_allclose(got.embeddings[:, 4:], ref[:, 4:], atol=1e-6)
    # Per-branch norms: 1 and the weight; the whitened branch has equal variance on its axes
    # before the final L2 (checked on the un-normalised projection through the Gram identity).
    np.testing.assert_allclose(np.linalg.norm(got.embeddings[:, :4], axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got.embeddings[:, 4:], axis=1), 0.5, rtol=1e-5)
    assert "PCA-whitened to 4-d" in got.description and "x0.5" in got.description


def test_small_data_set_is_only_centred():
    x = _random(39, 17)  # one below min_whiten
    got = fuse_embeddings(x, None, SMALL)
    ref = _numpy_reference(x, SMALL, whiten=False)
    assert not got.whitened and got.embeddings.shape == (39, 12 + 5)
    np.testing.assert_allclose(got.embeddings, ref, atol=1e-6)
    assert "not whitened: 39 valid images < 40" in got.description
    # Centred: the valid rows of each branch (before the last L2) average to zero, so the
    # fused rows point in all directions rather than sharing a common offset.
    assert np.abs(got.embeddings[:, :12].mean(0)).max() < 0.3


def test_invalid_rows_are_ignored_and_zero():
    x = _random(70, 17, seed=3)
    ok = np.ones(70, bool)
    ok[[0, 13, 69]] = False
    junk = x.copy()
    junk[~ok] = 1e6  # would dominate every statistic if it were used
    got = fuse_embeddings(junk, ok, SMALL)
    alone = fuse_embeddings(x[ok], None, SMALL)
    assert got.n_valid == 67
    assert not got.embeddings[~ok].any()
    np.testing.assert_allclose(got.embeddings[ok] @ got.embeddings[ok].T,
                               alone.embeddings @ alone.embeddings.T, atol=1e-5)
    # min_whiten counts valid rows only
    ok2 = np.zeros(70, bool)
    ok2[:39] = True
    assert not fuse_embeddings(junk, ok2, SMALL).whitened


def test_degenerate_rows_do_not_give_nan():
    x = _random(50, 17, seed=5)
    x[:5, 12:] = 0.0  # a flat image has an all-zero dct embedding
    x[5:, :] = x[5]  # ... and many identical images: no variance left to whiten
    got = fuse_embeddings(x, None, SMALL)
    assert np.isfinite(got.embeddings).all()
    same = fuse_embeddings(np.repeat(x[:1], 50, axis=0), None, SMALL)
    assert np.isfinite(same.embeddings).all() and "no variance" in same.description


def test_shape_errors():
    with pytest.raises(ValueError, match=r"\(N, 17\)"):
        fuse_embeddings(np.zeros((4, 16), np.float32), None, SMALL)
    with pytest.raises(ValueError, match="ok has shape"):
        fuse_embeddings(np.zeros((4, 17), np.float32), np.ones(3, bool), SMALL)


def test_dupscope_v1_fusion():
    assert DUPSCOPE_V1.dim == 143
    x = _random(DUPSCOPE_V1.min_whiten, 143, seed=7)  # exactly the minimum: whitened
    big = fuse_embeddings(x, None, DUPSCOPE_V1)
    assert big.whitened and big.embeddings.shape == (len(x), 64 + 63)
    small = fuse_embeddings(x[:-1], None, DUPSCOPE_V1)
    assert not small.whitened and small.embeddings.shape == (len(x) - 1, 143)
    # Cosine of fused rows = (cos_network + 0.25 cos_dct) / 1.25.
    e = small.embeddings
    net, dct = e[:, :80], e[:, 80:] / 0.5
    cos = (e @ e.T) / 1.25
    np.testing.assert_allclose(cos, (net @ net.T + 0.25 * dct @ dct.T) / 1.25, atol=1e-5)
