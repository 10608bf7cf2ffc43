"""dupscope.evaluate and `dupscope evaluate`: metrics, ground-truth formats, names, errors, plot.

Every file here is a real HDF5 file written by the engine from embeddings with a known duplicate
structure, so the similarities are what `dupscope similarity` would store.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from dupscope import SimilarityWriter
from dupscope.cli import main
from dupscope.evaluate import (EvaluationError, evaluate, evaluate_scores, load_ground_truth,
                               plot_pr_curve, resolve_items, true_pairs)


def write_file(tmp_path, emb, paths=None, *, k=4, dense=True, ok=None, name="sim.h5"):
    path = tmp_path / name
    with SimilarityWriter(path) as w:
        if paths is not None:
            w.write_images(paths=paths, ok=ok)
        w.write_similarity(np.ascontiguousarray(emb, dtype=np.float32), k=k, dense=dense,
                           valid=None if ok is None else np.asarray(ok))
    return path


def angles(*deg):
    """2-D unit vectors: the similarity of two is (1 + cos(difference)) / 2."""
    r = np.radians(deg)
    return np.stack([np.cos(r), np.sin(r)], axis=1)


def f16(x):
    return float(np.float16(x))


# a=0, b=20, c=90, d=100 degrees. Pairs by similarity: cd .9924 (false), ab .9698 (true),
# bc .6710, bd .5868 (false), ac .5 (true), ad .4132 (false).
HAND = angles(0, 20, 90, 100)
HAND_PATHS = ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
HAND_GT = {"pairs": [["a.jpg", "b.jpg"], ["a.jpg", "c.jpg"]]}


def test_hand_computed_example(tmp_path):
    h5 = write_file(tmp_path, HAND, HAND_PATHS)
    r = evaluate(h5, HAND_GT, threshold=0.9)
    # At 0.9: cd and ab are predicted; one right, one wrong, ac missed.
    assert (r.true_positives, r.false_positives, r.false_negatives) == (1, 1, 1)
    assert r.precision == pytest.approx(0.5) and r.recall == pytest.approx(0.5) and r.f1 == pytest.approx(0.5)
    # Curve points (P, R): (0, 0) (1/2, 1/2) (1/3, 1/2) (1/4, 1/2) (2/5, 1) (1/3, 1).
    np.testing.assert_allclose(r.precision_curve, [0, 1 / 2, 1 / 3, 1 / 4, 2 / 5, 1 / 3])
    np.testing.assert_allclose(r.recall_curve, [0, 0.5, 0.5, 0.5, 1, 1])
    assert r.average_precision == pytest.approx(0.5 * 0.5 + 0.5 * 0.4)
    assert r.best_f1 == pytest.approx(2 * 0.4 / 1.4)
    assert r.best_f1_threshold == f16(0.5)
    assert r.recall_at_precision == 0.0 and math.isnan(r.threshold_at_precision)
    assert r.n_candidates == 6 and r.n_true_pairs == 2 and r.source == "dense"
    r50 = evaluate(h5, HAND_GT, min_precision=0.5)
    assert r50.recall_at_precision == 0.5
    assert r50.threshold_at_precision == f16((1 + np.cos(np.radians(20))) / 2)
    # Without a threshold, the numbers are reported at the best-F1 threshold.
    assert r50.threshold == r50.best_f1_threshold and r50.f1 == pytest.approx(r50.best_f1)


def test_evaluate_scores_matches_file_path():
    cand = np.array([0.99, 0.97, 0.67, 0.59, 0.5, 0.41])
    r = evaluate_scores(cand, np.array([0.97, 0.5]))
    assert r.average_precision == pytest.approx(0.45)
    r16 = evaluate_scores(cand.astype(np.float16), np.array([0.97, 0.5], np.float16))
    assert r16.average_precision == pytest.approx(0.45)
    # A true pair that is never a candidate caps recall.
    r3 = evaluate_scores(cand, np.array([0.97, 0.5, np.nan]))
    assert r3.recall_curve.max() == pytest.approx(2 / 3) and r3.n_true_candidates == 2


def clustered(rng, n_groups, size, n_single, dim=32, noise=0.01):
    centres = rng.standard_normal((n_groups + n_single, dim))
    rows, groups = [], []
    for g in range(n_groups):
        for _ in range(size):
            rows.append(centres[g] + noise * rng.standard_normal(dim))
        groups.append(list(range(g * size, (g + 1) * size)))
    rows += list(centres[n_groups:])
    return np.array(rows, np.float32), groups


def test_perfect_ranking(tmp_path):
    rng = np.random.default_rng(1)
    emb, groups = clustered(rng, 5, 3, 20)
    h5 = write_file(tmp_path, emb, k=5)
    r = evaluate(h5, groups)  # a plain list of lists = groups, items are row indices
    assert r.n_true_pairs == 15
    assert r.average_precision == pytest.approx(1.0)
    assert r.recall_at_precision == 1.0 and r.best_f1 == pytest.approx(1.0)
    # The neighbour lists hold every true pair here: the same answer without the dense matrix.
    rn = evaluate(h5, groups, use_dense=False)
    assert rn.source == "neighbors" and rn.average_precision == pytest.approx(1.0)
    assert rn.n_candidates < r.n_candidates


def test_random_ranking_is_near_prevalence(tmp_path):
    rng = np.random.default_rng(2)
    n = 60
    emb = rng.standard_normal((n, 64)).astype(np.float32)
    h5 = write_file(tmp_path, emb, k=8)
    perm = rng.permutation(n)
    pairs = [[int(perm[2 * k]), int(perm[2 * k + 1])] for k in range(30)]
    r = evaluate(h5, {"pairs": pairs})
    prevalence = 30 / (n * (n - 1) / 2)
    assert r.average_precision < 10 * prevalence
    assert r.recall_at_precision < 0.2


def test_true_pair_missing_from_neighbour_lists_is_a_miss(tmp_path):
    rng = np.random.default_rng(3)
    emb, groups = clustered(rng, 2, 2, 10)
    far = len(emb) - 1
    emb[far] = -emb[0]  # opposite of row 0: neither is in the other's list
    h5 = write_file(tmp_path, emb, k=1, dense=False)
    r = evaluate(h5, {"pairs": [[0, 1], [2, 3], [0, far]]})
    assert r.source == "neighbors" and r.n_true_candidates == 2
    # The two planted pairs rank first (precision 1) but recall stops at 2 / 3.
    assert r.recall_curve.max() == pytest.approx(2 / 3)
    assert r.average_precision == pytest.approx(2 / 3)


NAMES = ["imgs/a/cat.jpg", "imgs/b/cat.jpg", "imgs/dog.png", "other/bird.jpg"]


def test_resolution_by_path_basename_index():
    rows = resolve_items(["imgs/dog.png", "dog.png", "./imgs/a/../dog.png", 3, "1", "/data/other/bird.jpg",
                          "imgs\\b\\cat.jpg"],
                         NAMES, resolved_paths=["/data/" + p for p in NAMES])
    assert rows.tolist() == [2, 2, 2, 3, 1, 3, 1]


def test_ambiguous_basename_and_unknown_names():
    with pytest.raises(EvaluationError, match=r"cat\.jpg.*several|several.*cat\.jpg"):
        resolve_items(["cat.jpg"], NAMES)
    with pytest.raises(EvaluationError) as exc:
        resolve_items([f"missing{k}.jpg" for k in range(8)] + ["dog.png"], NAMES)
    msg = str(exc.value)
    assert "8 names match no image" in msg and "'missing0.jpg'" in msg and "and 3 more" in msg
    with pytest.raises(EvaluationError, match="out of range"):
        resolve_items([7], NAMES)


def test_groups_expand_to_all_pairs():
    gt = load_ground_truth({"groups": [["imgs/dog.png", "bird.jpg", 0, "dog.png"], [1]],
                            "pairs": [[3, 2], [2, 2]]})
    pairs = true_pairs(gt, NAMES)
    # group {2, 3, 0} -> 3 pairs; [3, 2] repeats one; [2, 2] and the singleton add none.
    assert pairs.tolist() == [[0, 2], [0, 3], [2, 3]]


def test_ground_truth_files(tmp_path):
    h5 = write_file(tmp_path, HAND, HAND_PATHS)
    files = {
        "pairs.json": json.dumps(HAND_GT),
        "list.json": json.dumps([["a.jpg", "b.jpg"], ["a.jpg", "c.jpg"]]),
        "header.csv": "a,b\na.jpg,b.jpg\na.jpg,c.jpg\n",
        "noheader.csv": "a.jpg,b.jpg\na.jpg,c.jpg\n",
        "tabs.tsv": "0\t1\n0\t2\n",
        "groups.csv": "path,group\na.jpg,1\nb.jpg,1\nc.jpg,2\nd.jpg,3\n",
    }
    aps = {}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        aps[name] = evaluate(h5, tmp_path / name).average_precision
    expected = {k: pytest.approx(0.45) for k in files}
    expected["groups.csv"] = pytest.approx(0.5)  # only ab is a pair: it ranks second
    assert aps == expected


def test_errors(tmp_path):
    h5 = write_file(tmp_path, HAND, HAND_PATHS)
    with pytest.raises(EvaluationError, match="match no image"):
        evaluate(h5, {"pairs": [["a.jpg", "zebra.jpg"]]})
    with pytest.raises(EvaluationError, match="no pairs"):
        evaluate(h5, {"groups": [["a.jpg"], ["b.jpg", "b.jpg"]]})
    with pytest.raises(EvaluationError, match="'pairs' or 'groups'"):
        evaluate(h5, {"dupes": []})
    with pytest.raises(EvaluationError, match="expected 2"):
        evaluate(h5, {"pairs": [["a.jpg", "b.jpg", "c.jpg"]]})
    with pytest.raises(EvaluationError, match="does not exist"):
        evaluate(h5, tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(EvaluationError, match="not valid JSON"):
        evaluate(h5, tmp_path / "bad.json")
    # A file whose images could not be compared has no neighbours at all.
    lonely = write_file(tmp_path, angles(0, 10), ["x.jpg", "y.jpg"], k=2, dense=False,
                        ok=[True, False], name="lonely.h5")
    with pytest.raises(EvaluationError, match="no neighbours"):
        evaluate(lonely, {"pairs": [["x.jpg", "y.jpg"]]})


def test_plot_is_a_png(tmp_path):
    h5 = write_file(tmp_path, HAND, HAND_PATHS)
    r = evaluate(h5, HAND_GT, threshold=0.9)
    png = plot_pr_curve(r, tmp_path / "pr.png", backend="pillow")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size == (640, 480)
        px = np.asarray(im.convert("RGB")).reshape(-1, 3)
    colours = {tuple(c) for c in np.unique(px, axis=0)}
    assert (31, 111, 180) in colours and (214, 39, 40) in colours  # curve and threshold mark
    plot_pr_curve(r, tmp_path / "auto.png")  # matplotlib if installed, else Pillow
    with Image.open(tmp_path / "auto.png") as im:
        assert im.format == "PNG" and min(im.size) >= 200


def test_cli(tmp_path, capsys):
    h5 = write_file(tmp_path, HAND, HAND_PATHS)
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(HAND_GT))
    png = tmp_path / "pr.png"
    assert main(["evaluate", str(h5), str(gt), "--threshold", "0.9", "--plot", str(png), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["precision"] == 0.5 and out["average_precision"] == pytest.approx(0.45)
    assert out["threshold_at_precision"] is None and png.exists()
    assert main(["evaluate", str(h5), str(gt)]) == 0
    text = capsys.readouterr().out
    assert "average precision 0.4500" in text and "best F1" in text
    gt.write_text(json.dumps({"pairs": [["a.jpg", "zebra.jpg"]]}))
    assert main(["evaluate", str(h5), str(gt)]) == 2
    assert "zebra.jpg" in capsys.readouterr().err
