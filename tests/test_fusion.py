"""dupscope.fusion.fuse_embeddings: the maths against numpy, the small-N fallback, neighbour
augmentation, bad rows."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dupscope.fusion import DUPSCOPE_V3, Branch, Fusion, fuse_embeddings

# Branch a whitened to (at most) 4 axes when the rows show at least 4 distinct pictures; no
# neighbour augmentation.
SMALL = Fusion("toy", (Branch("a", 12, 1.0, whiten=True), Branch("b", 5, 0.5)), whiten_dims=4,
               min_whiten_dims=4)


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
            xb = _l2(xb)
            xb = xb - xb.mean(0)
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


def _copies(n_pictures, per_picture, d=17, noise=0.05, seed=0):
    """Noisy copies of a few random pictures, grouped by picture."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n_pictures, d))  # distinct pictures: nearly orthogonal
    x = np.repeat(base, per_picture, axis=0)
    return (x + noise * rng.standard_normal(x.shape) + 2.0).astype(np.float32)  # + a common offset


def test_float16_input_gives_the_float32_result():
    """A float16 embedding matrix (how the pipeline keeps a fused model's raw output) is read in
    float32 blocks: the result matches the float32 input's to float16 precision."""
    x = _random(60, 17)
    x16 = x.astype(np.float16)
    got = fuse_embeddings(x16, None, SMALL)
    ref = fuse_embeddings(x16.astype(np.float32), None, SMALL)
    assert got.embeddings.dtype == np.float32 and got.description == ref.description
    np.testing.assert_allclose(got.embeddings @ got.embeddings.T, ref.embeddings @ ref.embeddings.T, atol=1e-5)


def test_few_distinct_pictures_are_only_centred():
    x = _copies(3, 13)  # 39 rows, 3 pictures: fewer than the 4 axes asked for
    got = fuse_embeddings(x, None, SMALL)
    ref = _numpy_reference(x, SMALL, whiten=False)
    assert not got.whitened and got.embeddings.shape == (39, 12 + 5)
    np.testing.assert_allclose(got.embeddings, ref, atol=1e-6)
    assert "~3 distinct pictures" in got.description
    assert "not whitened: 3 distinct pictures in 39 images give fewer than 4 axes" in got.description
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
    # the picture count sees valid rows only: 3 valid rows cannot show 4 pictures
    ok2 = np.zeros(70, bool)
    ok2[:3] = True
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


def _augment_reference(e, k, power):
    """Neighbour augmentation in float64 with a brute-force neighbour search."""
    cos = e @ e.T
    np.fill_diagonal(cos, -np.inf)
    out = e.copy()
    for i in range(len(e)):
        nn = np.argsort(-cos[i], kind="stable")[:k]
        out[i] += (np.maximum(cos[i, nn], 0) ** power) @ e[nn]
    return _l2(out)


def test_neighbour_augmentation_matches_numpy():
    fusion = Fusion("aug", SMALL.branches, whiten_dims=4, min_whiten_dims=4, neighbours=5, neighbour_power=3.0)
    x = _random(83, 17, seed=11)
    plain = fuse_embeddings(x, None, SMALL).embeddings.astype(np.float64)
    got = fuse_embeddings(x, None, fusion)
    ref = _augment_reference(_l2(plain), 5, 3.0)
    # The engine's neighbour similarities are float16, so the weights carry ~1e-3 relative error.
    np.testing.assert_allclose(got.embeddings, ref, atol=3e-3)
    assert "5 nearest neighbours" in got.description
    # More neighbours than other rows: all of them are used.
    few = fuse_embeddings(x[:4], None, fusion)
    np.testing.assert_allclose(few.embeddings, _augment_reference(_l2(fuse_embeddings(x[:4], None, SMALL)
                                                                      .embeddings.astype(np.float64)), 3, 3.0),
                               atol=3e-3)


def test_neighbour_augmentation_pulls_copies_together():
    rng = np.random.default_rng(4)
    base = rng.standard_normal((60, 32))
    # 20 pictures with 3 noisy copies each, and 60 unrelated pictures
    x = np.vstack([np.repeat(base[:20], 4, axis=0) + 0.7 * rng.standard_normal((80, 32)), base[20:]])
    fusion = Fusion("aug", (Branch("a", 32),), neighbours=3)
    before = fuse_embeddings(x, None, Fusion("plain", (Branch("a", 32),))).embeddings
    after = fuse_embeddings(x, None, fusion).embeddings
    copies = [(4 * g + a, 4 * g + b) for g in range(20) for a in range(4) for b in range(a + 1, 4)]
    gain = [after[i] @ after[j] - before[i] @ before[j] for i, j in copies]
    assert np.mean(gain) > 0.1
    # Ranking: the fraction of copy pairs above the best unrelated pair grows.
    def separated(e):
        cos = e @ e.T
        group = np.r_[np.repeat(np.arange(20), 4), np.arange(20, 60)]
        other = cos[group[:, None] != group[None, :]].max()
        return np.mean([cos[i, j] > other for i, j in copies])
    assert separated(after) > separated(before)


def test_neighbour_augmentation_skips_invalid_rows():
    fusion = Fusion("aug", SMALL.branches, whiten_dims=4, min_whiten_dims=4, neighbours=4)
    x = _random(50, 17, seed=9)
    ok = np.ones(50, bool)
    ok[[3, 30]] = False
    junk = x.copy()
    junk[~ok] = 1e6
    got = fuse_embeddings(junk, ok, fusion)
    alone = fuse_embeddings(x[ok], None, fusion)
    assert not got.embeddings[~ok].any()
    np.testing.assert_allclose(got.embeddings[ok], alone.embeddings, atol=1e-5)
    one = np.zeros(50, bool)
    one[7] = True  # a single valid image has no neighbour: left as it is
    assert np.isfinite(fuse_embeddings(junk, one, fusion).embeddings).all()


def test_picture_count():
    from dupscope.fusion import count_pictures

    def unit(x):  # centred, unit rows: what fuse_embeddings counts on
        x = x.astype(np.float64)
        return _l2(x - x.mean(0)).astype(np.float32)

    assert count_pictures(unit(_copies(7, 5, noise=0.02)), 0.65, 10) == 7
    assert count_pictures(unit(np.random.default_rng(1).standard_normal((50, 64))), 0.65, 10) == 50
    one = _l2(_random(1, 17))
    assert count_pictures(one, 0.65, 10) == 1
    assert count_pictures(np.repeat(one, 5, axis=0), 0.65, 10) == 1


def test_large_sets_count_pictures_in_a_sample(monkeypatch):
    """Above the sample size the count looks at a random sample first and stops there when the
    sample already shows whiten_dims pictures; otherwise the whole set is counted."""
    from dupscope import fusion as fusion_module

    calls = []
    real = fusion_module.count_pictures
    monkeypatch.setattr(fusion_module, "count_pictures", lambda x, *a, **k: calls.append(len(x)) or real(x, *a, **k))
    monkeypatch.setattr(fusion_module, "_COUNT_SAMPLE", 60)
    fusion = Fusion("n", (Branch("a", 40, whiten=True),), whiten_dims=10, min_whiten_dims=4)
    x = _copies(40, 3, d=40)  # 120 images of 40 pictures: a 60-image sample shows >= 10
    got = fuse_embeddings(x, None, fusion)
    assert calls == [60]
    assert "in a random sample of 60 images, enough for 10 axes" in got.description
    assert "PCA-whitened to 10-d" in got.description
    full = fuse_embeddings(x, None, dataclasses.replace(fusion, whiten_dims=100))  # 40 < 100: count all
    assert calls[1:] == [60, 120] and "~40 distinct pictures (" in full.description
    assert "PCA-whitened to 40-d" in full.description
    assert (full.n_pictures, full.axes, full.whitened) == (40, (40,), True)  # the same facts, for code
    assert got.axes == (10,)
    monkeypatch.setattr(fusion_module, "_COUNT_SAMPLE", 20_000)
    calls.clear()
    assert fuse_embeddings(x, None, fusion).description.count("sample") == 0 and calls == [120]


def test_whitening_axes_follow_the_picture_count():
    # 30 pictures x 4 copies: whitened to 30 axes at most (not 160), whatever N is.
    fusion = Fusion("n", (Branch("a", 40, whiten=True),), whiten_dims=160, min_whiten_dims=8)
    got = fuse_embeddings(_copies(30, 4, d=40), None, fusion)
    assert "~30 distinct pictures" in got.description and "PCA-whitened to 30-d" in got.description
    capped = fuse_embeddings(_copies(30, 4, d=40), None, dataclasses.replace(fusion, whiten_dims=12))
    assert "PCA-whitened to 12-d" in capped.description
    fixed = fuse_embeddings(_copies(30, 4, d=40), None, dataclasses.replace(fusion, whiten_axes=5))
    assert "PCA-whitened to 5-d" in fixed.description and "distinct pictures" not in fixed.description
    # Whitening to the picture count keeps copies together better than to many more axes.
    x = _copies(12, 10, d=40, noise=0.3, seed=3)
    group = np.repeat(np.arange(12), 10)
    def margin(e):
        cos = e @ e.T
        same = group[:, None] == group[None, :]
        np.fill_diagonal(same, False)
        return np.mean(cos[same]) - np.mean(cos[~same & ~np.eye(len(e), dtype=bool)])
    est = fuse_embeddings(x, None, fusion).embeddings
    many = fuse_embeddings(x, None, dataclasses.replace(fusion, whiten_axes=39)).embeddings
    assert margin(est) > margin(many)


def test_dupscope_v3_fusion():
    assert DUPSCOPE_V3.dim == 1280 + 672
    assert [DUPSCOPE_V3.axes_for(n, 10**6) for n in (0, 7, 8, 100, 160, 10**6)] == [0, 0, 8, 100, 160, 160]
    assert [DUPSCOPE_V3.axes_for(20, n) for n in (23, 24, 59, 60, 61)] == [0, 8, 19, 20, 20]
    x = _copies(20, 5, d=1952, noise=0.05)
    got = fuse_embeddings(x, None, DUPSCOPE_V3)
    assert got.whitened and got.embeddings.shape == (100, 20 + 20)
    np.testing.assert_allclose(np.linalg.norm(got.embeddings, axis=1), 1.0, rtol=1e-5)
    assert "PCA-whitened to 20-d" in got.description and "10 nearest neighbours" in got.description
    few = fuse_embeddings(_copies(5, 8, d=1952), None, DUPSCOPE_V3)
    assert not few.whitened and few.embeddings.shape == (40, 1952)
    assert "not whitened: 5 distinct pictures in 40 images give fewer than 8 axes" in few.description


def test_a_stored_fit_treats_new_rows_as_the_fitted_ones(tmp_path):
    """apply_fit reproduces fuse_embeddings on the rows it was fitted on (exactly), the fit
    survives an HDF5 round trip, and augment_rows gives a row the augmentation the whole run gave
    it (the same neighbours, so the same row)."""
    import h5py

    from dupscope.fusion import FusionFit, apply_fit, augment_rows

    x = _random(60, 17, seed=3)
    ok = np.ones(60, bool)
    ok[[4, 9]] = False
    r = fuse_embeddings(x, ok, SMALL, device="cpu")
    assert r.whitened and r.fit is not None
    with h5py.File(tmp_path / "fit.h5", "w") as f:
        r.fit.to_group(f.create_group("fusion"))
    with h5py.File(tmp_path / "fit.h5", "r") as f:
        fit = FusionFit.from_group(f["fusion"], SMALL)
        with pytest.raises(ValueError, match="not of 'dupscope-v3'"):
            FusionFit.from_group(f["fusion"], DUPSCOPE_V3)
    np.testing.assert_array_equal(apply_fit(x, fit, ok), r.embeddings)

    aug = dataclasses.replace(SMALL, neighbours=3)
    ra = fuse_embeddings(x, None, aug, device="cpu")
    base = apply_fit(x, ra.fit)
    rows = np.array([0, 17, 59])
    got = augment_rows(base[rows], base, ra.fit, self_rows=rows)
    np.testing.assert_allclose(got, ra.embeddings[rows], atol=1e-5)
