"""The delete list (dupscope.export) and `dupscope export`."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from dupscope.cli import main
from dupscope.export import (ExportError, choose_keepers, delete_list, duplicate_groups, groups_at, merge_list,
                             write_delete_list)
from dupscope.store import SimilarityWriter


def test_a_chain_does_not_join_different_pictures():
    # A~B and B~C above the threshold, A and C not: connected components would give {A, B, C}.
    a, b, s = np.array([0, 1, 0]), np.array([1, 2, 2]), np.array([0.95, 0.93, 0.2], np.float32)
    group = duplicate_groups(3, a, b, s, 0.9)
    assert group.tolist() == [0, 0, -1]  # the best pair A~B; C is not A's duplicate
    # With A~C linked too, all three agree.
    assert duplicate_groups(3, a, b, np.array([0.95, 0.93, 0.91], np.float32), 0.9).tolist() == [0, 0, 0]
    # At 0.2 the link A~C is there, and all three join at that score.
    assert duplicate_groups(3, a, b, s, 0.2).tolist() == [0, 0, 0]
    assert merge_list(3, a, b, s).level.tolist() == pytest.approx([0.95, 0.2])


def test_a_group_takes_an_image_only_linked_to_all_of_it():
    # 0, 1, 2, 3 all linked to each other; 3 is also linked to 4 (not to the others).
    a = np.array([0, 0, 0, 1, 1, 2, 3])
    b = np.array([1, 2, 3, 2, 3, 3, 4])
    s = np.array([0.99, 0.98, 0.97, 0.97, 0.96, 0.95, 0.94], np.float32)
    group = duplicate_groups(6, a, b, s, 0.9)
    assert group.tolist() == [0, 0, 0, 0, -1, -1]  # 4 agrees with 3 only, 5 is linked to nobody
    # Higher up, the groups are parts of these (they nest).
    assert duplicate_groups(6, a, b, s, 0.97).tolist() == [0, 0, 0, -1, -1, -1]
    assert duplicate_groups(6, a, b, s, 0.99).tolist() == [0, 0, -1, -1, -1, -1]
    # A strong pair outside a group is not broken up to grow it: 3~4 at 0.965 comes before the
    # last link 2~3 of {0, 1, 2, 3}, so 3 pairs with 4 and {0, 1, 2} stays as it is.
    s2 = np.array([0.99, 0.98, 0.97, 0.97, 0.96, 0.95, 0.965], np.float32)
    assert duplicate_groups(6, a, b, s2, 0.9).tolist() == [0, 0, 0, 3, 3, -1]


def _reference_merges(n, a, b, s):
    """The rule written plainly in Python (the compiled core must give exactly this): pairs by
    score (high first), then lower row, then the other row; a pair joins its groups when all
    their cross pairs have been taken."""
    edges = sorted((-float(v), min(x, y), max(x, y)) for x, y, v in zip(a.tolist(), b.tolist(), s.tolist())
                   if not np.isnan(v))
    group = list(range(n))
    taken = set()
    merges = []
    for neg, x, y in edges:
        taken.add((x, y))
        gx, gy = group[x], group[y]
        if gx == gy:
            continue
        mx = [i for i in range(n) if group[i] == gx]
        my = [i for i in range(n) if group[i] == gy]
        if all((min(i, j), max(i, j)) in taken for i in mx for j in my):
            merges.append((x, y, -neg))
            for i in my:
                group[i] = gx
    return merges


def _reference_groups(n, merges, t, exclude=()):
    group = list(range(n))
    for x, y, level in merges:
        if level < np.float32(t):
            break
        gx, gy = group[x], group[y]
        mx = [i for i in range(n) if group[i] == gx]
        my = [i for i in range(n) if group[i] == gy]
        if any((min(i, j), max(i, j)) in exclude for i in mx for j in my):
            continue
        for i in my:
            group[i] = gx
    label = [-1] * n
    for g in set(group):
        members = [i for i in range(n) if group[i] == g]
        if len(members) > 1:
            for i in members:
                label[i] = min(members)
    return label


def _random_pairs(rng, n, m, scores):
    a, b = rng.integers(0, n, m), rng.integers(0, n, m)
    keep = a != b
    key = np.unique(np.minimum(a, b)[keep] * n + np.maximum(a, b)[keep])
    rng.shuffle(key)
    a, b = (key // n).astype(np.int32), (key % n).astype(np.int32)
    flip = rng.random(len(a)) < 0.5
    a[flip], b[flip] = b[flip], a[flip].copy()
    return a, b, scores(len(a))


@pytest.mark.parametrize("seed", range(6))
def test_compiled_groups_equal_the_plain_rule(seed):
    """Random graphs with few distinct scores (many ties), unsorted pairs, NaN scores, hubs, and
    "not a duplicate" marks."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 120))
    a, b, s = _random_pairs(rng, n, int(rng.integers(1, 8 * n)),
                            lambda m: rng.choice(np.array([0.7, 0.8, 0.9, 0.95, np.nan], np.float32), m))
    ml = merge_list(n, a, b, s)
    ref = _reference_merges(n, a, b, s)
    assert list(zip(ml.u.tolist(), ml.v.tolist(), ml.level.tolist())) == [(x, y, pytest.approx(v)) for x, y, v in ref]
    pick = rng.random(len(a)) < 0.1
    exclude = {(min(x, y), max(x, y)) for x, y in zip(a[pick].tolist(), b[pick].tolist())}
    for t in (0.75, 0.9, 0.95):
        assert groups_at(n, ml, t).tolist() == _reference_groups(n, ref, t), (seed, t)
        assert groups_at(n, ml, t, exclude).tolist() == _reference_groups(n, ref, t, exclude), (seed, t)


@pytest.mark.parametrize("seed", range(4))
def test_groups_are_cliques_that_nest_and_equal_textbook_complete_linkage(seed):
    """Distinct scores: the groups equal scipy's complete linkage cut at 1 - t (a missing pair is
    a distance no cut reaches); at every threshold every two members are linked at or above it,
    and a lower threshold only joins whole groups."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(20, 150))
    a, b, s = _random_pairs(rng, n, int(rng.integers(n, 6 * n)),
                            lambda m: rng.permutation(np.linspace(0.5, 1.0, m, endpoint=False)).astype(np.float32))
    dist = np.full((n, n), 10.0)
    dist[a, b] = dist[b, a] = 1.0 - s.astype(np.float64)
    np.fill_diagonal(dist, 0)
    tree = linkage(squareform(dist, checks=False), method="complete")
    ml = merge_list(n, a, b, s)
    score = {(min(x, y), max(x, y)): v for x, y, v in zip(a.tolist(), b.tolist(), s.tolist())}
    previous = None
    for t in np.linspace(0.99, 0.5, 25):
        g = groups_at(n, ml, t)
        # scipy: flat clusters with all members within distance 1 - t of each other.
        ref = fcluster(tree, 1.0 - np.float32(t) + 1e-9, criterion="distance")
        ours = {frozenset(np.flatnonzero(g == x).tolist()) for x in set(g.tolist()) if x >= 0}
        theirs = {frozenset(np.flatnonzero(ref == c).tolist()) for c in set(ref.tolist())}
        assert ours == {c for c in theirs if len(c) > 1}, (seed, t)
        for members in ours:
            m = sorted(members)
            assert all(score.get((x, y), 0) >= np.float32(t) for i, x in enumerate(m) for y in m[i + 1:])
        if previous is not None:  # nested: each group at the higher threshold lies inside one here
            for x in set(previous.tolist()) - {-1}:
                assert len(set(g[previous == x].tolist())) == 1 and g[previous == x][0] >= 0
        previous = g


def test_merge_and_replay_reject_bad_input():
    from dupscope._core import linkage_merges, replay_merges

    ok = np.array([0], np.int32)
    with pytest.raises(ValueError, match="two different rows"):
        linkage_merges(2, ok, ok, np.array([0.9], np.float32))
    with pytest.raises(ValueError, match="two different rows"):
        linkage_merges(2, ok, np.array([5], np.int32), np.array([0.9], np.float32))
    with pytest.raises(ValueError, match="given twice"):
        linkage_merges(3, np.array([0, 1], np.int32), np.array([1, 0], np.int32), np.array([0.9, 0.8], np.float32))
    with pytest.raises(TypeError, match="int32"):
        linkage_merges(2, np.array([0]), np.array([1]), np.array([0.9], np.float32))
    none = np.zeros(0, np.int32)
    with pytest.raises(ValueError, match="must not increase"):
        replay_merges(3, np.array([0, 1], np.int32), np.array([1, 2], np.int32), np.array([0.8, 0.9], np.float32),
                      0.5, none, none)
    with pytest.raises(ValueError, match="two different rows"):
        replay_merges(3, ok, np.array([1], np.int32), np.array([0.9], np.float32), 0.5, ok, ok)


def test_keeper_is_largest_then_first():
    group = np.array([0, 0, 0, -1, 4, 4])
    width = np.array([100, 200, 200, 10, 50, 50])
    height = np.array([100, 100, 100, 10, 50, 50])
    assert choose_keepers(group, width, height).tolist() == [False, True, False, True, True, False]
    assert choose_keepers(group, width, height, "first").tolist() == [True, False, False, True, True, False]
    with pytest.raises(ExportError):
        choose_keepers(group, width, height, "smallest")


@pytest.fixture()
def h5(tmp_path):
    """A real file: images 0-2 one picture (1 the largest), 3 unique, 4 and 5 another picture."""
    rng = np.random.default_rng(3)
    base = rng.standard_normal((3, 16)).astype(np.float32)
    emb = np.stack([base[0], base[0] + 0.05 * rng.standard_normal(16), base[0] + 0.06 * rng.standard_normal(16),
                    base[1], base[2], base[2] + 0.05 * rng.standard_normal(16)]).astype(np.float32)
    path = tmp_path / "sim.h5"
    with SimilarityWriter(path) as w:
        n = len(emb)
        w.write_images(paths=[f"img{i}.png" for i in range(n)], resolved=[f"/d/img{i}.png" for i in range(n)],
                       labels=[""] * n, splits=[""] * n, ok=np.ones(n, bool), errors=[""] * n,
                       widths=np.array([64, 128, 64, 64, 32, 32]), heights=np.array([64, 128, 64, 64, 32, 32]))
        w.write_similarity(emb, k=5, dense=False)
    return path


def test_export_rows(h5):
    dl = delete_list(h5, threshold=0.97)
    rows = {r["path"]: r for r in dl.rows()}
    assert [rows[f"img{i}.png"]["action"] for i in range(6)] == ["remove", "keep", "remove", "keep", "keep", "remove"]
    assert rows["img3.png"]["group"] is None
    assert rows["img0.png"]["group"] == rows["img1.png"]["group"] == rows["img2.png"]["group"]
    assert rows["img4.png"]["group"] == rows["img5.png"]["group"] != rows["img0.png"]["group"]
    assert rows["img1.png"]["width"] == 128 and rows["img0.png"]["best_score"] > 0.97
    text = write_delete_list(dl, None, "csv")
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert [r["action"] for r in parsed] == [rows[f"img{i}.png"]["action"] for i in range(6)]
    assert list(parsed[0]) == ["path", "group", "action", "width", "height", "best_score"]


def test_export_cli_json_and_csv(h5, tmp_path, capsys):
    assert main(["export", str(h5), "--threshold", "0.97", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["threshold"] == 0.97 and len(doc["images"]) == 6
    out = tmp_path / "delete.csv"
    assert main(["export", str(h5), "--threshold", "0.97", "-o", str(out)]) == 0
    assert out.read_text().count(",remove,") == 3


@pytest.mark.parametrize("value", ["5", "-0.1", "nan", "abc"])
def test_export_refuses_a_threshold_outside_0_1(h5, value, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["export", str(h5), "--threshold", value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--threshold" in err and "Traceback" not in err


def test_export_missing_file_is_one_line(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope.h5")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dupscope export: error:") and "\n" not in err


def test_delete_list_refuses_bad_threshold_from_python(h5):
    with pytest.raises(ExportError):
        delete_list(h5, threshold=float("nan"))
    with pytest.raises(ExportError):
        delete_list(h5, threshold=1.5)


def _marks(path, not_dup=(), keep=(), identity=None, paths=None):
    paths = paths or [f"img{i}.png" for i in range(6)]
    doc = {"dupscope_marks": 1, "identity": identity,
           "not_duplicate": [{"a": a, "b": b, "path_a": paths[a], "path_b": paths[b]} for a, b in not_dup],
           "keep": [{"index": i, "path": paths[i]} for i in keep]}
    path.write_text(json.dumps(doc))
    return path


def test_export_applies_marks(h5, tmp_path, capsys):
    """A pair marked 'not a duplicate' is never a link; an image marked 'keep' is its group's keeper."""
    marks = _marks(tmp_path / "marks.json", not_dup=[(0, 2), (1, 2)], keep=[0])
    rows = {r["path"]: r for r in delete_list(h5, threshold=0.97, marks=marks).rows()}
    assert [rows[f"img{i}.png"]["action"] for i in range(3)] == ["keep", "remove", "keep"]
    assert rows["img2.png"]["group"] is None and rows["img0.png"]["group"] == rows["img1.png"]["group"]
    out = tmp_path / "d.csv"
    assert main(["export", str(h5), "--threshold", "0.97", "--marks", str(marks), "-o", str(out)]) == 0
    assert out.read_text().count(",remove,") == 2


@pytest.mark.parametrize("doc,message", [
    ("not json", "not JSON"),
    ('{"a": 1}', "not a dupscope marks file"),
    ('{"dupscope_marks": 1, "keep": [{"index": 9, "path": "img9.png"}]}', "not at that row"),
    ('{"dupscope_marks": 1, "keep": [{"index": 1, "path": "other.png"}]}', "not at that row"),
    ('{"dupscope_marks": 1, "identity": "elsewhere", "keep": []}', "another similarity file"),
    ('{"dupscope_marks": 1, "keep": [{"row": 1}]}', "each mark needs"),
])
def test_export_refuses_bad_marks_in_one_line(h5, tmp_path, capsys, doc, message):
    marks = tmp_path / "marks.json"
    marks.write_text(doc)
    assert main(["export", str(h5), "--marks", str(marks)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dupscope export: error:") and message in err and "\n" not in err
