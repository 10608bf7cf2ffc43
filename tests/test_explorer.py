"""Tests for the explorer's data builder, folder writer and server (no browser needed)."""

from __future__ import annotations

import json
import pickle
import re
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from browser import FAILED, PLANTED, XSS_NAME, expected_pairs, make_dataset  # noqa: E402

from dupscope.explorer import IncompleteFileError, build_explorer, make_server  # noqa: E402
from dupscope.explorer.pagedata import neighbor_pairs, order_by_max_similarity, read_page_data  # noqa: E402
from dupscope.explorer.server import server_url  # noqa: E402


def _data_js(index: Path) -> dict:
    text = (index.parent / "data.js").read_text(encoding="utf-8")
    prefix = "window.DUPSCOPE_DATA = "
    assert text.startswith(prefix)
    return json.loads(text[len(prefix):].rstrip().rstrip(";"))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("explorer"))


def _reference_pairs(index, sim):
    out = {}
    for i in range(index.shape[0]):
        for j, s in zip(index[i], sim[i]):
            if j >= 0 and j != i and np.isfinite(s):
                out.setdefault((min(i, int(j)), max(i, int(j))), float(s))
    return out


def _random_neighbours(rng, n, k):
    idx = np.stack([rng.permutation(n - 1)[:k] for _ in range(n)]).astype(np.int32)
    idx += idx >= np.arange(n)[:, None]  # skip self
    sim = np.sort(rng.random((n, k)), axis=1)[:, ::-1].astype(np.float16)
    return idx, sim


def test_neighbor_pairs_match_reference_and_are_sorted():
    rng = np.random.default_rng(1)
    idx, sim = _random_neighbours(rng, 60, 7)
    idx[3, 4:] = -1
    sim[3, 4:] = np.nan
    # make some lists mutual so de-duplication matters
    for i in range(0, 60, 3):
        j = int(idx[i, 0])
        if i not in idx[j]:
            idx[j, -1], sim[j, -1] = i, sim[i, 0]
    a, b, s = neighbor_pairs(idx, sim, chunk=16)  # small chunk: exercise the loop
    ref = _reference_pairs(idx, sim)
    got = {(int(x), int(y)): float(v) for x, y, v in zip(a, b, s)}
    assert len(got) == len(a), "pairs must be de-duplicated"
    assert np.all(a < b)
    assert set(got) == set(ref)
    s64 = s.astype(np.float64)
    assert np.all(s64[:-1] >= s64[1:])


def test_order_by_max_similarity_ties_and_nan():
    m = np.array([0.5, np.nan, 0.9, 0.5, 0.0, 0.9], dtype=np.float16)
    assert order_by_max_similarity(m).tolist() == [2, 5, 0, 3, 4, 1]


def test_read_page_data_pairs_max_and_order(dataset):
    d = read_page_data(dataset.h5)
    assert d.n == len(dataset.paths) and d.paths == dataset.paths
    assert not d.ok[FAILED] and d.ok.sum() == d.n - 1
    got = {(int(x), int(y)): float(v) for x, y, v in zip(d.pair_a, d.pair_b, d.pair_sim)}
    assert got == expected_pairs(dataset.h5, 0.0)
    for i, j, s in PLANTED:
        assert got[(i, j)] == pytest.approx(s, abs=1e-3)
    dense = dataset.similarity.astype(np.float64)
    np.fill_diagonal(dense, np.nan)
    ok_rows = np.isfinite(dense).any(axis=1)
    np.testing.assert_array_equal(d.max_sim[ok_rows].astype(np.float64), np.nanmax(dense[ok_rows], axis=1))
    assert np.isnan(d.max_sim[FAILED])
    assert d.order[-1] == FAILED and d.order[0] == 0
    m = d.max_sim.astype(np.float64)[d.order[:-1]]
    assert np.all(m[:-1] >= m[1:])


def test_incomplete_file_is_refused(tmp_path, dataset):
    import h5py
    import shutil

    bad = tmp_path / "partial.h5"
    shutil.copy(dataset.h5, bad)
    with h5py.File(bad, "a") as f:
        f.attrs["complete"] = False
    with pytest.raises(IncompleteFileError, match="complete"):
        build_explorer(bad, tmp_path / "out", progress=False)
    with h5py.File(bad, "a") as f:
        del f.attrs["complete"]
    with pytest.raises(IncompleteFileError, match="incomplete"):
        read_page_data(bad)
    assert not (tmp_path / "out" / "index.html").exists()


def test_build_writes_self_contained_folder(tmp_path, dataset):
    out = tmp_path / "site"
    index = build_explorer(dataset.h5, out, progress=False, workers=2)
    assert index == out / "index.html"
    html = index.read_text(encoding="utf-8")
    # Nothing from the internet: no absolute URLs in the page or its assets.
    for f in [index, out / "assets" / "explorer.js", out / "assets" / "explorer.css"]:
        assert not re.search(r"(?:src|href)=[\"']?(?:https?:)?//", f.read_text(encoding="utf-8")), f
    assert '<script src="data.js"></script>' in html
    data = _data_js(index)
    assert data["n"] == len(dataset.paths) and data["paths"] == dataset.paths
    ext = data["thumbs"]["ext"]
    thumbs = sorted(out.glob(f"thumbs/*/*.{ext}"))
    assert len(thumbs) == len(dataset.paths) - 1  # not the failed image
    assert not (out / "thumbs" / "0" / f"{FAILED}.{ext}").exists()
    assert all(t.stat().st_size < 8_000 for t in thumbs)
    # Originals are never copied.
    names = {p.name for p in out.rglob("*")}
    assert not any(Path(p).name in names for p in dataset.paths)


def test_data_js_cannot_break_out_of_script(tmp_path, dataset):
    index = build_explorer(dataset.h5, tmp_path / "site", progress=False, thumbnails=False)
    text = (index.parent / "data.js").read_text(encoding="utf-8")
    assert "</" not in text and "<img" not in text and "<b>" not in text
    data = _data_js(index)
    assert XSS_NAME in [Path(p).name for p in data["paths"]]
    assert "<b>bird</b>" in data["labelNames"]


def test_thumbnails_are_made_once(tmp_path, dataset):
    out = tmp_path / "site"
    build_explorer(dataset.h5, out, progress=False)
    thumb = next(out.glob("thumbs/*/0.*"))
    before = thumb.stat().st_mtime_ns
    time.sleep(0.01)
    build_explorer(dataset.h5, out, progress=False)
    assert thumb.stat().st_mtime_ns == before


def test_predictions_are_embedded_and_checked(tmp_path, dataset):
    n = len(dataset.paths)
    pkl = tmp_path / "preds.pkl"
    pkl.write_bytes(pickle.dumps(np.linspace(0, 1, n)))
    index = build_explorer(dataset.h5, tmp_path / "site", predictions=pkl, progress=False,
                           thumbnails=False)
    assert _data_js(index)["pred"]["kind"] == "score"
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(pickle.dumps(np.zeros(n + 2)))
    from dupscope.explorer.predictions import PredictionsError

    with pytest.raises(PredictionsError, match=f"{n + 2} entries.*{n} images"):
        build_explorer(dataset.h5, tmp_path / "site2", predictions=bad, progress=False)


def test_serve_serves_the_folder(tmp_path, dataset):
    index = build_explorer(dataset.h5, tmp_path / "site", progress=False, thumbnails=False)
    server = make_server(index.parent, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = server_url(server)
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url) as r:
            assert b"dupscope" in r.read()
        with urllib.request.urlopen(url + "data.js") as r:
            assert r.read().startswith(b"window.DUPSCOPE_DATA")
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(FileNotFoundError, match="index.html"):
        make_server(tmp_path, "127.0.0.1", 0)


def test_serve_refuses_links_out_listings_dotfiles_and_foreign_hosts(tmp_path, dataset):
    import http.client
    import os

    index = build_explorer(dataset.h5, tmp_path / "site", progress=False, thumbnails=False)
    site = index.parent
    secret = tmp_path / "secret.txt"
    secret.write_text("password")
    os.symlink(secret, site / "link.txt")
    os.symlink(tmp_path, site / "up")
    (site / ".git").mkdir()
    (site / ".git" / "config").write_text("[core]")
    (site / "inside.txt").write_text("ok")
    os.symlink(site / "inside.txt", site / "link_in.txt")
    server = make_server(site, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]

    def get(path, host=None):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.putrequest("GET", path, skip_host=True)
        if host != "":
            c.putheader("Host", host or f"127.0.0.1:{port}")
        c.endheaders()
        r = c.getresponse()
        body = r.read()
        c.close()
        return r.status, body

    try:
        assert get("/inside.txt") == (200, b"ok")
        assert get("/link_in.txt") == (200, b"ok")  # a link that stays inside is fine
        for path in ("/link.txt", "/up/secret.txt", "/.git/config", "/assets/", "/thumbs/",
                     "/../secret.txt", "/%2e%2e/secret.txt", "/.dupscope-explorer"):
            status, body = get(path)
            assert status == 404 and b"password" not in body and b"[core]" not in body, path
        assert get("/", host=f"localhost:{port}")[0] == 200
        assert get("/", host="evil.example.com")[0] == 421  # DNS rebinding
        assert get("/", host="")[0] == 421
    finally:
        server.shutdown()
        server.server_close()


def test_serve_serves_originals_under_the_root_only(tmp_path, dataset):
    """/_originals/ serves the data set's images read-only; paths and links out of the root,
    dotfiles and other methods are refused."""
    import http.client
    import os
    import re

    index = build_explorer(dataset.h5, tmp_path / "site", progress=False, thumbnails=False)
    site = index.parent
    root = (site / ".dupscope-originals").read_text().strip()
    images = sorted(p for p in os.listdir(root) if re.fullmatch(r"[\w.]+\.png", p))  # names safe in a URL
    secret = tmp_path / "secret.txt"
    secret.write_text("password")
    os.symlink(secret, os.path.join(root, "escape.png"))
    os.symlink(tmp_path, os.path.join(root, "updir"))
    server = make_server(site, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]

    def request(method, path):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request(method, path)
        r = c.getresponse()
        body = r.read()
        c.close()
        return r.status, body

    try:
        status, body = request("GET", f"/_originals/{images[0]}")
        with open(os.path.join(root, images[0]), "rb") as fh:
            assert status == 200 and body == fh.read()
        for path in ("/_originals/escape.png", "/_originals/updir/secret.txt", "/_originals/../secret.txt",
                     "/_originals/%2e%2e/secret.txt", "/_originals/", "/_originals"):
            status, body = request("GET", path)
            assert status == 404 and b"password" not in body, path
        assert request("PUT", f"/_originals/{images[0]}")[0] == 501
        assert request("DELETE", f"/_originals/{images[0]}")[0] == 501
    finally:
        server.shutdown()
        server.server_close()
        os.unlink(os.path.join(root, "escape.png"))  # the data set is shared by this module's tests
        os.unlink(os.path.join(root, "updir"))
    # Without a recorded root nothing is served there.
    (site / ".dupscope-originals").unlink()
    server = make_server(site, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    try:
        assert request("GET", f"/_originals/{images[0]}")[0] == 404
    finally:
        server.shutdown()
        server.server_close()


def test_serve_drops_idle_connections(tmp_path, dataset, monkeypatch):
    import socket

    from dupscope.explorer import server as server_module

    monkeypatch.setattr(server_module._Handler, "timeout", 0.5)
    index = build_explorer(dataset.h5, tmp_path / "site", progress=False, thumbnails=False)
    server = make_server(index.parent, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        sock = socket.create_connection(server.server_address[:2], timeout=10)
        t0 = time.monotonic()
        assert sock.recv(1) == b""  # closed by the server, not by our 10 s timeout
        assert time.monotonic() - t0 < 5
        sock.close()
    finally:
        server.shutdown()
        server.server_close()


def test_cli_parsers(tmp_path):
    import argparse

    import dupscope.cli as cli
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    cli._add_visualize(sub)
    cli._add_serve(sub)
    a = parser.parse_args(["visualize", "sim.h5", "-o", "out", "--predictions", "p.pkl", "--trust-pickle"])
    assert (a.h5, a.output, a.predictions, a.trust_pickle) == ("sim.h5", "out", "p.pkl", True)
    assert callable(a.handler)
    a = parser.parse_args(["serve", "out"])
    assert (a.directory, a.host, a.port) == ("out", "127.0.0.1", 8000)
    a = parser.parse_args(["serve", "out", "--host", "0.0.0.0", "--port", "0"])
    assert (a.host, a.port) == ("0.0.0.0", 0)


def test_reads_files_written_by_the_store(tmp_path):
    import dupscope.store as store
    rng = np.random.default_rng(5)
    n = 40
    emb = rng.normal(size=(n, 16)).astype(np.float32)
    emb[1] = emb[0] + 0.01  # a planted near-duplicate
    path = tmp_path / "store.h5"
    with store.SimilarityWriter(path) as w:
        w.write_images([f"img_{i}.jpg" for i in range(n)], labels=["a", "b"] * (n // 2))
        w.write_similarity(emb, k=5, dense=False)
    d = read_page_data(path)
    with store.SimilarityFile(path) as f:
        idx, sim = f.neighbors()
    assert {(int(a), int(b)) for a, b in zip(d.pair_a, d.pair_b)} == set(_reference_pairs(idx, sim))
    assert (int(d.pair_a[0]), int(d.pair_b[0])) == (0, 1)
    index = build_explorer(path, tmp_path / "site", progress=False, thumbnails=False)
    assert _data_js(index)["n"] == n


def test_cli_visualize_end_to_end_and_errors(tmp_path, dataset, capsys):
    import dupscope.cli as cli
    out = tmp_path / "site"
    assert cli.main(["visualize", str(dataset.h5), "-o", str(out), "--quiet"]) == 0
    assert (out / "index.html").is_file() and capsys.readouterr() == ("", "")  # --quiet: nothing
    assert cli.main(["visualize", str(dataset.h5), "-o", str(out)]) == 0
    assert "dupscope serve" in capsys.readouterr().out

    class Evil:
        def __reduce__(self):
            return (eval, ("1",))

    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps(Evil()))
    assert cli.main(["visualize", str(dataset.h5), "-o", str(out), "--predictions", str(evil), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "builtins.eval" in err and "--trust-pickle" in err


def test_thumbnails_of_16_bit_and_float_images_show_the_picture(tmp_path):
    from PIL import Image

    from dupscope.explorer.thumbnails import make_thumbnails

    ramp = np.tile(np.linspace(0, 1, 64), (48, 1))  # black on the left, white on the right
    paths = []
    img16 = Image.fromarray((ramp * 65535).astype(np.uint16))
    img16.save(tmp_path / "deep.png")
    paths.append(str(tmp_path / "deep.png"))
    Image.fromarray(ramp.astype(np.float32), "F").save(tmp_path / "float.tif")
    paths.append(str(tmp_path / "float.tif"))
    has, failures, ext = make_thumbnails(paths, np.ones(2, bool), tmp_path / "site", size=32, ext="jpg",
                                         progress=False)
    assert has.all() and not failures
    for k in range(2):
        with Image.open(tmp_path / "site" / "thumbs" / "0" / f"{k}.{ext}") as t:
            grey = np.asarray(t.convert("L"), np.float64)
        # A ramp from black to white, not a white square.
        assert grey[:, :4].mean() < 60 and grey[:, -4:].mean() > 190, (k, grey.mean())
