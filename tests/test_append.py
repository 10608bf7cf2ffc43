"""Appending images to a similarity file (dupscope.append, `similarity NEW --append FILE`)."""

from __future__ import annotations

import hashlib

import h5py
import imagegen
import numpy as np
import pytest

from dupscope.append import append_similarity
from dupscope.cli import main
from dupscope.errors import AppendError
from dupscope.pipeline import compute_similarity
from dupscope.store import SimilarityFile


def _collection(root, n_pictures=24, seed=0):
    """Pictures, most without a copy, a few with an edited copy; returns a list of paths where
    the copies of pictures 0-3 come last (so an append can bring them)."""
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for s in range(n_pictures):
        paths.append(imagegen.save(imagegen.scene(seed + s, (160, 120)), root / f"p{s:02d}.png"))
    for s, edit in ((0, imagegen.cropped), (1, imagegen.resized), (2, imagegen.jpeg), (3, imagegen.brighter),
                    (10, imagegen.cropped)):
        paths.append(imagegen.save(edit(imagegen.scene(seed + s, (160, 120))), root / f"c{s:02d}.png"))
    return [str(p) for p in paths]


def _list(path, items):
    path.write_text("\n".join(items) + "\n")
    return path


def _lists(h5):
    with SimilarityFile(h5) as f:
        index, sim = f.neighbors()
        return f.paths, index, sim.astype(np.float32)


def _same_lists(a, b, tol=2e-3):
    """Neighbour lists equal up to pairs whose scores are within ``tol`` of each other: common
    entries score the same within tol, and an entry only one list holds scores within tol of
    the other list's last (k-th) score."""
    pa, ia, sa = a
    pb, ib, sb = b
    assert pa == pb
    for r in range(len(pa)):
        da = {int(i): float(s) for i, s in zip(ia[r], sa[r]) if i >= 0}
        db = {int(i): float(s) for i, s in zip(ib[r], sb[r]) if i >= 0}
        for i in da.keys() & db.keys():
            assert abs(da[i] - db[i]) <= tol, (r, i, da[i], db[i])
        for only, other in ((da.keys() - db.keys(), db), (db.keys() - da.keys(), da)):
            for i in only:
                s = da.get(i, db.get(i))
                assert len(other) == ia.shape[1] and s <= min(other.values()) + tol, (r, i, s)


def _old_scores_kept(i0, s0, i1, s1, rows):
    """No pair of the first ``rows`` images that was listed before the append moved its score."""
    for r in range(rows):
        before = {int(i): float(s) for i, s in zip(i0[r], s0[r]) if i >= 0}
        for i, s in zip(i1[r], s1[r]):
            if int(i) in before:
                assert abs(before[int(i)] - float(s)) <= 1e-3, (r, int(i))


@pytest.mark.parametrize("model", ["dct32", "efficientnet-lite0"])
def test_append_equals_a_run_on_the_union(tmp_path, model):
    """Models without a data-set fit: appending 9 images (copies of old pictures among them) gives
    the lists of a run on all images, and embeds only the new ones."""
    paths = _collection(tmp_path / "img")
    old, new = paths[:20], paths[20:]
    union = _list(tmp_path / "all.txt", paths)
    scratch = tmp_path / "scratch.h5"
    compute_similarity(union, scratch, model=model, k=6, progress=False)
    grown = tmp_path / "grown.h5"
    compute_similarity(_list(tmp_path / "old.txt", old), grown, model=model, k=6, progress=False)
    before = _lists(grown)
    summary = append_similarity(_list(tmp_path / "new.txt", new), grown, progress=False)
    assert summary["n_old"] == 20 and summary["n_new"] == len(new) and summary["n_images"] == len(paths)
    _same_lists(_lists(grown), _lists(scratch))
    with SimilarityFile(grown) as f, SimilarityFile(scratch) as g:
        assert f.attrs["appended"] == 1 and f.n == len(paths)
        np.testing.assert_allclose(f.embeddings[()].astype(np.float32), g.embeddings[()].astype(np.float32), atol=2e-3)
        # Copies of old pictures that came with the append are each other's best neighbour.
        idx, sim = f.neighbors()
        for orig in (0, 1, 2, 3):
            copy = f.paths.index(paths[24 + orig])
            assert idx[copy, 0] == orig and sim[copy, 0] >= 0.5, (orig, idx[copy], sim[copy])
        if f.similarity is not None:
            np.testing.assert_allclose(f.similarity[()].astype(np.float32), g.similarity[()].astype(np.float32),
                                       atol=2e-3)
    _, i1, s1 = _lists(grown)
    _old_scores_kept(before[1], before[2], i1, s1, 20)


def test_append_with_a_fused_model_keeps_the_fit_and_finds_planted_copies(tmp_path):
    """dupscope-v3 (fit on the first images): the new copies of old pictures are found and
    verified, old pairs keep their scores, the stored fit is unchanged."""
    paths = _collection(tmp_path / "img", n_pictures=30)
    grown = tmp_path / "v3.h5"
    compute_similarity(_list(tmp_path / "old.txt", paths[:30]), grown, model="dupscope-v3", k=5, progress=False)
    with h5py.File(grown) as f:
        mean0 = f["fusion/branch0/mean"][()]
    _, i0, s0 = _lists(grown)
    summary = append_similarity(_list(tmp_path / "new.txt", paths[30:]), grown, progress=False)
    assert summary["pairs_verified"] >= 5
    with SimilarityFile(grown) as f:
        np.testing.assert_array_equal(f.h5["fusion/branch0/mean"][()], mean0)
        idx, sim = f.neighbors()
        inl = f.inliers()
        for orig in (0, 1, 2, 3, 10):
            copy = f.paths.index(paths[{0: 30, 1: 31, 2: 32, 3: 33, 10: 34}[orig]])
            assert idx[copy, 0] == orig and sim[copy, 0] >= 0.5 and inl[copy, 0] >= 15, (orig, idx[copy], sim[copy])
            assert copy in idx[orig].tolist()  # the old image's list took its new copy in
        _old_scores_kept(i0, s0, idx, sim, 30)


def test_append_checks_pairs_of_another_verifier_again(tmp_path, capsys):
    """The stored evidence is reused only when the file names this verifier's settings: a file
    from other settings (or from before they were recorded) has its old pairs checked again,
    and the grown file names this verifier. The old set holds copies of pictures 0-2, so it
    has checked pairs."""
    from dupscope.verify import verifier_id

    paths = _collection(tmp_path / "img", n_pictures=20)
    counts = {}
    for case in ("same", "other", "unrecorded"):
        grown = tmp_path / f"{case}.h5"
        compute_similarity(_list(tmp_path / "old.txt", paths[:23]), grown, model="dupscope-v3", k=5, progress=False)
        with h5py.File(grown, "r+") as f:
            assert f.attrs["verifier"] == verifier_id()
            old_pairs = len(f["verified/a"])
            if case == "other":
                f.attrs["verifier"] = "orb side=384 features=1000 levels=8x1.2"
            elif case == "unrecorded":
                del f.attrs["verifier"]
        capsys.readouterr()
        counts[case] = append_similarity(_list(tmp_path / "new.txt", paths[23:]), grown, progress=True)["pairs_verified"]
        said = capsys.readouterr().err
        assert ("checking them again" in said) == (case != "same")
        with h5py.File(grown) as f:
            assert f.attrs["verifier"] == verifier_id()
    assert old_pairs > 0
    assert counts["other"] == counts["unrecorded"] >= counts["same"] + old_pairs


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_append_refuses_repeated_images_and_leaves_the_file(tmp_path, capsys):
    paths = _collection(tmp_path / "img", n_pictures=8)
    h5 = tmp_path / "sim.h5"
    compute_similarity(_list(tmp_path / "old.txt", paths[:8]), h5, model="dct32", k=3, progress=False)
    before = _digest(h5)
    rc = main(["similarity", str(_list(tmp_path / "new.txt", paths[8:] + paths[2:3])), "--append", str(h5)])
    err = capsys.readouterr().err
    assert rc != 0 and "already in" in err and "p02.png (row 2)" in err and len(err.strip().splitlines()) == 1
    assert _digest(h5) == before and not (tmp_path / "sim.h5.partial").exists()
    rc = main(["similarity", str(tmp_path / "new.txt"), "--append", str(h5), "--k", "5"])
    assert rc != 0 and "--k cannot be given with --append" in capsys.readouterr().err


def test_append_refuses_another_model_or_an_old_schema(tmp_path, capsys):
    paths = _collection(tmp_path / "img", n_pictures=6)
    h5 = tmp_path / "sim.h5"
    compute_similarity(_list(tmp_path / "old.txt", paths[:6]), h5, model="dct32", k=3, progress=False)
    new = _list(tmp_path / "new.txt", paths[6:])
    with h5py.File(h5, "r+") as f:
        assert f.attrs["preprocess"] == "frame-trim-1"
        sha = f.attrs["model_sha256"]
        del f.attrs["preprocess"]  # a file from before frames were cut off
    with pytest.raises(AppendError, match="prepared images for the model differently"):
        append_similarity(new, h5, progress=False)
    with h5py.File(h5, "r+") as f:
        f.attrs["model_sha256"] = "0" * 64
    with pytest.raises(AppendError, match="which this dupscope does not have"):
        append_similarity(new, h5, progress=False)
    assert sha != "0" * 64
    with h5py.File(h5, "r+") as f:
        f.attrs["schema_version"] = 1
        del f["embeddings"]
    rc = main(["similarity", str(new), "--append", str(h5)])
    assert rc != 0 and "schema-1 file without stored embeddings" in capsys.readouterr().err
    with pytest.raises(AppendError, match="no such file"):
        append_similarity(new, tmp_path / "none.h5", progress=False)


def test_cli_append(tmp_path, capsys):
    paths = _collection(tmp_path / "img", n_pictures=6)
    h5 = tmp_path / "sim.h5"
    assert main(["similarity", str(_list(tmp_path / "old.txt", paths[:6])), "-o", str(h5), "--model", "dct32",
                 "--k", "3", "--quiet"]) == 0
    assert main(["similarity", str(_list(tmp_path / "new.txt", paths[6:])), "--append", str(h5), "--quiet"]) == 0
    with SimilarityFile(h5) as f:
        assert f.n == len(paths) and f.paths[6:] == paths[6:]


def test_compute_similarity_append_and_reference_from_python(tmp_path):
    paths = _collection(tmp_path / "img", n_pictures=8)
    h5 = tmp_path / "sim.h5"
    compute_similarity(_list(tmp_path / "old.txt", paths[:8]), h5, model="dct32", k=3, progress=False)
    new = _list(tmp_path / "new.txt", paths[8:])
    out = compute_similarity(new, reference=h5, output=tmp_path / "q.h5", progress=False)
    assert out["n_query"] == len(paths) - 8 and out["query_reference_pairs"] >= 4
    with pytest.raises(AppendError, match="k cannot be given with append"):
        compute_similarity(new, append=h5, k=7, progress=False)
    grown = compute_similarity(new, append=h5, progress=False)
    assert grown["n_images"] == len(paths)
