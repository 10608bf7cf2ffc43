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


# -- hardening: one-line errors and checked option ranges ---------------------------------------
import h5py  # noqa: E402
import pytest  # noqa: E402

import dupscope as _dupscope  # noqa: E402


def _small_h5(tmp_path):
    import numpy as np

    h5 = tmp_path / "sim.h5"
    e = np.random.default_rng(0).standard_normal((12, 8)).astype("float32")
    _dupscope.write_similarity(e, h5, k=3, device="cpu")
    return h5


@pytest.mark.parametrize("argv", [
    ["report", "{h5}", "--threshold", "nan"],
    ["report", "{h5}", "--threshold", "5"],
    ["report", "{h5}", "--top", "-1"],
    ["evaluate", "{h5}", "gt.json", "--min-precision", "2"],
    ["similarity", "x", "-o", "y.h5", "--batch-size", "-3"],
    ["similarity", "x", "-o", "y.h5", "--k", "0"],
    ["visualize", "{h5}", "-o", "site", "--thumb-size", "-5"],
    ["serve", ".", "--port", "99999"],
])
def test_option_out_of_range_is_refused(tmp_path, argv):
    h5 = _small_h5(tmp_path)
    r = dupscope(*[a.format(h5=h5) for a in argv], check=False)
    assert r.returncode == 2 and "must be" in r.stderr and "Traceback" not in r.stderr


def test_visualize_refuses_damaged_files_and_foreign_folders_in_one_line(tmp_path):
    h5 = _small_h5(tmp_path)
    cut = tmp_path / "cut.h5"
    cut.write_bytes(h5.read_bytes()[:1500])
    text = tmp_path / "text.h5"
    text.write_text("not hdf5")
    lying = tmp_path / "lying.h5"
    lying.write_bytes(h5.read_bytes())
    with h5py.File(lying, "r+") as f:
        f.attrs["complete"] = "True"
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "index.html").write_text("my own page")
    afile = tmp_path / "afile"
    afile.write_text("x")
    for argv in (["visualize", cut, "-o", tmp_path / "s1"], ["visualize", text, "-o", tmp_path / "s2"],
                 ["visualize", lying, "-o", tmp_path / "s3"], ["report", lying],
                 ["visualize", h5, "-o", foreign], ["visualize", h5, "-o", afile]):
        r = dupscope(*argv, check=False)
        assert r.returncode == 2 and "error:" in r.stderr and "Traceback" not in r.stderr, (argv, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert (foreign / "index.html").read_text() == "my own page"  # untouched
    dupscope("visualize", h5, "-o", foreign, "--overwrite", "--quiet")
    assert "DUPSCOPE" in (foreign / "data.js").read_text()
    dupscope("visualize", h5, "-o", foreign, "--quiet")  # ours now: no --overwrite needed


def test_report_json_has_no_nan(tmp_path):
    import json

    h5 = _small_h5(tmp_path)
    r = dupscope("report", h5, "--json")
    assert "NaN" not in r.stdout
    json.loads(r.stdout)


def test_latin1_ground_truth_is_read(tmp_path):
    h5 = _small_h5(tmp_path)
    gt = tmp_path / "gt.csv"
    gt.write_bytes(b"a,b\n0,1\n2,3\n# caf\xe9\n")
    r = dupscope("evaluate", h5, gt, check=False)
    assert "Traceback" not in r.stderr
