"""Nearest neighbours of new rows among a set of rows: the search of append and reference runs.

A full run compares every image with every other (the compiled engine, N^2 tiles). Adding m
images to N needs only the m x (N + m) block: each new row against every row, and, read the other
way, each old row against the new ones. :func:`query_topk` does that block by block of query rows
with one matrix product each (BLAS sgemm, which runs at about the engine's tile speed on the CPU,
benchmarks/RESULTS.md), so memory stays at ``block x (N + m)`` floats; :func:`column_topk` keeps,
over the same blocks, each database row's best query rows.
"""

from __future__ import annotations

import numpy as np

__all__ = ["unit_rows", "query_topk", "column_topk"]


def unit_rows(x: np.ndarray) -> np.ndarray:
    """float32 rows divided by their L2 norm (zero rows stay zero)."""
    x = np.asarray(x, np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def _best(scores: np.ndarray, cols: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``scores`` (r, c), the ``k`` highest (NaN/-inf never), best first, ties by the lower
    column id ``cols`` (c,): (column ids, scores), -1 / NaN padded."""
    r, c = scores.shape
    kk = min(k, c)
    out_i = np.full((r, k), -1, np.int64)
    out_s = np.full((r, k), np.nan, np.float32)
    if not kk or not r:
        return out_i, out_s
    s = np.where(np.isfinite(scores), scores, -np.inf)
    part = np.argpartition(-s, kk - 1, axis=1)[:, :kk] if kk < c else np.broadcast_to(np.arange(c), (r, c))
    ps = np.take_along_axis(s, part, axis=1)
    pc = cols[part]
    order = np.lexsort((pc, -ps), axis=1)
    ps, pc = np.take_along_axis(ps, order, axis=1), np.take_along_axis(pc, order, axis=1)
    good = np.isfinite(ps)
    out_i[:, :kk] = np.where(good, pc, -1)
    out_s[:, :kk] = np.where(good, ps, np.nan)
    return out_i, out_s


def query_topk(q: np.ndarray, p: np.ndarray, k: int, *, exclude: np.ndarray | None = None,
               valid: np.ndarray | None = None, block: int = 1024, metric: str = "engine"
               ) -> tuple[np.ndarray, np.ndarray]:
    """Each row of ``q``'s ``k`` nearest rows of ``p``, best first (ties: the lower row).

    Parameters
    ----------
    q, p : numpy.ndarray
        (m, D) and (n, D) rows; normalised here (zero rows match nothing).
    k : int
    exclude : numpy.ndarray, optional
        (m,) row of ``p`` that is query i itself (-1: none), never its own neighbour.
    valid : numpy.ndarray, optional
        (n,) bool, rows of ``p`` that may be neighbours.
    block : int
        Query rows per matrix product.
    metric : {"engine", "cosine"}
        ``"engine"``: the engine's similarity ``(1 + cos) / 2`` as float16, like
        :func:`dupscope.topk`; ``"cosine"``: the cosine as float32.

    Returns
    -------
    (index int32 (m, k), similarity) with -1 / NaN padding.
    """
    qu, pu = unit_rows(q), unit_rows(p)
    m, n = len(qu), len(pu)
    ok = np.any(pu != 0, axis=1) if valid is None else (np.asarray(valid, bool) & np.any(pu != 0, axis=1))
    cols = np.arange(n)
    index = np.full((m, k), -1, np.int32)
    sim = np.full((m, k), np.nan, np.float32)
    for i in range(0, m, block):
        s = qu[i:i + block] @ pu.T
        s[:, ~ok] = -np.inf
        s[~np.any(qu[i:i + block] != 0, axis=1)] = -np.inf
        if exclude is not None:
            ex = np.asarray(exclude[i:i + block], np.int64)
            has = ex >= 0
            s[np.flatnonzero(has), ex[has]] = -np.inf
        if metric == "engine":  # ranked by the stored float16 value, as the engine ranks
            s = np.where(np.isfinite(s), ((1.0 + np.clip(s, -1, 1)) / 2).astype(np.float16).astype(np.float32), s)
        bi, bs = _best(s, cols, k)
        index[i:i + block], sim[i:i + block] = bi, bs
    if metric == "engine":
        return index, sim.astype(np.float16)
    return index, sim


def column_topk(q: np.ndarray, p: np.ndarray, k: int, *, query_ids: np.ndarray, valid_q: np.ndarray | None = None,
                valid_p: np.ndarray | None = None, block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Each row of ``p``'s ``k`` nearest rows of ``q`` by the engine's similarity (float16), named by
    ``query_ids`` (their rows in the union), best first, ties by the lower id: the old rows'
    view of newly added ones. (-1 / NaN padding.)"""
    qu, pu = unit_rows(q), unit_rows(p)
    m, n = len(qu), len(pu)
    okq = np.any(qu != 0, axis=1) if valid_q is None else np.asarray(valid_q, bool) & np.any(qu != 0, axis=1)
    okp = np.any(pu != 0, axis=1) if valid_p is None else np.asarray(valid_p, bool) & np.any(pu != 0, axis=1)
    ids = np.asarray(query_ids, np.int64)
    best_s = np.full((n, 0), -np.inf, np.float32)
    best_i = np.full((n, 0), -1, np.int64)
    for i in range(0, m, block):
        s = ((1.0 + np.clip(pu @ qu[i:i + block].T, -1, 1)) / 2).astype(np.float16).astype(np.float32)
        s[~okp] = -np.inf
        s[:, ~okq[i:i + block]] = -np.inf
        cand_s = np.concatenate([best_s, s], axis=1)
        cand_i = np.concatenate([best_i, np.broadcast_to(ids[i:i + block], s.shape)], axis=1)
        if cand_s.shape[1] > k:
            part = np.argpartition(-cand_s, k - 1, axis=1)[:, :k]
            cand_s, cand_i = np.take_along_axis(cand_s, part, axis=1), np.take_along_axis(cand_i, part, axis=1)
        best_s, best_i = cand_s, cand_i
    order = np.lexsort((best_i, -best_s), axis=1)
    best_s, best_i = np.take_along_axis(best_s, order, axis=1), np.take_along_axis(best_i, order, axis=1)
    index = np.full((n, k), -1, np.int32)
    sim = np.full((n, k), np.nan, np.float16)
    good = np.isfinite(best_s)
    w = best_s.shape[1]
    index[:, :w] = np.where(good, best_i, -1)
    sim[:, :w] = np.where(good, best_s, np.nan)
    return index, sim
