"""dupscope.search against a float64 numpy reference, at sizes that are not multiples of the block."""

from __future__ import annotations

import numpy as np
import pytest

from dupscope.search import column_topk, query_topk
from seeding import fresh_rng


def _reference(q, p, exclude=None, valid=None):
    qu = q / np.linalg.norm(q, axis=1, keepdims=True)
    pu = p / np.linalg.norm(p, axis=1, keepdims=True)
    s = qu.astype(np.float64) @ pu.astype(np.float64).T
    if valid is not None:
        s[:, ~valid] = -np.inf
    if exclude is not None:
        for i, e in enumerate(exclude):
            if e >= 0:
                s[i, e] = -np.inf
    return s


@pytest.mark.parametrize("m,n,k,block", [(37, 101, 5, 8), (1, 3, 5, 4), (64, 65, 1, 64)])
def test_query_topk_matches_float64(m, n, k, block):
    rng = fresh_rng()
    q = rng.standard_normal((m, 19)).astype(np.float32)
    p = rng.standard_normal((n, 19)).astype(np.float32)
    valid = rng.random(n) > 0.2
    exclude = rng.integers(-1, n, m)
    ref = _reference(q, p, exclude, valid)
    idx, cos = query_topk(q, p, k, exclude=exclude, valid=valid, block=block, metric="cosine")
    for i in range(m):
        want = np.sort(ref[i][np.isfinite(ref[i])])[::-1][:k]
        got = cos[i][idx[i] >= 0]
        np.testing.assert_allclose(got, want, atol=1e-5)
        assert np.all(valid[idx[i][idx[i] >= 0]]) and exclude[i] not in idx[i][idx[i] >= 0]
        np.testing.assert_allclose(ref[i, idx[i][idx[i] >= 0]], got, atol=1e-5)
        assert np.all(idx[i][len(want):] == -1) and np.all(np.isnan(cos[i][len(want):]))
    eidx, esim = query_topk(q, p, k, exclude=exclude, valid=valid, block=block)
    assert esim.dtype == np.float16
    np.testing.assert_allclose(esim[eidx >= 0].astype(np.float64), ((1 + ref[np.arange(m)[:, None], np.maximum(eidx, 0)]) / 2)[eidx >= 0],
                               atol=1e-3)


@pytest.mark.parametrize("m,n,k,block", [(23, 50, 4, 7), (3, 10, 6, 2)])
def test_column_topk_matches_float64(m, n, k, block):
    rng = fresh_rng()
    q = rng.standard_normal((m, 11)).astype(np.float32)
    p = rng.standard_normal((n, 11)).astype(np.float32)
    ids = 1000 + np.arange(m)
    idx, sim = column_topk(q, p, k, query_ids=ids, block=block)
    ref = (1 + _reference(p, q)) / 2
    for r in range(n):
        want = np.sort(ref[r])[::-1][:k]
        got = sim[r][idx[r] >= 0].astype(np.float64)
        np.testing.assert_allclose(got, want[:len(got)], atol=1e-3)
        assert len(got) == min(k, m) and np.all(np.isin(idx[r][idx[r] >= 0], ids))
        # ranked best first, ties by the lower id
        assert all((sim[r][j] > sim[r][j + 1]) or (sim[r][j] == sim[r][j + 1] and idx[r][j] < idx[r][j + 1])
                   for j in range(len(got) - 1))
