"""Resuming phase 1 after a kill: the embedding checkpoint (dupscope.checkpoint)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np

import imagegen
from dupscope import SimilarityFile
from dupscope.checkpoint import EmbeddingCheckpoint
from dupscope.embed import EmbedResult
from dupscope.pipeline import compute_similarity


def _images(root, n):
    root.mkdir()
    lines = []
    for s in range(n):
        img = imagegen.scene(s % 40, (96, 72)) if s % 3 else imagegen.noise(s, (96, 72))
        lines.append(str(imagegen.save(img, root / f"i{s:03d}.png")))
    lines.append(str(root / "missing.png"))  # a failure is checkpointed too
    ann = root.parent / "list.txt"
    ann.write_text("\n".join(lines) + "\n")
    return ann


def test_kill_9_during_embedding_then_resume_gives_the_same_file(tmp_path):
    ann = _images(tmp_path / "imgs", 400)
    out = tmp_path / "sim.h5"
    blocks = tmp_path / "sim.h5.partial.d"
    env = {**os.environ, "DUPSCOPE_CHECKPOINT_ROWS": "8", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "dupscope", "similarity", str(ann), "-o", str(out), "--model", "efficientnet-lite0",
           "--batch-size", "4", "--k", "8", "--workers", "1"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while len(list(blocks.glob("block-*.npz"))) < 3:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert not out.exists() and blocks.is_dir()
    saved = len(list(blocks.glob("block-*.npz")))
    # The same command again: only the rows in no block are embedded.
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    line = next(x for x in again.stderr.splitlines() if x.startswith("resuming:"))
    resumed = int(line.split()[1])
    assert 8 * 3 <= resumed < 401 and saved >= 3
    assert out.exists() and not blocks.exists()
    # An uninterrupted run of the same command gives the same file.
    whole = tmp_path / "whole.h5"
    ref = subprocess.run([str(whole) if c == str(out) else c for c in cmd], env=env, capture_output=True,
                         text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr
    with SimilarityFile(out) as f, SimilarityFile(whole) as g:
        for name in ("neighbors/index", "neighbors/similarity", "neighbors/inliers", "images/ok", "images/width"):
            assert np.array_equal(f.h5[name][()], g.h5[name][()], equal_nan=name.endswith("similarity")), name
        assert f.errors == g.errors and f.errors[-1]


def test_a_checkpoint_of_another_run_is_discarded(tmp_path, capsys):
    ann = _images(tmp_path / "imgs", 6)
    out = tmp_path / "sim.h5"
    other = EmbeddingCheckpoint(out, "another run", 7)
    res = EmbedResult(np.ones((7, 4), np.float32), np.ones(7, bool), [""] * 7, np.ones(7, np.int32),
                      np.ones(7, np.int32), device="cpu", seconds=0.0, model=None)
    other.add(np.arange(7), res, force=True)
    assert other.folder.is_dir()
    summary = compute_similarity(ann, out, model="dct32", k=3, progress=True)
    assert summary["resumed_images"] == 0 and summary["n_images"] == 7
    assert "discarded the checkpoint" in capsys.readouterr().err
    assert not other.folder.exists()


def test_checkpoint_blocks_round_trip(tmp_path):
    ck = EmbeddingCheckpoint(tmp_path / "x.h5", "k", 10)
    emb = np.arange(40, dtype=np.float16).reshape(10, 4)
    res = EmbedResult(emb, np.r_[np.ones(9, bool), False], [""] * 9 + ["missing file"], np.arange(10, dtype=np.int32),
                      np.arange(10, dtype=np.int32), device="cpu", seconds=0.0, model=None,
                      layout=np.ones((10, 256), np.float16))
    ck.add(np.array([0, 1, 2]), res, force=True)
    ck.add(np.array([9]), res, force=True)
    (ck.folder / "block-000099.npz.tmp").write_bytes(b"half a block")  # a write cut short: ignored
    (ck.folder / "block-000002.npz").write_bytes(b"not a block")  # unreadable: ignored, never overwritten
    again = EmbeddingCheckpoint(tmp_path / "x.h5", "k", 10)
    done, got = again.load()
    assert done.tolist() == [True, True, True] + [False] * 6 + [True]
    assert np.array_equal(got.embeddings[[0, 1, 2, 9]], emb[[0, 1, 2, 9]]) and got.embeddings.dtype == np.float16
    assert got.errors[9] == "missing file" and not got.ok[9] and got.layout is not None
    again.add(np.array([5]), res, force=True)  # the resumed run's next block gets a new name
    assert (again.folder / "block-000003.npz").exists()
    assert (again.folder / "block-000002.npz").read_bytes() == b"not a block"
