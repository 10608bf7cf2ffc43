"""Annotation formats -> the same ordered image table."""

from __future__ import annotations

import csv
import json
import os

import pytest
from PIL import Image

from dupscope.annotations import AnnotationError, load_annotations

# (path, label, split) in a deliberately unsorted order: the table must keep it.
ROWS = [
    ("val/dog/d1.png", "dog", "val"),
    ("train/cat/c2.png", "cat", "train"),
    ("train/dog/d0.png", "dog", "train"),
    ("train/cat/c1.png", "cat", "train"),
    ("test/cat/c9.png", "cat", "test"),
]


@pytest.fixture()
def dataset(tmp_path):
    root = tmp_path / "data"
    for i, (path, _, _) in enumerate(ROWS):
        p = root / path
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(p)
    return root


def write_all_formats(root):
    """The same rows in every supported file format; returns {format: path}."""
    files = {}
    cats = {"cat": 1, "dog": 2}
    coco = {
        "images": [{"id": 10 + i, "file_name": p, "width": 8, "height": 8, "split": s}
                   for i, (p, _, s) in enumerate(ROWS)],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        "annotations": [{"id": i, "image_id": 10 + i, "category_id": cats[lab], "bbox": [0, 0, 1, 1]}
                        for i, (_, lab, _) in enumerate(ROWS)],
    }
    files["coco"] = root / "coco.json"
    files["coco"].write_text(json.dumps(coco))
    for name, delim in (("csv", ","), ("tsv", "\t")):
        files[name] = root / f"labels.{name}"
        with open(files[name], "w", newline="") as fh:
            w = csv.writer(fh, delimiter=delim)
            w.writerow(["file_name", "label", "split"])
            w.writerows(ROWS)
    files["jsonl"] = root / "labels.jsonl"
    files["jsonl"].write_text("".join(json.dumps({"path": p, "label": lab, "split": s}) + "\n" for p, lab, s in ROWS))
    return files


def test_every_format_gives_the_same_table(dataset):
    files = write_all_formats(dataset)
    expected_paths = [p for p, _, _ in ROWS]
    for fmt, path in files.items():
        t = load_annotations(path)
        assert t.paths == expected_paths, fmt
        assert t.labels == [lab for _, lab, _ in ROWS], fmt
        assert t.splits == [s for _, _, s in ROWS], fmt
        assert t.resolved == [str(dataset / p) for p in expected_paths], fmt
        assert all(os.path.isfile(r) for r in t.resolved)
        assert t.format == ("coco" if fmt == "coco" else "csv" if fmt in ("csv", "tsv") else fmt)
    assert load_annotations(files["coco"]).categories == {1: "cat", 2: "dog"}


def test_text_list_and_folder(dataset):
    listing = dataset / "images.txt"
    listing.write_text("# my images\n\n" + "\n".join(p for p, _, _ in ROWS) + "\n   \n# end\n")
    t = load_annotations(listing)
    assert t.format == "list"
    assert t.paths == [p for p, _, _ in ROWS]
    assert t.labels == [""] * len(ROWS)

    # A folder: sorted order, label = parent folder, split from a train/val/test folder.
    (dataset / ".hidden").mkdir()
    Image.new("RGB", (4, 4)).save(dataset / ".hidden" / "x.png")
    (dataset / "notes.md").write_text("not an image")
    f = load_annotations(dataset)
    assert f.format == "folder"
    assert f.paths == sorted(p for p, _, _ in ROWS)
    by_path = {p: (lab, s) for p, lab, s in ROWS}
    assert [(lab, s) for lab, s in zip(f.labels, f.splits)] == [by_path[p] for p in f.paths]


def test_order_is_the_files_order_not_sorted(dataset):
    rows = list(reversed(ROWS)) + [ROWS[0]]  # a repeated image stays a separate row
    path = dataset / "rev.csv"
    path.write_text("image,class\n" + "".join(f"{p},{lab}\n" for p, lab, _ in rows))
    t = load_annotations(path)
    assert t.paths == [p for p, _, _ in rows]
    assert t.labels == [lab for _, lab, _ in rows]


def test_image_root_and_absolute_paths(dataset, tmp_path):
    elsewhere = tmp_path / "ann"
    elsewhere.mkdir()
    absolute = str(dataset / ROWS[0][0])
    path = elsewhere / "a.csv"
    path.write_text(f"path\n{ROWS[1][0]}\n{absolute}\n")
    default = load_annotations(path)
    assert default.resolved[0] == str(elsewhere / ROWS[1][0])  # relative to the file's folder
    rooted = load_annotations(path, image_root=dataset)
    assert rooted.resolved == [str(dataset / ROWS[1][0]), absolute]
    assert rooted.paths == [ROWS[1][0], absolute]  # as written


def test_coco_label_rules(tmp_path):
    coco = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "category_id": 3},  # own category wins
            {"id": 2, "file_name": "b.jpg"},                    # most frequent annotation: 4
            {"id": 3, "file_name": "c.jpg"},                    # tie 3 vs 4: first seen (4)
            {"id": 4, "file_name": "d.jpg"},                    # no annotations
            {"id": 5, "file_name": "e.jpg", "split": "Validation"},
        ],
        "categories": [{"id": 3, "name": "bus"}, {"id": 4, "name": "tram"}],
        "annotations": [
            {"image_id": 1, "category_id": 4}, {"image_id": 2, "category_id": 3},
            {"image_id": 2, "category_id": 4}, {"image_id": 2, "category_id": 4},
            {"image_id": 3, "category_id": 4}, {"image_id": 3, "category_id": 3},
            {"image_id": 5, "category_id": 99},  # unknown category: its id as the name
        ],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(coco))
    t = load_annotations(path)
    assert t.labels == ["bus", "tram", "tram", "", "99"]
    assert t.splits == ["", "", "", "", "val"]


def test_path_column_choice_and_errors(tmp_path):
    ambiguous = tmp_path / "amb.csv"
    ambiguous.write_text("path,image,label\na.png,b.png,x\n")
    with pytest.raises(AnnotationError) as err:
        load_annotations(ambiguous)
    msg = str(err.value)
    assert "amb.csv" in msg and "'path'" in msg and "'image'" in msg and "path_column" in msg
    assert load_annotations(ambiguous, path_column="image").paths == ["b.png"]

    nocol = tmp_path / "nocol.csv"
    nocol.write_text("name,score\na.png,1\n")
    with pytest.raises(AnnotationError, match=r"nocol\.csv: no image path column.*'name', 'score'"):
        load_annotations(nocol)
    assert load_annotations(nocol, path_column="name").paths == ["a.png"]
    with pytest.raises(AnnotationError, match="no path column 'nope'"):
        load_annotations(nocol, path_column="nope")


def test_rows_with_empty_paths_are_kept(tmp_path):
    path = tmp_path / "gaps.jsonl"
    path.write_text('{"file_name": "a.png"}\n\n{"label": "x"}\n{"file_name": "c.png"}\n')
    t = load_annotations(path)
    assert t.paths == ["a.png", "", "c.png"]
    assert t.resolved[1] == ""


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("empty.csv", b"", "empty"),
        ("header.csv", b"file_name,label\n", "lists no images"),
        ("comments.txt", b"# nothing here\n\n", "lists no images"),
        ("blob.dat", b"\x00\x01\x02binary", "binary data"),
        ("photo.json", b"\x89PNG\r\n\x1a\n0000", "is an image"),
        ("broken.json", b'{"images": [', "not valid JSON"),
        ("other.json", b'{"info": {}}', "without an 'images' list"),
        ("bad.jsonl", b'{"path": "a.png"}\nnot json\n', "line 2"),
        ("nococo.json", b'{"images": []}', "lists no images"),
    ],
)
def test_hard_errors_name_the_file(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(AnnotationError) as err:
        load_annotations(path)
    assert name in str(err.value) and message in str(err.value)


def test_missing_file_and_empty_folder(tmp_path):
    with pytest.raises(AnnotationError, match="no such annotation file"):
        load_annotations(tmp_path / "nope.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AnnotationError, match="holds no image files"):
        load_annotations(tmp_path / "empty")


def test_unknown_extension_is_sniffed(tmp_path):
    table = tmp_path / "manifest"
    table.write_text("label;file_name\ncat;a.png\ndog;b.png\n")
    t = load_annotations(table)
    assert (t.format, t.paths, t.labels) == ("csv", ["a.png", "b.png"], ["cat", "dog"])
    records = tmp_path / "records.dat"
    records.write_text('{"filename": "x.png", "split": "training"}\n{"filename": "y.png", "split": "testing"}\n')
    r = load_annotations(records)
    assert (r.paths, r.splits) == (["x.png", "y.png"], ["train", "test"])


# -- hardening ---------------------------------------------------------------------------------
def test_a_stray_quote_in_a_csv_is_an_error_naming_the_line(tmp_path):
    ann = tmp_path / "a.csv"
    rows = ["path,label"] + [f"img{i}.png,x" for i in range(10)]
    rows[4] = '"img3.png,x'
    ann.write_text("\n".join(rows) + "\n")
    with pytest.raises(AnnotationError, match="line 5: a quote"):
        load_annotations(ann)


def test_a_huge_csv_field_is_an_error_not_a_traceback(tmp_path):
    ann = tmp_path / "a.csv"
    ann.write_text("path,label\na.png,x\n" + "b" * 200_000 + ".png,y\n")
    with pytest.raises(AnnotationError, match="line 3"):
        load_annotations(ann)


def test_a_list_with_one_non_utf8_line_keeps_the_other_names(tmp_path):
    for name in ("caf\u00e9.png", "plain.png"):
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    odd = os.fsdecode(b"odd\xe9.png")  # a latin-1 name on disk
    Image.new("RGB", (8, 8)).save(os.path.join(tmp_path, odd))
    ann = tmp_path / "list.txt"
    ann.write_bytes("caf\u00e9.png\n".encode() + b"odd\xe9.png\nplain.png\n")
    table = load_annotations(ann)
    assert table.paths[0] == "caf\u00e9.png" and table.paths[2] == "plain.png"
    assert all(os.path.exists(p) for p in table.resolved)  # the odd one names its bytes on disk


def test_folder_with_a_non_utf8_name(tmp_path):
    Image.new("RGB", (8, 8)).save(os.path.join(tmp_path, os.fsdecode(b"x\xff.png")))
    table = load_annotations(tmp_path)
    assert os.fsencode(table.paths[0]) == b"x\xff.png"


@pytest.mark.parametrize("image_id,category_id", [([1], 1), (1, {"id": 1}), ({"a": 1}, [2])])
def test_coco_with_ids_that_are_not_numbers_or_strings(tmp_path, image_id, category_id):
    doc = {"images": [{"id": image_id, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"}],
           "annotations": [{"image_id": image_id, "category_id": category_id}, {"image_id": 2, "category_id": 1}],
           "categories": [{"id": 1, "name": "cat"}]}
    ann = tmp_path / "coco.json"
    ann.write_text(json.dumps(doc))
    table = load_annotations(ann)
    assert table.paths == ["a.png", "b.png"] and table.labels[1] == "cat"


def test_folder_scan_skips_the_explorers_own_thumbnails(tmp_path):
    from dupscope.annotations import EXPLORER_MARKER

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "thumbs" / "0").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "thumbs" / "0" / "0.png")
    assert len(load_annotations(tmp_path).paths) == 2  # an unmarked "thumbs" folder is data
    (tmp_path / EXPLORER_MARKER).write_text("x")
    assert load_annotations(tmp_path).paths == ["a.png"]
