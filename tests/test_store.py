"""The HDF5 file: what write_similarity writes, what readers refuse, and failure modes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

import dupscope
from seeding import fresh_rng
from dupscope.store import IncompleteFileError, SimilarityFile, SimilarityWriter, partial_path


def embeddings(n=333, d=40, seed=None):
    rng = fresh_rng() if seed is None else np.random.default_rng(seed)
    base = rng.standard_normal((n // 3 + 1, d))
    e = base[rng.integers(0, len(base), n)] + 0.3 * rng.standard_normal((n, d))
    return e.astype(np.float32)


@pytest.mark.parametrize("tile", [16, 100, 256])
def test_dense_file_equals_in_memory_result(tmp_path, tile):
    e = embeddings()
    path = tmp_path / "sim.h5"
    dupscope.write_similarity(e, path, k=7, tile=tile, device="cpu")
    mem = dupscope.similarity_matrix(e, device="cpu", tile=tile)
    idx, sim = dupscope.topk(e, 7, device="cpu", tile=tile)
    with h5py.File(path, "r") as f:
        d = f["similarity"]
        assert d.shape == (333, 333) and d.dtype == np.float16 and d.chunks == (tile, tile)
        s = d[()]
        assert f.attrs["complete"] and f.attrs["tile"] == tile and f.attrs["k"] == 7
        np.testing.assert_array_equal(f["neighbors/index"][()], idx)
        np.testing.assert_array_equal(f["neighbors/similarity"][()], sim)
    np.testing.assert_array_equal(s, mem)
    np.testing.assert_array_equal(s, s.T)
    assert (np.diag(s) == 1).all()
    assert not partial_path(path).exists()


def test_neighbors_only_file(tmp_path):
    e = embeddings()
    path = tmp_path / "nn.h5"
    dupscope.write_similarity(e, path, k=5, dense=False, device="cpu")
    with SimilarityFile(path) as f:
        assert f.similarity is None and f.attrs["dense"] is False or f.attrs["dense"] == 0
        idx, sim = f.neighbors()
        assert idx.shape == (333, 5) and sim.dtype == np.float16
        assert f.n == 333


def test_writer_roundtrip_images_and_embeddings(tmp_path):
    e = embeddings(30)
    ok = np.ones(30, bool)
    ok[4] = False
    path = tmp_path / "full.h5"
    with SimilarityWriter(path) as w:
        w.write_images(paths=[f"img<{i}>.png" for i in range(30)], labels=["cat"] * 30,
                       splits=["train"] * 29 + ["test"], ok=ok,
                       errors=["" if o else "truncated file" for o in ok])
        w.write_embeddings(e)
        w.write_similarity(e, k=4, valid=ok, device="cpu")
        w.attrs["model"] = "test"
    with SimilarityFile(path) as f:
        assert f.paths[3] == "img<3>.png" and f.labels[0] == "cat" and f.splits[-1] == "test"
        assert f.errors[4] == "truncated file" and not f.ok[4] and f.ok.sum() == 29
        assert np.isnan(f.similarity[4, :]).all() and np.isnan(f.similarity[:, 4]).all()
        np.testing.assert_array_equal(f.embeddings[()], e.astype(np.float16))
        assert f.attrs["model"] == "test"


def test_existing_file_is_not_overwritten_by_default(tmp_path):
    path = tmp_path / "sim.h5"
    dupscope.write_similarity(embeddings(20), path, device="cpu")
    with pytest.raises(FileExistsError, match="overwrite"):
        dupscope.write_similarity(embeddings(20), path, device="cpu")
    dupscope.write_similarity(embeddings(25), path, device="cpu", overwrite=True)
    assert SimilarityFile(path).n == 25


def test_failure_mid_write_leaves_no_file(tmp_path):
    path = tmp_path / "sim.h5"
    with pytest.raises(ZeroDivisionError):
        with SimilarityWriter(path) as w:
            w.write_similarity(embeddings(50), device="cpu")
            1 / 0
    assert not path.exists() and not partial_path(path).exists()


def test_incomplete_file_is_refused(tmp_path):
    path = tmp_path / "odd.h5"
    with h5py.File(path, "w") as f:
        f.attrs["complete"] = False
        f.attrs["n_images"] = 3
    with pytest.raises(IncompleteFileError, match="did not finish"):
        SimilarityFile(path)


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, numpy as np, dupscope
    e = np.random.default_rng(0).standard_normal((6000, 64)).astype(np.float32)
    dupscope.write_similarity(e, sys.argv[1], tile=16, device="cpu",
                              progress=lambda d, t: print(d, flush=True))
    """
)


def test_killed_run_leaves_nothing_that_reads_complete(tmp_path):
    path = tmp_path / "sim.h5"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(path)],
                            stdout=subprocess.PIPE, text=True)
    try:
        # Wait until tiles are being written, then kill it without warning.
        for _ in range(3):
            assert proc.stdout.readline(), "writer exited early"
        assert partial_path(path).exists()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    assert not path.exists()
    with pytest.raises(FileNotFoundError, match="did not finish"):
        SimilarityFile(path)
    with pytest.raises(OSError):  # the partial file is unreadable or lacks the completion mark
        SimilarityFile(partial_path(path))


DISK_FULL_SCRIPT = textwrap.dedent(
    """
    import resource, signal, sys, numpy as np, dupscope
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # report EFBIG instead of dying
    resource.setrlimit(resource.RLIMIT_FSIZE, (2_000_000, 2_000_000))
    e = np.random.default_rng(0).standard_normal((3000, 16)).astype(np.float32)
    try:
        dupscope.write_similarity(e, sys.argv[1], device="cpu", tile=128)
    except OSError as exc:
        print("ERROR:", exc)
        sys.exit(3)
    """
)


def test_disk_full_gives_a_clear_error_and_no_file(tmp_path):
    # A file-size limit makes the disk "full" at 2 MB for this process only.
    path = tmp_path / "sim.h5"
    r = subprocess.run([sys.executable, "-c", DISK_FULL_SCRIPT, str(path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "disk space" in r.stdout and "--no-dense" in r.stdout
    assert not path.exists() and not partial_path(path).exists()


def test_not_enough_free_space_is_refused_before_starting(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**6, 10**6 - 1000, 1000))
    path = tmp_path / "sim.h5"
    with pytest.raises(OSError, match="not enough disk space"):
        dupscope.write_similarity(embeddings(100), path, device="cpu")
    assert not path.exists() and not partial_path(path).exists()


# -- hardening: the lock, the completion mark, the checked reader ------------------------------
def test_second_writer_of_the_same_output_refuses_at_once_and_leaves_the_first_untouched(tmp_path):
    out = tmp_path / "same.h5"
    e = embeddings(n=60, seed=3)
    w = SimilarityWriter(out)
    w.write_similarity(e, k=4, dense=True, device="cpu")
    w.h5.flush()
    before = partial_path(out).read_bytes()
    code = textwrap.dedent(f"""
        import sys
        from dupscope.errors import OutputBusyError
        from dupscope.store import SimilarityWriter
        try:
            SimilarityWriter({str(out)!r})
        except OutputBusyError as exc:
            print(exc); sys.exit(3)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 3 and "another run is writing" in r.stdout
    assert partial_path(out).read_bytes() == before  # not truncated
    w.commit()
    with SimilarityFile(out) as f:
        assert f.n == 60 and f.neighbors()[0].shape == (60, 4)
    assert not (tmp_path / "same.h5.lock").exists()  # released with the file
    with SimilarityWriter(out, overwrite=True) as w2:  # and free for the next run
        w2.write_similarity(e, k=4, dense=False, device="cpu")


def test_commit_that_cannot_rename_leaves_the_partial_marked_incomplete(tmp_path):
    out = tmp_path / "out.h5"
    w = SimilarityWriter(out)
    w.write_similarity(embeddings(n=20, seed=1), k=3, dense=False, device="cpu")
    out.mkdir()  # a folder appears where the file should go
    (out / "x").write_text("x")
    from dupscope.errors import OutputError

    with pytest.raises(OutputError, match="marked incomplete"):
        w.commit()
    with h5py.File(partial_path(out), "r") as h5:
        assert not bool(h5.attrs["complete"])


def _complete_file(tmp_path, name="sim.h5"):
    path = tmp_path / name
    dupscope.write_similarity(embeddings(n=30, seed=2), path, k=4, device="cpu")
    return path


@pytest.mark.parametrize("damage,message", [
    (lambda h5: h5.attrs.__setitem__("complete", "True"), "not True"),
    (lambda h5: h5.__delitem__("neighbors/index"), "'neighbors/index' is missing"),
    (lambda h5: (h5.__delitem__("neighbors/similarity"),
                 h5.create_dataset("neighbors/similarity", data=np.array(["x"] * 30, dtype="S1"))),
     "neighbors/similarity"),
    (lambda h5: (h5.__delitem__("neighbors/index"),
                 h5.create_dataset("neighbors/index", data=np.full((30, 4), 99, np.int32))),
     "outside"),
])
def test_damaged_files_give_one_clear_error(tmp_path, damage, message):
    from dupscope.errors import SimilarityFileError

    path = _complete_file(tmp_path)
    with h5py.File(path, "r+") as h5:
        damage(h5)
    with pytest.raises(SimilarityFileError, match=message):
        with SimilarityFile(path) as f:
            f.neighbors()


def test_not_hdf5_truncated_and_folder_are_refused(tmp_path):
    from dupscope.errors import SimilarityFileError

    text = tmp_path / "notes.h5"
    text.write_text("hello")
    path = _complete_file(tmp_path)
    cut = tmp_path / "cut.h5"
    cut.write_bytes(path.read_bytes()[:2000])
    for bad in (text, cut, tmp_path):
        with pytest.raises(SimilarityFileError):
            SimilarityFile(bad)


def test_names_that_are_not_utf8_are_stored_losslessly(tmp_path):
    names = ["caf\u00e9.jpg", os.fsdecode(b"bad\xff\xfe.jpg")]
    path = tmp_path / "n.h5"
    with SimilarityWriter(path) as w:
        w.write_images(paths=names)
        w.write_similarity(embeddings(n=2, seed=0), k=1, dense=False, device="cpu")
    with SimilarityFile(path) as f:
        assert f.paths == names
        assert os.fsencode(f.paths[1]) == b"bad\xff\xfe.jpg"


def test_neighbour_lists_use_bf16_tiles_where_native_and_equal_float32(tmp_path, monkeypatch):
    """write_similarity without the dense matrix asks the engine for bf16 candidate tiles where
    the CPU runs them (precision "auto"), and the lists it writes equal the float32 engine's."""
    import dupscope.store as store_mod
    from dupscope import engine

    seen = []
    real = store_mod.SimilarityJob

    def spy(*args, **kw):
        seen.append(kw.get("precision"))
        return real(*args, **kw)

    monkeypatch.setattr(store_mod, "SimilarityJob", spy)
    e = fresh_rng().standard_normal((700, 40)).astype(np.float32)
    with SimilarityWriter(tmp_path / "n.h5") as w:
        index, sim = w.write_similarity(e, k=7, dense=False, device="cpu", tile=64)
    assert seen == [engine.resolve_precision("auto", "cpu", 40)]
    want = engine.topk(e, 7, device="cpu", tile=64, precision="fp32")
    np.testing.assert_array_equal(index, want[0])
    np.testing.assert_array_equal(sim.view(np.uint16), want[1].view(np.uint16))
