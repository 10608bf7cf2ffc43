"""Checking a query set against a reference file (dupscope.reference, `--reference`)."""

from __future__ import annotations

import hashlib

import imagegen
import numpy as np
import pytest

from dupscope.cli import main
from dupscope.errors import AppendError
from dupscope.pipeline import compute_similarity
from dupscope.reference import reference_similarity
from dupscope.store import SimilarityFile


def _sets(root):
    root.mkdir(parents=True)
    ref = [str(imagegen.save(imagegen.scene(s, (160, 120)), root / f"train{s:02d}.png")) for s in range(24)]
    edits = {0: imagegen.cropped, 3: imagegen.resized, 7: imagegen.jpeg, 12: imagegen.brighter}
    query = [str(imagegen.save(e(imagegen.scene(s, (160, 120))), root / f"test_copy{s:02d}.png")) for s, e in edits.items()]
    query += [str(imagegen.save(imagegen.scene(100 + s, (160, 120)), root / f"test_new{s}.png")) for s in range(3)]
    return ref, query, list(edits)


def _write(path, items):
    path.write_text("\n".join(items) + "\n")
    return path


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("model", ["dct32", "dupscope-v3"])
def test_reference_finds_planted_copies_and_only_reads_the_reference(tmp_path, model, capsys):
    ref, query, planted = _sets(tmp_path / "img")
    ref_h5 = tmp_path / "train.h5"
    compute_similarity(_write(tmp_path / "train.txt", ref), ref_h5, model=model, k=5, progress=False)
    before, mtime = _digest(ref_h5), ref_h5.stat().st_mtime_ns
    out = tmp_path / "test.h5"
    summary = reference_similarity(_write(tmp_path / "test.txt", query), ref_h5, out, progress=False)
    assert _digest(ref_h5) == before and ref_h5.stat().st_mtime_ns == mtime
    assert summary["query_reference_pairs"] == len(planted) and summary["n_query"] == len(query)
    with SimilarityFile(out) as f:
        sets = [s.decode() for s in f.h5["images/set"][()]]
        refrow = f.h5["images/reference_row"][()]
        assert sets[:len(query)] == ["query"] * len(query) and set(sets[len(query):]) == {"reference"}
        assert f.paths[:len(query)] == query
        idx, sim = f.neighbors()
        inl = f.inliers()
        for q, orig in enumerate(planted):
            top = idx[q, 0]
            assert sets[top] == "reference" and refrow[top] == orig and f.paths[top] == ref[orig]
            assert sim[q, 0] >= 0.5 and inl[q, 0] >= 15
            assert q in idx[top].tolist()  # the reference image's row names its query copy
        for q in range(len(planted), len(query)):  # new pictures: no reference image scores 0.5
            assert not any(sets[j] == "reference" and s >= 0.5 for j, s in zip(idx[q], sim[q]) if j >= 0)
        assert f.attrs["reference_images"] == len(ref) and f.attrs["query_images"] == len(query)
    # The report puts the query-reference duplicates first.
    from dupscope.report import summarize

    rep = summarize(out, threshold=0.5)["reference"]
    assert rep["count"] == len(planted) and rep["queries"] == len(planted) and rep["n_query"] == len(query)
    assert {(p["path_a"], p["path_b"]) for p in rep["pairs"]} == {(query[q], ref[o]) for q, o in enumerate(planted)}
    assert main(["report", str(out), "--threshold", "0.5"]) == 0
    text = capsys.readouterr().out
    assert text.index(f"{len(planted)} of {len(query)} query images have a duplicate") < text.index("Duplicates by threshold")


def test_reference_refusals(tmp_path, capsys):
    ref, query, _ = _sets(tmp_path / "img")
    ref_h5 = tmp_path / "train.h5"
    compute_similarity(_write(tmp_path / "train.txt", ref[:6]), ref_h5, model="dct32", k=3, progress=False)
    q = _write(tmp_path / "test.txt", query)
    with pytest.raises(AppendError, match="is the reference file"):
        reference_similarity(q, ref_h5, ref_h5, progress=False)
    rc = main(["similarity", str(q), "--reference", str(ref_h5), "--append", str(ref_h5)])
    assert rc != 0 and "cannot be given together" in capsys.readouterr().err
    import h5py

    with h5py.File(ref_h5, "r+") as f:
        f.attrs["model"] = "efficientnet-lite0"
    rc = main(["similarity", str(q), "--reference", str(ref_h5), "-o", str(tmp_path / "o.h5")])
    err = capsys.readouterr().err
    assert rc != 0 and "was made by model 'efficientnet-lite0'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.h5").exists()
    with h5py.File(ref_h5, "r+") as f:  # a schema-1 file: no stored embeddings
        f.attrs["model"] = "dct32"
        f.attrs["schema_version"] = 1
        del f["embeddings"]
    rc = main(["similarity", str(q), "--reference", str(ref_h5), "-o", str(tmp_path / "o.h5")])
    err = capsys.readouterr().err
    assert rc != 0 and "schema-1 file without stored embeddings" in err and not (tmp_path / "o.h5").exists()
