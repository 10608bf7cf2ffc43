"""Benchmark the explorer at scale: folder write time, page open time and slider re-render time.

Builds synthetic similarity files (neighbours only, k=32) at several N (e.g. up to 1,000,000), writes the
explorer without thumbnails (no real images needed; placeholders are shown) and drives the page
in headless Chromium (/usr/bin/chromium, or $DUPSCOPE_CHROMIUM).

    python benchmarks/bench_explorer.py [--sizes 25000 50000 100000] [--k 32]   (after pip install .)
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHROMIUM = os.environ.get("DUPSCOPE_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def machine() -> str:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        chromium = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True,
                                  timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        chromium = "chromium not found"
    return (f"{cpu}, {os.cpu_count()} cores; Python {platform.python_version()}, "
            f"numpy {np.__version__}; {chromium}")


def synthetic_file(path: Path, n: int, k: int, seed: int = 0) -> None:
    """A complete neighbours-only similarity file (schema version 1) with random structure."""
    import h5py

    rng = np.random.default_rng(seed)
    # Distinct non-zero offsets per row keep each list free of repeats and of the image itself.
    steps = rng.integers(1, max(2, (n - 1) // (k + 1)), size=(n, k))
    idx = ((np.arange(n)[:, None] + np.cumsum(steps, axis=1)) % n).astype(np.int32)
    # Most images have a nearest neighbour around 0.8-0.9, a few percent are near-duplicates.
    top = np.where(rng.random(n) < 0.05, rng.uniform(0.95, 1.0, n), rng.uniform(0.75, 0.95, n))
    sims = top[:, None] - np.sort(rng.uniform(0, 0.2, size=(n, k)), axis=1)
    sim16 = sims.astype(np.float16)
    s = h5py.string_dtype("utf-8")
    classes = [f"class_{c:02d}" for c in range(20)]
    labels = [classes[i % 20] for i in range(n)]
    paths = [f"{labels[i]}/img_{i:07d}.jpg" for i in range(n)]
    splits = np.array(["train", "val", "test"])[rng.choice(3, n, p=[0.8, 0.1, 0.1])].tolist()
    with h5py.File(path, "w") as f:
        f["neighbors/index"] = idx
        f["neighbors/similarity"] = sim16
        f.create_dataset("images/path", data=paths, dtype=s)
        f.create_dataset("images/resolved_path", data=["/data/" + p for p in paths], dtype=s)
        f.create_dataset("images/label", data=labels, dtype=s)
        f.create_dataset("images/split", data=splits, dtype=s)
        f["images/ok"] = np.ones(n, dtype=bool)
        f.create_dataset("images/error", data=[""] * n, dtype=s)
        f["images/width"] = np.full(n, 640, np.int32)
        f["images/height"] = np.full(n, 480, np.int32)
        f.attrs.update({"schema_version": 1, "n_images": n, "k": k, "dense": False,
                        "metric": "(1+cos)/2", "model": "synthetic"})
        f.attrs["complete"] = True


def bench_page(index: Path, thresholds: list[float]) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        t0 = time.perf_counter()
        page.goto(index.as_uri() + "#rows=1000&dups=0", timeout=120_000)
        page.wait_for_selector("html[data-ready='1']", timeout=120_000)
        open_s = time.perf_counter() - t0
        in_page_ms = page.evaluate("performance.now()")
        # Where the open time goes (performance marks the page sets), in ms from navigation.
        marks = page.evaluate("() => Object.fromEntries(performance.getEntriesByType('mark')"
                              ".map(m => [m.name.replace('dupscope:', ''), Math.round(m.startTime)]))")
        # Each step: set the slider, let the page re-render synchronously, force layout.
        times = page.evaluate(
            """(ts) => {
                const el = document.getElementById('threshold');
                const out = [];
                for (const t of ts) {
                    const t0 = performance.now();
                    el.value = t; el.dispatchEvent(new Event('input', {bubbles: true}));
                    document.body.offsetHeight;
                    out.push(performance.now() - t0);
                }
                return out;
            }""",
            thresholds,
        )
        rows = page.locator("article.row").count()
        dups = page.locator(".dup").count()
        # Time to the next painted frame, once, for a realistic threshold.
        frame_ms = page.evaluate(
            """() => new Promise((resolve) => {
                const el = document.getElementById('threshold');
                const t0 = performance.now();
                el.value = 0.9; el.dispatchEvent(new Event('input', {bubbles: true}));
                requestAnimationFrame(() => requestAnimationFrame(() => resolve(performance.now() - t0)));
            })"""
        )
        browser.close()
    return {"open_s": open_s, "in_page_ms": in_page_ms, "slider_ms": times, "rows": rows,
            "dups_last": dups, "frame_ms": frame_ms, "marks": marks}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[25_000, 50_000, 100_000])
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--no-browser", action="store_true")
    args = ap.parse_args()

    from dupscope.explorer import build_explorer
    from dupscope.export import delete_list

    print(machine())
    thresholds = [round(x, 3) for x in np.linspace(0.80, 0.99, 20)]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print(f"{'N':>8} {'k':>3} {'pairs':>9} {'export s':>8} {'write s':>8} {'open/all MB':>12} "
              f"{'open s':>7} {'slider ms med/max':>18} {'frame ms':>8}")
        for n in args.sizes:
            h5 = tmp / f"sim_{n}.h5"
            synthetic_file(h5, n, args.k)
            t0 = time.perf_counter()
            delete_list(h5, threshold=0.8)  # `dupscope export` at the densest threshold of the sweep
            export_s = time.perf_counter() - t0
            best = float("inf")
            for _ in range(2):  # first run warms imports and the page cache
                t0 = time.perf_counter()
                index = build_explorer(h5, tmp / f"site_{n}", thumbnails=False, progress=False)
                best = min(best, time.perf_counter() - t0)
            import json

            text = (index.parent / "data.js").read_text(encoding="utf-8")
            obj = json.loads(text[text.index("{"):].rstrip().rstrip(";"))
            pairs = obj["pairs"]["count"]
            # What the page loads to open (data.js and its part files), and the pair parts that
            # only a pair export loads.
            mb = (len(text.encode()) + sum((index.parent / f).stat().st_size for f in obj["files"])) / 1e6
            lazy_mb = sum((index.parent / f).stat().st_size for f in obj["pairs"].get("files", [])) / 1e6
            if args.no_browser:
                print(f"{n:>8} {args.k:>3} {pairs:>9} {export_s:>8.2f} {best:>8.2f} {mb:>5.1f}/{mb + lazy_mb:>6.1f}")
                continue
            r = bench_page(index, thresholds)
            med = statistics.median(r["slider_ms"])
            print(f"{n:>8} {args.k:>3} {pairs:>9} {export_s:>8.2f} {best:>8.2f} {mb:>5.1f}/{mb + lazy_mb:>6.1f} {r['open_s']:>7.2f} "
                  f"{med:>8.1f}/{max(r['slider_ms']):>7.1f} {r['frame_ms']:>8.1f}   "
                  f"(rows drawn {r['rows']}, duplicate cards at t=0.99: {r['dups_last']}; open, ms from navigation: "
                  + ", ".join(f"{k} {v}" for k, v in r["marks"].items()) + ")")


if __name__ == "__main__":
    sys.exit(main())
