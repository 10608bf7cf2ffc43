"""Geometric verification of candidate pairs: local features and a similarity transform.

An embedding says that two images *look alike*; it cannot say whether they show the same
picture: two photos of one landmark, two different dogs on a lawn or two star fields score as high
as a cropped or rotated copy. A copy, however edited (resized, cropped, bordered, rotated a few
degrees, re-encoded, recoloured, watermarked, mirrored), keeps the *positions* of its content up
to one similarity transform (scale, rotation, shift) of the original, or of its mirror image.
Two different photos of one scene do not: their local features do not line up under one such
transform. This module checks exactly that, for the candidate pairs phase 1 finds:

1. Each image that takes part in a candidate pair is decoded once in grey (or taken from phase 1,
   whose decoding keeps this grey image up to a memory budget: :class:`KeptGreys`), resized so that its
   longer side is :attr:`VerifyConfig.side` pixels (up or down: a quarter-size copy and its
   original then meet at one scale), its grey levels stretched so that the 1st and 99th
   percentiles become 0 and 255 (a darkened or low-contrast copy then shows the same corners),
   then equalised locally (contrast-limited adaptive histogram equalisation, CLAHE, in the
   compiled core: :attr:`VerifyConfig.local_contrast`; a bright watermark or border no longer
   decides the contrast of the whole picture, so faint content keeps its corners in every
   copy), and described by at most ``features`` oriented binary keypoints (:func:`dupscope._core.keypoints`,
   this package's own detector: FAST-9 corners on a 5-level pyramid ranked by the Harris measure,
   oriented by their intensity centroid, each described by 256 comparisons of box-smoothed
   pixels, the scheme of OpenCV's ORB). Its comparison pattern holds every comparison's
   vertically flipped twin, so the mirror image's features are the direct keypoints mirrored with
   their descriptors' bit pairs swapped, without a second pass over the pixels. On the realistic
   benchmark it took about half of ORB's time per image, and the mirror features nothing.
2. For a pair, descriptors are matched both ways (Hamming distance) with Lowe's ratio test
   (``ratio``) and kept when mutual; a similarity transform is fitted to the matched positions with RANSAC
   (``cv2.estimateAffinePartial2D``, reprojection threshold ``ransac_px`` pixels at ``side``).
   The result is the number of *inliers*: matches that agree with the fitted transform, and how
   much of the smaller image they span. Scale changes beyond ``max_scale`` or rotations beyond
   ``max_rotation`` degrees (neither of which an edit of a picture makes) count as no match.
3. If fewer than ``enough_inliers`` inliers are found, the pair is checked again against the
   mirror image of the second image, and the better result is kept; given the images' layout
   descriptors, only when the mirrored layouts agree at least as well as the direct ones
   (:func:`mirror_plausible`).

Features are computed in parallel threads (OpenCV releases the GIL), only for images with a
candidate, and held in a cache bounded by :attr:`VerifyConfig.cache_bytes`; pairs are visited in
order of their lower index so that cached features are reused before they are evicted.

The outcome per pair is an :class:`Evidence` row; :func:`dupscope.scoring.pair_score` turns it,
together with the embedding similarity, into the pair's final score.
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .defaults import usable_cpus
from .errors import VerificationUnavailable

__all__ = ["VerifyConfig", "Evidence", "FeatureCache", "Features", "KeptGreys", "image_features", "mirrored_features",
           "match_features", "mirror_plausible", "verifier_id", "verify_pairs",
           "VerificationUnavailable"]


@dataclass(frozen=True)
class VerifyConfig:
    """Parameters of the geometric check (see the module docstring).

    Attributes
    ----------
    side : int
        Longer side, in pixels, each image is resized to before features are computed.
    features : int
        Most keypoints kept per image (the strongest of each level). 320 px and 800 keypoints
        instead of 384 and 1,000 cut the realistic benchmark's verification cost from 1.33x to
        1.28x (2-core Sapphire Rapids VM) at the same accuracy within noise on both accuracy
        benchmarks and both seeds (benchmarks/RESULTS.md).
    levels : int
        Pyramid levels.
    scale_factor : float
        Scale between two pyramid levels: 5 levels at 1.4 span a factor of 3.8, as OpenCV ORB's
        default 8 at 1.2 (3.6) do, over two thirds of their pixels.
    ratio : float
        Lowe's ratio test: a match is kept when its distance is below ``ratio`` times the
        second-best one.
    ransac_px : float
        RANSAC reprojection threshold in pixels (at ``side``).
    max_scale : float
        Largest scale factor between the two images (either way) that still counts.
    max_rotation : float
        Largest rotation, in degrees, that still counts.
    enough_inliers : int
        Inliers from which the direct check is trusted and the mirror image is not tried.
    fast_threshold : int
        Grey-level difference from the centre a FAST circle pixel needs to count.
    local_contrast : float
        Clip limit of the local histogram equalisation (CLAHE) after the global stretch; 0
        turns it off. On the accuracy benchmarks (seed 0) 3 raised AP from 0.9973 to 0.9987
        (realistic) and from 0.9968 to 0.9975 (existing): dark astronomy photos and copies with a
        bright watermark found their matches (benchmarks/RESULTS.md).
    contrast_tiles : int
        Tiles per side of that equalisation.
    cache_bytes : int
        Memory the feature cache may use.
    keep_bytes : int
        Memory the grey images kept from phase 1's decoding may use (:class:`KeptGreys`; about
        10,000 images of 320 x 320 at the default); images past it are decoded again.
    workers : int or None
        Threads computing features and matching (default: the usable cores).
    """

    side: int = 320
    features: int = 800
    levels: int = 5
    scale_factor: float = 1.4
    ratio: float = 0.8
    ransac_px: float = 6.0
    max_scale: float = 6.0
    max_rotation: float = 25.0
    enough_inliers: int = 20
    fast_threshold: int = 10
    local_contrast: float = 3.0
    contrast_tiles: int = 8
    cache_bytes: int = 512 * 1024**2
    keep_bytes: int = 1024**3
    workers: int | None = None


@dataclass
class Features:
    """Keypoint positions (K, 2) float32 and binary descriptors (K, 32) uint8 of one image (resized
    to ``side``), and that resized image's size."""

    points: np.ndarray
    descriptors: np.ndarray
    size: tuple[int, int]

    @property
    def nbytes(self) -> int:
        return self.points.nbytes + self.descriptors.nbytes + 64


@dataclass
class Evidence:
    """What the check found for a list of pairs (arrays of one length).

    Attributes
    ----------
    inliers : numpy.ndarray
        int32, matches consistent with the best similarity transform (0: none or not checked).
    coverage : numpy.ndarray
        float32 in [0, 1]: the fraction of the smaller image's area spanned by the inliers'
        bounding box.
    mirrored : numpy.ndarray
        bool, whether the best transform maps onto the mirror image.
    checked : numpy.ndarray
        bool, whether both images could be read and described (False: no evidence either way).
    """

    inliers: np.ndarray
    coverage: np.ndarray
    mirrored: np.ndarray
    checked: np.ndarray

    @classmethod
    def empty(cls, n: int) -> "Evidence":
        return cls(np.zeros(n, np.int32), np.zeros(n, np.float32), np.zeros(n, bool), np.zeros(n, bool))


def verifier_id(config: VerifyConfig = VerifyConfig()) -> str:
    """The settings that decide a pair's evidence, as one string (stored in each verified file's
    ``attrs["verifier"]``): an append run reuses a file's evidence only when it was made by the
    same verifier, and checks the old pairs again otherwise."""
    return (f"dupscope-keypoints-1 jpeg-draft-longer fast={config.fast_threshold} clahe={config.local_contrast}x{config.contrast_tiles} side={config.side} features={config.features} levels={config.levels}x{config.scale_factor} "
            f"ratio={config.ratio} ransac={config.ransac_px} scale<={config.max_scale} "
            f"rotation<={config.max_rotation} mirror<{config.enough_inliers}")


def _cv2():
    try:
        import cv2
    except ImportError as exc:  # pragma: no cover - the package depends on it
        raise VerificationUnavailable(
            "geometric verification needs OpenCV: pip install opencv-python-headless (or pass --no-verify)"
        ) from exc
    return cv2


def _grey_resized(path: str, side: int) -> np.ndarray:
    from .images import decode_image, feature_grey

    return feature_grey(decode_image(path, colour="rgb", draft_longer=side)[0], side)


def _normalise(grey: np.ndarray, config: VerifyConfig) -> np.ndarray:
    """Grey levels stretched so that the 1st and 99th percentiles become 0 and 255, then equalised
    locally (CLAHE with ``config.local_contrast`` and ``config.contrast_tiles``; 0: the stretch
    only), by the compiled core (:func:`dupscope._core.normalise_contrast`, the GIL released)."""
    from ._core import normalise_contrast

    return normalise_contrast(np.ascontiguousarray(grey, np.uint8), config.local_contrast, config.contrast_tiles)


class KeptGreys:
    """Grey images (:func:`dupscope.images.feature_grey` at ``side``) that phase 1's decoding
    made on the way, by row, up to ``budget`` bytes (later ones are not kept): verification takes
    them instead of decoding those files again. Thread-safe.

    Parameters
    ----------
    side : int
        :attr:`VerifyConfig.side`.
    budget : int
        Bytes the kept images may use (:attr:`VerifyConfig.keep_bytes`).
    """

    def __init__(self, side: int, budget: int) -> None:
        self.side, self.budget = int(side), int(budget)
        self.lock = threading.Lock()
        self.items: dict[int, np.ndarray] = {}
        self.bytes = 0

    def __len__(self) -> int:
        return len(self.items)

    def has_room(self) -> bool:
        """Whether the budget is not spent yet (a decode thread need not make the image otherwise)."""
        return self.bytes < self.budget

    def put(self, row: int, grey: np.ndarray) -> bool:
        """Keep ``grey`` for ``row`` if the budget allows; whether it was kept."""
        with self.lock:
            if self.bytes + grey.nbytes > self.budget or row in self.items:
                return False
            self.items[row] = grey
            self.bytes += grey.nbytes
            return True

    def take(self, row: int) -> np.ndarray | None:
        """The kept image of ``row`` (then no longer kept), or None."""
        with self.lock:
            grey = self.items.pop(row, None)
            if grey is not None:
                self.bytes -= grey.nbytes
            return grey

    def keep_only(self, rows) -> None:
        """Drop every kept image whose row is not in ``rows`` (those without a candidate pair)."""
        wanted = set(np.asarray(rows, np.int64).tolist())
        with self.lock:
            for row in [r for r in self.items if r not in wanted]:
                self.bytes -= self.items.pop(row).nbytes


def prepared_grey(path: str | os.PathLike, config: VerifyConfig = VerifyConfig()) -> np.ndarray:
    """The grey image features are computed on: decoded, resized to ``config.side``, stretched
    and equalised locally (:func:`_normalise`).

    Raises
    ------
    dupscope.images.ImageLoadError
        The image cannot be read.
    """
    return _normalise(_grey_resized(os.fspath(path), config.side), config)


def image_features(path: str | os.PathLike | np.ndarray, config: VerifyConfig = VerifyConfig(), *,
                   mirror: bool = False) -> Features:
    """Oriented binary keypoints of one image (:func:`dupscope._core.keypoints`): a path, or the
    array :func:`prepared_grey` returns for it (``mirror`` then flips that array and detects on
    the flipped image).

    Raises
    ------
    dupscope.images.ImageLoadError
        The image cannot be read.
    """
    from ._core import keypoints

    grey = path if isinstance(path, np.ndarray) else prepared_grey(path, config)
    if mirror:
        grey = grey[:, ::-1]
    grey = np.ascontiguousarray(grey, np.uint8)
    points, desc, _, _ = keypoints(grey, config.features, config.levels, config.scale_factor, config.fast_threshold)
    return Features(points, desc, (grey.shape[1], grey.shape[0]))


def mirrored_features(grey: np.ndarray, direct: Features, config: VerifyConfig = VerifyConfig()) -> Features:
    """Features of the mirror image of ``grey`` (the array :func:`prepared_grey` returns) from its
    direct features, without touching the pixels: the keypoints' positions mirrored and their
    descriptors' bit pairs swapped (:func:`dupscope._core.mirror_descriptors`; the comparison
    pattern holds each comparison's vertically flipped twin, and a mirror maps a keypoint's
    orientation t to 180 degrees - t, which turns each comparison into its twin). Detection on
    the flipped image finds the same keypoints with the same descriptors, up to rounding ties
    (tested)."""
    from ._core import mirror_descriptors

    w = grey.shape[1]
    points = direct.points.copy()
    points[:, 0] = (w - 1) - points[:, 0]
    return Features(points, mirror_descriptors(np.ascontiguousarray(direct.descriptors)), direct.size)


def mutual_matches(d1: np.ndarray, d2: np.ndarray, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs ``(i, j)`` where ``d2[j]`` is ``d1[i]``'s nearest descriptor (Hamming distance)
    and ``d1[i]`` is ``d2[j]``'s, each passing Lowe's ratio test (nearest closer than ``ratio``
    times the second nearest). Computed by the compiled core in one pass over the distances
    (the GIL released), in increasing order of ``i``."""
    from ._core import hamming_matches

    return hamming_matches(np.ascontiguousarray(d1, np.uint8), np.ascontiguousarray(d2, np.uint8), ratio)


def match_features(a: Features, b: Features, config: VerifyConfig = VerifyConfig()) -> tuple[int, float]:
    """Inliers of the best similarity transform from ``a`` to ``b`` and their coverage (0, 0.0
    when there is none)."""
    cv2 = _cv2()
    if len(a.points) < 3 or len(b.points) < 3:
        return 0, 0.0
    ia, ib = mutual_matches(a.descriptors, b.descriptors, config.ratio)
    if len(ia) < 3:
        return 0, 0.0
    src, dst = a.points[ia], b.points[ib]
    model, mask = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC,
                                              ransacReprojThreshold=config.ransac_px,
                                              maxIters=2000, confidence=0.995)
    if model is None or mask is None:
        return 0, 0.0
    scale = math.hypot(model[0, 0], model[1, 0])
    angle = abs(math.degrees(math.atan2(model[1, 0], model[0, 0])))
    if not (1 / config.max_scale <= scale <= config.max_scale) or angle > config.max_rotation:
        return 0, 0.0
    keep = mask.ravel().astype(bool)
    n = int(keep.sum())
    if n < 3:
        return 0, 0.0
    # Both images' inlier boxes from one (4, n) array: min and max per row in one call each
    # (a third of the time of two np.ptp calls over the (n, 2) views; the same float32 spans).
    corners = np.concatenate([src, dst], axis=1)[keep].T.copy()
    span = corners.max(axis=1) - corners.min(axis=1)
    cov = (float(span[0] * span[1]) / max(a.size[0] * a.size[1], 1),
           float(span[2] * span[3]) / max(b.size[0] * b.size[1], 1))
    return n, float(min(1.0, max(cov)))


class FeatureCache:
    """Features by (image, mirrored), least recently used evicted past a byte budget
    (:attr:`VerifyConfig.cache_bytes`); each entry computed once even when several threads ask at
    the same time. One cache may serve several :func:`verify_pairs` calls over the same rows (a
    second round of candidates then reuses the first round's features)."""

    def __init__(self, paths: Sequence[str], config: VerifyConfig, kept: KeptGreys | None = None) -> None:
        self.paths, self.config = paths, config
        self.kept = kept if kept is not None and kept.side == config.side else None
        self.lock = threading.Lock()
        self.items: OrderedDict = OrderedDict()
        self.pending: dict = {}
        self.bytes = 0
        self.greys: OrderedDict = OrderedDict()
        self.grey_bytes = 0

    def _grey(self, i: int) -> np.ndarray:
        """The prepared grey image of row ``i``; the last few are kept (an eighth of the budget)
        so that a mirror-image check right after the direct one does not decode the file again."""
        with self.lock:
            grey = self.greys.get(i)
            if grey is not None:
                self.greys.move_to_end(i)
                return grey
        grey = self.kept.take(i) if self.kept is not None else None
        grey = _normalise(grey, self.config) if grey is not None else prepared_grey(self.paths[i], self.config)
        with self.lock:
            if i not in self.greys:
                self.greys[i] = grey
                self.grey_bytes += grey.nbytes
            while self.grey_bytes > self.config.cache_bytes // 8 and len(self.greys) > 1:
                _, old = self.greys.popitem(last=False)
                self.grey_bytes -= old.nbytes
        return grey

    def get(self, i: int, mirror: bool) -> Features | None:
        key = (i, mirror)
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
            event = self.pending.get(key)
            owner = event is None
            if owner:
                event = self.pending[key] = threading.Event()
        if not owner:
            event.wait()
            return self.get(i, mirror)  # computed by the other thread (recomputed if already evicted)
        try:
            grey = self._grey(i)
            if mirror:
                direct = self.get(i, False)
                feats = None if direct is None else mirrored_features(grey, direct, self.config)
            else:
                feats = image_features(grey, self.config)
        except Exception:  # unreadable now (removed, changed): no evidence for its pairs
            feats = None
        with self.lock:
            self.items[key] = feats
            self.bytes += feats.nbytes if feats is not None else 64
            while self.bytes > self.config.cache_bytes and len(self.items) > 1:
                _, old = self.items.popitem(last=False)
                self.bytes -= old.nbytes if old is not None else 64
            del self.pending[key]
        event.set()
        return feats


def mirror_plausible(layout: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether the pair ``(a[p], b[p])`` is worth checking against the mirror image: the cosine
    of the two layout descriptors with one of them mirrored is at least their direct cosine, or
    one image has no layout (flat, unreadable). A mirrored copy keeps the mirrored layout almost
    exactly; for two unrelated pictures either way is as likely. On the realistic benchmark, 29%
    of the candidate pairs passed, and every mirrored copy by a wide margin (mirrored cosine
    0.97-1.00 against a direct one of 0.24-0.83)."""
    from .images import LAYOUT_SIDE

    lay = np.asarray(layout, np.float32)
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    out = np.ones(len(a), bool)
    step = 1 << 16
    for s in range(0, len(a), step):
        x, y = lay[a[s:s + step]], lay[b[s:s + step]]
        flipped = y.reshape(-1, LAYOUT_SIDE, LAYOUT_SIDE)[:, :, ::-1].reshape(len(y), -1)
        direct = np.einsum("pd,pd->p", x, y)
        mirrored = np.einsum("pd,pd->p", x, flipped)
        flat = ~(x.any(axis=1) & y.any(axis=1))
        out[s:s + len(x)] = (mirrored >= direct) | flat
    return out


def verify_pairs(paths: Sequence[str], a: np.ndarray, b: np.ndarray, config: VerifyConfig = VerifyConfig(), *,
                 progress: Callable[[int], None] | None = None, kept: KeptGreys | None = None,
                 layout: np.ndarray | None = None, features: FeatureCache | None = None) -> Evidence:
    """Check every pair ``(paths[a[p]], paths[b[p]])`` (see the module docstring).

    Parameters
    ----------
    paths : sequence of str
        Image files, by row.
    a, b : numpy.ndarray
        Row indices of each pair's two images.
    config : VerifyConfig
    progress : callable, optional
        Called with the number of pairs done so far.
    kept : KeptGreys, optional
        Grey images phase 1 already made (taken, not decoded again; the same arrays either way).
    layout : numpy.ndarray, optional
        (N, 256) layout descriptors (:func:`dupscope.images.layout_descriptor`). With them, the
        mirror image is tried only for pairs whose layouts agree at least as well mirrored as
        they do directly (:func:`mirror_plausible`); without them, for every pair that fails
        the direct check.
    features : FeatureCache, optional
        The feature cache to use (and fill) for ``paths`` and ``config``, e.g. one kept from an
        earlier call; default a new one (with ``kept``).

    Returns
    -------
    Evidence
        One entry per pair, in the order given.
    """
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    ev = Evidence.empty(len(a))
    if not len(a):
        return ev
    cache = features if features is not None else FeatureCache(paths, config, kept)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    try_mirror = mirror_plausible(layout, lo, hi) if layout is not None else np.ones(len(a), bool)
    order = np.lexsort((hi, lo))
    workers = config.workers or usable_cpus()

    cv2 = _cv2()

    def one(p: int) -> None:
        i, j = int(lo[p]), int(hi[p])
        # RANSAC's draws (a per-thread generator) seeded by the pair itself: the same pair, the
        # same answer, whatever else is checked in the same call (a Ray task checks a slice).
        cv2.setRNGSeed((i * 1_000_003 + j) % 2_147_483_647)
        fa, fb = cache.get(i, False), cache.get(j, False)
        if fa is None or fb is None:
            return
        n, cov = match_features(fa, fb, config)
        mirrored = False
        if n < config.enough_inliers and try_mirror[p]:
            fm = cache.get(j, True)
            if fm is not None:
                nm, covm = match_features(fa, fm, config)
                if nm > n:
                    n, cov, mirrored = nm, covm, True
        ev.inliers[p], ev.coverage[p], ev.mirrored[p], ev.checked[p] = n, cov, mirrored, True

    done = 0
    step = max(64, 16 * workers)
    with ThreadPoolExecutor(workers) as pool:
        for s in range(0, len(order), step):
            chunk = order[s:s + step]
            # The chunk's images first, one per thread: the pairs come sorted by their first
            # image, so threads taking pairs directly would wait on each other for its features.
            list(pool.map(lambda i: cache.get(i, False), np.unique(np.r_[lo[chunk], hi[chunk]]).tolist()))
            list(pool.map(one, chunk.tolist()))
            done += len(chunk)
            if progress:
                progress(done)
    return ev
