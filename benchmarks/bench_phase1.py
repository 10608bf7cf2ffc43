"""Phase 1 end to end on real photos: dupscope vs the naive loop a user would write.

Phase 1 is annotations -> decoded images -> embeddings -> similarity -> HDF5. Both pipelines run
on the same COCO file with the same model (--model, default: dupscope's default model), in one process,
interleaved and repeated; the tables give medians.

- naive:    for each batch of 32 paths: PIL open, convert("RGB"), resize to 224x224 (Pillow's
            default filter), normalise in numpy, onnxruntime ``session.run`` (default session
            options, one session reused); then numpy ``e @ e.T`` of the L2-normalised embeddings,
            map to [0, 1], float16, one h5py dataset. Each stage timed.
- dupscope: :func:`dupscope.pipeline.compute_similarity` with its own stage timings.
- bound:    what the hardware allows. Decode alone at full speed (dupscope's decoder, one thread
            per core, nothing else running) and inference alone at full speed (onnxruntime on
            batches decoded beforehand, all cores) are measured in fresh processes as CPU seconds;
            bound = (decode CPU s + inference CPU s) / cores. On a GPU the model runs beside the
            decoders, so there the bound is the slower of the two.

The data set (``--prepare`` builds it under bench-data/phase1/, see benchmarks/phase1_setup.sh):

- originals as shipped: the 555 astronomy photos of Debian ``stellarium-data`` (PNG, 128-2048
  px, palette/grey/RGB/RGBA), the photos of ``plasma-workspace-wallpapers`` and
  ``mate-backgrounds`` (JPEG and PNG, up to 5120x2880), and the photos in the scikit-image and
  scikit-learn wheels;
- each original re-encoded as JPEG at three common dataset sizes, aspect ratio kept: longest side
  640 (quality 90, COCO-like), 500 (quality 90, ImageNet-like) and 1024 (quality 85).

``--limit N`` takes every k-th image of that list (so the mix stays the same) for quick runs.

Usage: python benchmarks/bench_phase1.py [--prepare] [--limit N] [--repeat 3] [--data bench-data]
       [--workers W] [--threads T] [--skip-naive] [--skip-bound]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from _machine import describe_machine, reexec_without_blas_overrides, run_child, table  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# (longest side, JPEG quality) of the re-encodings.
REENCODINGS = ((640, 90), (500, 90), (1024, 85))
SKIMAGE_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png",
                  "motorcycle_right.png", "rocket.jpg", "hubble_deep_field.jpg", "retina.jpg",
                  "ihc.png", "camera.png", "moon.png", "horse.png", "coins.png", "brick.png",
                  "grass.png", "gravel.png")
NAIVE_BATCH = 32


# --------------------------------------------------------------------------------------------
# Data set
# --------------------------------------------------------------------------------------------

def _originals(data: str) -> list[str]:
    """Absolute paths of the original photos, in a fixed order."""
    unpacked = os.path.join(data, "unpacked", "usr", "share")
    found = sorted(glob.glob(os.path.join(unpacked, "stellarium", "nebulae", "default", "*.png")))
    for sub in ("wallpapers", "backgrounds"):
        for ext in ("png", "jpg", "jpeg"):
            found += sorted(glob.glob(os.path.join(unpacked, sub, "**", f"*.{ext}"), recursive=True))
    try:
        import skimage

        sk = os.path.join(os.path.dirname(skimage.__file__), "data")
        found += [os.path.join(sk, n) for n in SKIMAGE_PHOTOS if os.path.isfile(os.path.join(sk, n))]
    except ImportError:
        pass
    try:
        import sklearn

        skl = os.path.join(os.path.dirname(sklearn.__file__), "datasets", "images")
        found += [os.path.join(skl, n) for n in ("china.jpg", "flower.jpg") if os.path.isfile(os.path.join(skl, n))]
    except ImportError:
        pass
    return found


def _reencode(job: tuple[str, list[tuple[str, int, int]]]) -> list[tuple[str, int, int]]:
    """Write the JPEG copies of one original; returns (path, width, height) of each."""
    from PIL import Image

    from dupscope.images import decode_image

    src, outs = job
    img, _, _ = decode_image(src, colour="rgb")
    done = []
    for dst, side, quality in outs:
        w, h = img.size
        s = min(1.0, side / max(w, h))
        copy = img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.LANCZOS)
        copy.save(dst, "JPEG", quality=quality)
        done.append((dst, copy.size[0], copy.size[1]))
    return done


def prepare(data: str) -> str:
    """Build the JPEG re-encodings and the COCO file; returns the COCO file's path."""
    from concurrent.futures import ProcessPoolExecutor

    originals = _originals(data)
    if not originals:
        sys.exit(f"no photos under {data}/unpacked: run benchmarks/phase1_setup.sh first")
    out_dir = os.path.join(data, "phase1")
    for side, _ in REENCODINGS:
        os.makedirs(os.path.join(out_dir, f"jpeg{side}"), exist_ok=True)
    jobs = [(src, [(os.path.join(out_dir, f"jpeg{side}", f"{i:05d}.jpg"), side, q) for side, q in REENCODINGS])
            for i, src in enumerate(originals)]
    with ProcessPoolExecutor() as pool:
        copies = list(pool.map(_reencode, jobs, chunksize=8))
    images = []
    for src in originals:
        from PIL import Image

        with Image.open(src) as im:
            images.append((src, im.size[0], im.size[1]))
    for k in range(len(REENCODINGS)):
        images += [c[k] for c in copies]
    doc = {
        "info": {"description": "dupscope phase-1 benchmark: real photos and JPEG re-encodings"},
        "images": [{"id": i + 1, "file_name": os.path.relpath(p, data), "width": w, "height": h}
                   for i, (p, w, h) in enumerate(images)],
        "annotations": [],
        "categories": [],
    }
    coco = os.path.join(data, "phase1_coco.json")
    with open(coco, "w") as fh:
        json.dump(doc, fh)
    print(f"wrote {coco}: {len(originals)} originals + {len(images) - len(originals)} JPEG copies")
    return coco


def subset(coco: str, limit: int | None, tmp: str) -> tuple[str, list[str]]:
    """COCO file of every k-th image (all when ``limit`` is None) and its absolute paths."""
    with open(coco) as fh:
        doc = json.load(fh)
    images = doc["images"]
    if limit and limit < len(images):
        step = len(images) / limit
        images = [images[int(i * step)] for i in range(limit)]
    base = os.path.dirname(os.path.abspath(coco))
    # Absolute file names so that the subset file can live anywhere.
    doc = dict(doc, images=[dict(im, file_name=os.path.join(base, im["file_name"])) for im in images])
    path = os.path.join(tmp, "coco.json")
    with open(path, "w") as fh:
        json.dump(doc, fh)
    return path, [im["file_name"] for im in doc["images"]]


def describe_set(paths: list[str]) -> str:
    from collections import Counter

    kinds = Counter()
    nbytes = 0
    for p in paths:
        nbytes += os.path.getsize(p)
        if "/phase1/jpeg" in p:
            kinds[f"JPEG re-encoding, longest side {p.split('/phase1/jpeg')[1].split('/')[0]}"] += 1
        elif "/stellarium/" in p:
            kinds["stellarium nebula photo (PNG, as shipped)"] += 1
        elif "/wallpapers/" in p or "/backgrounds/" in p:
            kinds["wallpaper photo (JPEG/PNG up to 5120x2880, as shipped)"] += 1
        else:
            kinds["scikit-image / scikit-learn photo (as shipped)"] += 1
    lines = [f"{len(paths)} images, {nbytes / 1e6:.0f} MB on disk:"]
    lines += [f"  {n:5d}  {k}" for k, n in sorted(kinds.items(), key=lambda x: -x[1])]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# The naive loop
# --------------------------------------------------------------------------------------------

def naive_loop(paths: list[str], model_path: str, output: str, session=None, output_name: str | None = None) -> dict:
    """What a user writes first: one batch at a time, decode then infer, then numpy and h5py."""
    import h5py
    import numpy as np
    import onnxruntime as ort
    from PIL import Image

    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)
    t_start = time.perf_counter()
    sess = session or ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    # One network file can carry several models' outputs: read the one asked for (else the first).
    fetch = [output_name] if output_name else None
    t = {"decode": 0.0, "inference": 0.0, "similarity": 0.0, "write": 0.0}
    outs = []
    for b in range(0, len(paths), NAIVE_BATCH):
        t0 = time.perf_counter()
        batch = []
        for p in paths[b:b + NAIVE_BATCH]:
            img = Image.open(p).convert("RGB").resize((224, 224))
            batch.append((np.asarray(img, np.float32) / 255.0 - mean) / std)
        x = np.stack(batch).transpose(0, 3, 1, 2).astype(np.float32)
        t1 = time.perf_counter()
        outs.append(sess.run(fetch, {name: x})[0])
        t2 = time.perf_counter()
        t["decode"] += t1 - t0
        t["inference"] += t2 - t1
    t0 = time.perf_counter()
    e = np.concatenate(outs).reshape(len(paths), -1)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    s = ((e @ e.T + 1.0) / 2.0).clip(0.0, 1.0).astype(np.float16)
    t1 = time.perf_counter()
    with h5py.File(output, "w") as f:
        f.create_dataset("similarity", data=s, chunks=True)
        f.create_dataset("paths", data=np.array(paths, dtype=object), dtype=h5py.string_dtype())
    t2 = time.perf_counter()
    t["similarity"] = t1 - t0
    t["write"] = t2 - t1
    t["total"] = time.perf_counter() - t_start
    return t


# --------------------------------------------------------------------------------------------
# dupscope
# --------------------------------------------------------------------------------------------

def dupscope_run(coco: str, output: str, workers: int | None, threads: int | None, verify: bool = True) -> dict:
    from dupscope.pipeline import compute_similarity

    t0 = time.perf_counter()
    s = compute_similarity(coco, output, progress=False, workers=workers, threads=threads, dense=True,
                           model=os.environ["DUPSCOPE_BENCH_MODEL"], verify=verify)
    total = time.perf_counter() - t0
    if s["n_failed"]:
        raise RuntimeError(f"dupscope failed on {s['n_failed']} images: {s['failed_examples'][:3]}")
    return {
        "total": total,
        "embed": s["embed_seconds"],
        "decode_cpu": s.get("decode_cpu_seconds", float("nan")),
        "inference": s.get("inference_seconds", float("nan")),
        "decode_wait": s.get("decode_wait_seconds", float("nan")),
        "similarity_write": s["similarity_write_seconds"],
        "metadata_write": s["metadata_write_seconds"],
        "verify": s.get("verify_seconds") or 0.0,
    }


# --------------------------------------------------------------------------------------------
# The bound, measured in fresh processes so that nothing else competes for the cores
# --------------------------------------------------------------------------------------------

DECODE_ALONE = """
import json, sys, time
from concurrent.futures import ThreadPoolExecutor
from dupscope.images import load_image
from dupscope.defaults import decode_threads
paths = json.load(open(sys.argv[1]))
cores = decode_threads()
def go(ps):
    with ThreadPoolExecutor(cores) as pool:
        return list(pool.map(lambda p: load_image(p, (224, 224)), ps))
go(paths[: 4 * cores])  # warm-up: imports, Pillow plugins
c0, w0 = time.process_time(), time.perf_counter()
imgs = go(paths)
cpu, wall = time.process_time() - c0, time.perf_counter() - w0
assert all(i.ok for i in imgs)
print(dict(cpu=cpu, wall=wall, cores=cores))
"""

INFERENCE_ALONE = """
import json, sys, time
import numpy as np
from dupscope.images import load_images
from dupscope.embed import create_session, preprocess
from dupscope.models import get_model
paths = json.load(open(sys.argv[1]))
batch = int(sys.argv[2])
import os
spec = get_model(os.environ["DUPSCOPE_BENCH_MODEL"])
pix = [i.pixels for i in load_images(paths, (224, 224))]
xs = [preprocess(pix[b:b + batch], spec) for b in range(0, len(pix), batch)]
del pix
sess, _ = create_session(spec, device="cpu", threads=int(sys.argv[3]) or None)
sess.run([spec.output_name], {spec.input_name: xs[0]})  # warm-up
c0, w0 = time.process_time(), time.perf_counter()
for x in xs:
    sess.run([spec.output_name], {spec.input_name: x})
cpu, wall = time.process_time() - c0, time.perf_counter() - w0
print(dict(cpu=cpu, wall=wall))
"""


def bound(paths: list[str], tmp: str, batch: int = 32) -> dict:
    plist = os.path.join(tmp, "paths.json")
    with open(plist, "w") as fh:
        json.dump(paths, fh)
    dec = run_child(DECODE_ALONE, plist)
    inf = run_child(INFERENCE_ALONE, plist, str(batch), "0")
    # One intra-op thread does the least work per image (no parallel overhead): the tightest bound.
    inf1 = run_child(INFERENCE_ALONE, plist, str(batch), "1")
    return {"decode_cpu": dec["cpu"], "decode_wall": dec["wall"], "inference_cpu": inf["cpu"],
            "inference_wall": inf["wall"], "cores": dec["cores"],
            "bound": (dec["cpu"] + inf["cpu"]) / dec["cores"],
            "inference1_cpu": inf1["cpu"], "bound1": (dec["cpu"] + inf1["cpu"]) / dec["cores"]}


# --------------------------------------------------------------------------------------------

def _warm_page_cache(paths: list[str]) -> None:
    # Both pipelines read the same files; read them once so neither pays for the cold cache.
    for p in paths:
        with open(p, "rb") as fh:
            while fh.read(1 << 22):
                pass


def main() -> None:
    reexec_without_blas_overrides()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.path.join(ROOT, "bench-data"))
    ap.add_argument("--prepare", action="store_true", help="build the JPEG copies and the COCO file, then exit")
    ap.add_argument("--limit", type=int, default=None, help="use N images (every k-th) for a quick run")
    from dupscope.models import default_model

    ap.add_argument("--model", default=default_model("cpu"),
                    help=f"model both pipelines run (default: dupscope's default here, {default_model('cpu')})")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workers", type=int, default=None, help="dupscope decode threads (default: its own)")
    ap.add_argument("--threads", type=int, default=None, help="dupscope onnxruntime threads (default: its own)")
    ap.add_argument("--skip-naive", action="store_true")
    ap.add_argument("--skip-bound", action="store_true")
    a = ap.parse_args()
    if a.prepare:
        prepare(a.data)
        return
    coco_full = os.path.join(a.data, "phase1_coco.json")
    if not os.path.isfile(coco_full):
        sys.exit(f"{coco_full} missing: run benchmarks/phase1_setup.sh first")

    from dupscope.models import get_model

    print(describe_machine())
    import onnxruntime
    import PIL

    print(f"onnxruntime {onnxruntime.__version__}, Pillow {PIL.__version__}")
    # Children (bound measurements) read the model from the environment.
    os.environ["DUPSCOPE_BENCH_MODEL"] = a.model
    print(f"model: {a.model}")
    model_spec = get_model(a.model)
    model_path = model_spec.path
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        coco, paths = subset(coco_full, a.limit, tmp)
        n = len(paths)
        print(describe_set(paths))
        _warm_page_cache(paths)
        out = os.path.join(tmp, "out.h5")
        naive_runs, ours_runs, plain_runs = [], [], []
        for r in range(a.repeat):
            if not a.skip_naive:
                naive_runs.append(naive_loop(paths, model_path, out, output_name=model_spec.output_name))
                print(f"  run {r + 1}: naive {naive_runs[-1]['total']:.1f} s", flush=True)
            # The naive loop does not verify: the same work is dupscope with --no-verify.
            plain_runs.append(dupscope_run(coco, out, a.workers, a.threads, verify=False))
            print(f"  run {r + 1}: dupscope --no-verify {plain_runs[-1]['total']:.1f} s "
                  f"(embed {plain_runs[-1]['embed']:.1f} s)", flush=True)
            ours_runs.append(dupscope_run(coco, out, a.workers, a.threads))
            print(f"  run {r + 1}: dupscope {ours_runs[-1]['total']:.1f} s "
                  f"(embed {ours_runs[-1]['embed']:.1f} s, verification {ours_runs[-1]['verify']:.1f} s)", flush=True)
        b = None if a.skip_bound else bound(paths, tmp)

    med = lambda runs, key: statistics.median(x[key] for x in runs)  # noqa: E731
    rows = []
    if naive_runs:
        nt = med(naive_runs, "total")
        rows.append(["naive loop (PIL + ORT per batch, numpy, h5py)", f"{nt:.1f}", f"{n / nt:.1f}", "1.00",
                     f"{med(naive_runs, 'decode'):.1f}", f"{med(naive_runs, 'inference'):.1f}",
                     f"{med(naive_runs, 'similarity'):.2f}", f"{med(naive_runs, 'write'):.2f}"])
    for name, runs in (("dupscope compute_similarity --no-verify (the naive loop's work)", plain_runs),
                       ("dupscope compute_similarity (default: verified pairs)", ours_runs)):
        ot = med(runs, "total")
        rows.append([name, f"{ot:.1f}", f"{n / ot:.1f}",
                     f"{med(naive_runs, 'total') / ot:.2f}" if naive_runs else "-",
                     f"{med(runs, 'decode_cpu'):.1f} CPU (overlapped)",
                     f"{med(runs, 'inference'):.1f} (overlapped)",
                     f"{med(runs, 'similarity_write'):.2f} (similarity + its write)",
                     f"{med(runs, 'metadata_write'):.2f} (image table)"])
    ot = med(plain_runs, "total")
    print(f"\n## Phase 1 end to end, {n} images, median of {a.repeat}")
    print(table(rows, ["pipeline", "wall s", "images/s", "speed-up", "decode s", "inference s",
                       "similarity s", "write s"]))
    print(f"dupscope --no-verify embed stage: {med(plain_runs, 'embed'):.1f} s, of which the model thread waited "
          f"{med(plain_runs, 'decode_wait'):.1f} s for decoded images; the verified run's verification: "
          f"{med(ours_runs, 'verify'):.1f} s")
    if b:
        print(f"\n## Bound ({b['cores']} cores): decode alone {b['decode_cpu']:.1f} CPU s "
              f"({b['decode_wall']:.1f} s wall), inference alone {b['inference_cpu']:.1f} CPU s "
              f"({b['inference_wall']:.1f} s wall)")
        print(f"bound = ({b['decode_cpu']:.1f} + {b['inference_cpu']:.1f}) / {b['cores']} = {b['bound']:.1f} s; "
              f"dupscope --no-verify wall {ot:.1f} s = {ot / b['bound']:.2f} x bound "
              f"(embed stage alone {med(plain_runs, 'embed') / b['bound']:.2f} x)")
        print(f"tighter bound with one onnxruntime thread ({b['inference1_cpu']:.1f} CPU s): "
              f"{b['bound1']:.1f} s; dupscope wall = {ot / b['bound1']:.2f} x that")
    print("targets: speed-up >= 2, wall / bound <= 1.2 (for the run doing the naive loop's work)")


if __name__ == "__main__":
    main()
