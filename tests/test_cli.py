"""The `run` and `demo` commands: both phases into one folder, from the command line."""

from __future__ import annotations

import subprocess
import sys

from dupscope.demo import make_demo_dataset
from dupscope.store import SimilarityFile


def dupscope(*args, check=True):
    return subprocess.run([sys.executable, "-m", "dupscope", *map(str, args)],
                          capture_output=True, text=True, check=check)


def test_demo_builds_dataset_h5_and_explorer(tmp_path):
    r = dupscope("demo", tmp_path / "demo", "--images", 12, "--model", "dct32", "--quiet")
    out = tmp_path / "demo"
    assert (out / "index.html").is_file() and (out / "data.js").is_file()
    assert (out / "dataset" / "annotations.json").is_file()
    with SimilarityFile(out / "similarity.h5") as f:
        assert f.n > 12 and f.ok.all()
    assert "dupscope evaluate" in r.stdout and "index.html" in r.stdout


def test_run_writes_h5_into_target_unless_told(tmp_path):
    data = make_demo_dataset(tmp_path / "data", n_originals=8, n_copied=3, size=(96, 72))
    dupscope("run", data.annotations, tmp_path / "t1", "--model", "dct32", "--quiet",
             "--predictions", data.predictions)
    assert (tmp_path / "t1" / "similarity.h5").is_file() and (tmp_path / "t1" / "index.html").is_file()
    assert "classNames" in (tmp_path / "t1" / "data.js").read_text()  # class scores were read
    dupscope("run", data.annotations, tmp_path / "t2", "--model", "dct32", "--quiet",
             "--h5", tmp_path / "elsewhere.h5")
    assert (tmp_path / "elsewhere.h5").is_file() and not (tmp_path / "t2" / "similarity.h5").exists()


def test_run_hard_error_is_a_message_not_a_traceback(tmp_path):
    bad = tmp_path / "notes.json"
    bad.write_text('{"hello": "world"}')
    r = dupscope("run", bad, tmp_path / "t", "--quiet", check=False)
    assert r.returncode == 2 and "error" in r.stderr and "Traceback" not in r.stderr
