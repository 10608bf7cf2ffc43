"""WebDataset tar shards as input (dupscope.shards): expansion, reading members in place, phase 1."""

from __future__ import annotations

import io
import tarfile

import imagegen
import numpy as np
import pytest

from dupscope.annotations import load_annotations
from dupscope.errors import AnnotationError
from dupscope.images import ImageLoadError, decode_image
from dupscope.pipeline import compute_similarity
from dupscope.shards import expand_shards, member_address, read_member
from dupscope.store import SimilarityFile


def test_brace_patterns():
    assert expand_shards("s/{000..002}.tar") == ["s/000.tar", "s/001.tar", "s/002.tar"]
    assert expand_shards("s/{8..10}.tar") == ["s/8.tar", "s/9.tar", "s/10.tar"]
    assert expand_shards("{a,b}-{0..1}.tar") == ["a-0.tar", "a-1.tar", "b-0.tar", "b-1.tar"]
    assert expand_shards("plain.tar") == ["plain.tar"]
    with pytest.raises(AnnotationError, match="counts down"):
        expand_shards("{3..1}.tar")


def _png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _shard(path, samples):
    """samples: (key, {ext: bytes})"""
    with tarfile.open(path, "w") as tf:
        for key, members in samples:
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def shards(tmp_path):
    pics = [imagegen.scene(s, (160, 120)) for s in range(10)]
    a = [(f"{i:05d}", {"png": _png(pics[i]), "cls": str(i % 3).encode()}) for i in range(5)]
    b = [(f"{i:05d}", {"png": _png(pics[i])}) for i in range(5, 10)]
    b.append(("copy0", {"png": _png(imagegen.cropped(pics[0]))}))  # a copy of shard 0's first picture
    b.append(("notes", {"txt": b"no image here"}))
    b.append(("broken", {"png": b"\x89PNG not really"}))
    _shard(tmp_path / "train-0.tar", a)
    _shard(tmp_path / "train-1.tar", b)
    return tmp_path


def test_shards_are_read_in_place(shards):
    table = load_annotations(str(shards / "train-{0..1}.tar"))
    assert table.format == "webdataset" and len(table) == 12
    assert table.paths[:2] == ["train-0.tar/00000.png", "train-0.tar/00001.png"]
    assert table.paths[-2:] == ["train-1.tar/copy0.png", "train-1.tar/broken.png"]
    assert table.labels[:5] == ["0", "1", "2", "0", "1"] and table.labels[5] == ""
    assert table.resolved[0] == member_address(shards / "train-0.tar", "00000.png")
    img, w, h = decode_image(table.resolved[0])
    assert (w, h) == (160, 120) and img.size == (160, 120)
    assert read_member(table.resolved[0])[:4] == b"\x89PNG"
    with pytest.raises(ImageLoadError, match="missing file"):
        decode_image(member_address(shards / "train-0.tar", "nope.png"))
    with pytest.raises(AnnotationError, match="1 of 3 shards do not exist"):
        load_annotations(str(shards / "train-{0..2}.tar"))


def test_phase1_on_shards_finds_the_copy_across_shards(shards):
    out = shards / "sim.h5"
    summary = compute_similarity(str(shards / "train-{0..1}.tar"), out, model="dct32", k=3, progress=False)
    assert summary["n_images"] == 12 and summary["n_failed"] == 1
    with SimilarityFile(out) as f:
        assert f.paths[10] == "train-1.tar/copy0.png" and not f.ok[11]
        assert "not an image" in f.errors[11] or "decode error" in f.errors[11]
        idx, sim = f.neighbors()
        inl = f.inliers()
        assert idx[10, 0] == 0 and sim[10, 0] >= 0.5 and inl[10, 0] >= 15
        assert np.all(f.widths[:10] == 160) and f.widths[10] == 136  # the copy is a crop


def test_explorer_of_a_shards_file_has_thumbnails_and_no_originals(shards):
    import json

    from dupscope.explorer import build_explorer

    out = shards / "sim.h5"
    compute_similarity(str(shards / "train-{0..1}.tar"), out, model="dct32", k=3, progress=False)
    index = build_explorer(out, shards / "site", progress=False, workers=2)
    thumbs = sorted(p.name for p in (index.parent / "thumbs").rglob("*.webp"))
    assert len(thumbs) == 11  # every image but the broken one
    text = (index.parent / "data.js").read_text(encoding="utf-8")
    data = json.loads(text[text.index("{"):].rstrip().rstrip(";"))
    assert data["originals"] is None and data["paths"][10] == "train-1.tar/copy0.png"


pa = pytest.importorskip("pyarrow")


def _parquet(path, columns, row_group_size=3):
    import pyarrow.parquet as pq

    pq.write_table(pa.table(columns), path, row_group_size=row_group_size)
    return path


def test_parquet_with_image_bytes_and_with_paths(tmp_path):
    pics = [imagegen.scene(s, (160, 120)) for s in range(7)]
    _parquet(tmp_path / "part-0.parquet", {"image": [_png(p) for p in pics[:4]], "label": ["a", "b", "a", None]})
    _parquet(tmp_path / "part-1.parquet", {"image": [_png(p) for p in pics[4:]] + [_png(imagegen.jpeg(pics[1])), None],
                                           "label": ["c"] * 5})
    table = load_annotations(str(tmp_path / "part-{0..1}.parquet"))
    assert table.format == "parquet" and len(table) == 9
    assert table.paths[:2] == ["part-0.parquet/0", "part-0.parquet/1"] and table.labels[:4] == ["a", "b", "a", ""]
    img, w, h = decode_image(table.resolved[5])  # row 1 of the second file, in its first row group
    assert (w, h) == (160, 120)
    out = tmp_path / "sim.h5"
    summary = compute_similarity(str(tmp_path / "part-{0..1}.parquet"), out, model="dct32", k=3, progress=False)
    assert summary["n_failed"] == 1  # the empty cell
    with SimilarityFile(out) as f:
        idx, sim = f.neighbors()
        assert idx[7, 0] == 1 and sim[7, 0] >= 0.5 and "no image" in f.errors[8]
    # A column of paths instead of bytes, relative to the file's folder.
    for i in range(3):
        pics[i].save(tmp_path / f"x{i}.png")
    _parquet(tmp_path / "paths.parquet", {"file_name": [f"x{i}.png" for i in range(3)], "split": ["training", "val", "test"]})
    table = load_annotations(tmp_path / "paths.parquet")
    assert table.resolved == [str(tmp_path / f"x{i}.png") for i in range(3)] and table.splits == ["train", "val", "test"]
    with pytest.raises(AnnotationError, match="no image column"):
        load_annotations(_parquet(tmp_path / "none.parquet", {"n": [1, 2]}))
    with pytest.raises(AnnotationError, match="no column 'pic'"):
        load_annotations(tmp_path / "paths.parquet", path_column="pic")


def test_shards_through_fsspec_urls(tmp_path):
    """Shards named by URL (fsspec's in-memory filesystem here) are read by seeking, like files."""
    fsspec = pytest.importorskip("fsspec")
    pics = [imagegen.scene(s, (160, 120)) for s in range(4)]
    local = _shard(tmp_path / "remote-0.tar", [(f"{i:03d}", {"png": _png(p)}) for i, p in enumerate(pics)])
    fs = fsspec.filesystem("memory")
    fs.pipe("/bucket/remote-0.tar", local.read_bytes())
    _parquet(tmp_path / "remote-1.parquet", {"image": [_png(p) for p in pics]})
    fs.pipe("/bucket/remote-1.parquet", (tmp_path / "remote-1.parquet").read_bytes())
    table = load_annotations("memory://bucket/remote-{0..0}.tar")
    assert table.paths[0] == "remote-0.tar/000.png" and table.resolved[0].startswith("tar://memory://bucket/")
    assert decode_image(table.resolved[3])[0].size == (160, 120)
    table = load_annotations("memory://bucket/remote-1.parquet")
    assert len(table) == 4 and decode_image(table.resolved[2])[0].size == (160, 120)
    with pytest.raises(AnnotationError, match="do not exist"):
        load_annotations("memory://bucket/remote-{0..1}.tar")
