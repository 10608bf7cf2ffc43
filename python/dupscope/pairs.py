"""Duplicate pairs and groups from top-k neighbour lists.

One place for what phase 1's summary, ``dupscope report`` and the explorer all need: each
neighbour pair once (i < j) sorted by similarity, and the connected groups those pairs form.
"""

from __future__ import annotations

import numpy as np

__all__ = ["neighbor_pairs", "entry_pair_keys", "descending_order", "connected_groups", "group_sizes"]


def descending_order(sim: np.ndarray) -> np.ndarray:
    """Stable order of float16 values from high to low, NaN last, in linear time.

    Non-negative float16 bit patterns sort like the values, and numpy sorts 16-bit integers with a
    radix sort when asked for a stable sort, so this stays linear in the number of values.
    """
    s = np.asarray(sim, dtype=np.float16)
    bits = np.maximum(s, np.float16(0)).view(np.uint16).astype(np.uint32) + 1
    bits[np.isnan(s)] = 0
    # 0x7C01 is one above +inf's bits + 1, so every key fits 16 bits after inverting.
    inv = (np.uint32(0x7C01) - bits).astype(np.uint16)
    return np.argsort(inv, kind="stable")


def neighbor_pairs(
    index: np.ndarray, similarity: np.ndarray, *, chunk: int = 1 << 20
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """De-duplicated pairs ``(a, b, s)`` with ``a < b`` from top-k neighbour lists.

    Parameters
    ----------
    index
        (N, k) int32 neighbour indices, ``-1`` for padding.
    similarity
        (N, k) float16 similarities, NaN for padding.
    chunk
        Rows of the reverse check done at once (bounds memory at ``chunk * k`` booleans).

    Returns
    -------
    a, b : numpy.ndarray
        int32 indices, ``a < b``.
    s : numpy.ndarray
        float16 similarities, in descending order (ties keep the order of the rows they came from).

    Notes
    -----
    A pair listed by both of its images is kept once, with the similarity from the lower-index
    image's row. Time is O(N k^2) for the reverse check plus a linear radix sort, i.e. linear in N
    for a fixed k.
    """
    index = np.asarray(index)
    similarity = np.asarray(similarity, dtype=np.float16)
    n, k = index.shape
    rows = np.repeat(np.arange(n, dtype=np.int32), k)
    cols = index.reshape(-1).astype(np.int32, copy=False)
    sims = similarity.reshape(-1)
    valid = (cols >= 0) & (cols < n) & (cols != rows) & ~np.isnan(sims)
    forward = valid & (rows < cols)
    backward = np.flatnonzero(valid & (rows > cols))
    # A backward entry (i lists j < i) is new only when j's own list does not name i.
    keep_back = np.empty(backward.size, dtype=bool)
    for start in range(0, backward.size, max(1, chunk // max(k, 1))):
        sel = backward[start : start + max(1, chunk // max(k, 1))]
        keep_back[start : start + sel.size] = ~(index[cols[sel]] == rows[sel, None]).any(axis=1)
    fwd = np.flatnonzero(forward)
    back = backward[keep_back]
    a = np.concatenate([rows[fwd], cols[back]])
    b = np.concatenate([cols[fwd], rows[back]])
    s = np.concatenate([sims[fwd], sims[back]])
    # Keep row-major order among equal similarities so ties come out by source row.
    src = np.concatenate([fwd, back])
    first = np.argsort(src, kind="stable")
    a, b, s = a[first], b[first], s[first]
    order = descending_order(s)
    return a[order].astype(np.int32), b[order].astype(np.int32), s[order]


def entry_pair_keys(index: np.ndarray) -> np.ndarray:
    """int64 (N, k) key ``min(i, j) * N + max(i, j)`` of each neighbour entry (row i lists j), the
    same for both images of a pair; ``-1`` where the index is ``-1``."""
    index = np.asarray(index)
    n = index.shape[0]
    rows = np.arange(n, dtype=np.int64)[:, None]
    keys = np.minimum(rows, index).astype(np.int64) * n + np.maximum(rows, index)
    return np.where(index >= 0, keys, -1)


def connected_groups(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Label each of n items with its connected component under the edges (a[i], b[i]).

    Vectorised union-find: hook each edge's larger root onto the smaller one, then compress
    paths by pointer jumping, until no edge joins two roots. Returns, per item, the smallest
    index in its component.
    """
    parent = np.arange(n, dtype=np.int64)
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    while a.size:
        pa, pb = parent[a], parent[b]
        lo, hi = np.minimum(pa, pb), np.maximum(pa, pb)
        join = lo != hi
        if not join.any():
            break
        np.minimum.at(parent, hi[join], lo[join])
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped
    return parent


def group_sizes(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Sizes of the components with at least two members."""
    roots = connected_groups(n, a, b)
    sizes = np.bincount(roots, minlength=n)
    return sizes[sizes >= 2]
