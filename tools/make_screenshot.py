"""Screenshots of the explorer in headless Chromium.

    python tools/make_screenshot.py                 # docs/demo.png: `dupscope demo`'s explorer
    python tools/make_screenshot.py --compare       # docs/compare.png: its compare view
    python tools/make_screenshot.py --test-dataset --out docs/screenshot.png  # the tests' dataset
"""

from __future__ import annotations

import argparse
import pickle
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from browser import launch, make_dataset  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--width", type=int, default=1440)
    ap.add_argument("--height", type=int, default=1000)
    ap.add_argument("--test-dataset", action="store_true", help="the browser tests' dataset instead of the demo")
    ap.add_argument("--compare", action="store_true", help="open the compare view on the first pair")
    args = ap.parse_args()
    if args.out is None:
        args.out = ROOT / "docs" / ("compare.png" if args.compare else "demo.png")

    from dupscope.explorer import build_explorer

    with tempfile.TemporaryDirectory() as tmp:
        if args.test_dataset:
            ds = make_dataset(Path(tmp), n=24)
            rng = np.random.default_rng(3)
            pkl = Path(tmp) / "preds.pkl"
            pkl.write_bytes(pickle.dumps(rng.uniform(0.4, 1.0, len(ds.paths))))
            index = build_explorer(ds.h5, Path(tmp) / "site", predictions=pkl, progress=False)
            view = "#t=0.900&rows=50&per=6&order=desc&dups=0"
        else:
            import subprocess

            subprocess.run([sys.executable, "-m", "dupscope", "demo", str(Path(tmp) / "demo")], check=True,
                           capture_output=True)
            index = next((Path(tmp) / "demo").rglob("index.html"))
            view = "#per=6"
        shoot(index.as_uri() + view, args.out, args.width, args.height, compare=args.compare)
    print(f"wrote {args.out}")


def shoot(url: str, out: Path, width: int, height: int, *, compare: bool = False) -> None:
    """Open the page, optionally the compare view on the first pair, and save a screenshot once
    the images on screen have loaded."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": width, "height": height}, device_scale_factor=1)
        page.goto(url)
        page.wait_for_selector("html[data-ready='1']")
        if compare:
            page.click("article.row .dup .thumb")
            page.wait_for_function("[...document.querySelectorAll('#viewer img')].every(i => i.complete)")
        page.wait_for_function("[...document.images].filter(i => i.getBoundingClientRect().top < innerHeight)"
                               ".every(i => i.complete)")
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out))
        browser.close()

if __name__ == "__main__":
    main()
