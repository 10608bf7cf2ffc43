"""Geometric verification (dupscope.verify) and the pair score (dupscope.scoring) on small real images."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from dupscope.scoring import VERIFIED_INLIERS, pair_score, raw_cosines, score_neighbors
from dupscope.verify import VerifyConfig, image_features, match_features, mirrored_features, prepared_grey, verify_pairs


def scene(seed: int, size=(320, 240)) -> Image.Image:
    """A picture of random shapes on a gradient; different seeds draw different pictures of the
    same palette and layout (what a look-alike is to a copy detector)."""
    rng = np.random.default_rng(seed)
    w, h = size
    x = np.linspace(0, 1, w)[None, :, None]
    y = np.linspace(0, 1, h)[:, None, None]
    base = (40 + 120 * x + 60 * y) * np.array([0.6, 0.8, 1.0])
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8).repeat(1, 0))
    d = ImageDraw.Draw(img)
    for _ in range(60):
        x0, y0 = rng.integers(0, w), rng.integers(0, h)
        r = int(rng.integers(4, 22))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            d.ellipse((x0 - r, y0 - r, x0 + r, y0 + r), fill=colour)
        else:
            d.rectangle((x0 - r, y0 - r // 2, x0 + r, y0 + r // 2), fill=colour, outline=(0, 0, 0))
    return img


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("verify")
    orig = scene(1)
    w, h = orig.size
    variants = {
        "orig": orig,
        "crop": orig.crop((int(0.1 * w), int(0.12 * h), int(0.9 * w), int(0.92 * h))),
        "rotated": orig.rotate(5, Image.Resampling.BICUBIC, fillcolor=(0, 0, 0)),
        "mirror": ImageOps.mirror(orig),
        "border_blur": ImageOps.expand(orig, 24, fill=(255, 255, 255)).filter(ImageFilter.GaussianBlur(1.2)),
        "half_gray": ImageOps.grayscale(orig.resize((w // 2, h // 2))).convert("RGB"),
        "other": scene(2),
        "other2": scene(3),
    }
    paths = {}
    for name, im in variants.items():
        p = root / f"{name}.png"
        im.save(p)
        paths[name] = str(p)
    return paths


@pytest.mark.parametrize("name", ["crop", "rotated", "mirror", "border_blur", "half_gray"])
def test_edited_copies_verify(images, name):
    ev = verify_pairs([images["orig"], images[name]], np.array([0]), np.array([1]))
    assert ev.checked[0]
    assert ev.inliers[0] >= VERIFIED_INLIERS, (name, int(ev.inliers[0]))
    assert ev.mirrored[0] == (name == "mirror")


def test_mirrored_features_match_detection_on_the_flipped_image(images):
    """The mirror image's features from the direct keypoints (positions mirrored, descriptor bit
    pairs swapped) match a mirrored copy about as well as detecting on the flipped image again."""
    grey = prepared_grey(images["orig"])
    direct = image_features(grey)
    fast = mirrored_features(grey, direct)
    again = image_features(grey, mirror=True)
    w = grey.shape[1]
    assert fast.size == again.size == direct.size and len(fast.points) > 100
    # Every keypoint is a mirrored direct one.
    mirrored = {(round(w - 1 - x, 2), round(y, 2)) for x, y in direct.points.tolist()}
    assert all((round(x, 2), round(y, 2)) in mirrored for x, y in fast.points.tolist())
    copy = image_features(images["mirror"])
    n_fast, _ = match_features(copy, fast)
    n_again, _ = match_features(copy, again)
    assert n_fast >= VERIFIED_INLIERS and n_fast >= 0.8 * n_again, (n_fast, n_again)
    assert match_features(image_features(images["other"]), fast)[0] < VERIFIED_INLIERS


@pytest.mark.parametrize("name", ["other", "other2"])
def test_different_pictures_of_one_kind_do_not_verify(images, name):
    ev = verify_pairs([images["orig"], images[name]], np.array([0]), np.array([1]))
    assert ev.checked[0]
    assert ev.inliers[0] < VERIFIED_INLIERS, (name, int(ev.inliers[0]))


def test_verification_is_deterministic_and_symmetric(images):
    paths = [images["orig"], images["crop"], images["other"]]
    a, b = np.array([0, 1, 0]), np.array([1, 0, 2])
    first = verify_pairs(paths, a, b)
    again = verify_pairs(paths, a, b, VerifyConfig(workers=1))
    np.testing.assert_array_equal(first.inliers, again.inliers)
    assert first.inliers[0] == first.inliers[1]  # (0, 1) and (1, 0) are one pair


def test_unreadable_image_gives_no_evidence(images, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    ev = verify_pairs([images["orig"], str(bad)], np.array([0]), np.array([1]))
    assert not ev.checked[0] and ev.inliers[0] == 0


def test_flat_image_has_no_features():
    f = image_features(np.full((64, 64), 128, np.uint8))
    assert len(f.points) == 0
    assert match_features(f, f) == (0, 0.0)


def test_pair_score_is_monotone_and_bounded():
    inl = np.array([0, 5, 20, 100, 400])
    s = pair_score(np.full(5, 0.85), inl, np.full(5, 0.4))
    assert np.all(np.diff(s) > 0) and np.all((s >= 0) & (s <= 1))
    assert np.all(np.diff(pair_score(np.linspace(0.5, 1, 5), np.zeros(5), np.zeros(5))) > 0)
    assert np.isnan(pair_score(np.array([np.nan]), np.array([3]), np.array([0.1]))[0])


@pytest.mark.parametrize("copy_bytes", [1 << 30, 0])  # one float32 copy, or block by block
def test_raw_cosines_against_numpy(monkeypatch, copy_bytes):
    import dupscope.scoring

    monkeypatch.setattr(dupscope.scoring, "UNIT_COPY_BYTES", copy_bytes)
    rng = np.random.default_rng(7)
    raw = rng.standard_normal((37, 19)).astype(np.float32)
    raw[5] = 0
    index = rng.integers(-1, 37, (37, 6)).astype(np.int32)
    got = raw_cosines(raw, index, columns=11, block=8)
    x = raw[:, :11].astype(np.float64)
    for i in range(37):
        for c in range(6):
            j = index[i, c]
            ni, nj = np.linalg.norm(x[i]), np.linalg.norm(x[j]) if j >= 0 else 0
            if j < 0 or ni == 0 or nj == 0:
                assert np.isnan(got[i, c])
            else:
                assert got[i, c] == pytest.approx(x[i] @ x[j] / ni / nj, abs=1e-5)


def test_score_neighbors_ranks_verified_copies_first(images):
    paths = [images["orig"], images["other"], images["crop"]]
    # The engine called the look-alike (1) more similar to 0 than the copy (2).
    index = np.array([[1, 2], [0, 2], [0, 1]], np.int32)
    sim = np.array([[0.95, 0.9], [0.95, 0.8], [0.9, 0.8]], np.float16)
    raw = np.array([[1, 0, 0], [0.9, 0.43, 0], [0.9, 0.43, 0]], np.float32)  # equal raw cosines
    out = score_neighbors(index, sim, raw, paths, bar=0.7)
    assert out.index[0, 0] == 2 and out.inliers[0, 0] >= VERIFIED_INLIERS
    assert out.score[0, 0] > out.score[0, 1]
    assert out.embedding_similarity[0, 0] == np.float16(0.9)  # carried along with its pair
    assert out.n_checked == 3


def _reference_matches(d1: np.ndarray, d2: np.ndarray, ratio: float):
    """Mutual ratio-test matches from the full Hamming distance matrix (numpy)."""
    bits1, bits2 = np.unpackbits(d1, axis=1).astype(np.int64), np.unpackbits(d2, axis=1).astype(np.int64)
    dist = bits1.sum(1)[:, None] + bits2.sum(1)[None, :] - 2 * bits1 @ bits2.T

    def best(dm):
        order = np.argsort(dm, axis=1, kind="stable")
        first = np.take_along_axis(dm, order[:, :1], 1)[:, 0]
        second = np.take_along_axis(dm, order[:, 1:2], 1)[:, 0] if dm.shape[1] > 1 else np.full(len(dm), np.inf)
        return np.where(first < ratio * second, order[:, 0], -1)

    fwd, back = best(dist), best(dist.T)
    i = np.flatnonzero(fwd >= 0)
    i = i[back[fwd[i]] == i]
    return i, fwd[i]


def _hamming_kernels():
    from dupscope import build_info

    return build_info()["hamming_kernels"]


@pytest.mark.parametrize("kernel", ["portable", "avx2", "avx512", "avx512-vpopcnt"])
@pytest.mark.parametrize("na,nb,nbytes", [(1, 1, 32), (1, 17, 32), (3, 9, 32), (37, 53, 32), (211, 190, 32),
                                          (40, 33, 8), (25, 30, 64)])
def test_hamming_matches_against_numpy(na, nb, nbytes, kernel):
    """Every kernel this CPU runs (the others skip; the portable one runs everywhere), at sizes
    that are not multiples of the vector kernels' 16 columns."""
    from dupscope._core import hamming_matches

    if kernel not in _hamming_kernels():
        pytest.skip(f"this CPU or build has no {kernel} Hamming kernel")

    def mutual_matches(x, y, ratio):
        return hamming_matches(x, y, ratio, kernel)

    rng = np.random.default_rng(na * 1000 + nb)
    d2 = rng.integers(0, 256, (nb, nbytes), dtype=np.uint8)
    # Half of d1 are noisy copies of rows of d2 (matches to find), the rest random.
    d1 = rng.integers(0, 256, (na, nbytes), dtype=np.uint8)
    src = rng.integers(0, nb, na // 2)
    noise = (rng.random((na // 2, nbytes * 8)) < 0.05).astype(np.uint8)
    d1[: na // 2] = d2[src] ^ np.packbits(noise, axis=1)
    for ratio in (0.8, 1.0):
        got = mutual_matches(d1, d2, ratio)
        want = _reference_matches(d1, d2, ratio)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    assert len(mutual_matches(d1, d2, 0.8)[0]) >= (na // 2) // 2  # the copies are found


def test_hamming_matches_rejects_bad_input():
    from dupscope.verify import mutual_matches

    a = np.zeros((4, 32), np.uint8)
    with pytest.raises(ValueError, match="different lengths"):
        mutual_matches(a, np.zeros((4, 16), np.uint8), 0.8)
    with pytest.raises(ValueError, match="multiple of 8"):
        mutual_matches(np.zeros((4, 12), np.uint8), np.zeros((4, 12), np.uint8), 0.8)
    assert [len(x) for x in mutual_matches(a[:0], a, 0.8)] == [0, 0]
    from dupscope._core import hamming_matches

    with pytest.raises(ValueError, match="Hamming kernel 'sse1'"):
        hamming_matches(a, a, 0.8, "sse1")


def test_hamming_kernels_agree_on_ties():
    """Descriptors that differ in one byte only: distances take few values, so most rows and
    columns have ties for their nearest or second nearest, and the vector kernels' merge of
    their per-lane best two must equal the row-major scan."""
    from dupscope._core import hamming_matches

    rng = np.random.default_rng(7)
    d1, d2 = np.zeros((90, 32), np.uint8), np.zeros((73, 32), np.uint8)
    d1[:, 0], d2[:, 0] = rng.integers(0, 256, 90), rng.integers(0, 256, 73)
    for ratio in (1.0, 0.8):
        want = _reference_matches(d1, d2, ratio)
        assert len(want[0]) > 0
        for kernel in _hamming_kernels():
            got = hamming_matches(d1, d2, ratio, kernel)
            assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1]), kernel


def test_score_neighbors_rank_cap_limits_candidates(images):
    paths = [images["orig"], images["other"], images["crop"]]
    index = np.array([[1, 2], [0, 2], [0, 1]], np.int32)
    sim = np.array([[0.95, 0.9], [0.95, 0.8], [0.9, 0.8]], np.float16)
    raw = np.array([[1, 0, 0], [0.9, 0.43, 0], [0.9, 0.43, 0]], np.float32)
    # Only each image's nearest: (0,1) from rows 0 and 1, (0,2) from row 2; (1,2) is no candidate.
    out = score_neighbors(index, sim, raw, paths, bar=0.7, rank=1)
    assert out.n_checked == 2
    row1 = dict(zip(out.index[1].tolist(), out.inliers[1].tolist()))
    assert row1[2] == -1 and row1[0] >= 0
    row0 = dict(zip(out.index[0].tolist(), out.inliers[0].tolist()))
    assert row0[2] >= VERIFIED_INLIERS


def _lists(sim: np.ndarray):
    """Full neighbour lists (every other image, best first) of a symmetric similarity matrix."""
    n = len(sim)
    masked = np.where(np.eye(n, dtype=bool), -np.inf, sim)
    index = np.argsort(-masked, axis=1, kind="stable")[:, :n - 1].astype(np.int32)
    return index, np.take_along_axis(sim, index, 1).astype(np.float16)


def test_second_chance_pairs_need_support_from_the_verified_copies():
    from dupscope.pairs import neighbor_pairs
    from dupscope.scoring import second_chance_pairs

    # 0-3: one picture, verified pairwise. 4 is near (0.6) all four, 5 only two of them, 6 near
    # three but under the second bar (0.57) to 3; 7 is near all four but its pair with 0 was
    # checked already.
    sim = np.full((8, 8), 0.5, np.float32)
    sim[:4, :4] = 0.9
    sim[4, :4] = sim[:4, 4] = 0.6
    sim[5, 1:3] = sim[1:3, 5] = 0.6
    sim[6, :3] = sim[:3, 6] = 0.6
    sim[6, 3] = sim[3, 6] = 0.57
    sim[7, :4] = sim[:4, 7] = 0.6
    a, b, s = neighbor_pairs(*_lists(sim))
    strong = [(x, y) for x in range(4) for y in range(x + 1, 4)]
    sa, sb = np.array(strong).T
    checked = np.sort(np.r_[sa * 8 + sb, [0 * 8 + 7]])
    out_a, out_b = second_chance_pairs(a, b, s, 8, bar=0.65, low=0.58, strong_a=sa, strong_b=sb, checked=checked,
                                       support=3)
    got = set(zip(out_a.tolist(), out_b.tolist()))
    # 6: each of 0, 1, 2 has copies {the others}, of which 6 is near only two: no support.
    assert got == {(0, 4), (1, 4), (2, 4), (3, 4), (1, 7), (2, 7), (3, 7)}
    assert (np.diff(out_a * 8 + out_b) > 0).all()
    # Without verified copies there is nothing to support a pair.
    none = second_chance_pairs(a, b, s, 8, bar=0.65, low=0.58, strong_a=sa[:0], strong_b=sb[:0], checked=checked)
    assert len(none[0]) == 0
    # With a support of 2, 6 gets its three pairs; 5 still gets none (1's copies are 0, 2 and 3,
    # and 5 is near only 2 of them; 2's are 0, 1 and 3, and 5 is near only 1).
    two = set(zip(*(x.tolist() for x in second_chance_pairs(a, b, s, 8, bar=0.65, low=0.58, strong_a=sa,
                                                             strong_b=sb, checked=checked, support=2))))
    assert {(0, 6), (1, 6), (2, 6)} <= two and not any(5 in p for p in two)


def test_second_round_verifies_a_copy_the_engine_placed_far_from_its_picture(images):
    """A copy listed only under the bar by a verified group of copies gets checked (and verifies);
    a look-alike in the same position is checked and does not."""
    paths = [images["orig"], images["crop"], images["rotated"], images["half_gray"], images["border_blur"],
             images["other"]]
    sim = np.full((6, 6), 0.5, np.float32)
    sim[:4, :4] = 0.9
    sim[4:, :4] = sim[:4, 4:] = 0.6
    index, lists = _lists(sim)
    raw = np.tile(np.array([[1, 0, 0]], np.float32), (6, 1))
    plain = score_neighbors(index, lists, raw, paths, bar=0.65)
    second = score_neighbors(index, lists, raw, paths, bar=0.65, second_bar=0.58)
    assert plain.n_checked == 6 and second.n_checked == 6 + 8

    def inliers(out, i, j):
        return dict(zip(out.index[i].tolist(), out.inliers[i].tolist()))[j]

    for j in range(4):
        assert inliers(plain, 4, j) == -1
        assert inliers(second, 4, j) >= VERIFIED_INLIERS
        assert 0 <= inliers(second, 5, j) < VERIFIED_INLIERS
    assert inliers(second, 4, 5) == -1  # 0.5: under the second bar
    assert {(int(x), int(y)) for x, y in zip(second.pairs.a, second.pairs.b)} >= {(j, 4) for j in range(4)}


def test_rows_with_padding_keep_their_neighbours_first(images):
    """Fewer neighbours than k: the -1 padding (NaN score) goes last, the real entries first."""
    paths = [images["orig"], images["crop"], images["other"]]
    index = np.array([[-1, 1, -1], [0, -1, -1], [-1, -1, -1]], np.int32)
    nan = np.float16(np.nan)
    sim = np.array([[nan, 0.9, nan], [0.9, nan, nan], [nan, nan, nan]], np.float16)
    raw = np.array([[1, 0, 0], [0.9, 0.43, 0], [0, 1, 0]], np.float32)
    out = score_neighbors(index, sim, raw, paths, bar=0.7)
    assert out.index[0, 0] == 1 and out.index[1, 0] == 0
    assert (out.index[0, 1:] == -1).all() and np.isnan(out.score[0, 1:].astype(np.float32)).all()


def test_layout_candidates_enter_the_lists_and_are_verified(images, tmp_path):
    from PIL import Image

    from dupscope.images import layout_descriptor
    from dupscope.scoring import layout_candidates

    paths = [images["orig"], images["other"], images["other2"], images["half_gray"]]
    pixels = [np.asarray(Image.open(p).convert("RGB").resize((64, 64))) for p in paths]
    layout = np.stack([layout_descriptor(x) for x in pixels]).astype(np.float16)
    a, b = layout_candidates(layout, np.ones(4, bool), nearest=1, bar=0.9)
    pairs = {(min(x, y), max(x, y)) for x, y in zip(a.tolist(), b.tolist())}
    assert (0, 3) in pairs  # the half-size grey copy has the original's layout
    # The engine listed only look-alikes: image 3 is in no list, and k = 1.
    index = np.array([[1], [2], [1], [1]], np.int32)
    sim = np.array([[0.8], [0.8], [0.8], [0.6]], np.float16)
    emb = np.eye(4, dtype=np.float32) + 0.1
    raw = np.array([[1, 0, 0], [0.9, 0.43, 0], [0.8, 0.6, 0], [0.99, 0.1, 0]], np.float32)
    out = score_neighbors(index, sim, raw, paths, bar=0.7, extra=(a, b), embeddings=emb)
    assert out.index.shape == (4, 1)
    assert out.index[0, 0] == 3 and out.index[3, 0] == 0  # the copy displaced the look-alike
    assert out.inliers[0, 0] >= VERIFIED_INLIERS
    expected = (1 + emb[0] @ emb[3] / np.linalg.norm(emb[0]) / np.linalg.norm(emb[3])) / 2
    assert float(out.embedding_similarity[0, 0]) == pytest.approx(expected, abs=1e-3)


def test_layout_descriptor_is_unit_and_zero_for_flat():
    from dupscope.images import layout_descriptor

    v = layout_descriptor(np.random.default_rng(1).integers(0, 255, (40, 30, 3)).astype(np.uint8))
    assert v.shape == (256,) and abs(float(np.linalg.norm(v)) - 1) < 1e-5
    assert not layout_descriptor(np.full((40, 30), 7, np.uint8)).any()


@pytest.mark.parametrize("shape", [(224, 224, 3), (224, 224), (48, 80, 3), (40, 30, 3)])
def test_layout_descriptor_block_sums_equal_the_box_filter(shape):
    """Sizes the grid divides take block sums; the result is PIL's box filter of the float grey
    image, as for every other size."""
    from dupscope.images import layout_descriptor

    px = np.random.default_rng(sum(shape)).integers(0, 256, shape).astype(np.uint8)
    grey = px.astype(np.float32) if px.ndim == 2 else px.astype(np.float32).mean(axis=2)
    v = np.asarray(Image.fromarray(grey, "F").resize((16, 16), Image.Resampling.BOX), np.float64).ravel()
    v -= v.mean()
    np.testing.assert_allclose(layout_descriptor(px), v / np.linalg.norm(v), atol=1e-6)


def _layouts(paths):
    from dupscope.images import layout_descriptor, load_image

    return np.stack([layout_descriptor(load_image(p, 224).pixels) for p in paths])


def test_mirror_check_needs_a_plausible_mirrored_layout(images):
    from dupscope.verify import mirror_plausible

    paths = [images["orig"], images["mirror"], images["other"], images["crop"]]
    layout = _layouts(paths)
    ok = mirror_plausible(layout, np.array([0, 0, 0]), np.array([1, 2, 3]))
    assert ok[0] and not ok[2]  # the mirrored copy passes; the unmirrored crop is not mirrored
    flat = np.vstack([layout[:1], np.zeros((1, 256), np.float32)])
    assert mirror_plausible(flat, np.array([0]), np.array([1]))[0]  # no layout: always tried
    ev = verify_pairs(paths, np.array([0, 0]), np.array([1, 3]), layout=layout)
    assert ev.mirrored[0] and ev.inliers[0] >= VERIFIED_INLIERS
    assert not ev.mirrored[1] and ev.inliers[1] >= VERIFIED_INLIERS


def test_greys_kept_by_phase_1_give_the_same_evidence(images, tmp_path):
    """Grey images the decode threads keep are the arrays verification would decode itself
    (PNG; a JPEG the model's draft did not reduce, or reduced by the factor verification's own
    draft uses); a JPEG decoded at another scale is not kept; the budget and keep_only bound
    what is held."""
    from dupscope.images import decode_image, grey_draft_scale, load_image
    from dupscope.verify import KeptGreys, _grey_resized

    cases = [(images["orig"], True), (images["half_gray"], True)]
    # (size, kept): 1600 x 1200 and 1024 x 683 are drafted by 4 and 2 for the model (both sides
    # >= 224) and for verification (the longer side >= 384); 3000 x 2000 by 8 and 4; 1000 x 400
    # by 1 and 2; 320 x 240 by neither.
    for size, kept in (((1600, 1200), True), ((1024, 683), True), ((3000, 2000), False), ((1000, 400), False),
                       ((320, 240), True)):
        path = tmp_path / f"{size[0]}x{size[1]}.jpg"
        scene(7, size).save(path, quality=92)
        img, w, h = decode_image(path, draft_longer=384)
        assert img.info["draft_scale"] == grey_draft_scale(w, h, 384)
        assert max(img.size) >= 384 or max(w, h) < 384
        cases.append((str(path), kept))
    for path, kept in cases:
        got = load_image(path, 224, grey_side=384)
        assert (got.grey is not None) == kept, path
        if kept:
            np.testing.assert_array_equal(got.grey, _grey_resized(path, 384))
    side = VerifyConfig().side
    paths = [images["orig"], images["crop"], images["mirror"], images["other"]]
    store = KeptGreys(side, 10 << 20)
    for i, p in enumerate(paths):
        assert store.put(i, load_image(p, 224, grey_side=side).grey)
    a, b = np.array([0, 0, 0]), np.array([1, 2, 3])
    with_kept = verify_pairs(paths, a, b, kept=store)
    alone = verify_pairs(paths, a, b)
    for name in ("inliers", "coverage", "mirrored", "checked"):
        np.testing.assert_array_equal(getattr(with_kept, name), getattr(alone, name))
    assert len(store) == 0 and store.bytes == 0  # each taken once
    grey = load_image(images["orig"], 224, grey_side=384).grey
    assert grey.shape == (288, 384)  # the 320 x 240 picture, longer side to 384
    tiny = KeptGreys(384, int(1.5 * grey.nbytes))
    assert tiny.put(0, grey) and not tiny.put(1, grey)  # the second would pass the budget
    assert len(tiny) == 1 and tiny.bytes == grey.nbytes and tiny.has_room()
    assert not tiny.put(0, grey)  # a row is kept once
    tiny.keep_only([5])
    assert len(tiny) == 0 and tiny.bytes == 0 and tiny.has_room()


def test_faint_picture_matches_its_copy_with_a_bright_watermark(tmp_path):
    """A bright overlay decides the global stretch of the copy alone (its 99th percentile), which
    leaves the faint picture below the corner test's threshold there; the local equalisation gives
    both images the same visible content again."""
    from PIL import ImageFont

    faint = Image.fromarray((np.asarray(scene(5)).astype(np.float32) * 0.08).astype(np.uint8))
    marked = faint.copy()
    draw = ImageDraw.Draw(marked)
    draw.text((20, 100), "SAMPLE", fill=(255, 255, 255), font=ImageFont.load_default(size=48))
    draw.rectangle((0, 200, 319, 239), fill=(255, 255, 0))
    paths = [str(tmp_path / "faint.png"), str(tmp_path / "marked.png")]
    faint.save(paths[0])
    marked.save(paths[1])
    off = verify_pairs(paths, np.array([0]), np.array([1]), VerifyConfig(local_contrast=0))
    on = verify_pairs(paths, np.array([0]), np.array([1]))
    assert off.checked[0] and on.checked[0]
    assert off.inliers[0] < 8, int(off.inliers[0])
    assert on.inliers[0] >= 2 * max(8, int(off.inliers[0])) and not on.mirrored[0], int(on.inliers[0])
