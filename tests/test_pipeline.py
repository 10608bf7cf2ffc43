"""compute_similarity and `dupscope similarity` end to end, read back through the store."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest

import imagegen
from dupscope import SimilarityFile, models
from dupscope.cli import main
from dupscope.pipeline import DENSE_MAX_BYTES, compute_similarity, decide_dense


@pytest.fixture()
def dataset(tmp_path):
    """6 originals, a planted copy of three of them, and two broken files, listed in a CSV."""
    root = tmp_path / "imgs"
    rows = []
    for s in range(6):
        img = imagegen.scene(s, (160, 120))
        rows.append((str(imagegen.save(img, root / f"o{s}.png").relative_to(tmp_path)), f"c{s % 2}", "train"))
    copies = {0: imagegen.resized(imagegen.scene(0, (160, 120)), 0.5),
              2: imagegen.jpeg(imagegen.scene(2, (160, 120)), 60),
              4: imagegen.scene(4, (160, 120))}
    for s, img in copies.items():
        ext = "jpg" if s == 2 else "png"
        rows.append((str(imagegen.save(img, root / f"copy{s}.{ext}").relative_to(tmp_path)), f"c{s % 2}", "val"))
    imagegen.write_truncated_jpeg(root / "trunc.jpg")
    rows.append(("imgs/trunc.jpg", "c0", "val"))
    rows.append(("imgs/missing.png", "c1", "test"))
    ann = tmp_path / "ann.csv"
    with open(ann, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file_name", "label", "split"])
        w.writerows(rows)
    return ann, rows


def test_compute_similarity_writes_the_schema(dataset, tmp_path):
    ann, rows = dataset
    out = tmp_path / "sim.h5"
    summary = compute_similarity(ann, out, model="dct32", k=4, keep_embeddings=True, progress=False)
    assert summary["n_images"] == 11 and summary["n_ok"] == 9 and summary["n_failed"] == 2
    assert summary["failures"] == {"truncated image": 1, "missing file": 1}
    assert summary["dense"] is True  # tiny: dense by default
    assert summary["pairs_above"][0.95] >= 3  # the three planted pairs
    # Stage timings for benchmarks and logs: present, non-negative, and the parts of the
    # embedding stage fit inside it.
    for key in ("decode_cpu_seconds", "inference_seconds", "decode_wait_seconds",
                "metadata_write_seconds", "similarity_write_seconds"):
        assert summary[key] >= 0.0, key
    assert summary["inference_seconds"] + summary["decode_wait_seconds"] <= summary["embed_seconds"]
    with SimilarityFile(out) as f:
        assert f.n == 11
        assert f.paths == [r[0] for r in rows]
        assert f.labels == [r[1] for r in rows] and f.splits == [r[2] for r in rows]
        assert f.ok.tolist() == [True] * 9 + [False, False]
        assert f.errors[9].startswith("truncated image") and f.errors[10].startswith("missing file")
        attrs = f.attrs
        assert attrs["model"] == "dct32" and len(attrs["model_sha256"]) == 64
        assert attrs["annotations"] == str(ann) and len(attrs["annotations_sha256"]) == 64
        assert attrs["k"] == 4 and attrs["dense"] and attrs["metric"] == "(1+cos)/2"
        idx, sim = f.neighbors()
        # Each planted copy (rows 6, 7, 8) has its original (0, 2, 4) as its top neighbour.
        assert idx[6, 0] == 0 and idx[7, 0] == 2 and idx[8, 0] == 4
        assert idx[0, 0] == 6 and float(sim[8, 0]) == pytest.approx(1.0, abs=1e-3)
        assert (idx[9] == -1).all() and np.isnan(sim[10].astype(float)).all()
        dense = f.similarity[()].astype(np.float32)
        assert np.allclose(np.diag(dense)[:9], 1.0) and np.isnan(dense[9]).all()
        emb = f.embeddings[()]
        assert emb.shape == (11, 63) and not emb[9:].any()
        width = f.h5["images/width"][()]
        assert width[1] == 160 and width[6] == 80 and width[10] == 0


def test_dense_decision():
    dense, why = decide_dense(1000, "out.h5")
    assert dense and "dense" in why
    huge = int(np.sqrt(DENSE_MAX_BYTES / 2)) + 10
    dense, why = decide_dense(huge, "out.h5")
    assert not dense and "neighbours only" in why and "--dense" in why


def test_neighbours_only(dataset, tmp_path):
    ann, _ = dataset
    out = tmp_path / "nn.h5"
    compute_similarity(ann, out, model="dct32", k=3, dense=False, progress=False)
    with SimilarityFile(out) as f:
        assert f.similarity is None and f.neighbors()[0].shape == (11, 3)
        # Schema 2: the embeddings and the verification's inputs are kept for later appends.
        assert f.attrs["schema_version"] == 2 and f.embeddings.shape[0] == 11
        assert f.h5["engine/index"].shape == (11, 3) and f.h5["layout/descriptor"].shape == (11, 256)
        assert "verified/a" in f.h5 and f.h5["neighbors/coverage"].shape == (11, 3)


def test_cli_success_and_summary(dataset, tmp_path, capsys):
    ann, _ = dataset
    out = tmp_path / "cli.h5"
    rc = main(["similarity", str(ann), "-o", str(out), "--model", "dct32", "--k", "2", "--no-dense",
               "--workers", "2", "--batch-size", "4"])
    assert rc == 0 and out.exists()
    err = " ".join(capsys.readouterr().err.split())  # rich wraps lines at the terminal width
    assert "9 of 11 images embedded" in err and "2 images failed" in err and "trunc.jpg" in err
    assert "neighbours only" in err
    with SimilarityFile(out) as f:
        assert f.attrs["k"] == 2 and not f.attrs["dense"]


def test_cli_hard_errors_exit_nonzero_without_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("name,score\nx.png,1\n")
    out = tmp_path / "never.h5"
    assert main(["similarity", str(bad), "-o", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "no image path column" in err and "Traceback" not in err
    assert not out.exists()

    listing = tmp_path / "nothing_readable.txt"
    listing.write_text("a.png\nb.png\n")
    assert main(["similarity", str(listing), "-o", str(out), "--model", "dct32", "--quiet"]) == 2
    assert "none of the 2 images could be read" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "never.h5.partial").exists()

    assert main(["similarity", str(listing), "-o", str(out), "--model", "nope"]) == 2
    assert "unknown model" in capsys.readouterr().err


@pytest.mark.parametrize("model", [None, "efficientnet-lite0"])
def test_default_model_end_to_end(tmp_path, model):
    """The default model (dupscope-v3) and the plain network through the whole pipeline on a
    folder, with a planted resized copy."""
    root = tmp_path / "folder"
    for s in range(4):
        imagegen.save(imagegen.scene(s, (448, 336)), root / f"a{s}.png")
    imagegen.save(imagegen.resized(imagegen.scene(1, (448, 336)), 0.6), root / "b_copy.png")
    out = tmp_path / "folder.h5"
    kwargs = {} if model is None else {"model": model}
    summary = compute_similarity(root, out, k=2, progress=False, **kwargs)
    assert summary["n_ok"] == 5 and summary["model"] == (model or models.default_model())
    assert summary["pairs_above"][0.9 if model is None else 0.95] == 1  # only the planted pair
    with SimilarityFile(out) as f:
        assert f.paths[4] == "b_copy.png"
        idx, sim = f.neighbors()
        assert idx[4, 0] == 1 and float(sim[4, 0]) > 0.95
        assert f.attrs["annotations_format"] == "folder"


def test_dupscope_v3_finds_planted_copies(dataset, tmp_path):
    """The default model end to end: fused embeddings (centred only and neighbour-augmented on
    this small set) go to the engine, are what --keep-embeddings stores, and the attributes say
    what was applied."""
    ann, _ = dataset
    out = tmp_path / "v3.h5"
    summary = compute_similarity(ann, out, model="dupscope-v3", k=4, keep_embeddings=True, progress=False)
    assert summary["n_ok"] == 9 and summary["model"] == "dupscope-v3"
    assert summary["postprocess_seconds"] >= 0.0
    with SimilarityFile(out) as f:
        idx, sim = f.neighbors()
        assert idx[6, 0] == 0 and idx[7, 0] == 2 and idx[8, 0] == 4
        assert idx[0, 0] == 6 and idx[2, 0] == 7 and idx[4, 0] == 8
        attrs = f.attrs
        assert attrs["model"] == "dupscope-v3" and attrs["embedding_dim"] == 1952
        post = attrs["embedding_postprocess"]
        assert post.startswith("dupscope-v3 on 9 valid images") and "not whitened" in post
        assert "8 nearest neighbours" in post  # 10 asked, 8 other valid images
        emb = f.embeddings[()].astype(np.float32)
        assert emb.shape == (11, 1952) and not emb[9:].any()
        np.testing.assert_allclose(np.linalg.norm(emb[:9], axis=1), 1.0, atol=2e-3)
        dense = f.similarity[()].astype(np.float32)
        # the engine compared exactly the stored fused embedding
        e = emb[:9] / np.linalg.norm(emb[:9], axis=1, keepdims=True)
        np.testing.assert_allclose(dense[:9, :9], (1 + e @ e.T) / 2, atol=2e-3)


def test_dupscope_v3_whitens_large_sets(dataset, tmp_path, monkeypatch):
    """With enough distinct pictures both branches are whitened (min_whiten_dims lowered here so
    that the few pictures of this small set suffice)."""
    import dataclasses

    from dupscope import models

    spec = models.get_model("dupscope-v3")
    monkeypatch.setitem(models._BUILTIN, "dupscope-v3", dataclasses.replace(
        spec, fusion=dataclasses.replace(spec.fusion, min_whiten_dims=2)))
    ann, _ = dataset
    out = tmp_path / "v3w.h5"
    compute_similarity(ann, out, model="dupscope-v3", k=4, keep_embeddings=True, progress=False)
    with SimilarityFile(out) as f:
        import re

        # 9 valid images (one pair identical: the exact copy) span at most 8 centred directions
        dims = [int(d) for d in re.findall(r"PCA-whitened to (\d+)-d", f.attrs["embedding_postprocess"])]
        assert len(dims) == 2 and all(1 <= d <= 8 for d in dims)
        assert f.attrs["embedding_dim"] == sum(dims) and f.embeddings.shape == (11, sum(dims))


def test_plain_models_record_no_postprocessing(dataset, tmp_path):
    ann, _ = dataset
    out = tmp_path / "plain.h5"
    compute_similarity(ann, out, model="dct32", k=2, dense=False, progress=False)
    with SimilarityFile(out) as f:
        assert f.attrs["embedding_postprocess"] == "none"


def test_dupscope_v3_on_the_demo_dataset(tmp_path):
    """The demo's planted copies, found by dupscope-v3 (as tests/test_demo.py does for the
    default model)."""
    import json

    from dupscope.demo import make_demo_dataset

    data = make_demo_dataset(tmp_path / "d", n_originals=30, n_copied=10)
    out = tmp_path / "demo.h5"
    compute_similarity(data.annotations, out, model="dupscope-v3", progress=False)
    with SimilarityFile(out) as f:
        idx, _ = f.neighbors()
        row = {p: i for i, p in enumerate(f.paths)}
    hits = total = 0
    for group in json.loads(data.ground_truth.read_text())["groups"]:
        for copy in group[1:]:
            total += 1
            hits += idx[row[copy], 0] in [row[p] for p in group if p != copy]
    assert hits >= total - 1, f"{hits}/{total} copies found their group at rank 1"


def test_a_verified_file_is_evaluated_on_its_pair_scores(dataset, tmp_path):
    from dupscope.evaluate import evaluate

    ann, rows = dataset
    out = tmp_path / "verified.h5"
    compute_similarity(ann, out, model="dct32", k=3, dense=True, progress=False)
    truth = {"pairs": [["imgs/o0.png", "imgs/copy0.png"], ["imgs/o2.png", "imgs/copy2.jpg"],
                       ["imgs/o4.png", "imgs/copy4.png"]]}
    r = evaluate(out, truth)
    assert r.source == "neighbors"  # the dense matrix holds the engine's similarity, not the score
    unverified = tmp_path / "plain.h5"
    compute_similarity(ann, unverified, model="dct32", k=3, dense=True, progress=False, verify=False)
    assert evaluate(unverified, truth).source == "dense"


# -- hardening: outputs checked first, inputs never overwritten, odd files kept with a reason ---
def _images(folder, n=4):
    folder.mkdir(parents=True, exist_ok=True)
    return [imagegen.save(imagegen.scene(s, (96, 72)), folder / f"i{s}.png") for s in range(n)]


def test_bad_outputs_are_refused_before_any_work(tmp_path, monkeypatch):
    from dupscope import pipeline
    from dupscope.errors import OutputError

    _images(tmp_path / "imgs")
    called = []
    monkeypatch.setattr(pipeline, "load_annotations", lambda *a, **k: called.append(1))
    (tmp_path / "adir").mkdir()
    for out, message in ((tmp_path / "adir", "is a folder"), (tmp_path / "nope" / "x.h5", "does not exist")):
        with pytest.raises(OutputError, match=message):
            compute_similarity(tmp_path / "imgs", out, model="dct32", progress=False)
    assert not called  # refused before the annotations were even read


def test_output_equal_to_an_input_is_refused_and_the_input_kept(tmp_path):
    from dupscope.errors import OutputError

    paths = _images(tmp_path / "imgs")
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{p}\n" for p in paths))
    before = listing.read_bytes(), paths[1].read_bytes()
    with pytest.raises(OutputError, match="annotation file"):
        compute_similarity(listing, listing, model="dct32", progress=False)
    with pytest.raises(OutputError, match="listed images"):
        compute_similarity(listing, paths[1], model="dct32", progress=False)
    assert (listing.read_bytes(), paths[1].read_bytes()) == before


def test_a_second_run_on_the_same_output_refuses_at_once(tmp_path):
    from dupscope.errors import OutputBusyError
    from dupscope.store import OutputLock

    _images(tmp_path / "imgs")
    out = tmp_path / "same.h5"
    with OutputLock(out):  # what a running first run holds
        with pytest.raises(OutputBusyError, match="another run is writing"):
            compute_similarity(tmp_path / "imgs", out, model="dct32", progress=False)
    compute_similarity(tmp_path / "imgs", out, model="dct32", progress=False)  # free again
    assert out.is_file()


def test_fifo_in_the_list_is_kept_with_a_reason(tmp_path):
    paths = _images(tmp_path / "imgs")
    fifo = tmp_path / "imgs" / "pipe.png"
    os.mkfifo(fifo)
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{p}\n" for p in [*paths, fifo]))
    summary = compute_similarity(listing, tmp_path / "s.h5", model="dct32", progress=False)
    assert summary["n_ok"] == 4
    with SimilarityFile(tmp_path / "s.h5") as f:
        assert "FIFO" in f.errors[4] and not f.ok[4]


def test_non_utf8_file_name_survives_both_phases(tmp_path):
    from dupscope.explorer import build_explorer

    folder = tmp_path / "imgs"
    _images(folder, 3)
    odd = os.path.join(folder, os.fsdecode(b"copy\xff.png"))
    imagegen.save(imagegen.scene(0, (96, 72)), odd)
    out = tmp_path / "s.h5"
    summary = compute_similarity(folder, out, model="dct32", progress=False)
    assert summary["n_ok"] == 4
    with SimilarityFile(out) as f:
        assert os.fsencode(f.paths[0]) == b"copy\xff.png"
    index = build_explorer(out, tmp_path / "site", progress=False)
    (index.parent / "data.js").read_text(encoding="utf-8")  # valid UTF-8
    assert main(["report", str(out)]) == 0
    assert main(["export", str(out), "--threshold", "0.9", "-o", str(tmp_path / "d.csv")]) == 0
    assert b"copy\xff.png" in (tmp_path / "d.csv").read_bytes()  # the name byte for byte


def test_run_dir_dir_twice_does_not_embed_its_own_thumbnails(tmp_path):
    folder = tmp_path / "imgs"
    _images(folder, 5)
    assert main(["run", str(folder), str(folder), "--model", "dct32", "--quiet"]) == 2  # foreign folder
    assert main(["run", str(folder), str(folder), "--model", "dct32", "--quiet", "--overwrite"]) == 0
    assert main(["run", str(folder), str(folder), "--model", "dct32", "--quiet"]) == 0
    with SimilarityFile(folder / "similarity.h5") as f:
        assert f.n == 5


def test_unwritable_output_folder_is_refused_before_any_work():
    """As an unprivileged user (root writes anywhere, so the test drops to 'nobody' when run as root)."""
    import shutil
    import subprocess
    import sys
    import tempfile

    base = tempfile.mkdtemp(prefix="dupscope-ro-")
    try:
        os.chmod(base, 0o755)
        imgs = os.path.join(base, "imgs")
        os.mkdir(imgs)
        for s in range(2):
            imagegen.save(imagegen.scene(s, (64, 48)), Path(imgs) / f"i{s}.png")
        locked = os.path.join(base, "locked")
        os.mkdir(locked)
        for d in (imgs, locked):
            os.chmod(d, 0o555)
        for f in os.listdir(imgs):
            os.chmod(os.path.join(imgs, f), 0o644)
        drop = None
        if os.geteuid() == 0:
            def drop():
                os.setgid(65534)
                os.setuid(65534)

            try:  # the interpreter may live where 'nobody' cannot reach it (e.g. under /root)
                subprocess.run([sys.executable, "-c", "import dupscope"], preexec_fn=drop, check=True,
                               capture_output=True, cwd=base)
            except (OSError, subprocess.CalledProcessError):
                pytest.skip("running as root and this Python cannot run as an unprivileged user")
        r = subprocess.run([sys.executable, "-m", "dupscope", "similarity", imgs, "-o",
                            os.path.join(locked, "s.h5"), "--model", "dct32", "--quiet"],
                           capture_output=True, text=True, preexec_fn=drop, cwd=base,
                           env={**os.environ, "HOME": base})
        assert r.returncode == 2, r.stderr
        assert "is not writable" in r.stderr and "Traceback" not in r.stderr
    finally:
        for d in ("imgs", "locked"):
            if os.path.isdir(os.path.join(base, d)):
                os.chmod(os.path.join(base, d), 0o755)
        shutil.rmtree(base, ignore_errors=True)
