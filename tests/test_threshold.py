"""dupscope.threshold: threshold suggestions from nearest-neighbour similarities, no ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from dupscope import SimilarityWriter
from dupscope.threshold import nearest_neighbor_similarity, suggest_threshold


def bimodal(rng, n_bulk=900, n_dup=100):
    bulk = rng.normal(0.80, 0.03, n_bulk)
    dup = rng.normal(0.99, 0.004, n_dup)
    return np.concatenate([bulk, dup]).clip(0, 1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_finds_the_planted_valley(seed):
    rng = np.random.default_rng(seed)
    x = bimodal(rng)
    s = suggest_threshold(x)
    assert s.method == "valley"
    # The gap between the modes is about 0.89..0.975: the threshold must fall inside it.
    assert 0.89 < s.threshold < 0.975
    assert s.n_above == int((x >= s.threshold).sum())
    assert 95 <= s.n_above <= 105
    assert 0.77 < s.bulk_mode < 0.83 and s.duplicate_mode > 0.97
    assert "valley" in s.reasoning and f"{s.threshold:.3f}" in s.reasoning
    h = s.histogram
    assert h.counts.sum() == x.size and len(h.edges) == len(h.counts) + 1 == len(h.smoothed) + 1


def test_exact_copies_piled_up_at_one():
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.normal(0.75, 0.04, 500).clip(0, 1), np.ones(40)])
    s = suggest_threshold(x)
    assert s.method == "valley" and 0.87 < s.threshold < 0.995 and s.n_above == 40


def test_unimodal_says_no_valley():
    rng = np.random.default_rng(5)
    x = rng.normal(0.8, 0.04, 2000).clip(0, 1)
    s = suggest_threshold(x)
    assert s.method == "fallback"
    assert s.reasoning.startswith("No clear valley")
    median = np.median(x)
    assert median < s.threshold <= x.max()
    assert s.n_above < 0.01 * x.size


def test_small_and_empty_inputs():
    s = suggest_threshold(np.array([0.5, 0.9, np.nan]))
    assert s.method == "fallback" and "too few" in s.reasoning and np.isfinite(s.threshold)
    e = suggest_threshold(np.array([np.nan, np.nan]))
    assert e.method == "none" and np.isnan(e.threshold) and e.histogram.counts.size == 0


def test_pure_function():
    rng = np.random.default_rng(6)
    x = bimodal(rng).astype(np.float16)
    before = x.copy()
    a, b = suggest_threshold(x), suggest_threshold(x)
    np.testing.assert_array_equal(x, before)
    assert a.threshold == b.threshold and a.reasoning == b.reasoning


def test_reads_nearest_neighbours_of_a_file(tmp_path):
    rng = np.random.default_rng(7)
    base = rng.standard_normal((40, 16)).astype(np.float32)
    emb = np.concatenate([base, base[:10] + 0.01 * rng.standard_normal((10, 16)).astype(np.float32)])
    path = tmp_path / "sim.h5"
    with SimilarityWriter(path) as w:
        w.write_similarity(emb, k=3, dense=False)
    nn = nearest_neighbor_similarity(path)
    assert nn.shape == (50,) and nn.dtype == np.float64
    assert (nn[:10] > 0.99).all() and (nn[40:] > 0.99).all() and (nn[10:40] < 0.95).all()
    s = suggest_threshold(nn)
    # The ten planted copies and their originals are all above it.
    assert (nn[:10] >= s.threshold).all() and (nn[40:] >= s.threshold).all()
