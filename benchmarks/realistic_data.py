"""The realistic accuracy data set: mostly unique real photos, a few edited copies, look-alikes.

Shaped like a real collection rather than like bench_accuracy.py's (where every picture has 17
copies):

- *pictures*: every Debian stellarium-data astronomy photo (many different objects that look much
  alike, and several objects photographed twice, e.g. ``m101.png`` and ``m101-vasey.png``: two
  photos of one object), and each wallpaper split into a left and a right part that do not
  overlap (two photos of one scene: same light, colours and style, no shared content), plus
  scikit-image's and scikit-learn's sample photos (both packages are required, so that the set
  does not depend on what happens to be installed; ``pip install ".[bench]"`` brings them);
- *copies*: one picture in ``--copy-every`` (default 12) gets 1 or 2 edited copies (drawn from
  bench_accuracy.py's 17 transforms: resize, JPEG, crop, brightness, contrast, rotation, flip,
  watermark, border, grayscale, blur), so that at least 80% of the images have no copy;
- *junk*: pairs that are the source collection's own edits of one picture, which no ground truth
  can call right or wrong: a wallpaper part cut again from the same wallpaper shipped at another
  resolution and aspect ratio, and any two pictures that pHash and the plain network both call
  near-identical (astronomy photos of one field; scikit-image's ``motorcycle_left`` /
  ``motorcycle_right``, the two views of a stereo pair). They are marked and left out of scoring,
  as retrieval benchmarks do with "junk", and never get copies.

Version 1 applied the near-identical rule to the astronomy photos only and took the sample photos
only when installed; version 2 applies it to every picture and requires them.

``build(data, seed)`` writes ``images.txt``, ``groups.json`` (the true groups) and
``manifest.json`` (every image's picture, family and origin; the junk pairs) into
``bench-data/realistic-v<VERSION>-s<seed>/`` and reuses them when present.
"""

from __future__ import annotations

import json
import random
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

import bench_accuracy as acc

VERSION = 2
#: Width of each wallpaper part as a fraction of the wallpaper; the gap between them is what is left.
PART = 0.45


def _wallpaper_sets(data: Path) -> list[list[Path]]:
    """Each wallpaper's files (one picture at several resolutions), largest first."""
    out = []
    for folder in sorted((data / "unpacked/usr/share/wallpapers").glob("*")):
        imgs = [p for p in (folder / "contents/images").glob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg")]
        if imgs:
            out.append(sorted(imgs, key=lambda p: -p.stat().st_size))
    mate = data / "unpacked/usr/share/backgrounds/mate"
    out += [[p] for p in sorted(mate.rglob("*")) if p.suffix.lower() in (".png", ".jpg", ".jpeg")]
    return out


def _part(img: Image.Image, side: str) -> Image.Image:
    w, h = img.size
    cw = round(w * PART)
    x0 = 0 if side == "left" else w - cw
    return img.crop((x0, 0, x0 + cw, h))


def build(data: Path, seed: int = 0, copy_every: int = 12, log=print) -> Path:
    folder = data / f"realistic-v{VERSION}-s{seed}"
    if (folder / "manifest.json").exists():
        log(f"reusing {folder}")
        return folder
    sources = acc.find_sources(data)
    if not sources["stellarium"]:
        raise SystemExit(f"no photos under {data}/unpacked: run bash benchmarks/accuracy_setup.sh first")
    if not sources["wheels"]:
        raise SystemExit("the realistic set includes scikit-image's and scikit-learn's sample photos: "
                         "pip install scikit-image scikit-learn (or \".[bench]\")")
    pic_dir, copy_dir = folder / "pictures", folder / "copies"
    pic_dir.mkdir(parents=True, exist_ok=True)
    copy_dir.mkdir(exist_ok=True)
    rng = random.Random(seed)

    # (name, loader, origin, junk_key): junk_key names the picture a junk image is another cut of.
    jobs = [(f"astro_{p.stem}", (lambda p=p: acc.load_rgb(p)), str(p), None) for p in sources["stellarium"]]
    for k, files in enumerate(_wallpaper_sets(data)):
        for side in ("left", "right"):
            jobs.append((f"wall{k:02d}_{side}", (lambda f=files[0], s=side: _part(acc.load_rgb(f), s)),
                         f"{files[0]}:{side}", None))
        # Another resolution with another aspect ratio: the collection's own re-cut of the same picture.
        other = [f for f in files[1:] if abs(_aspect(f) - _aspect(files[0])) > 0.05]
        if other:
            f = rng.choice(other)
            jobs.append((f"wall{k:02d}_left_alt", (lambda f=f: _part(acc.load_rgb(f), "left")),
                         f"{f}:left", f"wall{k:02d}_left"))
    for p in sources["wheels"]:
        jobs.append((f"sample_{p.stem}", (lambda p=p: acc.load_rgb(p)), str(p), None))

    def prep(job):
        name, load, origin, junk = job
        img = acc.shrink(load())
        if float(np.asarray(img.convert("L"), np.float32).std()) < acc.MIN_STD:
            return None
        return {"path": str(acc.save(img, pic_dir / name, "png").relative_to(folder)), "name": name,
                "origin": origin, "junk_of": junk}

    with ThreadPoolExecutor(2) as pool:
        pictures = [r for r in pool.map(prep, jobs) if r is not None]
    log(f"{len(pictures)} pictures ({len(jobs) - len(pictures)} nearly uniform ones left out)")
    by_name = {r["name"]: r for r in pictures}
    junk = [(r["path"], by_name[r["junk_of"]]["path"]) for r in pictures
            if r["junk_of"] and r["junk_of"] in by_name]

    # Near-identical pictures in the collection itself (both pHash and the network agree).
    paths = [str(folder / r["path"]) for r in pictures]
    ph = acc.phash_similarity(acc.phash_bits(paths)).astype(np.float32)
    emb, _ = acc.plain_embeddings(paths)
    e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    ii, jj = np.nonzero(np.triu((ph >= 1 - 10 / 64) & (e @ e.T >= 0.9), 1))
    junk += [(pictures[i]["path"], pictures[j]["path"]) for i, j in zip(ii, jj)]
    # Wallpaper variants the collection ships as separate files (Elephants.jpg and
    # Elephants_3840x2160.jpg; Ubuntu-Mate-Cold/-Warm/-Radioactive: one star field, recoloured):
    # same folder, same first word of the file name, same side.
    walls = [r for r in pictures if r["name"].startswith("wall") and not r["junk_of"]]
    for x in range(len(walls)):
        for y in range(x + 1, len(walls)):
            ox, oy = walls[x]["origin"].rsplit(":", 1), walls[y]["origin"].rsplit(":", 1)
            px, py = Path(ox[0]), Path(oy[0])
            if ox[1] == oy[1] and px.parent == py.parent and px != py and \
                    re.split(r"[-_.]", px.name)[0] == re.split(r"[-_.]", py.name)[0]:
                junk.append((walls[x]["path"], walls[y]["path"]))
    in_junk = {p for pair in junk for p in pair}
    log(f"{len(junk)} junk pairs (the collection's own re-cuts and near-identical photos)")

    # Copies: one picture in copy_every (never one that is part of a junk pair), 1 or 2 each.
    eligible = [r for r in pictures if r["path"] not in in_junk]
    chosen = rng.sample(eligible, len(pictures) // copy_every)
    rows = [{"path": r["path"], "group": -1, "family": "original", "name": "original", "origin": r["origin"]}
            for r in pictures]
    group_of = {}
    for g, r in enumerate(chosen):
        group_of[r["path"]] = g
    for row in rows:
        row["group"] = group_of.get(row["path"], -1)

    def copies(g_r):
        g, r = g_r
        img = acc.load_rgb(folder / r["path"])
        made = acc.make_copies(img, seed * 100003 + g)
        local = random.Random(seed * 7919 + g)
        picks = local.sample(made, 1 if g % 2 else 2)
        out = []
        for name, family, im, fmt in picks:
            if float(np.asarray(im.convert("L"), np.float32).std()) < acc.MIN_COPY_STD:
                continue
            q = acc.save(im, copy_dir / f"g{g:03d}_{name}", fmt)
            out.append({"path": str(q.relative_to(folder)), "group": g, "family": family, "name": name,
                        "origin": r["origin"]})
        return out

    with ThreadPoolExecutor(2) as pool:
        rows += [c for cs in pool.map(copies, enumerate(chosen)) for c in cs]
    groups: dict[int, list[str]] = {}
    for row in rows:
        if row["group"] >= 0:
            groups.setdefault(row["group"], []).append(row["path"])
    groups = {g: m for g, m in groups.items() if len(m) > 1}
    unique = len(rows) - sum(len(m) for m in groups.values())
    log(f"{len(rows)} images: {len(groups)} pictures with copies, {len(rows) - len(pictures)} copies, "
        f"{unique} images ({unique / len(rows):.1%}) with no copy")
    (folder / "images.txt").write_text("".join(r["path"] + "\n" for r in rows))
    (folder / "groups.json").write_text(json.dumps({"groups": list(groups.values())}))
    (folder / "manifest.json").write_text(json.dumps({"version": VERSION, "seed": seed, "rows": rows,
                                                      "junk": junk}))
    return folder


def _aspect(path: Path) -> float:
    with Image.open(path) as im:
        return im.width / im.height


if __name__ == "__main__":
    import sys

    build(Path(__file__).resolve().parent.parent / "bench-data", int(sys.argv[1]) if len(sys.argv) > 1 else 0)
