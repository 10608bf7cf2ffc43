"""The precision-recall curve of an :class:`dupscope.evaluate.EvaluationResult` as a PNG
(matplotlib when installed, else a plain Pillow drawing)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .evaluate import EvaluationResult

__all__ = ["plot_pr_curve"]

def plot_pr_curve(result: EvaluationResult, path, *, title: str = "", backend: str = "auto") -> Path:
    """Write the precision-recall curve as a PNG, the reported threshold marked.

    Parameters
    ----------
    result : EvaluationResult
    path : path-like
        PNG file to write.
    title : str
        Drawn above the plot.
    backend : {"auto", "matplotlib", "pillow"}
        ``"auto"`` uses matplotlib when it is installed and Pillow's ImageDraw otherwise (Pillow is
        a dependency of dupscope, matplotlib is not).

    Returns
    -------
    pathlib.Path
    """
    path = Path(path)
    if backend not in ("auto", "matplotlib", "pillow"):
        raise ValueError(f"backend must be 'auto', 'matplotlib' or 'pillow', not {backend!r}")
    if backend in ("auto", "matplotlib"):
        try:
            import matplotlib
        except ImportError:
            if backend == "matplotlib":
                raise
        else:
            matplotlib.use("Agg", force=False)
            _plot_matplotlib(result, path, title)
            return path
    _plot_pillow(result, path, title)
    return path


def _caption(result: EvaluationResult) -> str:
    return (f"AP {result.average_precision:.4f}   best F1 {result.best_f1:.4f} @ {result.best_f1_threshold:.4f}   "
            f"R@P{result.min_precision:g} {result.recall_at_precision:.4f}")


def _plot_matplotlib(result: EvaluationResult, path: Path, title: str) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=100)
    ax.step(result.recall_curve, result.precision_curve, where="post", color="#1f6fb4")
    ax.plot([result.recall], [result.precision], "o", color="#d62728",
            label=f"threshold {result.threshold:.4f}: P {result.precision:.3f}, R {result.recall:.3f}")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(title or _caption(result), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def _plot_pillow(result: EvaluationResult, path: Path, title: str) -> None:
    from PIL import Image, ImageDraw, ImageFont

    width, height = 640, 480
    left, right, top, bottom = 64, 24, 44, 56
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    pw, ph = width - left - right, height - top - bottom

    def xy(r: float, p: float) -> tuple[float, float]:
        return left + r * pw, top + (1.0 - p) * ph

    # Grid, axes and ticks.
    for k in range(6):
        v = k / 5
        x, _ = xy(v, 0)
        _, y = xy(0, v)
        draw.line([(x, top), (x, top + ph)], fill=(228, 228, 228))
        draw.line([(left, y), (left + pw, y)], fill=(228, 228, 228))
        draw.text((x - 8, top + ph + 6), f"{v:.1f}", fill="black", font=font)
        draw.text((left - 30, y - 6), f"{v:.1f}", fill="black", font=font)
    draw.rectangle([left, top, left + pw, top + ph], outline="black")
    draw.text((left + pw / 2 - 18, height - 24), "recall", fill="black", font=font)
    draw.text((6, top + ph / 2 - 6), "precision", fill="black", font=font)
    draw.text((left, 8), title or _caption(result), fill="black", font=font)

    # The curve as steps: precision holds until recall moves on.
    r = np.concatenate([[0.0], result.recall_curve])
    p = np.concatenate([[result.precision_curve[0] if len(result.precision_curve) else 1.0],
                        result.precision_curve])
    pts = []
    for k in range(len(r)):
        if k:
            pts.append(xy(r[k], p[k - 1]))
        pts.append(xy(r[k], p[k]))
    if len(pts) > 20000:  # thin very long curves; a pixel holds many points anyway
        pts = pts[:: len(pts) // 20000 + 1] + [pts[-1]]
    if len(pts) >= 2:
        draw.line(pts, fill=(31, 111, 180), width=2)

    # The reported threshold.
    cx, cy = xy(result.recall, result.precision)
    draw.ellipse([cx - 5, cy - 5, cx + 5, cy + 5], outline=(214, 39, 40), width=2)
    label = f"t={result.threshold:.4f}  P={result.precision:.3f} R={result.recall:.3f}"
    tx = min(max(left + 4, cx - 60), left + pw - 200)
    ty = cy + 10 if cy < top + ph - 24 else cy - 20
    draw.text((tx, ty), label, fill=(214, 39, 40), font=font)
    img.save(path, format="PNG")
