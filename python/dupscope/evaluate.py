"""Accuracy of a similarity file against known duplicates: precision, recall, F1, AP, PR curve.

A pair of images ``(i, j)`` is *predicted* a duplicate at threshold ``t`` when its similarity is
``>= t``. The candidate pairs are every pair ``i < j`` of the dense matrix when the file has one,
otherwise the pairs found in the neighbour lists (each unordered pair once). A true pair that is
not a candidate (it is in no neighbour list, or one of its images failed to load) can never be
predicted: it counts as a miss at every threshold, so recall may stay below 1 however low the
threshold goes.

Similarities are stored as float16, so many pairs share a value; the curve has one point per
distinct value, and pairs with equal similarity are always predicted together. The curve is
computed from counts per distinct value, which keeps memory small even for the dense matrix of
tens of thousands of images (it is read in row blocks).

Ground truth (:func:`load_ground_truth`) lists duplicate pairs or groups (every two members of a
group are a true pair) by image path, basename or row index.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from .errors import EvaluationError
from .groundtruth import GroundTruth, GroundTruthLike, load_ground_truth, resolve_items, true_pairs
from .matching import basename

__all__ = [
    "EvaluationError",
    "EvaluationResult",
    "GroundTruth",
    "evaluate",
    "evaluate_scores",
    "load_ground_truth",
    "plot_pr_curve",
    "resolve_items",
    "DEFAULT_MIN_PRECISION",
    "true_pairs",
]

#: Precision that "recall at precision" is reported for.
DEFAULT_MIN_PRECISION = 0.95

# Rows of the dense matrix read at a time: 2048 rows of 100k float16 is 400 MB at most, and
# reading whole tile rows keeps HDF5 from decoding a chunk more than once.
_ROW_BLOCK = 2048


@dataclass
class EvaluationResult:
    """Accuracy of a similarity file against a ground truth.

    Attributes
    ----------
    threshold : float
        The threshold the ``precision``/``recall``/``f1`` fields are for (the one asked for, or the
        best-F1 threshold when none was).
    precision, recall, f1 : float
        At ``threshold`` (precision is 1.0 by convention when nothing is predicted).
    true_positives, false_positives, false_negatives : int
        At ``threshold``.
    average_precision : float
        Area under the step-wise precision-recall curve, ``sum_k (R_k - R_{k-1}) P_k`` over the
        distinct similarity values from high to low; true pairs that are never candidates keep
        it below 1.
    min_precision : float
        The precision level of ``recall_at_precision`` (0.95 by default).
    recall_at_precision : float
        Highest recall among thresholds whose precision is at least ``min_precision`` (0 if none).
    threshold_at_precision : float
        The threshold that reaches it (NaN if none).
    best_f1, best_f1_threshold : float
        Highest F1 over all thresholds, and its threshold.
    n_images : int
    n_true_pairs : int
        Distinct true pairs in the ground truth.
    n_true_candidates : int
        True pairs that are candidates (have a similarity), i.e. the most recall can reach times
        ``n_true_pairs``.
    n_candidates : int
        Pairs that have a similarity (all pairs of valid images with the dense matrix).
    source : str
        ``"dense"`` or ``"neighbors"``: where candidate pairs came from.
    thresholds, precision_curve, recall_curve : numpy.ndarray
        The curve, one point per distinct similarity value, from the highest threshold down.
    """

    threshold: float
    precision: float
    recall: float
    f1: float
    true_positives: int
    false_positives: int
    false_negatives: int
    average_precision: float
    min_precision: float
    recall_at_precision: float
    threshold_at_precision: float
    best_f1: float
    best_f1_threshold: float
    n_images: int
    n_true_pairs: int
    n_true_candidates: int
    n_candidates: int
    source: str
    thresholds: np.ndarray = field(repr=False)
    precision_curve: np.ndarray = field(repr=False)
    recall_curve: np.ndarray = field(repr=False)

    @property
    def f1_curve(self) -> np.ndarray:
        """F1 at every point of the curve."""
        p, r = self.precision_curve, self.recall_curve
        with np.errstate(invalid="ignore", divide="ignore"):
            f = np.where(p + r > 0, 2 * p * r / (p + r), 0.0)
        return f

    def to_dict(self, curve: bool = False) -> dict:
        """The numbers as plain Python values (for JSON); the curve arrays only when ``curve``."""
        out = {}
        for name in ("threshold", "precision", "recall", "f1", "true_positives", "false_positives",
                     "false_negatives", "average_precision", "min_precision", "recall_at_precision",
                     "threshold_at_precision", "best_f1", "best_f1_threshold", "n_images",
                     "n_true_pairs", "n_true_candidates", "n_candidates", "source"):
            v = getattr(self, name)
            if isinstance(v, float) and math.isnan(v):
                v = None
            out[name] = v
        if curve:
            out["curve"] = {"threshold": self.thresholds.tolist(),
                            "precision": self.precision_curve.tolist(),
                            "recall": self.recall_curve.tolist()}
        return out

    def summary(self) -> str:
        """A few lines for the terminal."""
        tap = "n/a" if math.isnan(self.threshold_at_precision) else f"{self.threshold_at_precision:.4f}"
        lines = [
            f"{self.n_true_pairs} true pairs among {self.n_images} images; {self.n_candidates} candidate "
            f"pairs ({self.source}); {self.n_true_candidates} true pairs have a similarity",
            f"at threshold {self.threshold:.4f}: precision {self.precision:.4f}, recall {self.recall:.4f}, "
            f"F1 {self.f1:.4f} (TP {self.true_positives}, FP {self.false_positives}, FN {self.false_negatives})",
            f"average precision {self.average_precision:.4f}",
            f"recall at precision >= {self.min_precision:g}: {self.recall_at_precision:.4f} (threshold {tap})",
            f"best F1 {self.best_f1:.4f} at threshold {self.best_f1_threshold:.4f}",
        ]
        return "\n".join(lines)


def _curve_from_counts(values: np.ndarray, n_pairs: np.ndarray, n_true: np.ndarray, total_true: int):
    """Cumulative precision/recall from per-value counts; ``values`` distinct, any order."""
    order = np.argsort(-values, kind="stable")
    v = values[order]
    tp = np.cumsum(n_true[order]).astype(np.int64)
    pred = np.cumsum(n_pairs[order]).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(pred > 0, tp / np.maximum(pred, 1), 1.0)
    recall = tp / total_true if total_true else np.zeros_like(precision)
    return v.astype(np.float64), precision.astype(np.float64), recall.astype(np.float64), tp, pred


def evaluate_scores(candidate_scores: np.ndarray, true_scores: np.ndarray, n_true_pairs: Optional[int] = None,
                    *, threshold: Optional[float] = None, min_precision: float = DEFAULT_MIN_PRECISION,
                    n_images: int = 0, source: str = "scores") -> EvaluationResult:
    """Metrics from the similarities of all candidate pairs and of the true pairs among them.

    The building block of :func:`evaluate`, usable for any score (e.g. a hash similarity).

    Parameters
    ----------
    candidate_scores : numpy.ndarray
        Similarity of every candidate pair (true pairs included), any float dtype; NaN entries are
        ignored. float16 scores (as stored by dupscope) are counted per value, which is fast for
        tens of millions of pairs; other dtypes are sorted.
    true_scores : numpy.ndarray
        Similarity of each true pair, NaN for a true pair that is not a candidate (a miss at every
        threshold).
    n_true_pairs : int, optional
        Number of true pairs when some are not listed in ``true_scores`` at all (default:
        ``len(true_scores)``).
    threshold : float, optional
        Report precision/recall/F1 here (default: the best-F1 threshold).
    min_precision : float
        Precision level for ``recall_at_precision``.
    n_images : int
        Recorded in the result.
    source : str
        Recorded in the result.

    Returns
    -------
    EvaluationResult
    """
    cand = np.asarray(candidate_scores).ravel()
    ts = np.asarray(true_scores).ravel()
    total_true = int(len(ts) if n_true_pairs is None else n_true_pairs)
    if cand.dtype == np.float16 and ts.dtype == np.float16:
        # Stored similarities: count per bit pattern instead of sorting (millions of pairs).
        counts = np.bincount(cand.view(np.uint16), minlength=65536).astype(np.int64)
        ts = ts[~np.isnan(ts)]
        counts_true = np.bincount(ts.view(np.uint16), minlength=65536).astype(np.int64)
        if np.any(counts_true > counts):
            raise EvaluationError("every true pair's score must also be among the candidate scores")
        values, n_pairs, n_true = _counts_to_values(counts, counts_true)
        return _result(values, n_pairs, n_true, total_true, threshold=threshold,
                       min_precision=min_precision, n_images=n_images,
                       n_candidates=int(n_pairs.sum()), source=source)
    cand = cand.astype(np.float64)
    cand = cand[~np.isnan(cand)]
    ts = ts.astype(np.float64)
    ts = ts[~np.isnan(ts)]
    values, inverse = np.unique(cand, return_inverse=True)
    n_pairs = np.bincount(inverse, minlength=len(values))
    pos = np.searchsorted(values, ts)
    if ts.size and (pos.max() >= len(values) or not np.array_equal(values[np.minimum(pos, len(values) - 1)], ts)):
        raise EvaluationError("every true pair's score must also be among the candidate scores")
    n_true = np.bincount(pos, minlength=len(values))
    return _result(values, n_pairs, n_true, total_true, threshold=threshold, min_precision=min_precision,
                   n_images=n_images, n_candidates=int(cand.size), source=source)


def _result(values, n_pairs, n_true, total_true, *, threshold, min_precision, n_images, n_candidates,
            source) -> EvaluationResult:
    if total_true <= 0:
        raise EvaluationError("the ground truth has no pairs of distinct images: nothing to evaluate")
    if len(values) == 0:
        raise EvaluationError("no candidate pairs have a similarity: nothing to evaluate")
    thr, prec, rec, tp, pred = _curve_from_counts(values, n_pairs, n_true, total_true)
    # Average precision: precision at each threshold weighted by the recall it adds.
    prev = np.concatenate([[0.0], rec[:-1]])
    ap = float(np.sum((rec - prev) * prec))
    f1 = np.where(prec + rec > 0, 2 * prec * rec / np.maximum(prec + rec, 1e-300), 0.0)
    best = int(np.argmax(f1))  # first maximum: the highest threshold reaching it
    ok = np.flatnonzero(prec >= min_precision - 1e-12)
    if ok.size:
        k = ok[np.argmax(rec[ok])]
        r_at_p, t_at_p = float(rec[k]), float(thr[k])
    else:
        r_at_p, t_at_p = 0.0, float("nan")
    t = float(thr[best]) if threshold is None else float(threshold)
    # Point at t: every value >= t is predicted.
    k = int(np.searchsorted(-thr, -t, side="right")) - 1
    tp_t = int(tp[k]) if k >= 0 else 0
    pred_t = int(pred[k]) if k >= 0 else 0
    p_t = tp_t / pred_t if pred_t else 1.0
    r_t = tp_t / total_true
    f_t = 2 * p_t * r_t / (p_t + r_t) if p_t + r_t > 0 else 0.0
    return EvaluationResult(
        threshold=t, precision=float(p_t), recall=float(r_t), f1=float(f_t),
        true_positives=tp_t, false_positives=pred_t - tp_t, false_negatives=total_true - tp_t,
        average_precision=ap, min_precision=float(min_precision),
        recall_at_precision=r_at_p, threshold_at_precision=t_at_p,
        best_f1=float(f1[best]), best_f1_threshold=float(thr[best]),
        n_images=int(n_images), n_true_pairs=int(total_true), n_true_candidates=int(n_true.sum()),
        n_candidates=int(n_candidates), source=source,
        thresholds=thr, precision_curve=prec, recall_curve=rec,
    )


# float16 bit pattern -> value, for counting pairs per stored value.
_F16_VALUES = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float64)


def _counts_to_values(counts_all: np.ndarray, counts_true: np.ndarray):
    """Merge float16 bit-pattern counts into counts per distinct finite value (+0 and -0 merge)."""
    used = (counts_all > 0) & np.isfinite(_F16_VALUES)
    vals = _F16_VALUES[used] + 0.0  # -0.0 -> 0.0
    values, inv = np.unique(vals, return_inverse=True)
    n_pairs = np.bincount(inv, weights=counts_all[used], minlength=len(values)).astype(np.int64)
    n_true = np.bincount(inv, weights=counts_true[used], minlength=len(values)).astype(np.int64)
    return values, n_pairs, n_true


def _dense_counts(dset, pairs: np.ndarray, ok: np.ndarray):
    """Per-bit-pattern counts of all pairs i < j, and the similarity of each true pair."""
    n = dset.shape[0]
    counts = np.zeros(65536, np.int64)
    true_vals = np.full(len(pairs), np.nan, np.float16)
    block = max(1, min(_ROW_BLOCK, int(2e8 // max(n, 1))))
    for i0 in range(0, n, block):
        i1 = min(n, i0 + block)
        rows = np.asarray(dset[i0:i1, i0:], dtype=np.float16)  # only columns >= i0 matter (i < j)
        mask = np.arange(i0, n)[None, :] > np.arange(i0, i1)[:, None]
        counts += np.bincount(rows.view(np.uint16)[mask], minlength=65536)
        sel = np.flatnonzero((pairs[:, 0] >= i0) & (pairs[:, 0] < i1))
        if sel.size:
            true_vals[sel] = rows[pairs[sel, 0] - i0, pairs[sel, 1] - i0]
    # Pairs touching a failed image are not candidates (stored NaN already; enforce it anyway).
    bad = ~(ok[pairs[:, 0]] & ok[pairs[:, 1]]) if len(pairs) else np.zeros(0, bool)
    true_vals[bad] = np.nan
    return counts, true_vals


def _neighbor_counts(index: np.ndarray, sim: np.ndarray, pairs: np.ndarray):
    n = index.shape[0]
    rows, cols = np.nonzero(index >= 0)
    j = index[rows, cols].astype(np.int64)
    i = rows.astype(np.int64)
    s = sim[rows, cols].astype(np.float16)
    good = np.isfinite(s) & (i != j)
    i, j, s = i[good], j[good], s[good]
    keys = np.minimum(i, j) * n + np.maximum(i, j)
    # The same pair appears in both images' lists; keep one similarity (the higher, should they
    # ever differ in the last bit).
    order = np.lexsort((-s.astype(np.float32), keys))
    keys, s = keys[order], s[order]
    first = np.ones(len(keys), bool)
    first[1:] = keys[1:] != keys[:-1]
    keys, s = keys[first], s[first]
    counts = np.bincount(s.view(np.uint16), minlength=65536).astype(np.int64)
    true_vals = np.full(len(pairs), np.nan, np.float16)
    if len(pairs) and len(keys):
        tkeys = pairs[:, 0] * n + pairs[:, 1]
        pos = np.minimum(np.searchsorted(keys, tkeys), len(keys) - 1)
        hit = keys[pos] == tkeys
        true_vals[hit] = s[pos[hit]]
    return counts, true_vals


def evaluate(h5_path, ground_truth: GroundTruthLike, *, threshold: Optional[float] = None,
             min_precision: float = DEFAULT_MIN_PRECISION, use_dense: bool = True) -> EvaluationResult:
    """Precision, recall, F1, average precision and the PR curve of a similarity file.

    Parameters
    ----------
    h5_path : path-like or dupscope.SimilarityFile
        A file written by ``dupscope similarity`` / :func:`dupscope.write_similarity`.
    ground_truth : path, dict or list
        Duplicate pairs or groups (see :func:`load_ground_truth`); images by path as in
        ``images/path``, by basename when only one image has it, or by row index.
    threshold : float, optional
        Report precision/recall/F1 at this similarity (default: where F1 is highest).
    min_precision : float
        Precision level for ``recall_at_precision`` (default 0.95).
    use_dense : bool
        Use the dense matrix when the file has one (all pairs are candidates); False evaluates the
        neighbour lists only, as if the file had been written with ``--no-dense``. A verified file
        (``attrs["score"] == "verified"``) is always evaluated on its neighbour lists: they hold
        the pair score, while its dense matrix holds the engine's similarity.

    Returns
    -------
    EvaluationResult

    Raises
    ------
    EvaluationError
        Unknown or ambiguous names in the ground truth, a ground truth without pairs, or a file
        without neighbours.

    Examples
    --------
    >>> r = evaluate("sim.h5", {"groups": [["a.jpg", "a_copy.jpg"]]})   # doctest: +SKIP
    >>> r.average_precision, r.best_f1_threshold                        # doctest: +SKIP
    """
    from .store import SimilarityFile

    own = not isinstance(h5_path, SimilarityFile)
    f = SimilarityFile(h5_path) if own else h5_path
    try:
        paths = f.paths
        n = f.n
        gt = load_ground_truth(ground_truth, known=set(paths) | {basename(p) for p in paths})
        pairs = true_pairs(gt, paths, f.resolved_paths)
        if len(pairs) == 0:
            raise EvaluationError(f"{gt.source}: the ground truth has no pairs of distinct images")
        dense = f.similarity if use_dense and not f.verified else None
        if dense is not None:
            counts, true_vals = _dense_counts(dense, pairs, f.ok)
            source = "dense"
        else:
            if not f.has_neighbors():
                raise EvaluationError(f"{f.path} has no neighbour lists (neighbors/index): not a dupscope "
                                      "similarity file, or written by a tool that skipped them")
            index, sim = f.neighbors()
            if index.size == 0 or not (index >= 0).any():
                raise EvaluationError(
                    f"{f.path} has no neighbours at all ({n} images, k={index.shape[1] if index.ndim == 2 else 0}): "
                    "fewer than two images could be compared, so there is nothing to evaluate"
                )
            counts, true_vals = _neighbor_counts(index, sim, pairs)
            source = "neighbors"
    finally:
        if own:
            f.close()
    tv = np.asarray(true_vals)
    counts_true = np.zeros(65536, np.int64)
    present = ~np.isnan(tv.astype(np.float32))
    np.add.at(counts_true, tv[present].view(np.uint16), 1)
    values, n_pairs, n_true = _counts_to_values(counts, counts_true)
    if len(values) == 0:
        raise EvaluationError(f"{h5_path}: no pair of images has a similarity (did every image fail to load?)")
    return _result(values, n_pairs, n_true, len(pairs), threshold=threshold, min_precision=min_precision,
                   n_images=n, n_candidates=int(n_pairs.sum()), source=source)


def plot_pr_curve(result: "EvaluationResult", path, *, title: str = "", backend: str = "auto") -> Path:
    """The precision-recall curve as a PNG (see :func:`dupscope.plots.plot_pr_curve`)."""
    from .plots import plot_pr_curve as plot

    return plot(result, path, title=title, backend=backend)
