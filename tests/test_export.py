"""The delete list (dupscope.export) and `dupscope export`."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from dupscope.cli import main
from dupscope.export import ExportError, choose_keepers, delete_list, star_groups, write_delete_list
from dupscope.store import SimilarityWriter


def test_a_chain_does_not_join_different_pictures():
    # A~B and B~C above the threshold, A and C not: connected components would give {A, B, C}.
    a, b, s = np.array([0, 1, 0]), np.array([1, 2, 2]), np.array([0.95, 0.93, 0.2], np.float32)
    group = star_groups(3, a, b, s, 0.9)
    assert group.tolist() == [1, 1, -1]  # B (most links) with its best match A; C is not A's duplicate
    # With A~C linked too, all three agree.
    assert star_groups(3, a, b, np.array([0.95, 0.93, 0.91], np.float32), 0.9).tolist() == [0, 0, 0]


def test_groups_form_around_the_best_connected_image():
    # 0, 1, 2, 3 all linked to each other; 3 is also linked to 4 (not to the others).
    a = np.array([0, 0, 0, 1, 1, 2, 3])
    b = np.array([1, 2, 3, 2, 3, 3, 4])
    s = np.array([0.99, 0.98, 0.97, 0.97, 0.96, 0.95, 0.96], np.float32)
    group = star_groups(6, a, b, s, 0.9)
    assert list(group[:4]) == [3, 3, 3, 3]  # 3 has the most links: the representative
    assert group[4] == -1 and group[5] == -1  # 4 agrees with 3 only, 5 is linked to nobody


def _reference_star_groups(n, a, b, s, threshold):
    """The rule written plainly in Python (the compiled core must give exactly this)."""
    link = ~np.isnan(s) & (s >= np.float32(threshold))
    a, b, s = a[link].astype(np.int64), b[link].astype(np.int64), s[link]
    group = np.full(n, -1, np.int64)
    score_of = {(min(x, y), max(x, y)): float(v) for x, y, v in zip(a.tolist(), b.tolist(), s.tolist())}
    nbrs = {i: [] for i in range(n)}
    for x, y in score_of:
        nbrs[x].append(y)
        nbrs[y].append(x)
    degree = np.array([len(nbrs[i]) for i in range(n)])
    best = np.array([max((score_of[(min(i, j), max(i, j))] for j in nbrs[i]), default=-np.inf) for i in range(n)])
    for i in np.lexsort((np.arange(n), -best, -degree)).tolist():
        if degree[i] == 0 or group[i] >= 0:
            continue
        linked = sorted((j for j in nbrs[i] if group[j] < 0), key=lambda j: (-score_of[(min(i, j), max(i, j))], j))
        members = [i]
        for j in linked:
            if all((min(j, m), max(j, m)) in score_of for m in members[1:]):
                members.append(j)
        if len(members) > 1:
            group[members] = i
    return group


@pytest.mark.parametrize("seed", range(6))
def test_compiled_groups_equal_the_plain_rule(seed):
    """Random graphs with few distinct scores (many ties), unsorted pairs, NaN scores, hubs."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 400))
    m = int(rng.integers(1, 6 * n))
    a, b = rng.integers(0, n, m), rng.integers(0, n, m)
    keep = a != b
    key = np.unique(np.minimum(a, b)[keep] * n + np.maximum(a, b)[keep])
    rng.shuffle(key)
    a, b = (key // n).astype(np.int32), (key % n).astype(np.int32)
    flip = rng.random(len(a)) < 0.5
    a[flip], b[flip] = b[flip], a[flip].copy()
    s = rng.choice(np.array([0.7, 0.8, 0.9, 0.95, np.nan], np.float32), len(a))
    for t in (0.75, 0.9, 0.95):
        assert star_groups(n, a, b, s, t).tolist() == _reference_star_groups(n, a, b, s, t).tolist(), (seed, t)


def test_star_groups_rejects_bad_pairs():
    from dupscope._core import star_groups as core

    ok = np.array([0], np.int32)
    with pytest.raises(ValueError, match="two different rows"):
        core(2, ok, ok, np.array([0.9], np.float32), 0.5)
    with pytest.raises(ValueError, match="two different rows"):
        core(2, ok, np.array([5], np.int32), np.array([0.9], np.float32), 0.5)
    with pytest.raises(TypeError, match="int32"):
        core(2, np.array([0]), np.array([1]), np.array([0.9], np.float32), 0.5)


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
