"""The grey-level normalisation before keypoint detection (dupscope._core.normalise_contrast)
against a float64 numpy reference of the same stretch and CLAHE."""

from __future__ import annotations

import numpy as np
import pytest

from dupscope._core import normalise_contrast


def reference_stretch(grey: np.ndarray) -> np.ndarray:
    """Levels mapped linearly so that the 1st and 99th percentiles become 0 and 255."""
    cum = np.cumsum(np.bincount(grey.ravel(), minlength=256))
    lo = int(np.searchsorted(cum, 0.01 * cum[-1]))
    hi = int(np.searchsorted(cum, 0.99 * cum[-1]))
    if hi <= lo:
        return grey.copy()
    lut = np.clip((np.arange(256, dtype=np.float32) - lo) * (255.0 / (hi - lo)) + 0.5, 0, 255).astype(np.uint8)
    return lut[grey]


def reference(grey: np.ndarray, clip: float, tiles: int) -> np.ndarray:
    """Stretch, then per tile a clipped, evenly redistributed cumulative histogram, interpolated
    bilinearly between tile centres (float64 throughout)."""
    s = reference_stretch(grey)
    h, w = grey.shape
    ty_n, tx_n = min(tiles, h), min(tiles, w)
    rows = np.arange(h) * ty_n // h
    cols = np.arange(w) * tx_n // w
    maps = np.zeros((ty_n, tx_n, 256))
    for ty in range(ty_n):
        for tx in range(tx_n):
            block = s[rows == ty][:, cols == tx]
            hist = np.bincount(block.ravel(), minlength=256).astype(np.float64)
            area = block.size
            limit = max(1, int(clip * area / 256.0))
            excess = np.maximum(hist - limit, 0).sum()
            hist = np.minimum(hist, limit) + excess / 256.0
            maps[ty, tx] = np.minimum(255.0, np.cumsum(hist) * 255.0 / area)
    fy = (np.arange(h) + 0.5) * ty_n / h - 0.5
    fx = (np.arange(w) + 0.5) * tx_n / w - 0.5
    y0, x0 = np.floor(fy).astype(int), np.floor(fx).astype(int)
    wy, wx = (fy - y0)[:, None], (fx - x0)[None, :]
    y1, x1 = np.clip(y0 + 1, 0, ty_n - 1), np.clip(x0 + 1, 0, tx_n - 1)
    y0, x0 = np.clip(y0, 0, ty_n - 1), np.clip(x0, 0, tx_n - 1)
    v = s.astype(np.int64)

    def at(ty, tx):
        return maps[ty[:, None], tx[None, :], v]

    top = at(y0, x0) + wx * (at(y0, x1) - at(y0, x0))
    bottom = at(y1, x0) + wx * (at(y1, x1) - at(y1, x0))
    return np.floor(np.clip(top + wy * (bottom - top), 0, 255) + 0.5).astype(np.uint8)


def picture(h: int, w: int, seed: int) -> np.ndarray:
    """Smooth structure, a dark region, a bright overlay band and noise: every tile differs."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = 40 + 30 * np.sin(x / 7.0) * np.cos(y / 11.0) + 0.2 * x
    base[: h // 3, : w // 2] *= 0.2
    base[int(0.8 * h):] = 250
    return np.clip(base + rng.normal(0, 6, (h, w)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("shape", [(384, 384), (241, 333), (57, 61), (5, 3)])
@pytest.mark.parametrize("clip,tiles", [(3.0, 8), (1.5, 4), (40.0, 8)])
def test_matches_reference(shape, clip, tiles):
    grey = picture(*shape, seed=shape[0] + tiles)
    got = normalise_contrast(grey, clip, tiles)
    want = reference(grey, clip, tiles)
    assert got.shape == grey.shape and got.dtype == np.uint8
    diff = np.abs(got.astype(int) - want)
    # float32 interpolation in the core: only rounding ties may differ, by one level.
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01, (diff.max(), (diff > 0).mean())


def test_stretch_only_is_exact():
    for seed, shape in enumerate([(384, 300), (17, 90)]):
        grey = picture(*shape, seed=seed)
        np.testing.assert_array_equal(normalise_contrast(grey, 0.0, 8), reference_stretch(grey))


def test_flat_and_low_range_images():
    flat = np.full((40, 50), 77, np.uint8)
    out = normalise_contrast(flat)
    assert np.ptp(out) <= 1  # flat stays flat (tiles of unequal area may round one level apart)
    two = np.where(np.arange(60)[None, :] < 30, 100, 104).astype(np.uint8).repeat(40, 0)
    out = normalise_contrast(two, 0.0)
    assert out.min() == 0 and out.max() == 255  # the stretch spreads a 4-level range


def test_a_bright_overlay_does_not_flatten_faint_content():
    """The reason for the local step: after the global stretch alone, faint content beside a
    bright band keeps a few levels; equalised locally it spans most of the range again."""
    rng = np.random.default_rng(0)
    faint = rng.integers(0, 12, (256, 256)).astype(np.uint8)
    marked = faint.copy()
    marked[200:] = 255
    stretched = normalise_contrast(marked, 0.0)[:150, :150]
    local = normalise_contrast(marked)[:150, :150]
    assert np.ptp(stretched) < 20 and np.ptp(local) > 3 * np.ptp(stretched)


def test_row_padding_does_not_matter():
    grey = picture(100, 120, seed=3)
    padded = np.zeros((100, 160), np.uint8)
    padded[:, :120] = grey
    np.testing.assert_array_equal(normalise_contrast(padded[:, :120]), normalise_contrast(grey))


def test_bad_input():
    with pytest.raises(TypeError, match="uint8"):
        normalise_contrast(np.zeros((8, 8), np.float32))
    with pytest.raises(TypeError, match="2-D"):
        normalise_contrast(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="contiguous rows"):
        normalise_contrast(np.zeros((8, 16), np.uint8)[:, ::2])
    with pytest.raises(ValueError, match="positive"):
        normalise_contrast(np.zeros((8, 0), np.uint8))
    with pytest.raises(ValueError, match="tiles"):
        normalise_contrast(np.zeros((8, 8), np.uint8), 3.0, 0)
