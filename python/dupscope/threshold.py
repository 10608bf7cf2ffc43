"""Choosing a duplicate threshold without ground truth.

Most images' nearest neighbour is just another image of the same kind, so the similarity of each
image to its nearest neighbour (``neighbors/similarity[:, 0]``) forms a broad *bulk*. Images with
a near-duplicate have a nearest neighbour far more similar than that, forming a second, *duplicate*
mode near 1. When both modes are there, the deepest point of the (smoothed) histogram between them
separates them, and is a sensible threshold to start from. When there is no such second mode
(few or no duplicates, or duplicates that blend into the bulk), :func:`suggest_threshold` falls
back to calling unusually high nearest-neighbour similarities duplicates, and says so.

Everything here is a pure function of a numpy array, so the explorer page and ``dupscope report``
can call it on what they already read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Histogram", "Suggestion", "nearest_neighbor_similarity", "suggest_threshold"]

# Bins of the histogram over [low, 1]: fine enough to place a valley within ~0.005 on the range
# most models' nearest-neighbour similarities span.
_BINS = 120
# A second mode counts only if the histogram drops between the two modes to at most this fraction
# of the smaller mode's height, and it holds at least _MIN_MODE_COUNT images.
_VALLEY_DEPTH = 0.6
_MIN_MODE_COUNT = 3
_MIN_SAMPLES = 20
# Fallback: a similarity this many robust standard deviations above the median nearest-neighbour
# similarity is unusual enough to look at.
_FALLBACK_SIGMAS = 4.0


@dataclass
class Histogram:
    """Histogram of nearest-neighbour similarities.

    Attributes
    ----------
    counts : numpy.ndarray
        int64 (B,), images per bin.
    edges : numpy.ndarray
        float64 (B + 1,), bin edges; the last bin includes its right edge (similarity 1), the first
        also holds the lowest 0.1% when there are 1000 or more values (so a few outliers do not
        stretch the range).
    smoothed : numpy.ndarray
        float64 (B,), counts smoothed with a Gaussian kernel (what modes and valleys are read from).
    """

    counts: np.ndarray
    edges: np.ndarray
    smoothed: np.ndarray

    @property
    def centers(self) -> np.ndarray:
        """Bin centres."""
        return (self.edges[:-1] + self.edges[1:]) / 2


@dataclass
class Suggestion:
    """A suggested duplicate threshold and why.

    Attributes
    ----------
    threshold : float
        Suggested similarity threshold: pairs at or above it are likely duplicates (NaN when there
        were no similarities at all).
    reasoning : str
        One or two sentences for a person: which rule gave the threshold and what it means here.
    histogram : Histogram
        The data the rule looked at (for plotting).
    method : str
        ``"valley"`` (a valley between the bulk and a duplicate mode), ``"fallback"`` (no clear
        valley: an outlier rule) or ``"none"`` (no data).
    bulk_mode : float
        Similarity of the bulk's peak (NaN if none).
    duplicate_mode : float
        Similarity of the duplicate mode's peak (NaN when there is none).
    n_above : int
        Images whose nearest neighbour is at or above the threshold.
    """

    threshold: float
    reasoning: str
    histogram: Histogram
    method: str = "valley"
    bulk_mode: float = float("nan")
    duplicate_mode: float = float("nan")
    n_above: int = 0


def nearest_neighbor_similarity(h5) -> np.ndarray:
    """Each image's similarity to its nearest neighbour, from a similarity file.

    Parameters
    ----------
    h5 : path-like or dupscope.SimilarityFile

    Returns
    -------
    numpy.ndarray
        float64 (N,), ``neighbors/similarity[:, 0]``; NaN for images without neighbours (failed
        to load, or a single image).
    """
    from .store import SimilarityFile

    if isinstance(h5, SimilarityFile):
        return h5.top_similarity()
    with SimilarityFile(h5) as f:
        return f.top_similarity()


def _smooth(counts: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing; reflecting at both ends keeps a pile-up at similarity 1 a peak."""
    radius = max(1, int(3 * sigma))
    x = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(counts.astype(np.float64), radius, mode="reflect" if len(counts) > radius else "edge")
    return np.convolve(padded, kernel, mode="valid")


def _peaks(y: np.ndarray) -> list[tuple[int, float]]:
    """Local maxima with their prominence (height above the higher of the two bases around them)."""
    n = len(y)
    out = []
    k = 0
    while k < n:
        # A plateau counts once, at its middle.
        e = k
        while e + 1 < n and y[e + 1] == y[k]:
            e += 1
        left_ok = k == 0 or y[k - 1] < y[k]
        right_ok = e == n - 1 or y[e + 1] < y[k]
        if left_ok and right_ok and y[k] > 0:
            m = (k + e) // 2
            h = y[m]
            # Walk outwards until a higher point (or the end); the lowest point on the way is the base.
            lo = k
            while lo > 0 and y[lo - 1] <= h:
                lo -= 1
            hi = e
            while hi < n - 1 and y[hi + 1] <= h:
                hi += 1
            left_base = y[lo:k + 1].min() if (lo > 0) else y[: k + 1].min()
            right_base = y[e:hi + 1].min() if (hi < n - 1) else y[e:].min()
            # At an end of the range the peak is not bounded on that side: only the other base counts.
            if lo == 0 and hi == n - 1:
                base = min(left_base, right_base)
            elif lo == 0:
                base = right_base
            elif hi == n - 1:
                base = left_base
            else:
                base = max(left_base, right_base)
            out.append((m, float(h - base)))
        k = e + 1
    return out


def suggest_threshold(nn_sim: np.ndarray, *, bins: int = _BINS) -> Suggestion:
    """Suggest a duplicate threshold from each image's nearest-neighbour similarity.

    The histogram of the similarities (over the range they span, up to 1) is smoothed with a
    Gaussian kernel of about 1.5 bins. Its two most prominent peaks are taken as the *bulk* (the
    lower) and the *duplicate mode* (the higher). If the histogram falls between them to at most
    60% of the smaller peak and the duplicate mode holds at least 3 images, the threshold is the
    lowest point between them (the deepest valley). Otherwise there is no clear valley and the
    threshold is the median plus 4 robust standard deviations (1.4826 times the median absolute
    deviation), capped at the largest similarity; the reasoning says which rule was used.

    Parameters
    ----------
    nn_sim : numpy.ndarray
        Nearest-neighbour similarity per image, e.g. ``neighbors/similarity[:, 0]``
        (:func:`nearest_neighbor_similarity`); any float dtype, NaN entries (failed images) are
        ignored. Any similarity in [0, 1] works, not only dupscope's.
    bins : int
        Number of histogram bins.

    Returns
    -------
    Suggestion
        ``threshold``, ``reasoning`` and the ``histogram``; ``method`` says which rule applied.

    Notes
    -----
    A pure function: it reads nothing but its argument and is deterministic. A valley is only a
    starting point; duplicates that are heavily edited (crops, overlays) can sit below it, and
    a dataset of near-identical pictures (e.g. astronomy, medical scans) can have a bulk that
    reaches up to it. Check pairs near the threshold in the explorer.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> s = np.concatenate([rng.normal(0.8, 0.03, 900), rng.normal(0.99, 0.004, 100)]).clip(0, 1)
    >>> sug = suggest_threshold(s)
    >>> sug.method, 0.88 < sug.threshold < 0.98
    ('valley', True)
    """
    x = np.asarray(nn_sim, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    if x.size == 0:
        empty = Histogram(np.zeros(0, np.int64), np.zeros(1), np.zeros(0))
        return Suggestion(float("nan"), "No nearest-neighbour similarities (no image has a neighbour): "
                          "no threshold can be suggested.", empty, method="none")
    hi = max(1.0, float(x.max()))
    lo = float(np.quantile(x, 0.001)) if x.size >= 1000 else float(x.min())
    lo = min(lo, hi - 1e-3)
    # Values below the low end (the rare outliers the quantile leaves out) go in the first bin, so
    # the histogram still counts every image.
    counts, edges = np.histogram(np.clip(x, lo, hi), bins=int(bins), range=(lo, hi))
    smoothed = _smooth(counts, sigma=1.5)
    hist = Histogram(counts.astype(np.int64), edges, smoothed)
    centers = hist.centers

    median = float(np.median(x))
    mad = float(np.median(np.abs(x - median))) * 1.4826
    # Peaks by prominence; a valley needs a bulk and a separate duplicate mode above it.
    peaks = sorted(_peaks(smoothed), key=lambda p: -p[1])
    if x.size >= _MIN_SAMPLES and len(peaks) >= 2:
        (a, _), (b, _) = peaks[0], peaks[1]
        bulk, dup = min(a, b), max(a, b)
        between = smoothed[bulk:dup + 1]
        v = bulk + int(np.argmin(between))
        depth_ok = smoothed[v] <= _VALLEY_DEPTH * min(smoothed[bulk], smoothed[dup])
        # Duplicates and the bulk are often separated by a stretch of (nearly) empty bins: take
        # the middle of the flat bottom around the minimum rather than its low end.
        tol = smoothed[v] + 0.05 * min(smoothed[bulk], smoothed[dup])
        s0, s1 = v, v
        while s0 - 1 > bulk and smoothed[s0 - 1] <= tol:
            s0 -= 1
        while s1 + 1 < dup and smoothed[s1 + 1] <= tol:
            s1 += 1
        threshold = float((centers[s0] + centers[s1]) / 2)
        n_dup = int((x >= threshold).sum())
        if depth_ok and n_dup >= _MIN_MODE_COUNT and v not in (bulk, dup):
            reasoning = (
                f"Nearest-neighbour similarities have two modes: the bulk at {centers[bulk]:.3f} and "
                f"a duplicate mode at {centers[dup]:.3f}. The deepest valley between them is at "
                f"{threshold:.3f}: {n_dup} of {x.size} images ({n_dup / x.size:.1%}) have a nearest "
                "neighbour at or above it."
            )
            return Suggestion(threshold, reasoning, hist, method="valley",
                              bulk_mode=float(centers[bulk]), duplicate_mode=float(centers[dup]),
                              n_above=n_dup)

    # No clear valley: flag nearest neighbours that are unusually similar for this dataset.
    bulk_mode = float(centers[peaks[0][0]]) if peaks else median
    spread = max(mad, 1e-3)
    threshold = min(median + _FALLBACK_SIGMAS * spread, float(x.max()))
    n_above = int((x >= threshold).sum())
    if x.size < _MIN_SAMPLES:
        why = f"only {x.size} images, too few for a histogram"
    elif len(peaks) < 2:
        why = f"a single mode at {bulk_mode:.3f}"
    else:
        why = (f"the bulk at {bulk_mode:.3f} and no separate duplicate mode: any second peak is "
               "small or not split from the bulk by a deep dip")
    reasoning = (
        f"No clear valley in the nearest-neighbour similarities ({why}). Fallback rule: median {median:.3f} plus {_FALLBACK_SIGMAS:g} robust "
        f"standard deviations ({spread:.3f}) gives {threshold:.3f}; {n_above} of {x.size} images have "
        "a nearest neighbour at or above it. Check pairs around this value before relying on it."
    )
    return Suggestion(float(threshold), reasoning, hist, method="fallback", bulk_mode=bulk_mode,
                      n_above=n_above)
