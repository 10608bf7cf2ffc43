"""The Ray backend (dupscope.cluster) on a local Ray cluster: the same file as the in-process
run, on tar shards and Parquet; tasks whose worker is killed are retried."""

from __future__ import annotations

import io
import os
import tarfile

import h5py
import imagegen
import numpy as np
import pytest

ray = pytest.importorskip("ray")

from dupscope import cluster  # noqa: E402
from dupscope.errors import PipelineError  # noqa: E402
from dupscope.pipeline import compute_similarity  # noqa: E402


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """A local cluster of 2 CPUs; the fault-injection flag (DUPSCOPE_RAY_FAIL_ONCE) points at a
    file the tests create when they want one worker killed."""
    flag = tmp_path_factory.mktemp("ray") / "fail-once"
    os.environ["DUPSCOPE_RAY_FAIL_ONCE"] = str(flag)  # inherited by the workers ray.init starts
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with cluster.ray_session(cluster.RayOptions(shard_rows=8, blocks=4, pair_rows=7)) as s:
            s.flag = flag
            yield s
    finally:
        ray.shutdown()
        os.environ.pop("DUPSCOPE_RAY_FAIL_ONCE", None)


def _png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Three tar shards of 8 pictures each, every third with a cropped copy beside it."""
    root = tmp_path_factory.mktemp("shards")
    pics = [imagegen.scene(s, (160, 120)) for s in range(24)]
    for sh in range(3):
        with tarfile.open(root / f"s-{sh}.tar", "w") as tf:
            for i in range(sh * 8, sh * 8 + 8):
                members = [(f"{i:05d}", pics[i])] + ([(f"{i:05d}c", imagegen.cropped(pics[i]))] if i % 3 == 0 else [])
                for key, img in members:
                    data = _png(img)
                    info = tarfile.TarInfo(f"{key}.png")
                    info.size = len(data)
                    tf.addfile(info, io.BytesIO(data))
    return root


def _datasets(path) -> dict:
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
        attrs = {k: str(v) for k, v in f.attrs.items() if k != "created"}
    return out, attrs


def _assert_same_file(a, b):
    da, aa = _datasets(a)
    db, ab = _datasets(b)
    assert sorted(da) == sorted(db)
    for name in da:
        x, y = da[name], db[name]
        if x.dtype.kind == "f":
            np.testing.assert_array_equal(x.view(np.uint8), y.view(np.uint8), err_msg=name)  # bit for bit, NaN too
        else:
            np.testing.assert_array_equal(x, y, err_msg=name)
    assert aa == ab


@pytest.mark.parametrize("verify", [True, False])
def test_ray_backend_writes_the_in_process_file_from_tar_shards(session, shards, tmp_path, verify):
    src = str(shards / "s-{0..2}.tar")
    compute_similarity(src, tmp_path / "local.h5", dense=False, progress=False, verify=verify)
    summary = compute_similarity(src, tmp_path / "ray.h5", dense=False, progress=False, verify=verify,
                                 backend="ray", ray_options=session.options)
    assert summary["backend"] == "ray" and summary["n_ok"] == 32
    _assert_same_file(tmp_path / "local.h5", tmp_path / "ray.h5")
    with h5py.File(tmp_path / "ray.h5", "r") as f:  # the planted copies are each other's nearest
        index = f["neighbors/index"][()]
        paths = [p.decode() for p in f["images/path"][()]]
    for i, p in enumerate(paths):
        if p.endswith("c.png"):
            assert paths[index[i, 0]] == p.replace("c.png", ".png")


def test_ray_backend_on_parquet(session, tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pics = [imagegen.scene(s, (128, 96)) for s in range(12)]
    images = [_png(p) for p in pics] + [_png(imagegen.jpeg(pics[2])), b"not an image"]
    pq.write_table(pa.table({"image": images[:7]}), tmp_path / "p-0.parquet", row_group_size=3)
    pq.write_table(pa.table({"image": images[7:]}), tmp_path / "p-1.parquet", row_group_size=3)
    src = str(tmp_path / "p-{0..1}.parquet")
    compute_similarity(src, tmp_path / "local.h5", dense=False, progress=False, model="efficientnet-lite0")
    compute_similarity(src, tmp_path / "ray.h5", dense=False, progress=False, model="efficientnet-lite0",
                       backend="ray", ray_options=session.options)
    _assert_same_file(tmp_path / "local.h5", tmp_path / "ray.h5")
    with h5py.File(tmp_path / "ray.h5", "r") as f:
        assert not f["images/ok"][-1] and f["images/ok"][:-1].all()


def test_band_tasks_equal_the_engine_and_survive_a_killed_worker(session):
    import dupscope

    rng = np.random.default_rng(5)
    x = rng.standard_normal((1500, 24)).astype(np.float32)
    valid = rng.random(1500) > 0.02
    want = dupscope.topk(x, 9, device="cpu", valid=valid)
    session.flag.write_text("kill one band task")
    got = cluster.topk(x, 9, session=session, valid=valid)
    assert not session.flag.exists()  # a task found it and killed its worker ...
    np.testing.assert_array_equal(got[0], want[0])  # ... and its retry gave the same lists
    np.testing.assert_array_equal(got[1].view(np.uint16), want[1].view(np.uint16))


def test_an_embedding_actor_killed_mid_run_is_restarted(session, shards):
    from dupscope.annotations import load_annotations
    from dupscope.embed import embed_images
    from dupscope.models import get_model

    table = load_annotations(str(shards / "s-{0..2}.tar"))
    spec = get_model("efficientnet-lite0")
    want = embed_images(table.resolved, spec)
    session.flag.write_text("kill one embedding actor")
    done = []
    got = cluster.embed_images(table.resolved, spec, session=session, on_batch=lambda rows, r: done.append(rows))
    assert not session.flag.exists()
    np.testing.assert_array_equal(got.embeddings, want.embeddings)
    assert got.ok.all() and (got.widths == want.widths).all()
    assert sorted(np.concatenate(done).tolist()) == list(range(len(table)))  # every shard reported once


def test_verification_tasks_give_the_in_process_evidence(session, shards):
    from dupscope.annotations import load_annotations
    from dupscope.verify import verify_pairs

    paths = load_annotations(str(shards / "s-{0..2}.tar")).resolved
    rng = np.random.default_rng(2)
    a = rng.integers(0, len(paths), 40)
    b = (a + rng.integers(1, len(paths), 40)) % len(paths)
    want = verify_pairs(paths, a, b)
    got = cluster.verify_pairs(paths, a, b, session=session)
    for name in ("inliers", "coverage", "mirrored", "checked"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    assert (got.inliers > 0).any()


def test_ray_backend_refusals(session, shards, tmp_path, capsys):
    src = str(shards / "s-0.tar")
    with pytest.raises(PipelineError, match="neighbour lists only"):
        compute_similarity(src, tmp_path / "d.h5", dense=True, backend="ray", progress=False)
    with pytest.raises(PipelineError, match="full runs only"):
        compute_similarity(src, append=tmp_path / "x.h5", backend="ray", progress=False)
    with pytest.raises(PipelineError, match="backend must be"):
        compute_similarity(src, tmp_path / "d.h5", backend="dask", progress=False)
    from dupscope.cli import main

    capsys.readouterr()
    assert main(["similarity", src, "--append", str(tmp_path / "x.h5"), "--backend", "ray"]) != 0
    assert "--backend ray cannot be given with --append" in capsys.readouterr().err
    assert main(["similarity", src, "-o", str(tmp_path / "y.h5"), "--address", "auto"]) != 0
    assert "--address is for --backend ray" in capsys.readouterr().err
    assert not (tmp_path / "y.h5").exists()


def test_cli_backend_ray_runs_phase_1(session, shards, tmp_path, capsys):
    from dupscope.cli import main

    out = tmp_path / "cli.h5"
    assert main(["similarity", str(shards / "s-{0..1}.tar"), "-o", str(out), "--backend", "ray", "--quiet",
                 "--model", "dct32"]) == 0
    with h5py.File(out, "r") as f:
        assert f["neighbors/index"].shape[0] == 22 and "similarity" not in f


def test_a_resumed_embedding_runs_only_the_rows_not_done(session, shards):
    """The checkpoint's rows (``resume``) are kept, and only the others are sent to the actors."""
    from dupscope.annotations import load_annotations
    from dupscope.embed import EmbedResult, embed_images
    from dupscope.models import get_model

    paths = load_annotations(str(shards / "s-{0..2}.tar")).resolved
    spec = get_model("dct32")
    full = embed_images(paths, spec)
    done = np.zeros(len(paths), bool)
    done[:13] = True
    prev = EmbedResult(np.where(done[:, None], full.embeddings, 0), full.ok & done, list(full.errors), full.widths,
                       full.heights)
    sent = []
    got = cluster.embed_images(paths, spec, session=session, resume=(done, prev),
                               on_batch=lambda rows, r: sent.append(rows))
    assert sorted(np.concatenate(sent).tolist()) == list(range(13, len(paths)))
    np.testing.assert_array_equal(got.embeddings, full.embeddings)
    assert got.ok.all()


def test_an_interrupted_top_k_resumes_per_task(session, tmp_path):
    import dupscope

    rng = np.random.default_rng(9)
    x = rng.standard_normal((1200, 16)).astype(np.float32)
    want = dupscope.topk(x, 6, device="cpu")
    calls = []

    def stop_after_two(done, total):
        calls.append(done)
        if len(calls) == 2:
            raise KeyboardInterrupt

    folder = tmp_path / "topk"
    with pytest.raises(KeyboardInterrupt):
        cluster.topk(x, 6, session=session, checkpoint=folder, progress=stop_after_two)
    saved = sorted(folder.glob("task-*.npz"))
    assert len(saved) >= 2
    stats = []
    got = cluster.topk(x, 6, session=session, checkpoint=folder, stats=stats)
    total = len(list(folder.glob("task-*.npz")))
    assert len(stats) == total - len(saved)  # only the tasks not saved were computed
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1].view(np.uint16), want[1].view(np.uint16))
    other = x.copy()
    other[0] += 1  # other embeddings: the saved tasks are not theirs
    stats = []
    cluster.topk(other, 6, session=session, checkpoint=folder, stats=stats)
    assert len(stats) == total
