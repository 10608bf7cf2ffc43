"""Near-duplicate accuracy: dupscope's models vs pHash vs the plain network, on real photos.

The benchmark is built from real photos that install offline (``benchmarks/accuracy_setup.sh``
unpacks Debian's stellarium-data astronomy photos and two wallpaper packages into bench-data/;
scikit-image's and scikit-learn's sample photos come from their wheels):

1. Pick originals (a fixed random sample), shrink them to at most 512 px (keeps the run short),
   and drop originals that are already duplicates of each other (very high similarity by both
   pHash and the plain network).
2. Make 17 copies of each original: resize 0.5x/0.25x, JPEG q50/q20, crops 90%/75%, brightness
   x1.3/x0.7, contrast x1.5, rotations 3/-5 degrees, horizontal flip, text watermark, border,
   grayscale, blur. An original and its copies form a group; the ground truth is known by
   construction. Different astronomy photos that look alike are the hard negatives.
3. Measure, in one run: dupscope (``compute_similarity`` then ``dupscope.evaluate.evaluate``)
   with each built-in model; imagehash pHash (similarity 1 - hamming / 64); imagededup's four
   hashes (PHash, DHash, WHash, AHash), in this process if it imports, else through
   ``benchmarks/imagededup_hashes.py`` in the virtual environment ``accuracy_setup.sh`` makes for
   it (bench-data/idd-venv), left out when neither is there (the hashes are kept in the data
   set's folder as ``imagededup.json`` and reused); the plain network (the ONNX file run by onnxruntime on a plain 224x224 resize,
   cosine of its pooled embedding); then each step from the plain network to ``dupscope-v3``
   (pooling of the head, flip averaging, centring, whitening, which inner feature map to join
   to the head: the former default's block-14 GeM and the expansion layers of blocks 7-11 and 13, the
   two branches joined, neighbour augmentation), all from one decode of each image, the data-set
   steps done by the shipped ``dupscope.fusion.fuse_embeddings``.
4. A subset sweep: ``dupscope-v3``'s raw embeddings (``dupscope.embed.embed_images``) of random
   subsets of the groups, each post-processed on its own by the shipped rule (whitening axes from
   the estimated number of distinct pictures) and by alternatives (the earlier N // 16 rule, no
   whitening, a fixed 128 axes, no neighbour augmentation, a higher link threshold for the
   picture count), in two regimes: every copy of each picture, and the original + 2 copies.

Two protocols are reported. *groups*: every pair within a group is a true pair (copy vs copy
too), every other pair a false one (what ``dupscope evaluate`` computes for a groups file).
*copies*: only original-copy pairs are true; copy-copy pairs are left out. Recall per transform
family is over original-copy pairs at the threshold where the method reaches precision 0.95 on
the groups protocol.

Usage:
    bash benchmarks/accuracy_setup.sh
    python3 benchmarks/bench_accuracy.py [--originals 160] [--seed 0] [--out benchmarks/ACCURACY.md]
    # held-out check on other astronomy originals first, then quote it in the main report:
    python3 benchmarks/bench_accuracy.py --seed 1 --out /tmp/accuracy_seed1.md
    python3 benchmarks/bench_accuracy.py --validation-from /tmp/accuracy_seed1.md
"""

from __future__ import annotations

import argparse
import dataclasses
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
# Bump when the copies or the choice of originals change, so a cached dataset is rebuilt.
# 3: the duplicate-original rule uses the fixed (ReLU6) network.
DATASET_VERSION = 3
MAX_SIDE = 512
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
HEAD = "/_swish_1/Clip_output_0"  # ReLU6 after the head convolution (1280 x 7 x 7), before pooling
# Inner feature maps compared as the head's companion branch: block 14's output (GeM-pooled, the
# former default dupscope-v2) and the expansion activations (1x1 conv + BN + ReLU6) of blocks 7-13,
# max-pooled; block 9's is dupscope-v3's.
B14 = "/_blocks.14/Add_output_0"  # 192 x 7 x 7
EXPANSIONS = {k: f"/_blocks.{k}/_swish/Clip_output_0" for k in (7, 8, 9, 10, 11, 13)}
V3_BLOCK = 9
MIN_STD = 8.0  # originals flatter than this (grey levels) are left out
MIN_COPY_STD = 3.0  # copies flatter than this are left out
FAMILIES = ["resize", "jpeg", "crop", "brightness", "contrast", "rotation", "flip", "watermark",
            "border", "grayscale", "blur"]
TARGET_AP, TARGET_RECALL = 0.99, 0.97
V3 = "dupscope dupscope-v3"
HEADLINE = ["dupscope dupscope-v3", "plain network", "dupscope efficientnet-lite0", "dupscope dct32",
            "imagehash pHash", "imagededup PHash"]
IDD_METHODS = ("PHash", "DHash", "WHash", "AHash")

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
# The plain network and the steps to dupscope-v3 (onnxruntime on the ONNX file; the data-set
# steps are dupscope.fusion.fuse_embeddings, the shipped code)
# ------------------------------------------------------------------------------------------
def onnx_file() -> str:
    return str(ROOT / "python/dupscope/models/efficientnet_lite0.onnx")


def session(model):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def feature_model_bytes() -> bytes:
    """The shipped efficientnet-lite0 file with more outputs: the head activation before the
    global pooling (``HEAD``, 1280 x 7 x 7 at 224 px), block 14's output (``B14``) and the
    expansion activations of :data:`EXPANSIONS`. One run gives the plain pooled embedding and what
    GeM / max pooling need."""
    import onnx

    m = onnx.load(onnx_file())
    g = m.graph
    pool = next(n for n in g.node if n.op_type == "GlobalAveragePool")
    if pool.input[0] != HEAD:
        raise SystemExit(f"{onnx_file()}: the global pooling reads {pool.input[0]!r}, expected {HEAD!r}")
    g.output.append(onnx.helper.make_tensor_value_info(HEAD, onnx.TensorProto.FLOAT, ["batch", 1280, "fh", "fw"]))
    for name in [B14, *EXPANSIONS.values()]:
        g.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    del g.value_info[:]
    g.output[0].type.tensor_type.shape.dim[1].dim_value = 1280
    return m.SerializeToString()


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


def gem(feat: np.ndarray, p: float = 3.0) -> np.ndarray:
    """Generalised mean pooling over the spatial axes (features clamped at 1e-6 first, as in
    tools/build_dup_model.py)."""
    return np.mean(np.maximum(feat, 1e-6) ** p, axis=(2, 3)) ** (1.0 / p)


def network_variants(paths, batch: int = 32, log=print) -> tuple[dict, dict]:
    """Pooled features of the plain 224x224 view and of its mirror image, from one decode of each
    image.

    Returns (features by ``view/pooling`` name, seconds by view name plus ``"decode"``). Poolings:
    ``avg`` (the ONNX file's own output), ``gem`` and ``max`` of the head, ``b14gem`` (GeM of
    block 14), ``b<k>x`` (max of block k's expansion activation). On the first batch the ``avg``
    output is checked against the shipped file's ``embedding`` output and ``[max, b9x]`` against
    its ``dupscope_v3`` output.
    """
    from dupscope.models import get_model

    sess = session(feature_model_bytes())
    feature_names = ["embedding", HEAD, B14, *EXPANSIONS.values()]
    plain_sess = session(onnx_file())
    v3_spec = get_model("dupscope-v3")
    v3_sess = session(v3_spec.path)
    views = {
        "224": lambda im: im.resize((224, 224), Image.Resampling.BILINEAR),
        "224flip": lambda im: ImageOps.mirror(im).resize((224, 224), Image.Resampling.BILINEAR),
    }
    acc: dict[str, list] = {}
    seconds = {k: 0.0 for k in views}
    seconds["decode"] = 0.0
    checked = False

    def prep(p):
        im = load_rgb(Path(p))
        return {name: fn(im) for name, fn in views.items()}

    with ThreadPoolExecutor(2) as pool:
        for b in range(0, len(paths), batch):
            t0 = time.perf_counter()
            prepared = list(pool.map(prep, paths[b:b + batch]))
            # Decoding runs in two threads: the wall time of the batch is what a pipeline pays.
            seconds["decode"] += time.perf_counter() - t0
            for name in views:
                x = to_input([p[name] for p in prepared])
                t = time.perf_counter()
                pooled, head, mid, *expansions = sess.run(feature_names, {"input": x})
                seconds[name] += time.perf_counter() - t
                feats = {"avg": pooled, "gem": gem(head), "max": head.max(axis=(2, 3)), "b14gem": gem(mid)}
                for k, f in zip(EXPANSIONS, expansions):
                    feats[f"b{k}x"] = f.max(axis=(2, 3))
                if name == "224" and not checked:
                    ref = plain_sess.run(["embedding"], {"input": x})[0]
                    d_plain = float(np.abs(ref - pooled).max())
                    v3 = v3_sess.run([v3_spec.output_name], {"input": x})[0]
                    ours = np.concatenate([feats["max"], feats[f"b{V3_BLOCK}x"]], axis=1)
                    d_v3 = float((np.abs(v3 - ours) / np.maximum(np.abs(v3), 1e-3)).max())
                    log(f"first batch: feature model vs efficientnet_lite0.onnx max |diff| {d_plain:.2e}; "
                        f"[max head, block-{V3_BLOCK} expansion max] vs the dupscope_v3 output max relative diff {d_v3:.2e}")
                    assert d_plain < 1e-3 and d_v3 < 1e-3
                    checked = True
                for k, v in feats.items():
                    acc.setdefault(f"{name}/{k}", []).append(v)
            if b // batch % 20 == 0:
                log(f"  network variants: {b + len(prepared)}/{len(paths)}")
    return {k: np.concatenate(v) for k, v in acc.items()}, seconds


def imagededup_hashes(folder: Path, data: Path, log) -> tuple[dict | None, str]:
    """imagededup's hashes of the images of ``folder/images.txt``, in the format of
    ``benchmarks/imagededup_hashes.py`` (method name -> hex strings, ``seconds``, ``version``).

    Read from ``folder/imagededup.json`` when an earlier run left it there for the same number of
    images (the data set's folder is versioned, so the images are the same); else computed in this
    process when imagededup imports, or by running that script with the Python of
    ``bench-data/idd-venv`` (made by accuracy_setup.sh), and saved there. Returns (None, why) when
    neither exists.
    """
    helper = Path(__file__).with_name("imagededup_hashes.py")
    cache = folder / "imagededup.json"
    paths = [folder / line.strip() for line in (folder / "images.txt").read_text().splitlines() if line.strip()]
    if cache.exists():
        res = json.loads(cache.read_text())
        if all(len(res.get(m, ())) == len(paths) for m in IDD_METHODS):
            log(f"imagededup hashes read from {cache} (computed by an earlier run)")
            return res, f"hashes computed by an earlier run of {helper.name} (kept in the data set's folder)"
    try:
        import imagededup
        from imagededup import methods
    except ImportError:
        python = data / "idd-venv/bin/python"
        if not (python.exists() and (data / "idd-venv/.done").exists() and helper.exists()):
            return None, ("imagededup: not importable here and no bench-data/idd-venv (accuracy_setup.sh makes it; "
                          "it pulls a multi-GB torch), not measured.")
        import subprocess

        t = time.perf_counter()
        subprocess.run([str(python), str(helper), str(folder / "images.txt"), str(cache)], check=True,
                       capture_output=True, text=True, timeout=3600)
        log(f"imagededup hashes through {helper.name} in {python.parent.parent}: {time.perf_counter() - t:.0f} s")
        return json.loads(cache.read_text()), f"run by {helper.name} in its own virtual environment (bench-data/idd-venv)"
    res: dict = {"version": getattr(imagededup, "__version__", "?"), "n": len(paths), "seconds": {}}
    for method in IDD_METHODS:
        hasher = getattr(methods, method)(verbose=False)
        t = time.perf_counter()
        res[method] = [hasher.encode_image(image_file=str(p)) for p in paths]
        res["seconds"][method] = time.perf_counter() - t
    cache.write_text(json.dumps(res))
    return res, "imported in this process"


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


def time_model_pair(paths, n: int = 256, batch: int = 32, passes: int = 5) -> tuple[float, float]:
    """Seconds per image, model only, of efficientnet-lite0 and dupscope-v3 on the same batches
    (alternating, best of ``passes`` passes each), so a shared machine's load affects both alike."""
    from dupscope.models import get_model

    # The two models share one file: each reads its own output, from its own session.
    specs = [get_model(name) for name in ("efficientnet-lite0", "dupscope-v3")]
    sessions = [(session(spec.path), [spec.output_name]) for spec in specs]
    imgs = [load_rgb(Path(p)).resize((224, 224), Image.Resampling.BILINEAR) for p in paths[:n]]
    xs = [to_input(imgs[b:b + batch]) for b in range(0, len(imgs), batch)]
    best = [float("inf"), float("inf")]
    for s, out in sessions:
        s.run(out, {"input": xs[0]})  # warm-up
    for _ in range(passes):
        for k, (s, out) in enumerate(sessions):
            t = time.perf_counter()
            for x in xs:
                s.run(out, {"input": x})
            best[k] = min(best[k], (time.perf_counter() - t) / len(imgs))
    return best[0], best[1]


def single_branch(name: str, dim: int, *, whiten_axes: int | None = None):
    """A one-branch Fusion without neighbour augmentation: centring only (``whiten_axes`` None) or
    PCA whitening to exactly ``whiten_axes`` axes (no picture-count estimate)."""
    from dupscope.fusion import Branch, Fusion

    if whiten_axes is None:
        return Fusion(name=name, branches=(Branch(name, dim),), neighbours=0)
    return Fusion(name=name, branches=(Branch(name, dim, whiten=True),), whiten_axes=whiten_axes, neighbours=0)


def n16_axes(n_valid: int) -> int:
    """Whitening axes of the first dupscope-v2 rule: min(160, N // 16), none when that is < 16
    (below 256 images)."""
    d = min(160, n_valid // 16)
    return d if d >= 16 else 0


def v3_rules(n_valid: int) -> dict:
    """The DUPSCOPE_V3 fusion and the alternatives compared with it, for a data set of ``n_valid``
    valid images (the N // 16 rule depends on it)."""
    from dupscope.fusion import DUPSCOPE_V3

    unwhitened = tuple(dataclasses.replace(b, whiten=False) for b in DUPSCOPE_V3.branches)
    return {
        "v3 rule": DUPSCOPE_V3,
        "N/16 rule": dataclasses.replace(DUPSCOPE_V3, name="n16-aug", whiten_axes=n16_axes(n_valid)),
        "centred + aug": dataclasses.replace(DUPSCOPE_V3, name="centred-aug", branches=unwhitened),
        "128 axes + aug": dataclasses.replace(DUPSCOPE_V3, name="fixed128-aug", whiten_axes=128),
        "v3 rule, no aug": dataclasses.replace(DUPSCOPE_V3, name="v3-noaug", neighbours=0),
        # Not a table column: the link threshold of the picture count, reported in its own table.
        "link 0.65": dataclasses.replace(DUPSCOPE_V3, name="v3-link0.65", same_picture_cos=0.65),
    }


SWEEP_COLUMNS = ("v3 rule", "N/16 rule", "centred + aug", "128 axes + aug", "v3 rule, no aug")


def fusion_facts(source) -> dict:
    """{"pictures": int, "axes": [int, ...]} of a FusionResult or of a similarity file's
    ``fusion_pictures`` / ``fusion_axes`` attributes (an h5py attrs mapping)."""
    if hasattr(source, "n_pictures"):
        return {"pictures": int(source.n_pictures), "axes": [int(a) for a in source.axes]}
    return {"pictures": int(source.get("fusion_pictures", 0)), "axes": [int(a) for a in source.get("fusion_axes", [])]}


def pictures_estimated(facts: dict) -> int | None:
    """The distinct-picture estimate the whitening was sized by (None when none was made)."""
    return facts.get("pictures") or None


def axes_used(facts: dict) -> str:
    """Whitened dimensions per branch ("160+160", or "none")."""
    axes = [a for a in facts.get("axes", []) if a]
    return "+".join(map(str, axes)) if axes else "none"


def subset_sweep(paths, rows, log, sizes=(12, 20, 30, 60, 100, None), seeds=(0, 1, 2)) -> dict:
    """AP and R@P0.95 of dupscope-v3 on random subsets of the groups, each subset post-processed
    on its own by the shipped rule (``DUPSCOPE_V3``) and by the alternatives of :func:`v3_rules`.

    The raw embeddings come from one ``dupscope.embed.embed_images(paths, "dupscope-v3")`` run
    (dupscope's decoder); subsets are rows of it. Two regimes: *all copies* (each group whole:
    the original and its up to 17 copies) and *2 copies* (the original and 2 random copies:
    duplicates are rarer, closer to real collections). ``None`` in ``sizes`` means all groups
    (drawn once: every draw would be the same set in the all-copies regime).

    Returns a dict: ``rows``/``header`` (the main table), ``link_rows``/``link_header`` (link
    threshold 0.65 vs the shipped 0.6), ``note`` (the embedding run), ``flags`` (subsets where an
    alternative beat the shipped rule's mean AP by more than 0.01), ``stats`` (per column: worst
    and mean over the rows of the per-row mean AP, worst single draw, where the worst row is),
    ``summary`` (one line of those) and ``per_row`` (the numbers behind each row).
    """
    from dupscope.embed import embed_images
    from dupscope.fusion import DUPSCOPE_V3, fuse_embeddings

    t = time.perf_counter()
    res = embed_images(paths, "dupscope-v3", device="cpu")
    note = f"{len(paths)} images, {int(res.ok.sum())} embedded, {time.perf_counter() - t:.0f} s"
    log("subset sweep: embed_images(paths, 'dupscope-v3'): " + note)
    names = list(v3_rules(len(paths)))
    groups = sorted({r["group"] for r in rows})
    by_group: dict[int, list[int]] = {}
    for k, r in enumerate(rows):
        by_group.setdefault(r["group"], []).append(k)
    header = (["regime", "groups", "images", "pictures est. / true", "N/16 axes"]
              + [f"{name}: AP / R@P0.95" for name in SWEEP_COLUMNS] + ["v3 rule: min AP"])
    link_header = ["regime", "groups", "images", "pictures est. at 0.65 / 0.6 / true",
                   "link 0.65: AP / R@P0.95", "link 0.6 (v3 rule): AP / R@P0.95"]
    out, link_out, flags, per_row = [], [], [], []
    for regime, per in (("all copies", None), ("original + 2 copies", 2)):
        counts = list(dict.fromkeys(len(groups) if size is None else min(size, len(groups)) for size in sizes))
        for g in counts:
            draws = seeds[:1] if (g == len(groups) and per is None) else seeds
            score = {name: ([], []) for name in names}
            n_img, est, est065, n16 = [], [], [], set()
            for seed in draws:
                rng = random.Random(seed * 1000 + g)
                pick = rng.sample(groups, g)
                idx = []
                for gr in pick:
                    members = by_group[gr]
                    idx += members if per is None else [members[0]] + rng.sample(members[1:], min(per, len(members) - 1))
                idx = np.array(sorted(idx))
                n_img.append(len(idx))
                n_valid = int(res.ok[idx].sum())
                n16.add(n16_axes(n_valid))
                sc = Scorer([rows[k] for k in idx])
                for name, fu in v3_rules(n_valid).items():
                    fused = fuse_embeddings(res.embeddings[idx], res.ok[idx], fu, device="cpu")
                    if name == "v3 rule":
                        est.append(pictures_estimated(fusion_facts(fused)))
                    elif name == "link 0.65":
                        est065.append(pictures_estimated(fusion_facts(fused)))
                    r = sc(cosine_sim16(fused.embeddings))["groups"]
                    score[name][0].append(r.average_precision)
                    score[name][1].append(r.recall_at_precision)
            images = f"{int(np.mean(n_img))}" if len(set(n_img)) == 1 else f"{min(n_img)}-{max(n_img)}"
            label = f"{g}" + (" (all)" if g == len(groups) else "")
            row = [regime, label, images, f"{np.mean(est):.1f} / {g}",
                   "/".join(str(d) if d else "none" for d in sorted(n16))]
            row += [f"{np.mean(score[c][0]):.3f} / {np.mean(score[c][1]):.3f}" for c in SWEEP_COLUMNS]
            row += [f"{min(score['v3 rule'][0]):.3f}"]
            log("  sweep " + " | ".join(row) + f" | link 0.65: est {np.mean(est065):.1f}, AP "
                f"{np.mean(score['link 0.65'][0]):.3f} / {np.mean(score['link 0.65'][1]):.3f}")
            out.append(row)
            link_out.append([regime, label, images, f"{np.mean(est065):.1f} / {np.mean(est):.1f} / {g}",
                             f"{np.mean(score['link 0.65'][0]):.3f} / {np.mean(score['link 0.65'][1]):.3f}",
                             f"{np.mean(score['v3 rule'][0]):.3f} / {np.mean(score['v3 rule'][1]):.3f}"])
            per_row.append({"regime": regime, "groups": g, "images": images, "est": float(np.mean(est)),
                            "est065": float(np.mean(est065)),
                            "ap": {k: float(np.mean(v[0])) for k, v in score.items()},
                            "recall": {k: float(np.mean(v[1])) for k, v in score.items()},
                            "min_ap": {k: float(min(v[0])) for k, v in score.items()}})
            mine = float(np.mean(score["v3 rule"][0]))
            better = [f"{name} {np.mean(a):.3f}" for name, (a, _) in score.items()
                      if name != "v3 rule" and np.mean(a) > mine + 0.01]
            if better:
                flags.append(f"{regime}, {g} groups ({images} images): v3 rule AP {mine:.3f}, but " + ", ".join(better))
    stats = {}
    short = {"all copies": "all copies", "original + 2 copies": "orig. + 2"}
    for name in names:
        aps = [r["ap"][name] for r in per_row]
        w = int(np.argmin(aps))
        stats[name] = {"worst": aps[w], "mean": float(np.mean(aps)),
                       "worst_draw": min(r["min_ap"][name] for r in per_row),
                       "worst_at": f"{short[per_row[w]['regime']]}, {per_row[w]['images']} images"}
    summary = (f"Over all {len(per_row)} rows (AP, each row the mean of its draws), worst / mean: " + "; ".join(
        f"{name} {stats[name]['worst']:.3f} ({stats[name]['worst_at']}) / {stats[name]['mean']:.3f}"
        for name in SWEEP_COLUMNS) + ".")
    log("  " + summary)
    assert DUPSCOPE_V3.same_picture_cos == 0.6, "the link table's header names 0.6 as the shipped threshold"
    return {"rows": out, "header": header, "link_rows": link_out, "link_header": link_header, "note": note,
            "flags": flags, "stats": stats, "summary": summary, "per_row": per_row}


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


def cosine_sim16(emb: np.ndarray) -> np.ndarray:
    """(N, N) float16 similarity (1 + cos) / 2, as dupscope's engine stores it."""
    e = l2(np.asarray(emb, np.float32))
    s = (1.0 + e @ e.T) * 0.5
    np.fill_diagonal(s, 1.0)
    return s.astype(np.float16)


def read_dense(h5: Path) -> np.ndarray:
    """The (N, N) float16 scores a file gives every pair: its dense matrix, or for a verified
    file (whose dense matrix holds the engine's similarity) the pair scores of its neighbour
    lists, NaN for pairs not listed (what ``dupscope evaluate`` measures on such a file)."""
    import dupscope
    from dupscope.pairs import neighbor_pairs

    with dupscope.SimilarityFile(h5) as f:
        if not f.verified:
            return f.similarity[()]
        index, sim = f.neighbors()
    a, b, v = neighbor_pairs(index, sim)
    out = np.full((len(index), len(index)), np.nan, np.float16)
    out[a, b] = out[b, a] = v
    np.fill_diagonal(out, 1.0)
    return out


# ------------------------------------------------------------------------------------------
def main() -> int:
    reexec_without_blas_overrides()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(ROOT / "bench-data"))
    ap.add_argument("--originals", type=int, default=160)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/ACCURACY.md"))
    ap.add_argument("--no-variants", action="store_true", help="skip the steps from the plain network to dupscope-v3")
    ap.add_argument("--models", default="efficientnet-lite0,dct32,dupscope-v3",
                    help="dupscope built-in models to run through compute_similarity (comma-separated)")
    ap.add_argument("--no-sweep", action="store_true", help="skip the dupscope-v3 subset sweep")
    ap.add_argument("--validation-from", metavar="REPORT",
                    help="a report written by a separate run of this script (e.g. --seed 1): its headline "
                         "numbers are quoted in a validation section")
    args = ap.parse_args()

    import onnxruntime
    import PIL

    import dupscope
    from dupscope.evaluate import evaluate, plot_pr_curve
    from dupscope.models import DEFAULT_MODEL, get_model
    from dupscope.pipeline import compute_similarity
    from dupscope.fusion import DUPSCOPE_V3, fuse_embeddings
    from dupscope.threshold import nearest_neighbor_similarity, suggest_threshold

    validation = read_headline(args.validation_from) if args.validation_from else None
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
    steps: list[tuple[str, str, float]] = []  # (name, what it changes, phase-1 cost vs plain)
    pipeline_rate: dict[str, float] = {}
    v3_sim = None
    v3_desc: dict = {}
    model_ratio = None
    models = [m for m in args.models.split(",") if m]

    # dupscope itself, through the real code path: compute_similarity -> HDF5 -> evaluate().
    with tempfile.TemporaryDirectory() as tmp:
        for model in models:
            h5 = Path(tmp) / f"{model}.h5"
            summary = compute_similarity(folder / "images.txt", h5, model=model, dense=True,
                                         keep_embeddings=True, progress=False)
            r = evaluate(h5, folder / "groups.json")
            sim = read_dense(h5)
            res = scorer(sim)
            assert abs(res["groups"].average_precision - r.average_precision) < 1e-9, "evaluate() disagrees"
            name = f"dupscope {model}"
            results[name] = res
            pipeline_rate[model] = summary["images_per_second"]
            speed[name] = f"{summary['images_per_second']:.0f} img/s (pipeline)"
            spec = get_model(model)
            if spec.fusion is not None:
                import h5py

                with h5py.File(h5, "r") as hf:
                    post_attr = str(hf.attrs.get("embedding_postprocess", ""))
                    facts = fusion_facts(hf.attrs)
                speed[name] += f", fusion {summary['postprocess_seconds']:.1f} s"
                log(f"{model} post-processing ({summary['postprocess_seconds']:.1f} s): {post_attr}")
                notes.append(f"`{model}` file's `embedding_postprocess` attribute: {post_attr} "
                             f"(took {summary['postprocess_seconds']:.1f} s for {n} images).")
                notes.append(f"Highest-scoring false pairs of {model}: " + "; ".join(
                    f"{a} vs {b}: {v:.4f}" for a, b, v in scorer.top_false_positives(sim, k=6)))
            if model == "dupscope-v3":
                v3_sim, v3_desc = sim, facts
            if model in ("dupscope-v3", "efficientnet-lite0"):
                sug = suggest_threshold(nearest_neighbor_similarity(h5))
                line = (f"`suggest_threshold` (no ground truth) on the {model} file: {sug.threshold:.4f} "
                        f"({sug.method}); the best-F1 threshold is {r.best_f1_threshold:.4f}, the P0.95 threshold "
                        f"{r.threshold_at_precision:.4f}.")
                log(line)
                notes.append(line)
            if model == DEFAULT_MODEL:
                plot_pr_curve(r, data / "accuracy-pr-default.png", title=f"dupscope {model}")
            log(f"dupscope {model}: AP {r.average_precision:.4f}, R@P95 {r.recall_at_precision:.4f}, "
                f"{summary['images_per_second']:.0f} img/s")

    if "dupscope-v3" in models:
        net_s, v3_s = time_model_pair(paths)
        model_ratio = v3_s / net_s
        msg = (f"model only, same 256 images in batches of 32, best of 5 alternating passes: efficientnet-lite0 "
               f"{net_s * 1e3:.2f} ms/img, dupscope-v3 {v3_s * 1e3:.2f} ms/img ({model_ratio:.2f}x)")
        log(msg)
        notes.append(msg + ".")
        speed[V3] += f"; model {model_ratio:.2f}x efficientnet-lite0"
        if "efficientnet-lite0" in pipeline_rate:
            speed[V3] += f", pipeline time {pipeline_rate['efficientnet-lite0'] / pipeline_rate['dupscope-v3']:.2f}x"

    # Hashes.
    if imagehash is not None:
        t = time.perf_counter()
        h = phash_bits(paths)
        dt = time.perf_counter() - t
        results["imagehash pHash"] = scorer(phash_similarity(h))
        speed["imagehash pHash"] = f"{n / dt:.0f} img/s"
        log(f"pHash done ({n / dt:.0f} img/s)")
    try:
        hashes, how = imagededup_hashes(folder, data, log)
    except Exception as exc:  # an optional peer must not lose the run
        hashes, how = None, f"imagededup failed: {exc}"
    if hashes is None:
        notes.append(how)
        log(how)
    else:
        notes.append(f"imagededup {hashes['version']}: {how}; similarity 1 - hamming / 64 of each 64-bit hash.")
        for method in IDD_METHODS:
            codes = np.array([int(h, 16) for h in hashes[method]], dtype=np.uint64)
            name = f"imagededup {method}"
            results[name] = scorer(phash_similarity(codes))
            speed[name] = f"{n / hashes['seconds'][method]:.0f} img/s (hashing only, one thread" + (
                "; timed when the hashes were computed)" if "earlier run" in how else ")")
            log(f"{name}: AP {results[name]['groups'].average_precision:.4f}")

    # The plain network and the steps to dupscope-v3, from one decode per image.
    if not args.no_variants:
        plain_s = time_plain_file(paths)
        var, secs = network_variants(paths, log=log)
        decode_per = secs["decode"] / n
        model224 = secs["224"] / n
        speed["plain network"] = (f"{1 / (decode_per + model224):.0f} img/s (decode+resize {decode_per * 1e3:.1f} ms, "
                                  f"model {model224 * 1e3:.1f} ms/img; file alone {plain_s * 1e3:.1f} ms/img)")

        def cost(*views):
            return (decode_per + sum(secs[v] for v in views) / n) / (decode_per + model224)

        def add(name, emb, what, views=("224",), extra=""):
            c = cost(*views)
            results[name] = scorer(cosine_sim16(emb))
            speed.setdefault(name, f"{c:.2f}x plain (phase 1)" + (f", {extra}" if extra else ""))
            steps.append((name, what, c))
            g = results[name]["groups"]
            log(f"{name}: AP {g.average_precision:.4f} R@P95 {g.recall_at_precision:.4f}")

        def fused(name, emb, fusion, what):
            t = time.perf_counter()
            fr = fuse_embeddings(emb, None, fusion, device="cpu")
            dt = time.perf_counter() - t
            notes.append(f"{name}: {fr.description} ({dt:.1f} s).")
            add(name, fr.embeddings, what, extra=f"fusion {dt:.1f} s")

        head, b9 = var["224/max"], var[f"224/b{V3_BLOCK}x"]
        both = np.concatenate([head, b9], axis=1)
        rules = v3_rules(n)
        v3_name = f"head-max + block-{V3_BLOCK} exp."
        add("plain network", var["224/avg"], "the file's output: average pool of the head (1280), cosine")
        add("GeM head (p=3)", var["224/gem"], "GeM instead of the average")
        add("max head", head, "global max pool of the head")
        add("max head, flip averaging", l2(head) + l2(var["224flip/max"]),
            "max head of the image + of its mirror image (two network passes)", views=("224", "224flip"))
        fused("max head, centred", head, single_branch("head-max", 1280),
              "max head, L2, minus the data set's mean, L2 (fuse_embeddings)")
        for d in (64, 128, 160):
            fused(f"max head, whitened {d}", head, single_branch("head-max", 1280, whiten_axes=d),
                  f"centred, PCA-whitened to {d} axes fitted on the data set")
        fused(f"block-{V3_BLOCK} expansion max, whitened 160", b9,
              single_branch("block-exp", b9.shape[1], whiten_axes=160),
              f"max of block {V3_BLOCK}'s expansion activation ({b9.shape[1]}) alone, centred, whitened to 160 axes")
        # Which inner feature map beside the head: each joined to the max head under the shipped
        # rule (DUPSCOPE_V3 with that branch's width).
        companions = [("b14gem", "block-14 GeM (= dupscope-v2)", "GeM of block 14's output (192, 7 x 7): the "
                       "former default dupscope-v2, with its link threshold 0.65")]
        companions += [(f"b{k}x", f"block-{k} exp.", f"max of block {k}'s expansion activation "
                        f"({var[f'224/b{k}x'].shape[1]} channels)") for k in EXPANSIONS]
        for key, label, what in companions:
            mid = var[f"224/{key}"]
            fusion = dataclasses.replace(DUPSCOPE_V3, branches=(
                DUPSCOPE_V3.branches[0], dataclasses.replace(DUPSCOPE_V3.branches[1], dim=mid.shape[1])))
            if key == "b14gem":  # as dupscope-v2 shipped: the count linked at 0.65, which suited block 14
                fusion = dataclasses.replace(fusion, same_picture_cos=0.65)
            tag = " (= DUPSCOPE_V3)" if key == f"b{V3_BLOCK}x" else ""
            fused(f"head-max + {label}{tag}", np.concatenate([head, mid], axis=1), fusion,
                  f"the max head joined with the {what}, shipped rule")
        fused(f"{v3_name}, former link 0.65", both, rules["link 0.65"],
              "as DUPSCOPE_V3 but the picture count links neighbours at cosine >= 0.65 (dupscope-v2's value)")
        fused(f"{v3_name}, no augmentation", both, rules["v3 rule, no aug"],
              "both branches, each whitened to min(160, estimated distinct pictures) axes, concatenated")
        for k in (5, 20):
            fused(f"{v3_name}, augmentation k={k}", both, dataclasses.replace(DUPSCOPE_V3, neighbours=k),
                  f"the same + neighbour augmentation over the {k} nearest rows (shipped: 10), weight max(cos, 0)^3")
        fused(f"{v3_name}, centred only + augmentation k=10", both, rules["centred + aug"],
              "as DUPSCOPE_V3 but no whitening (centring only)")
        fused(f"{v3_name}, N/16 rule + augmentation k=10", both, rules["N/16 rule"],
              f"as DUPSCOPE_V3 but an earlier axis rule: min(160, N // 16) = {n16_axes(n)} axes")

    sweep = None
    if not args.no_sweep and "dupscope-v3" in models:
        sweep = subset_sweep(paths, rows, log)

    elapsed = time.perf_counter() - t_start
    argv = " ".join(sys.argv[1:])
    write_report(args.out, argv=argv, machine=machine, manifest=manifest, folder=folder, n=n, results=results,
                 speed=speed, notes=notes, steps=steps, sweep=sweep, model_ratio=model_ratio,
                 validation=validation, validation_path=args.validation_from, elapsed=elapsed, log_lines=log_lines,
                 v3_sim=v3_sim, scorer=scorer, v3_desc=v3_desc)
    log(f"wrote {args.out} in {elapsed:.0f} s total")
    return 0


# ------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------
HEADLINE_TAG = "<!-- headline (read by --validation-from): "

BUG_NOTE = (
    "**Results before the ReLU6 fix were measured with a broken network.** Until this version, "
    "`tools/export_efficientnet.py` called the EfficientNet package's `set_swish()` while exporting "
    "EfficientNet-Lite0, which replaced the network's ReLU6 activations by Swish. Lite0's weights were "
    "trained with ReLU6, so the exported `efficientnet_lite0.onnx` computed wrong features. Every earlier "
    "number in this file's history used that file: on data set version 2 the plain network scored AP 0.235 "
    "and R@P0.95 0.035, the former default `dupscope-v1` (block-7 GeM + dct branch, contrast "
    "standardisation) 0.819 / 0.481, pHash 0.603 / 0.395. Those figures do not describe the network, only "
    "the broken export; they are not comparable with the tables above. The file is now exported with "
    "ReLU6 (its head activation is `/_swish_1/Clip_output_0`, a Clip to [0, 6] despite the name). The "
    "broken network had also let two real near-duplicate pairs of originals through the data-set builder's "
    "duplicate-original rule (pHash similarity >= 1 - 10/64 and network cosine >= 0.9): the scikit-image "
    "stereo pair motorcycle_left / motorcycle_right and the MATE wallpapers Ubuntu-Mate-Cold / "
    "Ubuntu-Mate-Radioactive (one picture recoloured). With the fixed network the same, unchanged rule "
    "removes them, so the data set was rebuilt as version 3 (`bench-data/accuracy-v3-*`); pHash is "
    "measured again on it.")


def fmt(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.4f}"


def headline_dict(seed, folder, manifest, n, results, model_ratio, argv="", sweep=None, v3_desc=None) -> dict:
    rows = {}
    for name in HEADLINE:
        if name in results:
            a, b = results[name]["groups"], results[name]["copies"]
            rows[name] = {"ap": a.average_precision, "recall": a.recall_at_precision, "best_f1": a.best_f1,
                          "ap_copies": b.average_precision, "recall_copies": b.recall_at_precision}
    return {"seed": seed, "dataset": folder.name, "n_images": n, "n_originals": manifest["n_originals"],
            "removed": [f"{a} ~ {b}" for a, b, _, _ in manifest["removed"]], "rows": rows,
            "family_v3": results[V3]["family"] if V3 in results else None, "model_ratio": model_ratio,
            "target": target_verdict(results)[0], "argv": argv,
            "v3_pictures": pictures_estimated(v3_desc) if v3_desc else None,
            "sweep_summary": sweep["summary"] if sweep else None,
            "sweep_stats": sweep["stats"] if sweep else None}


def read_headline(path) -> dict:
    text = Path(path).read_text()
    start = text.find(HEADLINE_TAG)
    if start < 0:
        raise SystemExit(f"{path}: no headline block (write it with this script first)")
    start += len(HEADLINE_TAG)
    return json.loads(text[start:text.index(" -->", start)])


def target_verdict(results) -> tuple[bool | None, str]:
    """Whether dupscope-v3 meets AP >= 0.99 and R@P0.95 >= 0.97, strictly above the plain network."""
    if V3 not in results:
        return None, "dupscope-v3 was not run."
    base_name = "plain network" if "plain network" in results else "dupscope efficientnet-lite0"
    v, b = results[V3]["groups"], results.get(base_name, {}).get("groups")
    ok_abs = v.average_precision >= TARGET_AP and v.recall_at_precision >= TARGET_RECALL
    ok_rel = b is not None and v.average_precision > b.average_precision and v.recall_at_precision > b.recall_at_precision
    met = ok_abs and ok_rel
    text = (f"Target (AP >= {TARGET_AP}, R@P0.95 >= {TARGET_RECALL}, both strictly above the plain network): "
            f"**{'met' if met else 'NOT met'}**. dupscope-v3: AP {v.average_precision:.4f}, R@P0.95 "
            f"{v.recall_at_precision:.4f}" + (f"; {base_name}: AP {b.average_precision:.4f}, R@P0.95 "
                                               f"{b.recall_at_precision:.4f}." if b is not None else "."))
    return met, text


def write_report(out, *, argv, machine, manifest, folder, n, results, speed, notes, steps, sweep, model_ratio,
                 validation, validation_path, elapsed, log_lines, v3_sim, scorer, v3_desc=None):
    header = ["method", "AP", "R@P0.95", "best F1", "@ threshold", "P0.95 threshold", "AP (copies)",
              "R@P0.95 (copies)", "AP photos", "R@P0.95 photos", "AP astro", "R@P0.95 astro", "speed"]
    order = [k for k in HEADLINE if k in results] + [k for k in results if k not in HEADLINE]
    rows = []
    for name in order:
        r = results[name]
        a, b = r["groups"], r["copies"]
        rows.append([name, fmt(a.average_precision), fmt(a.recall_at_precision), fmt(a.best_f1),
                     fmt(a.best_f1_threshold), fmt(a.threshold_at_precision), fmt(b.average_precision),
                     fmt(b.recall_at_precision)]
                    + [fmt(getattr(r.get(k), f, None)) for k in ("photos", "astro")
                       for f in ("average_precision", "recall_at_precision")]
                    + [speed.get(name, "")])
    fam_rows = [[name] + [f"{results[name]['family'][f]:.2f}" for f in FAMILIES] for name in order]
    copy_names = sorted(next(iter(results.values()))["names"])
    name_rows = [[name] + [f"{results[name]['names'].get(c, float('nan')):.2f}" for c in copy_names]
                 for name in order if results[name]["names"]]
    first = next(iter(results.values()))
    seed = manifest.get("seed")
    _, verdict = target_verdict(results)
    text = [
        "# Near-duplicate accuracy (benchmarks/bench_accuracy.py)",
        "",
        f"This file is written by `python3 benchmarks/bench_accuracy.py {argv}`".rstrip()
        + (f" (the held-out report it quotes is written first by `python3 benchmarks/bench_accuracy.py "
           f"{validation.get('argv') or '--seed ' + str(validation['seed'])}`)" if validation else "")
        + "; edit the script, not the file.",
        "",
        f"Machine: {machine}.",
        "",
        f"Data (`{folder.name}`, seed {seed}): {manifest['n_originals']} originals ({manifest['n_candidates']} "
        f"candidates: Debian stellarium-data astronomy photos, Debian wallpapers and the scikit-image / "
        f"scikit-learn sample photos, shrunk to at most {MAX_SIDE} px; {len(manifest['removed'])} removed as "
        f"duplicates of another original by pHash and the plain network, {len(manifest.get('flat', []))} left "
        f"out as nearly uniform), 17 copies each ({len(manifest.get('blank_copies', []))} copies left out as "
        f"blank): {n} images, {first['groups'].n_true_pairs} true pairs (groups protocol), "
        f"{first['copies'].n_true_pairs} original-copy pairs, {n * (n - 1) // 2} candidate pairs. "
        f"Run time {elapsed:.0f} s.",
        "",
        "Protocol: AP = average precision, R@P0.95 = recall at precision >= 0.95, best F1 and the thresholds "
        "they are reached at, on the *groups* protocol (every two images of a group are a true pair, copy vs "
        "copy included) unless marked *(copies)* (only original-copy pairs true, copy-copy pairs left out). "
        "*photos* / *astro*: the groups protocol restricted to pairs of images that both come from "
        "non-astronomy (wallpapers, sample photos) / astronomy originals. All pairs of the N images are "
        "candidates; scores are float16 as dupscope stores them. `dupscope <model>` rows go through "
        "`compute_similarity` (dupscope's decoder, the model, the shipped post-processing, the engine) and "
        "`dupscope.evaluate.evaluate`; the other network rows use this script's decoder (PIL, bilinear "
        "224 x 224) on the shipped ONNX file with two inner tensors exposed, and, for the data-set steps, "
        "the shipped `dupscope.fusion.fuse_embeddings`.",
        "",
        verdict,
        "",
        table(rows, header),
        "",
        "## Recall per transform family (original-copy pairs, at each method's P0.95 threshold)",
        "",
        table(fam_rows, ["method"] + FAMILIES),
        "",
    ]
    if model_ratio is not None:
        text += ["## Speed", "",
                 f"Phase 1 (embedding) of `dupscope-v3` costs {model_ratio:.2f}x the plain efficientnet-lite0 file "
                 f"(model only, the same batches, alternating passes; the issue's limit is 1.5x): it runs the same "
                 f"network once and replaces the average pool of the head by a max pool, plus a max pool of block "
                 f"{V3_BLOCK}'s expansion activation. The data-set "
                 f"post-processing (two eigendecompositions, at most 1280 x 1280, and two top-k searches: one to "
                 f"count distinct pictures, one for the neighbour augmentation) is a separate, one-off cost given "
                 f"in the speed column. Pipeline rates (decode + model on this machine) are in "
                 f"the speed column too; they are noisier than the model ratio.", ""]
    if steps:
        text += ["## What was tried: from the plain network to dupscope-v3", "",
                 "Each step measured in this run on the same decoded images (the rows above with the same names). "
                 "Cost is phase-1 time relative to the plain network (decode + model); the data-set steps add a "
                 "one-off fusion time (speed column above).", "",
                 table([[name, what, fmt(results[name]["groups"].average_precision),
                         fmt(results[name]["groups"].recall_at_precision), f"{c:.2f}x"]
                        for name, what, c in steps], ["step", "what changes", "AP", "R@P0.95", "cost"]), ""]
        text += what_was_tried(results, sweep, manifest["n_originals"], v3_desc, n)
    if sweep is not None:
        text += ["## Subset sweep: the DUPSCOPE_V3 rule on smaller data sets", "",
                 "Random subsets of the groups (seeds 0, 1, 2; the mean over the draws; all groups drawn once in "
                 "the all-copies regime), each post-processed on its own. *v3 rule* = `DUPSCOPE_V3` as shipped "
                 "(each branch whitened to min(160, n) axes, n the number of distinct pictures "
                 "`count_pictures` estimates, centred only when n < 8; neighbour augmentation k = 10); *N/16 "
                 "rule* = the first dupscope-v2 rule, emulated per subset with `whiten_axes = min(160, N // 16)`, no "
                 "whitening below 256 images, augmentation as shipped; *centred + aug* = no whitening; *128 axes "
                 "+ aug* = `whiten_axes=128` whatever the data set; *v3 rule, no aug* = no neighbour "
                 "augmentation. *pictures est. / true* = the v3 rule's estimate of distinct pictures (mean over "
                 "the draws) and the number of groups drawn; *N/16 axes* = the axes the earlier rule used. Raw "
                 f"embeddings from one `embed_images(paths, \"dupscope-v3\")` run ({sweep['note']}).", "",
                 table(sweep["rows"], sweep["header"]), "",
                 sweep["summary"], ""]
        if sweep["flags"]:
            text += ["Subsets where an alternative (the columns above, or link 0.65 below) beat the shipped rule's "
                     "mean AP by more than 0.01:", ""]
            text += [f"- {x}" for x in sweep["flags"]] + [""]
        else:
            text += ["No alternative (the columns above, or link 0.65 below) beat the shipped rule's mean AP by more "
                     "than 0.01 on any subset.", ""]
        st = sweep["stats"]
        text += ["### Link threshold of the picture count: 0.65 vs 0.6", "",
                 "The same subsets and draws, post-processed by `DUPSCOPE_V3` with `same_picture_cos` 0.65 (the "
                 "former default's) instead of the shipped 0.6 (everything else equal). Worst / mean AP over the "
                 f"rows: 0.65 {st['link 0.65']['worst']:.3f} / {st['link 0.65']['mean']:.3f}, 0.6 "
                 f"{st['v3 rule']['worst']:.3f} / {st['v3 rule']['mean']:.3f}; worst single draw: 0.65 "
                 f"{st['link 0.65']['worst_draw']:.3f}, 0.6 {st['v3 rule']['worst_draw']:.3f}.", "",
                 table(sweep["link_rows"], sweep["link_header"]), ""]
    if validation is not None:
        text += validation_section(validation, validation_path)
    text += ["## Before the ReLU6 fix", "", BUG_NOTE, "",
             "## Recall per copy (same threshold as the family table)", "",
             table(name_rows, ["method"] + copy_names), ""]
    if v3_sim is not None:
        text += ["## Highest-scoring false pairs of dupscope-v3", ""]
        text += [f"- {a} vs {b}: {s:.4f}" for a, b, s in scorer.top_false_positives(v3_sim)] + [""]
    text += ["## Notes", ""] + [f"- {x}" for x in notes]
    if manifest["removed"]:
        text += ["", "Originals removed as duplicates of another original (source names, pHash similarity, "
                 "plain-network cosine): " + "; ".join(f"{a} ~ {b} ({p:.3f}, {c:.3f})"
                                                       for a, b, p, c in manifest["removed"])]
    if manifest.get("flat"):
        text += ["", "Originals left out as nearly uniform: " + ", ".join(manifest["flat"])]
    text += ["", "<details><summary>log</summary>", "", "```"] + log_lines + ["```", "</details>", ""]
    head = headline_dict(seed, folder, manifest, n, results, model_ratio, argv, sweep, v3_desc)
    text += [HEADLINE_TAG + json.dumps(head) + " -->", ""]
    Path(out).write_text("\n".join(text))


def what_was_tried(results, sweep, n_pictures: int, v3_desc: dict | None, n: int) -> list[str]:
    """A few sentences comparing the steps and the whitening rules, built from this run's numbers."""
    def g(name):
        r = results.get(name)
        return None if r is None else (r["groups"].average_precision, r["groups"].recall_at_precision)

    def s(name):
        v = g(name)
        return "n/a" if v is None else f"{v[0]:.3f} / {v[1]:.3f}"

    v3n = f"head-max + block-{V3_BLOCK} exp."
    v3 = f"{v3n} (= DUPSCOPE_V3)"
    n16 = f"{v3n}, N/16 rule + augmentation k=10"
    layers = "; ".join(f"block {k} {s(f'head-max + block-{k} exp.' + (' (= DUPSCOPE_V3)' if k == V3_BLOCK else ''))}"
                       for k in EXPANSIONS)
    out = [
        "In words (AP / R@P0.95 of this run):",
        "",
        f"- Pooling of the head: average (the file) {s('plain network')}; GeM {s('GeM head (p=3)')}; "
        f"max {s('max head')}.",
        f"- Flip averaging of the max head: {s('max head, flip averaging')}, but it runs the network twice (cost "
        "in the table), over the 1.5x budget; not used.",
        f"- Data-set statistics on the max head: centred {s('max head, centred')}; whitened to 64 axes "
        f"{s('max head, whitened 64')}, 128 axes {s('max head, whitened 128')}, 160 axes "
        f"{s('max head, whitened 160')}.",
        f"- Which inner feature map to join to the head (each under the shipped rule): the former default "
        f"dupscope-v2's block-14 GeM {s('head-max + block-14 GeM (= dupscope-v2)')} (with its own link "
        f"threshold, 0.65); the max-pooled expansion activation of {layers}. Block "
        f"{V3_BLOCK}'s alone (whitened 160): {s(f'block-{V3_BLOCK} expansion max, whitened 160')}. Our reading (not "
        f"measured separately): these middle layers respond to textures and local shapes that the head, trained "
        f"to name objects, discards, and those are what tell one star field or nebula from another.",
        f"- Joined with the head, without neighbour augmentation: {s(f'{v3n}, no augmentation')}; with it, "
        f"k = 5 {s(f'{v3n}, augmentation k=5')}, k = 10 (shipped) {s(v3)}, k = 20 {s(f'{v3n}, augmentation k=20')}. "
        f"With augmentation but no whitening (centred only, k = 10): {s(f'{v3n}, centred only + augmentation k=10')}.",
        f"- The shipped pipeline (`dupscope dupscope-v3`, dupscope's own decoder and engine): {s(V3)}.",
    ]
    if sweep is not None:
        st = sweep["stats"]
        big = [r for r in sweep["per_row"] if r["groups"] == max(x["groups"] for x in sweep["per_row"])]

        def ws(name):
            return f"{st[name]['worst']:.3f} / {st[name]['mean']:.3f}"

        est = pictures_estimated(v3_desc) if v3_desc else None
        ratios: dict[str, list] = {}
        for r in sweep["per_row"]:
            ratios.setdefault(f"with {r['regime']}", []).append(r["est"] / r["groups"])
        full = (f" On the whole data set the shipped pipeline counts {est} distinct pictures for {n_pictures} "
                f"originals, so each branch is whitened to {axes_used(v3_desc).split('+')[0]} axes; on this "
                f"script's decoder the shipped rule gives {s(v3)}, the N // 16 rule ({n16_axes(n)} axes, row "
                f"*{n16}*) {s(n16)}." if est is not None else "")
        out += [
            f"- How many whitening axes (the rule). The axes are fitted on the data set being processed, and the "
            f"right number depends on how many distinct pictures it holds: beyond that, the extra axes mostly "
            f"describe how copies of one picture differ from each other (scale, compression, borders), and "
            f"whitening them drives copies apart; far below it, truncation discards what tells pictures apart. "
            f"The first dupscope-v2 tied the axes to the number of images, min(160, N // 16) and none below 256 "
            f"images, which fits this benchmark's 18 images per picture but not sparser collections: in the subset "
            f"sweep below, its worst row is AP {st['N/16 rule']['worst']:.3f} ({st['N/16 rule']['worst_at']}). A "
            f"fixed 128 axes fails the other way, on sets with far fewer than 128 pictures: worst AP "
            f"{st['128 axes + aug']['worst']:.3f} ({st['128 axes + aug']['worst_at']}). The shipped rule estimates "
            f"the number of distinct pictures without labels (`dupscope.fusion.count_pictures`: the centred "
            f"branches joined, each image linked to those of its 10 nearest neighbours with cosine >= 0.6, "
            f"connected groups counted) and whitens to min(160, estimate) axes, centring only below 8. Worst / "
            f"mean AP over the sweep's {len(sweep['per_row'])} rows: v3 rule {ws('v3 rule')}, N/16 rule "
            f"{ws('N/16 rule')}, 128 axes {ws('128 axes + aug')}, centred only {ws('centred + aug')}.{full} The "
            f"count is approximate: estimate / true pictures (mean over draws) ranges "
            + ", ".join(f"{min(q):.2f}-{max(q):.2f} {reg}" for reg, q in ratios.items())
            + "; the subsets where another column beats the shipped rule are listed under the sweep table.",
            f"- The link threshold of the count. dupscope-v2 linked neighbours at cosine >= 0.65. Block 9's "
            f"expansion layer varies more between copies than block 14 did, so at 0.65 copies of one picture "
            f"stay apart more often and the count overshoots on small sets; dupscope-v3 links at 0.6. On the whole "
            f"data set: {s(f'{v3n}, former link 0.65')} at 0.65 against {s(v3)} at 0.6. Over the sweep (table "
            f"after it): worst / mean AP at 0.65 {ws('link 0.65')}, at 0.6 {ws('v3 rule')}; on the largest subsets ("
            + "; ".join(f"{r['regime']}, {r['images']} images: {r['groups']} pictures counted as {r['est065']:.0f} "
                        f"at 0.65, {r['est']:.0f} at 0.6, AP {r['ap']['link 0.65']:.3f} vs {r['ap']['v3 rule']:.3f}"
                        for r in big) + ").",
        ]
    return out + [""]


def validation_section(v: dict, path) -> list[str]:
    rows = [[name, fmt(r["ap"]), fmt(r["recall"]), fmt(r["best_f1"]), fmt(r["ap_copies"]), fmt(r["recall_copies"])]
            for name, r in v["rows"].items()]
    cmd = f"python3 benchmarks/bench_accuracy.py {v.get('argv') or '--seed ' + str(v['seed'])}"
    out = [f"## Held-out validation (a separate run, seed {v['seed']})", "",
           f"Numbers copied from a separate run of this script on a different data set, `{v['dataset']}`: a "
           f"different random sample of astronomy originals (the wallpapers and sample photos are the same "
           f"pictures; the random parts of their copies differ), {v['n_originals']} originals, {v['n_images']} images. That run's "
           f"own report is not part of the repository; `{cmd}` writes it again, and "
           f"`--validation-from <that report>` on the main run copies its headline here.", "",
           table(rows, ["method", "AP", "R@P0.95", "best F1", "AP (copies)", "R@P0.95 (copies)"]), ""]
    v3, plain = v["rows"].get(V3), v["rows"].get("plain network") or v["rows"].get("dupscope efficientnet-lite0")
    if v3 is not None and plain is not None:
        met = (v3["ap"] >= TARGET_AP and v3["recall"] >= TARGET_RECALL and v3["ap"] > plain["ap"]
               and v3["recall"] > plain["recall"])
        out += [f"Target on this run (AP >= {TARGET_AP}, R@P0.95 >= {TARGET_RECALL}, above the plain network): "
                f"**{'met' if met else 'NOT met'}** (dupscope-v3 {v3['ap']:.4f} / {v3['recall']:.4f}).", ""]
    if v.get("family_v3"):
        out += ["dupscope-v3 recall per family at its P0.95 threshold: "
                + ", ".join(f"{f} {x:.2f}" for f, x in v["family_v3"].items()) + ".", ""]
    if v.get("v3_pictures") is not None:
        out += [f"Distinct pictures counted by dupscope-v3's post-processing there: {v['v3_pictures']} "
                f"({v['n_originals']} originals).", ""]
    if v.get("sweep_summary"):
        out += ["Subset sweep of that run (same sizes, draws and columns as above, on its images): "
                + v["sweep_summary"], ""]
    if v.get("model_ratio") is not None:
        out += [f"Model time of dupscope-v3 in that run: {v['model_ratio']:.2f}x efficientnet-lite0.", ""]
    return out


if __name__ == "__main__":
    sys.exit(main())
