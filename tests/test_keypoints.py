"""The compiled keypoint detector (dupscope._core.keypoints, cpp/src/keypoints.cpp): FAST corners
against a numpy reference, the SSE2 path against the portable one, the mirror property the
verification relies on, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from dupscope import _core, build_info

# The FAST circle of radius 3, clockwise from the top (as the detector walks it).
CIRCLE = [(0, -3), (1, -3), (2, -2), (3, -1), (3, 0), (3, 1), (2, 2), (1, 3),
          (0, 3), (-1, 3), (-2, 2), (-3, 1), (-3, 0), (-3, -1), (-2, -2), (-1, -3)]


def textured(seed: int, h: int = 233, w: int = 301) -> np.ndarray:
    """Blobs and edges on noise: many corners at every scale, sizes that fit no block width."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = 60 + 40 * np.sin(x / 7.0) * np.cos(y / 11.0) + rng.normal(0, 6, (h, w))
    for _ in range(40):
        cx, cy, r = rng.integers(0, w), rng.integers(0, h), rng.integers(3, 25)
        img[(x - cx) ** 2 + (y - cy) ** 2 < r * r] += rng.integers(-120, 120)
    return np.clip(img, 0, 255).astype(np.uint8)


def is_fast_corner(img: np.ndarray, x: int, y: int, t: int) -> bool:
    c = int(img[y, x])
    ring = np.array([int(img[y + dy, x + dx]) for dx, dy in CIRCLE])
    for mask in (ring > c + t, ring < c - t):
        twice = np.r_[mask, mask]
        if any(twice[s:s + 9].all() for s in range(16)):
            return True
    return False


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_level0_keypoints_are_fast_corners_and_local_maxima(seed):
    img = textured(seed)
    pts, desc, resp, level = _core.keypoints(img, features=400, levels=3, scale=1.4, fast_threshold=12)
    assert pts.dtype == np.float32 and desc.dtype == np.uint8 and desc.shape == (len(pts), 32)
    assert 50 < len(pts) <= 400 and len(resp) == len(level) == len(pts)
    # Levels in order, strongest first within a level.
    assert np.all(np.diff(level) >= 0)
    for lv in np.unique(level):
        assert np.all(np.diff(resp[level == lv]) <= 0)
    zero = level == 0
    assert zero.sum() > 20
    for x, y in pts[zero]:
        assert float(x).is_integer() and float(y).is_integer()
        xi, yi = int(x), int(y)
        assert 19 <= xi < img.shape[1] - 19 and 19 <= yi < img.shape[0] - 19
        assert is_fast_corner(img, xi, yi, 12), (xi, yi)
    # No two level-0 keypoints are neighbours (3 x 3 non-maximum suppression).
    p = pts[zero].astype(int)
    d = np.abs(p[:, None, :] - p[None, :, :]).max(axis=2)
    np.fill_diagonal(d, 99)
    assert d.min() >= 2


def fast_score(img: np.ndarray, x: int, y: int, t: int) -> int:
    """The detector's corner strength: the larger summed excess over the threshold, plus one."""
    c = int(img[y, x])
    ring = np.array([int(img[y + dy, x + dx]) for dx, dy in CIRCLE])
    return int(max(np.maximum(ring - min(c + t, 255), 0).sum(), np.maximum(max(c - t, 0) - ring, 0).sum())) + 1


def test_level0_keeps_exactly_the_local_maxima_of_the_corner_score():
    """With room for every corner, level 0 is exactly the reference's corners that beat their
    neighbours (of equal ones the first in raster order)."""
    img = textured(5, 90, 97)
    t = 20
    pts, _, _, _ = _core.keypoints(img, features=100000, levels=1, fast_threshold=t)
    score = np.zeros(img.shape, int)
    for y in range(19, 90 - 19):
        for x in range(19, 97 - 19):
            if is_fast_corner(img, x, y, t):
                score[y, x] = fast_score(img, x, y, t)
    want = set()
    for y, x in zip(*np.nonzero(score)):
        v = score[y, x]
        earlier = [score[y - 1, x - 1], score[y - 1, x], score[y - 1, x + 1], score[y, x - 1]]
        later = [score[y, x + 1], score[y + 1, x - 1], score[y + 1, x], score[y + 1, x + 1]]
        if all(v > e for e in earlier) and all(v >= l for l in later):
            want.add((int(x), int(y)))
    assert len(want) > 30
    assert {(int(x), int(y)) for x, y in pts} == want


@pytest.mark.parametrize("shape", [(384, 384), (241, 333), (57, 61)])
def test_simd_path_equals_the_portable_one(shape):
    img = textured(sum(shape), *shape)
    assert build_info()["keypoint_kernel"] in ("sse2", "portable")
    got = _core.keypoints(img, kernel="auto")
    ref = _core.keypoints(img, kernel="portable")
    for g, r in zip(got, ref):
        np.testing.assert_array_equal(g, r)


def test_mirror_descriptors_equal_detection_on_the_flipped_image():
    img = textured(9, 300, 280)
    pts, desc, _, _ = _core.keypoints(img)
    fpts, fdesc, _, _ = _core.keypoints(np.ascontiguousarray(img[:, ::-1]))
    mirrored = _core.mirror_descriptors(desc)
    assert _core.mirror_descriptors(mirrored).tobytes() == desc.tobytes()  # an involution
    at = {(round(float(280 - 1 - x), 2), round(float(y), 2)): i for i, (x, y) in enumerate(pts)}
    same = found = 0
    for j, (x, y) in enumerate(fpts):
        i = at.get((round(float(x), 2), round(float(y), 2)))
        if i is not None:
            found += 1
            same += mirrored[i].tobytes() == fdesc[j].tobytes()
    # Rounding ties in the orientation bins and the resize may differ; nothing else does.
    assert found >= 0.98 * len(fpts) and same >= 0.97 * found, (len(fpts), found, same)
    # Descriptors are not mirror-invariant by accident: unmirrored ones mostly differ.
    differ = sum(desc[i].tobytes() != fdesc[j].tobytes() for j, (x, y) in enumerate(fpts)
                 if (i := at.get((round(float(x), 2), round(float(y), 2)))) is not None)
    assert differ >= 0.9 * found


def test_deterministic_and_independent_of_row_padding():
    img = textured(3)
    padded = np.zeros((img.shape[0], img.shape[1] + 13), np.uint8)
    padded[:, :img.shape[1]] = img
    a = _core.keypoints(img)
    b = _core.keypoints(img.copy())
    c = _core.keypoints(padded[:, :img.shape[1]])  # rows 13 bytes apart more than the width
    for x, y, z in zip(a, b, c):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(x, z)


def test_tiny_flat_and_empty_requests_give_no_keypoints():
    assert len(_core.keypoints(np.full((64, 64), 128, np.uint8))[0]) == 0
    assert len(_core.keypoints(textured(1, 30, 30))[0]) == 0  # smaller than the border
    assert len(_core.keypoints(textured(1), features=0)[0]) == 0


def test_bad_input():
    with pytest.raises(TypeError, match="uint8"):
        _core.keypoints(np.zeros((64, 64), np.float32))
    with pytest.raises(TypeError, match="2-D"):
        _core.keypoints(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="contiguous rows"):
        _core.keypoints(np.zeros((64, 64), np.uint8)[:, ::2])
    with pytest.raises(ValueError, match="scale"):
        _core.keypoints(textured(1), scale=1.0)
    with pytest.raises(ValueError, match="kernel"):
        _core.keypoints(textured(1), kernel="avx9")
    with pytest.raises(TypeError, match="32 bytes"):
        _core.mirror_descriptors(np.zeros((3, 16), np.uint8))
