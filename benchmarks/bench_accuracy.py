"""Near-duplicate accuracy: dupscope's models vs pHash vs the plain network, on real photos.

The benchmark is built from real photos that install offline (``benchmarks/accuracy_setup.sh``
unpacks Debian's stellarium-data astronomy photos and two wallpaper packages into bench-data/;
scikit-image's and scikit-learn's sample photos come from their wheels):

1. Pick originals (a fixed random sample), shrink them to at most 512 px (keeps the run short),
   and drop originals that are already duplicates of each other (very high similarity by both
   pHash and the network).
2. Make 17 copies of each original: resize 0.5x/0.25x, JPEG q50/q20, crops 90%/75%, brightness
   x1.3/x0.7, contrast x1.5, rotations 3/-5 degrees, horizontal flip, text watermark, border,
   grayscale, blur. An original and its copies form a group; the ground truth is known by
   construction. Different astronomy photos that look alike are the hard negatives.
3. Measure, in one run: dupscope (``compute_similarity`` then ``dupscope.evaluate.evaluate``)
   with each built-in model; imagehash pHash (similarity 1 - hamming / 64); imagededup's hashes if
   it imports; the plain network (the ONNX file run by onnxruntime on a plain 224x224 resize,
   cosine of its pooled embedding); then variants that might beat it (pooling, test-time views,
   input size, centring, combining with dct32, the [0, 1] mapping).

Two protocols are reported. *groups*: every pair within a group is a true pair (copy vs copy
too), every other pair a false one (what ``dupscope evaluate`` computes for a groups file).
*copies*: only original-copy pairs are true; copy-copy pairs are left out. Recall per transform
family is over original-copy pairs at the threshold where the method reaches precision 0.95 on
the groups protocol.

Usage:
    bash benchmarks/accuracy_setup.sh
    python benchmarks/bench_accuracy.py [--originals 200] [--seed 0] [--out benchmarks/ACCURACY.md]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

sys.path.insert(0, os.path.dirname(__file__))
from _machine import cpu_model, reexec_without_blas_overrides, table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATASET_VERSION = 2  # bump when the copies change, so a cached dataset is rebuilt
MAX_SIDE = 512
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
MID_LAYER = "/_blocks.7/Add_output_0"
MIN_STD = 8.0  # originals flatter than this (grey levels) are left out
MIN_COPY_STD = 3.0  # copies flatter than this are left out
FAMILIES = ["resize", "jpeg", "crop", "brightness", "contrast", "rotation", "flip", "watermark",
            "border", "grayscale", "blur"]


# ------------------------------------------------------------------------------------------
# Data set
# ------------------------------------------------------------------------------------------
def find_sources(data: Path) -> dict[str, list[Path]]:
    """Candidate originals by origin. Wallpapers ship several sizes of one picture: keep the largest."""
    unpacked = data / "unpacked"
    out: dict[str, list[Path]] = {}
    neb = unpacked / "usr/share/stellarium/nebulae/default"
    out["stellarium"] = sorted(p for p in neb.glob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    walls = []
    for folder in sorted((unpacked / "usr/share/wallpapers").glob("*")):
        imgs = [p for p in (folder / "contents/images").glob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg")]
        if imgs:
            walls.append(max(imgs, key=lambda p: p.stat().st_size))
    mate = unpacked / "usr/share/backgrounds/mate"
    walls += sorted(p for p in mate.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    out["wallpapers"] = walls
    wheel = []
    try:
        import skimage

        d = Path(skimage.__file__).parent / "data"
        for name in ("astronaut.png", "brick.png", "camera.png", "chelsea.png", "coffee.png", "coins.png",
                     "grass.png", "gravel.png", "hubble_deep_field.jpg", "ihc.png", "moon.png",
                     "motorcycle_left.png", "motorcycle_right.png", "retina.jpg", "rocket.jpg", "page.png"):
            if (d / name).exists():
                wheel.append(d / name)
    except ImportError:
        pass
    try:
        import sklearn.datasets

        d = Path(sklearn.datasets.__file__).parent / "images"
        wheel += sorted(d.glob("*.jpg"))
    except ImportError:
        pass
    out["wheels"] = wheel
    return out


def load_rgb(path: Path) -> Image.Image:
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        if im.mode in ("RGBA", "LA", "P"):
            im = im.convert("RGBA")
            bg = Image.new("RGBA", im.size, (0, 0, 0, 255))
            im = Image.alpha_composite(bg, im)
        return im.convert("RGB")


def shrink(img: Image.Image) -> Image.Image:
    s = MAX_SIDE / max(img.size)
    if s < 1:
        img = img.resize((max(1, round(img.width * s)), max(1, round(img.height * s))), Image.Resampling.LANCZOS)
    return img


def make_copies(img: Image.Image, seed: int) -> list[tuple[str, str, Image.Image, str]]:
    """(name, family, image, format) for the 17 copies of one original."""
    rng = random.Random(seed)
    w, h = img.size
    out = []

    def add(name, family, im, fmt="png"):
        out.append((name, family, im, fmt))

    add("half", "resize", img.resize((max(1, w // 2), max(1, h // 2)), Image.Resampling.BILINEAR))
    add("quarter", "resize", img.resize((max(1, w // 4), max(1, h // 4)), Image.Resampling.BILINEAR))
    add("jpeg50", "jpeg", img, "jpeg50")
    add("jpeg20", "jpeg", img, "jpeg20")
    for frac, name in ((0.9, "crop90"), (0.75, "crop75")):
        cw, ch = max(1, round(w * frac)), max(1, round(h * frac))
        x0, y0 = rng.randint(0, w - cw), rng.randint(0, h - ch)
        add(name, "crop", img.crop((x0, y0, x0 + cw, y0 + ch)))
    add("bright130", "brightness", ImageEnhance.Brightness(img).enhance(1.3))
    add("bright70", "brightness", ImageEnhance.Brightness(img).enhance(0.7))
    add("contrast150", "contrast", ImageEnhance.Contrast(img).enhance(1.5))
    add("rot3", "rotation", img.rotate(3, Image.Resampling.BICUBIC, expand=False, fillcolor=(0, 0, 0)))
    add("rot-5", "rotation", img.rotate(-5, Image.Resampling.BICUBIC, expand=False, fillcolor=(0, 0, 0)))
    add("flip", "flip", ImageOps.mirror(img))
    wm = img.convert("RGBA")
    layer = Image.new("RGBA", wm.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    size = max(10, h // 9)
    font = ImageFont.load_default(size=size)
    text = rng.choice(["(c) dupscope", "SAMPLE", "stock photo 2024", "watermark"])
    draw.text((w * 0.05, h * 0.45), text, fill=(255, 255, 255, 150), font=font)
    draw.text((w * 0.05, h * 0.85), "www.example.com", fill=(255, 255, 0, 220), font=ImageFont.load_default(size=max(8, h // 18)))
    add("watermark", "watermark", Image.alpha_composite(wm, layer).convert("RGB"))
    b = max(2, round(0.08 * max(w, h)))
    add("border", "border", ImageOps.expand(img, border=b, fill=rng.choice([(255, 255, 255), (0, 0, 0), (128, 128, 128)])))
    add("gray", "grayscale", ImageOps.grayscale(img).convert("RGB"))
    add("blur", "blur", img.filter(ImageFilter.GaussianBlur(radius=max(1.0, 0.006 * max(w, h)))))
    return out


def save(img: Image.Image, path: Path, fmt: str) -> Path:
    if fmt.startswith("jpeg"):
        path = path.with_suffix(".jpg")
        img.save(path, "JPEG", quality=int(fmt[4:]))
    else:
        path = path.with_suffix(".png")
        img.save(path, "PNG", compress_level=1)
    return path


def gray_std(path) -> float:
    with Image.open(path) as im:
        return float(np.asarray(im.convert("L"), np.float32).std())


def phash_bits(paths, workers: int = 2) -> np.ndarray:
    """64-bit pHash per image (imagehash), as uint64."""
    import imagehash

    def one(p):
        with Image.open(p) as im:
            bits = imagehash.phash(im.convert("RGB")).hash.ravel()
        return int("".join("1" if b else "0" for b in bits), 2)

    with ThreadPoolExecutor(workers) as pool:
        return np.array(list(pool.map(one, paths)), dtype=np.uint64)


def phash_similarity(h: np.ndarray) -> np.ndarray:
    """(N, N) float16 similarity 1 - hamming / 64 (exact in float16)."""
    n = len(h)
    out = np.empty((n, n), np.float16)
    for i0 in range(0, n, 512):
        x = h[i0:i0 + 512, None] ^ h[None, :]
        out[i0:i0 + 512] = (1.0 - np.bitwise_count(x).astype(np.float32) / 64.0).astype(np.float16)
    return out


def build_dataset(data: Path, n_originals: int, seed: int, log) -> dict:
    """Create (or reuse) the benchmark images; returns the manifest."""
    folder = data / f"accuracy-v{DATASET_VERSION}-n{n_originals}-s{seed}"
    manifest_path = folder / "manifest.json"
    if manifest_path.exists():
        log(f"reusing {folder}")
        return json.loads(manifest_path.read_text())
    sources = find_sources(data)
    if not sources["stellarium"]:
        raise SystemExit(f"no photos under {data}/unpacked: run bash benchmarks/accuracy_setup.sh first")
    rng = random.Random(seed)
    # Mostly astronomy (the hard negatives), plus every landscape and sample photo.
    others = sources["wallpapers"] + sources["wheels"]
    n_astro = max(0, n_originals - len(others))
    picked = rng.sample(sources["stellarium"], min(n_astro, len(sources["stellarium"]))) + others
    picked = picked[:n_originals]
    log(f"{len(picked)} candidate originals: {sum(1 for p in picked if 'stellarium' in str(p))} astronomy, "
        f"{sum(1 for p in picked if 'wallpapers' in str(p) or 'backgrounds' in str(p))} wallpapers, "
        f"{sum(1 for p in picked if p in sources['wheels'])} wheel sample photos")
    orig_dir = folder / "originals"
    orig_dir.mkdir(parents=True, exist_ok=True)
    origin_of = {}

    def prep(k_p):
        k, p = k_p
        img = shrink(load_rgb(p))
        return save(img, orig_dir / f"o{k:04d}_{p.stem[:40]}", "png"), str(p)

    with ThreadPoolExecutor(2) as pool:
        prepared = list(pool.map(prep, enumerate(picked)))
    # A nearly uniform picture (a transparent overlay on black, a plain dark wallpaper) has no
    # content by which any method could tell it from another: leave those out.
    flat = [(p, src) for p, src in prepared if gray_std(p) < MIN_STD]
    if flat:
        log(f"left out {len(flat)} nearly uniform originals (grey std < {MIN_STD}): "
            f"{[Path(src).name for _, src in flat]}")
    prepared = [(p, src) for p, src in prepared if gray_std(p) >= MIN_STD]
    orig_paths = [p for p, _ in prepared]
    for p, src in prepared:
        origin_of[str(p)] = src

    # Duplicates already among the originals: both pHash and the network must call them the same.
    hashes = phash_bits(orig_paths)
    ph = phash_similarity(hashes).astype(np.float32)
    emb, _ = plain_embeddings(orig_paths)
    e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    cos = e @ e.T
    ii, jj = np.nonzero(np.triu((ph >= 1 - 10 / 64) & (cos >= 0.9), 1))
    drop, removed = set(), []
    for i, j in zip(ii, jj):
        if i in drop or j in drop:
            continue
        drop.add(int(j))
        removed.append((Path(origin_of[str(orig_paths[i])]).name, Path(origin_of[str(orig_paths[j])]).name,
                        float(ph[i, j]), float(cos[i, j])))
    log(f"removed {len(drop)} originals that duplicate another original (pHash sim >= {1 - 10 / 64:.3f} "
        f"and network cosine >= 0.9): {removed}")
    keep = [p for k, p in enumerate(orig_paths) if k not in drop]

    copy_dir = folder / "copies"
    copy_dir.mkdir(exist_ok=True)

    def copies_of(g_p):
        g, p = g_p
        img = load_rgb(p)
        rows = [{"path": str(p.relative_to(folder)), "group": g, "family": "original", "name": "original"}]
        for name, family, im, fmt in make_copies(img, seed * 100003 + g):
            if float(np.asarray(im.convert("L"), np.float32).std()) < MIN_COPY_STD:
                # e.g. a crop that kept only the black sky: not recognisable as a copy of anything.
                blank.append(f"g{g:04d}_{name}")
                continue
            q = save(im, copy_dir / f"g{g:04d}_{name}", fmt)
            rows.append({"path": str(q.relative_to(folder)), "group": g, "family": family, "name": name})
        return rows

    blank: list[str] = []
    with ThreadPoolExecutor(2) as pool:
        rows = [r for rs in pool.map(copies_of, enumerate(keep)) for r in rs]
    log(f"left out {len(blank)} copies that came out blank (grey std < {MIN_COPY_STD}): {blank}")
    manifest = {"version": DATASET_VERSION, "seed": seed, "n_candidates": len(picked), "n_originals": len(keep),
                "removed": removed, "flat": [Path(src).name for _, src in flat], "blank_copies": blank, "rows": rows,
                "origins": {str(Path(p).relative_to(folder)): origin_of[str(p)] for p in keep}}
    (folder / "images.txt").write_text("".join(r["path"] + "\n" for r in rows))
    groups: dict[int, list[str]] = {}
    for r in rows:
        groups.setdefault(r["group"], []).append(r["path"])
    (folder / "groups.json").write_text(json.dumps({"groups": list(groups.values())}))
    manifest_path.write_text(json.dumps(manifest))
    return manifest


# ------------------------------------------------------------------------------------------
# The plain network and its variants (onnxruntime on the ONNX file, nothing from dupscope)
# ------------------------------------------------------------------------------------------
def onnx_file() -> str:
    return str(ROOT / "python/dupscope/models/efficientnet_lite0.onnx")


def session(model):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def feature_model_bytes() -> bytes:
    """The same network with its last feature map (before global pooling) as a second output and
    dynamic height/width, so one run gives the pooled embedding and what GeM/max pooling need."""
    import onnx

    m = onnx.load(onnx_file())
    g = m.graph
    pool = next(n for n in g.node if n.op_type == "GlobalAveragePool")
    feat = pool.input[0]
    g.output.append(onnx.helper.make_tensor_value_info(feat, onnx.TensorProto.FLOAT, ["batch", 1280, "fh", "fw"]))
    # A mid-level map as well (block 7: 80 channels at 1/16 resolution): copy detection favours
    # less semantic features than the classifier's input.
    g.output.append(onnx.helper.make_tensor_value_info(MID_LAYER, onnx.TensorProto.FLOAT, ["batch", 80, "mh", "mw"]))
    dims = g.input[0].type.tensor_type.shape.dim
    for k, name in ((2, "height"), (3, "width")):
        dims[k].ClearField("dim_value")
        dims[k].dim_param = name
    del g.value_info[:]
    g.output[0].type.tensor_type.shape.dim[1].dim_value = 1280
    return m.SerializeToString()


def standardise(im: Image.Image) -> np.ndarray:
    """Per-image contrast normalisation: grey-level mean/std of the picture moved to 0.45/0.225
    (the ImageNet range) with one affine map for all channels, so colours keep their balance. A
    dark astronomy photo (a small object on black) then fills the network's input range."""
    a = np.asarray(im, np.float32)
    a = (a - a.mean()) / max(float(a.std()), 1.0) * (0.225 * 255) + 0.45 * 255
    return np.clip(a, 0, 255).astype(np.uint8)


def to_input(imgs: list) -> np.ndarray:
    x = np.stack([np.asarray(im, np.float32) for im in imgs]) / 255.0
    return np.ascontiguousarray(((x - MEAN) / STD).transpose(0, 3, 1, 2))


def plain_embeddings(paths, batch: int = 32):
    """The plain use of the network: decode, resize to 224x224 (bilinear), ImageNet normalisation,
    the ONNX file's pooled output. Returns (embeddings, seconds)."""
    sess = session(onnx_file())
    out = []
    t0 = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        for b in range(0, len(paths), batch):
            imgs = list(pool.map(lambda p: load_rgb(Path(p)).resize((224, 224), Image.Resampling.BILINEAR),
                                 paths[b:b + batch]))
            out.append(sess.run(["embedding"], {"input": to_input(imgs)})[0])
    return np.concatenate(out), time.perf_counter() - t0


def l2(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def whiten(emb: np.ndarray, dims: int) -> np.ndarray:
    """Centre, project on the top principal axes of this data set and scale each to unit variance."""
    x = l2(np.asarray(emb, np.float64))
    x = x - x.mean(0)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    d = min(dims, len(s))
    return ((x @ vt[:d].T) / np.maximum(s[:d], 1e-9)).astype(np.float32)


def dct_flip_invariant(dct: np.ndarray) -> np.ndarray:
    """dct32 made mirror-invariant: a horizontal flip negates the coefficients of odd horizontal
    frequency (entry k is frequency (v, u) = divmod(k + 1, 8)), so keep only their magnitude."""
    out = np.array(dct, np.float32, copy=True)
    odd = (np.arange(1, out.shape[1] + 1) % 8) % 2 == 1
    out[:, odd] = np.abs(out[:, odd])
    return out


def gem(feat: np.ndarray, p: float = 3.0) -> np.ndarray:
    """Generalised mean pooling over the spatial axes (features clamped positive first)."""
    return np.mean(np.clip(feat, 1e-6, None) ** p, axis=(2, 3)) ** (1.0 / p)


def network_variants(paths, batch: int = 32, log=print, all_views: bool = False) -> tuple[dict, dict]:
    """Embeddings of every network variant from one decode of each image.

    Returns (embeddings by variant name, model seconds by view name) plus decode time under
    ``"decode"``.
    """
    sess = session(feature_model_bytes())
    plain_sess = session(onnx_file())
    views = {
        "224": lambda im: im.resize((224, 224), Image.Resampling.BILINEAR),
        "224flip": lambda im: ImageOps.mirror(im).resize((224, 224), Image.Resampling.BILINEAR),
        "288": lambda im: im.resize((288, 288), Image.Resampling.BILINEAR),
        "224std": lambda im: standardise(im.resize((224, 224), Image.Resampling.BILINEAR)),
    }
    if all_views:
        views["crop80"] = (lambda im: im.crop((im.width * 0.1, im.height * 0.1, im.width * 0.9, im.height * 0.9))
                           .resize((224, 224), Image.Resampling.BILINEAR))
    acc: dict[str, list] = {}
    seconds = {k: 0.0 for k in views}
    seconds["decode"] = 0.0
    seconds["resize224"] = 0.0
    checked = False

    def prep(p):
        t = time.perf_counter()
        im = load_rgb(Path(p))
        t1 = time.perf_counter()
        out = {}
        for name, fn in views.items():
            s = time.perf_counter()
            out[name] = fn(im)
            if name == "224":
                out["_t224"] = time.perf_counter() - s
        return out, t1 - t

    with ThreadPoolExecutor(2) as pool:
        for b in range(0, len(paths), batch):
            t0 = time.perf_counter()
            prepared = list(pool.map(prep, paths[b:b + batch]))
            # Decoding runs in two threads: wall time of the batch is what a pipeline pays.
            seconds["decode"] += time.perf_counter() - t0
            seconds["resize224"] += sum(p[0]["_t224"] for p in prepared) / 2
            for name in views:
                x = to_input([p[0][name] for p in prepared])
                t = time.perf_counter()
                pooled, feat, mid = sess.run(None, {"input": x})
                seconds[name] += time.perf_counter() - t
                if name == "224" and not checked:
                    ref = plain_sess.run(["embedding"], {"input": x})[0]
                    diff = float(np.abs(ref - pooled).max())
                    log(f"feature-map model vs the ONNX file on the first batch: max |diff| {diff:.2e}")
                    assert diff < 1e-3
                    checked = True
                acc.setdefault(f"{name}/avg", []).append(pooled)
                acc.setdefault(f"{name}/gem", []).append(gem(feat))
                acc.setdefault(f"{name}/midgem", []).append(gem(mid))
                if name == "224":
                    acc.setdefault(f"{name}/max", []).append(feat.max(axis=(2, 3)))
                    acc.setdefault(f"{name}/gem2", []).append(gem(feat, 2.0))
                    acc.setdefault(f"{name}/gem4", []).append(gem(feat, 4.0))
            if b // batch % 20 == 0:
                log(f"  network variants: {b + len(prepared)}/{len(paths)}")
    return {k: np.concatenate(v) for k, v in acc.items()}, seconds


def time_plain_file(paths, n: int = 256, batch: int = 32) -> float:
    """Seconds per image of the unmodified ONNX file on 224 inputs (model only)."""
    sess = session(onnx_file())
    imgs = [load_rgb(Path(p)).resize((224, 224), Image.Resampling.BILINEAR) for p in paths[:n]]
    xs = [to_input(imgs[b:b + batch]) for b in range(0, len(imgs), batch)]
    sess.run(["embedding"], {"input": xs[0]})  # warm-up
    t = time.perf_counter()
    for x in xs:
        sess.run(["embedding"], {"input": x})
    return (time.perf_counter() - t) / len(imgs)


def time_model_pair(paths, n: int = 256, batch: int = 32) -> tuple[float, float]:
    """Seconds per image, model only, of efficientnet-lite0 and dupscope-v1 on the same batches
    (alternating, best of three passes each), so a shared machine's load affects both alike."""
    from dupscope.models import get_model

    sessions = [session(get_model(name).path) for name in ("efficientnet-lite0", "dupscope-v1")]
    imgs = [load_rgb(Path(p)).resize((224, 224), Image.Resampling.BILINEAR) for p in paths[:n]]
    xs = [to_input(imgs[b:b + batch]) for b in range(0, len(imgs), batch)]
    best = [float("inf"), float("inf")]
    for s in sessions:
        s.run(None, {"input": xs[0]})  # warm-up
    for _ in range(3):
        for k, s in enumerate(sessions):
            t = time.perf_counter()
            for x in xs:
                s.run(None, {"input": x})
            best[k] = min(best[k], (time.perf_counter() - t) / len(imgs))
    return best[0], best[1]


def whitening_sweep(paths, rows, log, sizes=(6, 12, 20, 30, 45, 70, 100, 1000), seeds=(0, 1, 2)) -> list[str]:
    """AP of dupscope-v1 on random subsets of groups, with and without whitening, to choose the
    smallest data set whitening is applied to (``Fusion.min_whiten``).

    The raw two-branch embeddings come from ``dupscope.embed.embed_images`` (dupscope's decoder);
    each subset is post-processed on its own by ``dupscope.postprocess.fuse_embeddings`` with
    whitening forced on or off. Three regimes: *all copies* (each group whole: 18 images), *5
    copies* and *2 copies* (the original and that many random copies: fewer duplicates per
    image, closer to real data). A size above the number of groups means all of them.
    """
    import dataclasses

    from dupscope.embed import embed_images
    from dupscope.models import get_model
    from dupscope.postprocess import fuse_embeddings

    spec = get_model("dupscope-v1")
    res = embed_images(paths, spec, device="cpu")
    on = dataclasses.replace(spec.fusion, min_whiten=0)
    off = dataclasses.replace(spec.fusion, min_whiten=10**12)
    groups = sorted({r["group"] for r in rows})
    by_group: dict[int, list[int]] = {}
    for k, r in enumerate(rows):
        by_group.setdefault(r["group"], []).append(k)
    lines = ["Whitening sweep (dupscope-v1 on random subsets of groups, mean AP over "
             f"{len(seeds)} draws; whitened / centred only):"]
    for regime, per in (("all copies", None), ("5 copies", 5), ("2 copies", 2)):
        for g in sizes:
            g = min(g, len(groups))
            aps = {"on": [], "off": []}
            thr = {"on": [], "off": []}
            n_img = 0
            draws = seeds[:1] if (per is None and g == len(groups)) else seeds  # the same set every time
            for seed in draws:
                rng = random.Random(seed * 1000 + g)
                pick = rng.sample(groups, g)
                idx = []
                for gr in pick:
                    members = by_group[gr]
                    if per is None:
                        idx += members
                    else:
                        idx += [members[0]] + rng.sample(members[1:], min(per, len(members) - 1))
                idx = np.array(sorted(idx))
                n_img = len(idx)
                sc = Scorer([rows[k] for k in idx])
                for key, fu in (("on", on), ("off", off)):
                    fused = fuse_embeddings(res.embeddings[idx], res.ok[idx], fu).embeddings
                    r = sc(cosine_sim16(fused))["groups"]
                    aps[key].append(r.average_precision)
                    thr[key].append(r.threshold_at_precision)
            line = (f"  {regime}, {g} groups (~{n_img} images): AP whitened {np.mean(aps['on']):.3f}, "
                    f"centred only {np.mean(aps['off']):.3f} (P0.95 thresholds {np.nanmean(thr['on']):.3f} / "
                    f"{np.nanmean(thr['off']):.3f})")
            log(line)
            lines.append(line)
    return lines


# ------------------------------------------------------------------------------------------
# Scoring
# ------------------------------------------------------------------------------------------
class Scorer:
    """Metrics of an (N, N) similarity matrix on both protocols, and recall per family."""

    def __init__(self, rows: list[dict], astro_groups: set | None = None):
        self.rows = rows
        n = len(rows)
        group = np.array([r["group"] for r in rows])
        astro = np.isin(group, sorted(astro_groups or ()))
        orig = np.array([r["family"] == "original" for r in rows])
        self.iu = np.triu_indices(n, 1)
        i, j = self.iu
        self.same = group[i] == group[j]
        # copies protocol: leave out copy-copy pairs of one group.
        self.keep_b = ~(self.same & ~orig[i] & ~orig[j])
        # Photos only: pairs where neither image comes from an astronomy original.
        self.photo = ~astro[i] & ~astro[j]
        self.astro = astro[i] & astro[j]
        first = {}
        for k, r in enumerate(rows):
            if r["family"] == "original":
                first[r["group"]] = k
        self.oc = np.array([(first[r["group"]], k) for k, r in enumerate(rows) if r["family"] != "original"])
        self.oc_family = np.array([r["family"] for r in rows if r["family"] != "original"])
        self.oc_name = np.array([r["name"] for r in rows if r["family"] != "original"])

    def __call__(self, sim16: np.ndarray) -> dict:
        from dupscope.evaluate import evaluate_scores

        vals = sim16[self.iu]
        a = evaluate_scores(vals, vals[self.same], n_images=len(self.rows), source="groups")
        vb = vals[self.keep_b]
        b = evaluate_scores(vb, vb[self.same[self.keep_b]], n_images=len(self.rows), source="copies")
        sub = {}
        for key, mask in (("photos", self.photo), ("astro", self.astro)):
            if mask.any() and self.same[mask].any():
                vs = vals[mask]
                sub[key] = evaluate_scores(vs, vs[self.same[mask]], source=key)
        t = a.threshold_at_precision
        oc = sim16[self.oc[:, 0], self.oc[:, 1]].astype(np.float32)
        fam = {}
        for f in FAMILIES:
            m = self.oc_family == f
            fam[f] = float((oc[m] >= t).mean()) if m.any() and not np.isnan(t) else 0.0
        names = {}
        for nm in np.unique(self.oc_name):
            m = self.oc_name == nm
            names[str(nm)] = float((oc[m] >= t).mean()) if not np.isnan(t) else 0.0
        return {"groups": a, "copies": b, "family": fam, "names": names, **sub}

    def top_false_positives(self, sim16: np.ndarray, k: int = 8) -> list:
        vals = sim16[self.iu].astype(np.float32)
        vals[self.same] = -1
        top = np.argsort(-vals)[:k]
        i, j = self.iu
        return [(self.rows[i[t]]["path"], self.rows[j[t]]["path"], float(vals[t])) for t in top]


def cosine_sim16(emb: np.ndarray, mapping: str = "(1+cos)/2") -> np.ndarray:
    e = l2(np.asarray(emb, np.float32))
    c = e @ e.T
    if mapping == "(1+cos)/2":
        s = (1.0 + c) * 0.5
    elif mapping == "cos":
        s = c
    else:
        raise ValueError(mapping)
    np.fill_diagonal(s, 1.0)
    return s.astype(np.float16)


def read_dense(h5: Path) -> np.ndarray:
    import dupscope

    with dupscope.SimilarityFile(h5) as f:
        return f.similarity[()], (f.embeddings[()].astype(np.float32) if f.embeddings is not None else None)


# ------------------------------------------------------------------------------------------
def main() -> int:
    reexec_without_blas_overrides()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(ROOT / "bench-data"))
    ap.add_argument("--originals", type=int, default=160)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/ACCURACY.md"))
    ap.add_argument("--no-variants", action="store_true", help="skip the network variants")
    ap.add_argument("--models", default="efficientnet-lite0,dct32,dupscope-v1",
                    help="dupscope built-in models to run through compute_similarity (comma-separated)")
    ap.add_argument("--no-sweep", action="store_true",
                    help="skip the dupscope-v1 whitening sweep over data-set sizes")
    ap.add_argument("--all-views", action="store_true",
                    help="also the centre-crop view (one more network pass over every image)")
    args = ap.parse_args()

    import onnxruntime
    import PIL

    import dupscope
    from dupscope.evaluate import evaluate
    from dupscope.pipeline import compute_similarity

    t_start = time.perf_counter()
    log_lines: list[str] = []

    def log(msg: str) -> None:
        print(msg, flush=True)
        log_lines.append(msg)

    machine = (f"CPU: {cpu_model()}, {os.cpu_count()} logical cores (shared with other jobs: timings are noisy); "
               f"Python {sys.version.split()[0]}, numpy {np.__version__}, onnxruntime {onnxruntime.__version__}, "
               f"Pillow {PIL.__version__}, dupscope {dupscope.__version__}")
    try:
        import imagehash
        machine += f", imagehash {imagehash.__version__}"
    except ImportError:
        imagehash = None
    log(machine)

    data = Path(args.data)
    manifest = build_dataset(data, args.originals, args.seed, log)
    folder = data / f"accuracy-v{DATASET_VERSION}-n{args.originals}-s{args.seed}"
    rows = manifest["rows"]
    paths = [str(folder / r["path"]) for r in rows]
    n = len(rows)
    log(f"{manifest['n_originals']} originals (of {manifest['n_candidates']} candidates; "
        f"{len(manifest['removed'])} removed as duplicates of another original), {n} images, "
        f"{n - manifest['n_originals']} copies")
    astro_groups = {r["group"] for r in rows if r["family"] == "original"
                    and "stellarium" in manifest["origins"].get(r["path"], "")}
    scorer = Scorer(rows, astro_groups)
    results: dict[str, dict] = {}
    speed: dict[str, str] = {}
    notes: list[str] = []
    embeddings: dict[str, np.ndarray] = {}
    pipeline_rate: dict[str, float] = {}
    default_sim = None

    # dupscope itself, through the real code path: compute_similarity -> HDF5 -> evaluate().
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            h5 = Path(tmp) / f"{model}.h5"
            summary = compute_similarity(folder / "images.txt", h5, model=model, dense=True,
                                         keep_embeddings=True, progress=False)
            r = evaluate(h5, folder / "groups.json")
            sim, emb = read_dense(h5)
            res = scorer(sim)
            assert abs(res["groups"].average_precision - r.average_precision) < 1e-9, "evaluate() disagrees"
            results[f"dupscope {model}"] = res
            embeddings[model] = emb
            speed[f"dupscope {model}"] = f"{summary['images_per_second']:.0f} img/s (pipeline)"
            pipeline_rate[model] = summary["images_per_second"]
            if model == "dupscope-v1":
                import h5py

                with h5py.File(h5, "r") as hf:
                    post_attr = str(hf.attrs.get("embedding_postprocess", ""))
                notes.append(f"`dupscope-v1` file's `embedding_postprocess`: {post_attr}")
                log(f"dupscope-v1 post-processing: {post_attr}")
                from dupscope.threshold import nearest_neighbor_similarity, suggest_threshold

                sug = suggest_threshold(nearest_neighbor_similarity(h5))
                log(f"suggest_threshold on the dupscope-v1 file: {sug.threshold:.4f} ({sug.method}); best-F1 "
                    f"threshold {r.best_f1_threshold:.4f}, P0.95 threshold {r.threshold_at_precision:.4f}")
                notes.append(f"`suggest_threshold` on the dupscope-v1 file: {sug.threshold:.4f} ({sug.method}); "
                             f"its best-F1 threshold is {r.best_f1_threshold:.4f}, P0.95 threshold "
                             f"{r.threshold_at_precision:.4f}.")
                notes.append("Highest-scoring false pairs of dupscope-v1: " + "; ".join(
                    f"{a} vs {b}: {v:.4f}" for a, b, v in scorer.top_false_positives(sim, k=5)))
            log(f"dupscope {model}: AP {r.average_precision:.4f}, R@P95 {r.recall_at_precision:.4f}, "
                f"{summary['images_per_second']:.0f} img/s")
            if model == "efficientnet-lite0":
                default_sim = sim
                from dupscope.evaluate import plot_pr_curve
                from dupscope.threshold import nearest_neighbor_similarity, suggest_threshold

                plot_pr_curve(r, data / "accuracy-pr-default.png", title="dupscope efficientnet-lite0")
                sug = suggest_threshold(nearest_neighbor_similarity(h5))
                log(f"suggest_threshold on this file: {sug.threshold:.4f} ({sug.method}); best-F1 threshold "
                    f"{r.best_f1_threshold:.4f}, P0.95 threshold {r.threshold_at_precision:.4f}")
                notes.append(f"`suggest_threshold` (no ground truth) on the efficientnet-lite0 file: {sug.threshold:.4f} "
                             f"({sug.method}); the best-F1 threshold is {r.best_f1_threshold:.4f}. "
                             f"Reasoning given: {sug.reasoning}")

    if "efficientnet-lite0" in pipeline_rate and "dupscope-v1" in pipeline_rate:
        ratio = pipeline_rate["efficientnet-lite0"] / pipeline_rate["dupscope-v1"]
        speed["dupscope dupscope-v1"] += f", {ratio:.2f}x the time of efficientnet-lite0"
    if "dupscope-v1" in args.models.split(","):
        net_s, v1_s = time_model_pair(paths)
        msg = (f"model only, same batches: efficientnet-lite0 {net_s * 1e3:.2f} ms/img, dupscope-v1 "
               f"{v1_s * 1e3:.2f} ms/img ({v1_s / net_s:.2f}x)")
        log(msg)
        notes.append(msg)
        if not args.no_sweep:
            for line in whitening_sweep(paths, rows, log):
                notes.append(line)

    # pHash.
    if imagehash is not None:
        t = time.perf_counter()
        h = phash_bits(paths)
        dt = time.perf_counter() - t
        results["imagehash pHash"] = scorer(phash_similarity(h))
        speed["imagehash pHash"] = f"{n / dt:.0f} img/s"
        log(f"pHash done ({n / dt:.0f} img/s)")
    try:
        import imagededup  # noqa: F401
        notes.append("imagededup imported, but its hashes are not wired into this script yet.")
    except ImportError:
        notes.append("imagededup: not installed in this environment (it pulls a multi-GB torch), skipped.")

    # The plain network and its variants from one decode per image.
    plain_s = time_plain_file(paths)
    if not args.no_variants:
        var, secs = network_variants(paths, log=log, all_views=args.all_views)
        decode_per = secs["decode"] / n
        model224 = secs["224"] / n
        speed["plain network"] = (f"{1 / (decode_per + model224):.0f} img/s (decode+resize {decode_per * 1e3:.1f} ms, "
                                  f"model {model224 * 1e3:.1f} ms/img; file alone {plain_s * 1e3:.1f} ms/img)")

        def cost(*views):
            m = sum(secs[v] for v in views) / n
            return (decode_per + m) / (decode_per + model224)

        e224 = var["224/avg"]
        results["plain network"] = scorer(cosine_sim16(e224))
        log(f"plain network: AP {results['plain network']['groups'].average_precision:.4f}")
        variants = {
            "GeM p=3": (var["224/gem"], cost("224")),
            "GeM p=2": (var["224/gem2"], cost("224")),
            "GeM p=4": (var["224/gem4"], cost("224")),
            "max pooling": (var["224/max"], cost("224")),
            "input 288": (var["288/avg"], cost("288")),
            "input 288 GeM": (var["288/gem"], cost("288")),
            "multi-scale 224+288": (l2(var["224/avg"]) + l2(var["288/avg"]), cost("224", "288")),
            "flip averaging": (l2(var["224/avg"]) + l2(var["224flip/avg"]), cost("224", "224flip")),
            "flip averaging GeM": (l2(var["224/gem"]) + l2(var["224flip/gem"]), cost("224", "224flip")),
            "centred (minus dataset mean)": (l2(e224) - l2(e224).mean(0), cost("224")),
            "GeM p=3, centred": (l2(var["224/gem"]) - l2(var["224/gem"]).mean(0), cost("224")),
            "flip avg GeM, centred": (None, cost("224", "224flip")),
        }
        if "crop80/avg" in var:
            variants["full + centre crop 80%"] = (l2(var["224/avg"]) + l2(var["crop80/avg"]), cost("224", "crop80"))
        variants["power norm (signed sqrt)"] = (np.sign(e224) * np.sqrt(np.abs(e224)), cost("224"))
        variants[f"centred + PCA whitening ({min(256, n // 8)}-d)"] = (whiten(e224, min(256, n // 8)), cost("224"))
        variants["centred + PCA whitening (64-d)"] = (whiten(e224, 64), cost("224"))
        variants["block-7 GeM"] = (var["224/midgem"], cost("224"))
        variants["block-7 GeM, whitened 64-d"] = (whiten(var["224/midgem"], 64), cost("224"))
        variants["standardised input"] = (var["224std/avg"], cost("224std"))
        variants["standardised input, GeM, whitened 64-d"] = (whiten(var["224std/gem"], 64), cost("224std"))
        variants["standardised input, block-7 GeM"] = (var["224std/midgem"], cost("224std"))
        variants["standardised input, block-7 GeM, whitened 64-d"] = (whiten(var["224std/midgem"], 64), cost("224std"))
        embeddings["std_mid_white"] = whiten(var["224std/midgem"], 64)
        fg = l2(var["224/gem"]) + l2(var["224flip/gem"])
        fg = l2(fg)
        variants["flip avg GeM, centred"] = (fg - fg.mean(0), cost("224", "224flip"))
        for name, (e, c) in variants.items():
            results[name] = scorer(cosine_sim16(e))
            speed[name] = f"{c:.2f}x plain (phase 1)"
            log(f"{name}: AP {results[name]['groups'].average_precision:.4f} "
                f"R@P95 {results[name]['groups'].recall_at_precision:.4f}")
        embeddings["plain"] = e224
        embeddings["gem"] = var["224/gem"]
        embeddings["flipgem"] = fg

    # Post-processing of dupscope's own embeddings: centring, combining with dct32, the mapping.
    if "efficientnet-lite0" not in embeddings or "dct32" not in embeddings:
        post_variants = False
    else:
        post_variants = True
    eff = l2(embeddings["efficientnet-lite0"]) if post_variants else None
    dct = l2(embeddings["dct32"]) if post_variants else None
    post: dict = {}
    if post_variants:
        post = {
            "dupscope efficientnet-lite0, centred": eff - eff.mean(0),
            "dupscope efficientnet-lite0, cos in float16 (no [0,1] map)": None,
            "dupscope efficientnet-lite0, float32 scores": None,
        }
        for w in (0.25, 0.5, 0.75, 1.0):
            post[f"concat dct32 w={w:g}"] = np.concatenate([eff, w * dct], axis=1)
        dfi = l2(dct_flip_invariant(embeddings["dct32"]))
        for w in (0.75, 1.0):
            post[f"concat flip-invariant dct32 w={w:g}"] = np.concatenate([eff, w * dfi], axis=1)
        post["dct32 flip-invariant alone"] = dfi
        c_eff = l2(eff - eff.mean(0))
        dct_c = l2(dct - dct.mean(0))
        for w in (0.75, 1.0):
            post[f"centred, concat centred dct32 w={w:g}"] = np.concatenate([c_eff, w * dct_c], axis=1)
        dfi_c = l2(dfi - dfi.mean(0))
        for w in (0.75, 1.0):
            post[f"centred, concat centred flip-inv dct32 w={w:g}"] = np.concatenate([c_eff, w * dfi_c], axis=1)
        if "flipgem" in embeddings:
            fgc = l2(embeddings["flipgem"] - embeddings["flipgem"].mean(0))
            for w in (0.75, 1.0):
                post[f"flip avg GeM centred, concat centred dct32 w={w:g}"] = np.concatenate([fgc, w * dct_c], axis=1)
        if "std_mid_white" in embeddings:
            smw = l2(embeddings["std_mid_white"])
            for w in (0.5, 0.75, 1.0):
                post[f"standardised block-7 GeM whitened + flip-inv dct32 centred w={w:g}"] = np.concatenate(
                    [smw, w * dfi_c], axis=1)
        if "gem" in embeddings:
            g = l2(embeddings["gem"])
            gc = l2(g - g.mean(0))
            for w in (0.75, 1.0):
                post[f"GeM centred, concat centred dct32 w={w:g}"] = np.concatenate([gc, w * dct_c], axis=1)
    dct_cost = 1 + 0.02  # the dct32 graph is ~1000x cheaper than the network; its decode is shared
    for name, e in post.items():
        if name.endswith("(no [0,1] map)"):
            results[name] = scorer(cosine_sim16(eff, mapping="cos"))
        elif name.endswith("float32 scores"):
            c = (eff @ eff.T).astype(np.float32)
            i, j = scorer.iu
            from dupscope.evaluate import evaluate_scores

            vals = c[i, j]
            a = evaluate_scores(vals, vals[scorer.same], n_images=n, source="groups")
            vb = vals[scorer.keep_b]
            b = evaluate_scores(vb, vb[scorer.same[scorer.keep_b]], n_images=n, source="copies")
            results[name] = {"groups": a, "copies": b, "family": {f: float("nan") for f in FAMILIES}, "names": {}}
        else:
            results[name] = scorer(cosine_sim16(e))
        if name.startswith("flip avg") and "flip averaging GeM" in speed:
            speed[name] = speed["flip averaging GeM"] + " + dct32"
        else:
            speed[name] = "1.00x dupscope" if "dct" not in name else f"~{dct_cost:.2f}x dupscope"
        log(f"{name}: AP {results[name]['groups'].average_precision:.4f} "
            f"R@P95 {results[name]['groups'].recall_at_precision:.4f}")

    fps = scorer.top_false_positives(default_sim) if default_sim is not None else []
    elapsed = time.perf_counter() - t_start
    write_report(args.out, machine, manifest, n, results, speed, notes, fps, elapsed, log_lines)
    log(f"wrote {args.out} in {elapsed:.0f} s total")
    return 0


def fmt(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.4f}"


def write_report(out, machine, manifest, n, results, speed, notes, fps, elapsed, log_lines):
    header = ["method", "AP", "R@P0.95", "best F1", "@ threshold", "P0.95 threshold", "AP (copies)",
              "R@P0.95 (copies)", "AP photos", "R@P0.95 photos", "AP astro", "R@P0.95 astro", "speed"]
    rows = []
    for name, r in results.items():
        a, b = r["groups"], r["copies"]
        rows.append([name, fmt(a.average_precision), fmt(a.recall_at_precision), fmt(a.best_f1),
                     fmt(a.best_f1_threshold), fmt(a.threshold_at_precision), fmt(b.average_precision),
                     fmt(b.recall_at_precision)]
                    + [fmt(getattr(r.get(k), f, None)) for k in ("photos", "astro")
                       for f in ("average_precision", "recall_at_precision")]
                    + [speed.get(name, "")])
    fam_rows = []
    for name, r in results.items():
        if all(np.isnan(v) for v in r["family"].values()):
            continue
        fam_rows.append([name] + [f"{r['family'][f]:.2f}" for f in FAMILIES])
    copy_names = sorted(next(iter(results.values()))["names"])
    name_rows = [[name] + [f"{r['names'].get(c, float('nan')):.2f}" for c in copy_names]
                 for name, r in results.items() if r["names"]]
    text = [
        "# Near-duplicate accuracy (benchmarks/bench_accuracy.py)",
        "",
        f"Machine: {machine}.",
        "",
        f"Data: {manifest['n_originals']} originals ({manifest['n_candidates']} candidates from Debian "
        f"stellarium-data astronomy photos, Debian wallpapers and the scikit-image/scikit-learn sample photos, "
        f"shrunk to at most {MAX_SIDE} px; {len(manifest['removed'])} removed as duplicates of another original "
        f"by pHash and network, {len(manifest.get('flat', []))} left out as nearly uniform), 17 copies each "
        f"({len(manifest.get('blank_copies', []))} copies left out as blank): {n} images, "
        f"{next(iter(results.values()))['groups'].n_true_pairs} true pairs (groups protocol), "
        f"{next(iter(results.values()))['copies'].n_true_pairs} original-copy pairs. Run time {elapsed:.0f} s.",
        "",
        "AP = average precision, R@P0.95 = recall at precision >= 0.95, on the *groups* protocol (every two "
        "images of a group are a true pair) unless marked *(copies)* (only original-copy pairs true, copy-copy "
        "pairs left out). *photos* / *astro*: groups protocol restricted to pairs of images that both come from "
        "non-astronomy (wallpapers, sample photos) / astronomy originals. All pairs of the N images are "
        "candidates; scores are float16 as dupscope stores them.",
        "",
        table(rows, header),
        "",
        "## Recall per transform family (original-copy pairs, at each method's P0.95 threshold)",
        "",
        table(fam_rows, ["method"] + FAMILIES),
        "",
        "## Recall per copy (same threshold)",
        "",
        table(name_rows, ["method"] + copy_names),
        "",
        "## Highest-scoring false pairs of dupscope efficientnet-lite0 (the former default)",
        "",
    ]
    text += [f"- {a} vs {b}: {s:.4f}" for a, b, s in fps]
    text += ["", "## Notes", ""] + [f"- {x}" for x in notes]
    if manifest["removed"]:
        text += ["", "Originals removed as duplicates (source names, pHash similarity, cosine): "
                 + "; ".join(f"{a} ~ {b} ({p:.3f}, {c:.3f})" for a, b, p, c in manifest["removed"])]
    text += ["", "<details><summary>log</summary>", "", "```"] + log_lines + ["```", "</details>"]
    # Only the part between the markers is regenerated: what is written around it (the analysis)
    # survives a re-run.
    begin, end = "<!-- results: written by bench_accuracy.py -->", "<!-- /results -->"
    block = begin + "\n" + "\n".join(text) + "\n" + end
    path = Path(out)
    old = path.read_text() if path.exists() else ""
    if begin in old and end in old:
        new = old[: old.index(begin)] + block + old[old.index(end) + len(end):]
    else:
        new = block + "\n" + old
    path.write_text(new)


if __name__ == "__main__":
    sys.exit(main())
