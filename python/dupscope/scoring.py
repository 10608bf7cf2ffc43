"""A pair's final score: embedding look-alikeness and geometric evidence, in [0, 1].

The score of a neighbour pair ``(i, j)`` depends on those two images only, never on the rest of
the data set, so a threshold chosen on one run carries over to a subset, a superset or another
collection:

``score = sigmoid(b0 + b1 * log(1 + inliers) + b2 * sqrt(coverage) + b3 * cos)``

- ``cos`` is the cosine of the two images' *raw* embeddings: for ``dupscope-v3`` its max-pooled
  head (the first 1280 columns, before any data-set centring or whitening), for other models
  their whole output. The engine's similarity (``neighbors/embedding_similarity``), which for
  ``dupscope-v3`` is normalised against the data set, only chooses candidates, together with
  the layout descriptors (:func:`layout_candidates`) and, after those are checked, the pairs
  that the verified copies vouch for (:func:`second_chance_pairs`).
- ``inliers`` and ``coverage`` come from :mod:`dupscope.verify` (0 for a pair that was not a
  candidate: no geometric evidence).

The coefficients :data:`COEFFICIENTS` are a logistic regression (classes weighted equally)
fitted once, by ``benchmarks/fit_pair_score.py``, on the 21,047 candidate pairs (at the bar of
0.7 then, and OpenCV's ORB with an 8-level pyramid, before the compiled detector replaced it:
the coefficients carried over to it, see RESULTS.md) of the accuracy benchmark's seed-0 images
(benchmarks/bench_accuracy.py: 2,601 images, every picture with 17 copies), never on the
realistic benchmark it is judged on; a refit after frames were cut off did no better
(RESULTS.md). The score therefore reads as a probability that the pair is an edited copy: 0.5
is where a copy and a look-alike were equally likely in that fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["COEFFICIENTS", "CANDIDATE_BAR", "CANDIDATE_RANK", "SECOND_CHANCE_BAR", "SECOND_CHANCE_SUPPORT",
           "VERIFIED_INLIERS", "ScoredNeighbors", "VerifiedPairs", "candidate_bar", "layout_candidates", "layout_lists",
           "layout_pairs", "layout_valid", "pair_score", "raw_cosines", "score_neighbors", "second_chance_bar",
           "second_chance_pairs"]

#: (b0, b1, b2, b3) of the formula in the module docstring.
COEFFICIENTS = (-12.083, 1.221, 1.755, 9.535)

#: Inliers from which a pair counts as *verified* (the explorer's check mark): on the realistic
#: benchmark (seed 0) 99% of true pairs had at least 15, and 98% of the other candidates at most
#: 8 (the verifier at 320 px and 800 keypoints).
VERIFIED_INLIERS = 15

#: Engine similarity from which a neighbour pair is verified, by model; others use ``"*"``.
#: dupscope-v3's similarities are normalised against the data set (unrelated images near 0.5).
#: Lowering its bar from 0.7 to 0.65 raised both accuracy benchmarks (realistic, seed 0: AP
#: 0.9928 -> 0.9991, with 1,128 candidate pairs instead of 718; existing, seed 0: 0.9945 ->
#: 0.9954, recall at precision 0.95 0.9830 -> 0.9861); 0.6 gained no more on the realistic set
#: for twice the pairs (benchmarks/RESULTS.md). A plain network's ``(1 + cos) / 2`` puts
#: look-alikes near 0.9, so its bar is higher.
CANDIDATE_BAR = {"dupscope-v3": 0.65, "*": 0.85}

#: Besides the bar, how many of an image's nearest neighbours may be candidates, by model (None:
#: all of the list). A plain network's similarities are dense near the top (on the realistic
#: benchmark efficientnet-lite0 put 11,174 neighbour pairs of 758 images above 0.85, 108 of them
#: true): its 8 nearest above the bar held 104 true pairs in 3,418 candidates.
CANDIDATE_RANK = {"dupscope-v3": None, "*": 8}

#: Second-chance candidates, by model (None: none): a neighbour pair ``(i, j)`` below the bar
#: but at or above this engine similarity is verified too when ``i`` is that close to at least
#: :data:`SECOND_CHANCE_SUPPORT` of ``j``'s verified copies and to at least half of them
#: (:func:`second_chance_pairs`). It finds a copy that the embedding placed away from its own
#: picture: on the accuracy benchmark, watermarked copies of dark photos sat next to other
#: watermarked copies (engine similarity 0.9) and at 0.58-0.65 from their own 16 copies.
SECOND_CHANCE_BAR = {"dupscope-v3": 0.58, "*": None}

#: Fewest verified copies of ``j`` that ``i`` must be near for a second-chance pair ``(i, j)``.
#: With 2, the realistic benchmark (seed 0) checked 192 more pairs and found no true pair among
#: them; with 3, none more there, and the accuracy benchmark found the same 48 true pairs in
#: about 3,800 (AP 0.9975 -> 0.9980, recall at precision 0.95 0.9955 -> 0.9976).
SECOND_CHANCE_SUPPORT = 3


def pair_score(cos: np.ndarray, inliers: np.ndarray, coverage: np.ndarray) -> np.ndarray:
    """The final score (float32, in [0, 1]) of pairs with raw cosine ``cos``, ``inliers`` and
    ``coverage`` (arrays of one shape; NaN cosines give NaN)."""
    b0, b1, b2, b3 = COEFFICIENTS
    z = (b0 + b1 * np.log1p(np.maximum(np.asarray(inliers, np.float64), 0))
         + b2 * np.sqrt(np.clip(np.asarray(coverage, np.float64), 0, 1))
         + b3 * np.asarray(cos, np.float64))
    return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)


#: Largest float32 copy of the raw columns :func:`raw_cosines` makes (1 GiB: 200,000 images of
#: dupscope-v3's 1280-column head); larger sets convert block by block.
UNIT_COPY_BYTES = 1 << 30


def raw_cosines(raw: np.ndarray, index: np.ndarray, columns: int | None = None, *, block: int | None = None) -> np.ndarray:
    """Cosine between each row of ``raw`` and the rows its neighbour list ``index`` names.

    Parameters
    ----------
    raw : numpy.ndarray
        (N, D) raw embeddings (float16 or float32).
    index : numpy.ndarray
        (N, k) int neighbour indices, ``-1`` padding.
    columns : int, optional
        Use only the first ``columns`` columns (a model's first branch).
    block : int, optional
        Rows per step (bounds the gathered temporary at ``block * k * D`` floats); by default as
        many as keep it near 8 MB (a fresh 100 MB temporary cost more in page faults than the
        products themselves).

    Returns
    -------
    numpy.ndarray
        float32 (N, k); NaN where the index is ``-1`` or a row is all zero.
    """
    n, k = index.shape
    d = raw.shape[1] if columns is None else columns
    block = block or max(1, (8 << 20) // max(1, 4 * k * d))
    out = np.full((n, k), np.nan, np.float32)
    # Inverse norms once (NaN for zero rows), then plain dot products of the gathered rows: the
    # (block, k, D) gather is the only large temporary, and no array of that size is divided.
    # Up to UNIT_COPY_BYTES, the same pass keeps a float32 copy of the columns read (converted
    # once, not once per neighbour entry: float16 conversion is the slow part); beyond it, the
    # gathered rows are converted per block.
    inv = np.empty(n, np.float32)
    table = np.empty((n, d), np.float32) if n * d * 4 <= UNIT_COPY_BYTES else None
    for i in range(0, n, 8 * block):
        x = np.asarray(raw[i:i + 8 * block, :d], np.float32)
        norm = np.sqrt(np.einsum("rd,rd->r", x, x))
        inv[i:i + len(x)] = np.where(norm > 0, 1.0 / np.where(norm > 0, norm, 1), np.nan)
        if table is not None:
            table[i:i + len(x)] = x
    for i in range(0, n, block):
        idx = index[i:i + block]
        safe = np.where(idx >= 0, idx, 0)
        if table is not None:
            mine, theirs = table[i:i + len(idx)], table[safe]
        else:
            mine = np.asarray(raw[i:i + len(idx), :d], np.float32)
            theirs = np.asarray(raw[safe.ravel(), :d], np.float32).reshape(len(idx), k, d)
        c = np.matmul(theirs, mine[:, :, None])[:, :, 0]
        c *= inv[i:i + len(idx), None] * inv[safe]
        out[i:i + len(idx)] = np.where(idx >= 0, np.clip(c, -1, 1), np.nan)
    return out


@dataclass
class ScoredNeighbors:
    """Neighbour lists re-ranked by the final score (arrays (N, k), rows best first).

    Attributes
    ----------
    index : int32, ``-1`` padding
    score : float16, the final score (NaN padding)
    embedding_similarity : float16, the engine's similarity of the same pairs
    inliers : int16, geometric inliers; ``-1`` where the pair was not checked
    mirrored : bool, whether the inliers map onto the mirror image
    n_checked : int, pairs (each once) that were verified by this call
    coverage : float16, the inliers' coverage (0 where not checked)
    pairs : VerifiedPairs, every candidate pair checked (by this call or before) and its evidence
    """

    index: np.ndarray
    score: np.ndarray
    embedding_similarity: np.ndarray
    inliers: np.ndarray
    mirrored: np.ndarray
    n_checked: int
    coverage: np.ndarray | None = None
    pairs: "VerifiedPairs | None" = None


@dataclass
class VerifiedPairs:
    """Candidate pairs ``(a, b)``, ``a < b``, sorted by ``a * n + b``, each checked once, and what
    the check found: int64, int64, int16 inliers, float32 coverage, bool mirrored (stored in
    ``verified/`` so an append run never checks them again)."""

    a: np.ndarray
    b: np.ndarray
    inliers: np.ndarray
    coverage: np.ndarray
    mirrored: np.ndarray


def candidate_bar(model: str) -> tuple[float, int | None]:
    """The engine similarity from which pairs of ``model`` are verified (:data:`CANDIDATE_BAR`) and
    the nearest neighbours per image that may be candidates (:data:`CANDIDATE_RANK`)."""
    return CANDIDATE_BAR.get(model, CANDIDATE_BAR["*"]), CANDIDATE_RANK.get(model, CANDIDATE_RANK["*"])


def second_chance_bar(model: str) -> float | None:
    """:data:`SECOND_CHANCE_BAR` of ``model`` (None: no second-chance candidates)."""
    return SECOND_CHANCE_BAR.get(model, SECOND_CHANCE_BAR["*"])


def second_chance_pairs(a: np.ndarray, b: np.ndarray, s: np.ndarray, n: int, *, bar: float, low: float,
                        strong_a: np.ndarray, strong_b: np.ndarray, checked: np.ndarray,
                        support: int = SECOND_CHANCE_SUPPORT, block: int = 1 << 20) -> tuple[np.ndarray, np.ndarray]:
    """Pairs below the candidate bar worth verifying because of the pairs already verified.

    A pair ``(i, j)`` from the neighbour lists with ``low <= s < bar``, not checked yet, is
    returned when, for ``j`` (or, the other way round, for ``i``), the other image is ``near``
    (a listed pair at ``low`` or more) at least ``support`` of its verified copies and at least
    half of them. Images seldom have a copy, so the verified pairs are few and so are these.

    Parameters
    ----------
    a, b, s : numpy.ndarray
        The neighbour lists' pairs (``a < b``) and their engine similarities
        (:func:`dupscope.pairs.neighbor_pairs`).
    n : int
        Images.
    bar, low : float
        The candidate bar and the second-chance bar (:data:`SECOND_CHANCE_BAR`).
    strong_a, strong_b : numpy.ndarray
        Verified pairs (``VERIFIED_INLIERS`` or more), each once.
    checked : numpy.ndarray
        Sorted keys ``a * n + b`` of the pairs checked already (left out).
    support : int
    block : int
        Most (pair, copy) combinations looked at at once (bounds memory).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        int64 ``(a, b)``, ``a < b``, sorted by key, each once.
    """
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    s = np.asarray(s, np.float32)
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    near = s >= np.float32(low)
    if not len(strong_a) or not near.any():
        return empty
    # Each image's verified copies, as compressed rows.
    ends = np.r_[np.asarray(strong_a, np.int64), np.asarray(strong_b, np.int64)]
    other = np.r_[np.asarray(strong_b, np.int64), np.asarray(strong_a, np.int64)]
    order = np.argsort(ends, kind="stable")
    copies = other[order]
    start = np.searchsorted(ends[order], np.arange(n + 1))
    deg = np.diff(start)
    # Only pairs touching an image with verified copies can count (most images have none, so
    # this keeps the arrays small): as the pair looked at, one of its images needs `support`
    # copies; as the (query, copy) pair looked up, the copy has one at least.
    look_up = near & ((deg[a] > 0) | (deg[b] > 0))
    near_keys = np.sort(a[look_up] * n + b[look_up])
    lower = near & (s < np.float32(bar)) & ((deg[a] >= support) | (deg[b] >= support))
    qa, qb = a[lower], b[lower]
    keys = qa * n + qb
    if len(checked):
        pos = np.clip(np.searchsorted(checked, keys), 0, len(checked) - 1)
        fresh = checked[pos] != keys
        qa, qb = qa[fresh], qb[fresh]
    found = np.zeros(len(qa), bool)
    step = max(1, block // max(1, int(deg.max())))
    for query, anchor in ((qa, qb), (qb, qa)):
        pick = np.flatnonzero(deg[anchor] >= support)
        for lo in range(0, len(pick), step):
            p = pick[lo:lo + step]
            reps = deg[anchor[p]]
            owner = np.repeat(np.arange(len(p)), reps)
            offset = np.arange(reps.sum()) - np.repeat(np.cumsum(reps) - reps, reps)
            x = copies[start[anchor[p]][owner] + offset]
            q = query[p][owner]
            k = np.minimum(q, x) * n + np.maximum(q, x)
            hit = np.zeros(len(k), bool)
            if len(k):
                at = np.clip(np.searchsorted(near_keys, k), 0, len(near_keys) - 1)
                hit = (near_keys[at] == k) & (q != x)
            count = np.bincount(owner, weights=hit, minlength=len(p))
            found[p] |= (count >= support) & (2 * count >= reps)
    out_a, out_b = qa[found], qb[found]
    order = np.argsort(out_a * n + out_b)
    return out_a[order], out_b[order]


def score_neighbors(index: np.ndarray, similarity: np.ndarray, raw: np.ndarray, paths, *, bar: float,
                    rank: int | None = None, columns: int | None = None, config=None,
                    progress=None, extra: tuple[np.ndarray, np.ndarray] | None = None,
                    embeddings: np.ndarray | None = None, known: VerifiedPairs | None = None,
                    kept=None, layout: np.ndarray | None = None, verifier=None,
                    second_bar: float | None = None) -> ScoredNeighbors:
    """Verify the neighbour pairs at or above ``bar`` and give every neighbour entry its final score.

    Parameters
    ----------
    index, similarity : numpy.ndarray
        The engine's (N, k) neighbour lists.
    raw : numpy.ndarray
        (N, D) raw embeddings (the model's output before any data-set step).
    paths : sequence of str
        Image files by row (read again for their local features).
    bar : float
        Engine similarity from which a pair is a candidate for verification.
    rank : int, optional
        A pair is a candidate only when it is among the ``rank`` nearest neighbours of one of
        its images (the engine's lists are best first); None: anywhere in the lists.
    columns : int, optional
        Columns of ``raw`` whose cosine enters the score (a model's first branch).
    config : dupscope.verify.VerifyConfig, optional
    progress : callable, optional
        ``progress(done, total)`` over the candidate pairs.
    extra : (numpy.ndarray, numpy.ndarray), optional
        More candidate pairs ``(a[p], b[p])`` from another source (:func:`layout_candidates`),
        verified too; a pair that neither image lists enters both lists (so a row may hold pairs
        the engine did not rank among its k), and each row keeps its k best by final score.
    embeddings : numpy.ndarray, optional
        The engine's input (N, D), needed with ``extra`` for the engine similarity
        ``(1 + cos) / 2`` of the entries it adds.
    known : VerifiedPairs, optional
        Pairs checked before (an append run's old pairs): their evidence is reused, not
        checked again.
    kept : dupscope.verify.KeptGreys, optional
        Grey images phase 1's decoding kept: used instead of decoding those files again; the
        images of rows without a pair to check are dropped from it first.
    layout : numpy.ndarray, optional
        (N, 256) layout descriptors: the mirror check is then made only where the mirrored
        layouts agree (:func:`dupscope.verify.mirror_plausible`).
    verifier : callable, optional
        What checks the pairs, with :func:`dupscope.verify.verify_pairs`'s signature (the Ray
        backend's :func:`dupscope.cluster.verify_pairs`); default that function.
    second_bar : float, optional
        After the candidates are checked, verify the pairs :func:`second_chance_pairs` finds from
        this engine similarity up (:data:`SECOND_CHANCE_BAR`); None: no second round.

    Returns
    -------
    ScoredNeighbors
    """
    from .pairs import entry_pair_keys, neighbor_pairs
    from .verify import Evidence, FeatureCache, VerifyConfig, verify_pairs

    index = np.asarray(index, np.int32)
    similarity = np.asarray(similarity, np.float16)
    n, k = index.shape
    if rank is None:
        a, b, s = neighbor_pairs(index, similarity)
    else:  # entries past the rank hidden (index too, so that the other image's entry counts)
        near = np.arange(k) < rank
        a, b, s = neighbor_pairs(np.where(near, index, -1), np.where(near, similarity, np.float16(np.nan)))
    all_a, all_b, all_s = a, b, s
    cand = s.astype(np.float32) >= np.float32(bar)
    a, b = a[cand].astype(np.int64), b[cand].astype(np.int64)
    if extra is not None and len(extra[0]):
        if embeddings is None:
            raise ValueError("extra candidate pairs need the engine's embeddings")
        index, similarity, a, b = _with_extra(index, similarity, embeddings, a, b, extra)
    config = config or VerifyConfig()
    ka = np.asarray(known.a, np.int64) * n + np.asarray(known.b, np.int64) if known is not None else np.zeros(0, np.int64)
    features = FeatureCache(paths, config, kept)
    counter = {"done": 0, "total": 0}

    def check(a, b, *, first):
        """Evidence of the pairs (a, b): reused where known, checked otherwise."""
        keys = a * n + b
        seen = np.isin(keys, ka)
        todo = np.flatnonzero(~seen)
        base = counter["done"]
        counter["total"] += len(todo)
        if kept is not None and first:
            kept.keep_only(np.r_[a[todo], b[todo]])
        fresh = (verifier or verify_pairs)(
            paths, a[todo], b[todo], config, kept=kept, layout=layout, features=features,
            progress=(lambda done: progress(base + done, counter["total"])) if progress else None)
        counter["done"] += len(todo)
        ev = Evidence.empty(len(a))
        for name in ("inliers", "coverage", "mirrored", "checked"):
            getattr(ev, name)[todo] = getattr(fresh, name)
        if seen.any():
            pos = np.searchsorted(ka, keys[seen])  # known pairs are sorted by key
            ev.inliers[seen] = known.inliers[pos]
            ev.coverage[seen] = known.coverage[pos]
            ev.mirrored[seen] = known.mirrored[pos]
            ev.checked[seen] = True
        return ev, int(fresh.checked.sum())

    ev, n_checked = check(a, b, first=True)
    if second_bar is not None:
        strong = ev.checked & (ev.inliers >= VERIFIED_INLIERS)
        a2, b2 = second_chance_pairs(all_a, all_b, all_s, n, bar=bar, low=second_bar, strong_a=a[strong],
                                     strong_b=b[strong], checked=np.sort(a * n + b))
        if len(a2):
            ev2, n2 = check(a2, b2, first=False)
            a, b, n_checked = np.r_[a, a2], np.r_[b, b2], n_checked + n2
            for name in ("inliers", "coverage", "mirrored", "checked"):
                setattr(ev, name, np.r_[getattr(ev, name), getattr(ev2, name)])
    keys = a * n + b
    # Evidence of each neighbour entry, looked up by its pair key.
    order = np.argsort(keys)
    keys = keys[order]
    valid = index >= 0
    ek = entry_pair_keys(index)
    if len(keys):
        pos = np.clip(np.searchsorted(keys, ek), 0, len(keys) - 1)
        sel = order[pos]
        checked = valid & (keys[pos] == ek) & ev.checked[sel]
        inliers = np.where(checked, ev.inliers[sel], -1).astype(np.int16)
        coverage = np.where(checked, ev.coverage[sel], 0).astype(np.float32)
        mirrored = checked & ev.mirrored[sel]
    else:
        inliers = np.full(index.shape, -1, np.int16)
        coverage = np.zeros(index.shape, np.float32)
        mirrored = np.zeros(index.shape, bool)
    cos = raw_cosines(raw, index, columns)
    score = pair_score(cos, np.maximum(inliers, 0), coverage)
    score[~valid] = np.nan
    # Best first by the final score; NaN (padding, unreadable rows) last; ties by lower index.
    rank = _row_order(score, index, n)

    def take(x):
        return np.take_along_axis(x, rank, axis=1)

    sel = order[ev.checked[order]]  # the checked pairs, by key
    pairs = VerifiedPairs(a[sel], b[sel], ev.inliers[sel].astype(np.int16), ev.coverage[sel].astype(np.float32),
                          ev.mirrored[sel])
    return ScoredNeighbors(take(index)[:, :k], take(score).astype(np.float16)[:, :k], take(similarity)[:, :k],
                           take(inliers)[:, :k], take(mirrored)[:, :k], n_checked,
                           coverage=take(coverage).astype(np.float16)[:, :k], pairs=pairs)


def layout_candidates(layout: np.ndarray, ok: np.ndarray, *, nearest: int = 2, bar: float = 0.94,
                      device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``(a, b)`` where ``b`` is among ``a``'s ``nearest`` by layout descriptor
    (:func:`dupscope.images.layout_descriptor`) with a cosine of at least ``bar``.

    Data-set independent (the descriptors are fixed functions of the pixels) and cheap: one
    top-k search over 256-d vectors. On the realistic benchmark it proposed every true pair the
    embedding's lists missed (a quarter-size copy of a faint nebula at embedding similarity 0.605,
    a watermarked star field at 0.689) for 264 extra candidates of 758 images.
    (:func:`layout_lists` then :func:`layout_pairs`.)
    """
    return layout_pairs(*layout_lists(layout, ok, nearest=nearest, device=device), bar)


def layout_lists(layout: np.ndarray, ok: np.ndarray, *, nearest: int = 2, device: str = "cpu"
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Each image's ``nearest`` images by layout descriptor: (index int32, engine similarity float16)."""
    from .engine import topk

    layout = np.asarray(layout, np.float32)
    valid = layout_valid(layout, ok)
    n = len(layout)
    if valid.sum() < 2:
        return np.full((n, nearest), -1, np.int32), np.full((n, nearest), np.nan, np.float16)
    return topk(layout, nearest, device=device, valid=valid)


def layout_valid(layout: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Images that have a layout (decoded, not flat)."""
    return np.asarray(ok, bool) & np.any(np.asarray(layout) != 0, axis=1)


def layout_pairs(idx: np.ndarray, sim: np.ndarray, bar: float = 0.94) -> tuple[np.ndarray, np.ndarray]:
    """The candidate pairs of layout lists: entries at cosine ``bar`` or more."""
    rows = np.repeat(np.arange(len(idx)), idx.shape[1])
    cols = idx.ravel().astype(np.int64)
    keep = (cols >= 0) & (sim.ravel().astype(np.float32) >= np.float32((1 + bar) / 2))
    return rows[keep], cols[keep]


def _with_extra(index, similarity, embeddings, a, b, extra):
    """Neighbour lists widened by the extra pairs neither image lists, and the union of
    candidate pairs ``(a, b)``, ``a < b``, each once."""
    n, k = index.shape
    ea, eb = np.asarray(extra[0], np.int64), np.asarray(extra[1], np.int64)
    keep = (ea != eb) & (ea >= 0) & (eb >= 0)
    lo, hi = np.minimum(ea, eb)[keep], np.maximum(ea, eb)[keep]
    keys = np.unique(lo * n + hi)
    union = np.union1d(a * n + b, keys)
    a, b = union // n, union % n
    # Directed entries to add: (row, col) for both images of each extra pair, unless listed.
    rows = np.r_[keys // n, keys % n]
    cols = np.r_[keys % n, keys // n]
    listed = (index >= 0)
    have = np.where(listed, np.arange(n, dtype=np.int64)[:, None] * n + index, -1).ravel()
    new = ~np.isin(rows * n + cols, have)
    rows, cols = rows[new], cols[new]
    if not len(rows):
        return index, similarity, a, b
    order = np.lexsort((cols, rows))
    rows, cols = rows[order], cols[order]
    counts = np.bincount(rows, minlength=n)
    slot = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
    width = int(counts.max())
    wide = np.full((n, k + width), -1, np.int32)
    wide[:, :k] = index
    wide[rows, k + slot] = cols
    e = np.asarray(embeddings, np.float32)
    norm = np.linalg.norm(e, axis=1)
    inv = np.where(norm > 0, 1 / np.where(norm > 0, norm, 1), 0)
    cos = np.einsum("rd,rd->r", e[rows], e[cols]) * inv[rows] * inv[cols]
    wsim = np.full((n, k + width), np.nan, np.float16)
    wsim[:, :k] = similarity
    wsim[rows, k + slot] = np.clip((1 + cos) / 2, 0, 1).astype(np.float16)
    return wide, wsim, a, b


def _row_order(score: np.ndarray, index: np.ndarray, n: int) -> np.ndarray:
    """Per row, the order of entries by descending score, NaN last, ties by lower index."""
    s = np.where(np.isnan(score), np.inf, -score.astype(np.float64))  # ascending: best first, NaN last
    tie = np.where(index >= 0, index, n).astype(np.float64)
    # Sort by (score desc, index asc): a stable sort on the index, then on the score.
    first = np.argsort(tie, axis=1, kind="stable")
    second = np.argsort(np.take_along_axis(s, first, axis=1), axis=1, kind="stable")
    return np.take_along_axis(first, second, axis=1)
