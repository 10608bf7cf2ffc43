"""`dupscope report`: pair/group counts, cross-split and label-conflict lists, JSON output."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from dupscope.report import connected_groups, group_sizes, summarize
from dupscope.store import SimilarityWriter


def brute_components(n, edges):
    label = list(range(n))
    changed = True
    while changed:
        changed = False
        for a, b in edges:
            m = min(label[a], label[b])
            if label[a] != m or label[b] != m:
                label[a] = label[b] = m
                changed = True
    return np.array(label)


@pytest.mark.parametrize("seed", range(5))
def test_connected_groups_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = 60
    edges = rng.integers(0, n, size=(rng.integers(0, 80), 2))
    got = connected_groups(n, edges[:, 0], edges[:, 1])
    np.testing.assert_array_equal(got, brute_components(n, edges.tolist()))


def make_file(path):
    """Six images: {0, 1, 2} near-copies (1 in another split, 2 with another label), {3, 4}
    copies, 5 alone and failed."""
    rng = np.random.default_rng(0)
    base = rng.standard_normal((3, 64))
    e = np.stack([base[0], base[0] + 0.01, base[0] + 0.02, base[1], base[1] + 0.01, base[2]])
    ok = np.array([1, 1, 1, 1, 1, 0], bool)
    with SimilarityWriter(path) as w:
        w.write_images(paths=[f"img{i}.png" for i in range(6)],
                       labels=["cat", "cat", "dog", "car", "car", "car"],
                       splits=["train", "test", "train", "val", "val", "val"],
                       ok=ok, errors=["", "", "", "", "", "cannot identify image file"])
        w.write_similarity(e.astype(np.float32), k=4, valid=ok, device="cpu")


def test_summary_counts_and_lists(tmp_path):
    path = tmp_path / "sim.h5"
    make_file(path)
    s = summarize(path, thresholds=(0.99,), threshold=0.99)
    c = {round(x["threshold"], 3): x for x in s["counts"]}[0.99]
    assert c["pairs"] == 4 and c["groups"] == 2 and c["images_in_groups"] == 5
    assert s["cross_split"]["count"] == 2  # 0-1 and 1-2 cross train/test
    assert s["label_conflicts"]["count"] == 2  # 0-2 and 1-2 are cat/dog
    assert {(p["a"], p["b"]) for p in s["label_conflicts"]["pairs"]} == {(0, 2), (1, 2)}
    assert s["failed"] == [{"index": 5, "path": "img5.png", "error": "cannot identify image file"}]
    assert s["most_similar"][0]["similarity"] >= s["most_similar"][-1]["similarity"]


def test_group_sizes():
    assert sorted(group_sizes(6, np.array([0, 1, 3]), np.array([1, 2, 4])).tolist()) == [2, 3]


def test_cli_report_json_and_text(tmp_path):
    path = tmp_path / "sim.h5"
    make_file(path)
    r = subprocess.run([sys.executable, "-m", "dupscope", "report", str(path), "--json",
                        "--threshold", "0.99"], capture_output=True, text=True, check=True)
    data = json.loads(r.stdout)
    assert data["n_images"] == 6 and data["threshold"] == 0.99
    r = subprocess.run([sys.executable, "-m", "dupscope", "report", str(path)],
                       capture_output=True, text=True, check=True)
    assert "Duplicates by threshold" in r.stdout and "img5.png" in r.stdout
    r = subprocess.run([sys.executable, "-m", "dupscope", "report", str(tmp_path / "no.h5")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "does not exist" in r.stderr
