"""The built-in demo dataset: files, annotations, ground truth, and that it finds its copies."""

from __future__ import annotations

import filecmp
import json
import pickle

import numpy as np

from dupscope.annotations import load_annotations
from dupscope.demo import COPY_KINDS, make_demo_dataset
from dupscope.pipeline import compute_similarity
from dupscope.store import SimilarityFile


def test_dataset_is_complete_and_reproducible(tmp_path):
    a = make_demo_dataset(tmp_path / "a", n_originals=16, n_copied=6, size=(160, 120))
    b = make_demo_dataset(tmp_path / "b", n_originals=16, n_copied=6, size=(160, 120))
    table = load_annotations(a.annotations)
    assert len(table) == a.n_images > 16
    assert all((a.folder / p).is_file() for p in table.paths)
    assert set(table.labels) <= {"coast", "forest", "city", "desert"}
    assert set(table.splits) <= {"train", "val", "test"}
    # Same seed, same dataset.
    assert json.loads(a.annotations.read_text())["images"] == \
        json.loads(b.annotations.read_text())["images"]
    groups = json.loads(a.ground_truth.read_text())["groups"]
    assert len(groups) == 6 and all(len(g) >= 2 for g in groups)
    assert all(p in table.paths for g in groups for p in g)
    with open(a.predictions, "rb") as f:
        pred = pickle.load(f)
    assert pred.shape == (a.n_images, 4) and np.allclose(pred.sum(1), 1, atol=1e-5)
    # Exact copies are byte-identical files.
    for g in groups:
        for p in g[1:]:
            if "_exact." in p:
                assert filecmp.cmp(a.folder / g[0], a.folder / p, shallow=False)


def test_planted_copies_are_nearest_neighbours(tmp_path):
    data = make_demo_dataset(tmp_path / "d", n_originals=30, n_copied=10)
    out = tmp_path / "sim.h5"
    compute_similarity(data.annotations, out, progress=False)
    with SimilarityFile(out) as f:
        idx, sim = f.neighbors()
        paths = f.paths
    row = {p: i for i, p in enumerate(paths)}
    hits = total = 0
    for group in json.loads(data.ground_truth.read_text())["groups"]:
        original = row[group[0]]
        for copy in group[1:]:
            total += 1
            hits += idx[row[copy], 0] in [row[p] for p in group if p != copy]
            _ = original
    # Every copy kind is one an ImageNet network handles; allow one miss in the small set.
    assert hits >= total - 1, f"{hits}/{total} copies found their group at rank 1"
    assert set(COPY_KINDS) >= {"exact", "resized", "jpeg", "crop"}
