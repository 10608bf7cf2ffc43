"""Data-set level post-processing of embeddings: per-branch normalisation, centring, whitening, fusion.

Some models (``dupscope-v1``) output several embeddings side by side, one per *branch* (a
network and a model-free DCT), that only become a good copy detector once each branch is
normalised against the data set they were computed on and the branches are weighted and joined.
That is done here, between :func:`dupscope.embed.embed_images` and the similarity engine, by
:func:`fuse_embeddings`: a pure function of the embedding matrix and the ``ok`` mask.

For every branch ``b`` (a block of columns), over the valid rows only:

1. L2-normalise each row.
2. Subtract the mean of the valid rows (centring): what all images share (a black sky, a
   typical colour layout) no longer makes two unrelated images look alike.
3. If the branch is marked for whitening and there are at least ``min_whiten`` valid rows:
   project onto the top ``whiten_dims`` principal axes of the centred valid rows, each divided
   by its singular value (PCA whitening), so that the few directions in which every image
   varies do not drown the many in which copies and non-copies differ. Below ``min_whiten``
   rows the axes are too noisy to estimate (measured: on ~200 images whitening lowered the
   average precision) and the branch stays centred only.
4. L2-normalise each row again and multiply by the branch weight.

The branches are then concatenated. The engine L2-normalises the result, so the cosine of two
fused rows is ``sum_b w_b^2 cos_b / sum_b w_b^2``, a weighted mean of the per-branch cosines.
Invalid rows are zero in the output and take no part in any statistic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Branch", "Fusion", "FusionResult", "fuse_embeddings", "DUPSCOPE_V1"]

_CHUNK = 65536  # rows per block when accumulating statistics (bounds float64 temporaries)


@dataclass(frozen=True)
class Branch:
    """One block of columns of a model's output.

    Attributes
    ----------
    name : str
        Short name for the record (``"network"``, ``"dct"``).
    dim : int
        Number of columns.
    weight : float
        Factor the normalised branch is multiplied by before concatenation.
    whiten : bool
        Whether to PCA-whiten this branch when there are enough valid rows.
    """

    name: str
    dim: int
    weight: float = 1.0
    whiten: bool = False


@dataclass(frozen=True)
class Fusion:
    """How a multi-branch model's output becomes the embedding the engine receives.

    Attributes
    ----------
    name : str
        Recorded in the HDF5 file's ``embedding_postprocess`` attribute.
    branches : tuple of Branch
        In column order; their dims must add up to the model's output dimension.
    whiten_dims : int
        Principal axes kept by whitening.
    min_whiten : int
        Fewest valid rows for which whitening is applied; below, whitened branches are only
        centred.
    """

    name: str
    branches: tuple[Branch, ...]
    whiten_dims: int = 64
    min_whiten: int = 500

    @property
    def dim(self) -> int:
        """Total number of input columns."""
        return sum(b.dim for b in self.branches)


#: The fusion of the ``dupscope-v1`` model: 80-d network (GeM of block 7) whitened to 64-d,
#: 63-d mirror-invariant dct at weight 0.5 (benchmarks/ACCURACY.md). ``min_whiten`` = 300 from
#: a sweep over random subsets of the accuracy benchmark: whitening loses to centring alone
#: below ~340 images when every picture has 17 copies (AP 0.82 vs 0.90 at ~200 images), is even
#: at ~340 (0.845 vs 0.851), and wins from ~150-200 images when pictures have 2-5 copies
#: (0.88 vs 0.79 at ~210-300 images); at the full 2616 images 0.82 vs 0.68.
DUPSCOPE_V1 = Fusion(
    name="dupscope-v1",
    branches=(Branch("network", 80, 1.0, whiten=True), Branch("dct", 63, 0.5, whiten=False)),
    whiten_dims=64,
    min_whiten=300,
)


@dataclass
class FusionResult:
    """Output of :func:`fuse_embeddings`.

    Attributes
    ----------
    embeddings : numpy.ndarray
        float32 (N, D'), the fused embedding; zero rows where ``ok`` is False.
    description : str
        One line saying what was applied (for the ``embedding_postprocess`` attribute).
    whitened : bool
        Whether any branch was whitened.
    n_valid : int
        Rows the statistics were computed on.
    """

    embeddings: np.ndarray
    description: str
    whitened: bool
    n_valid: int


def _l2_rows(x: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm; all-zero rows stay zero."""
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def _centred_moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and scatter matrix ``sum (x - mean)^T (x - mean)`` of the rows of ``x``, in float64,
    accumulated in blocks of rows."""
    n, d = x.shape
    mean = np.zeros(d, np.float64)
    for i in range(0, n, _CHUNK):
        mean += x[i:i + _CHUNK].sum(axis=0, dtype=np.float64)
    mean /= max(n, 1)
    scatter = np.zeros((d, d), np.float64)
    for i in range(0, n, _CHUNK):
        c = x[i:i + _CHUNK].astype(np.float64) - mean
        scatter += c.T @ c
    return mean, scatter


def _whitening(scatter: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """Top principal axes (columns) and singular values from the scatter matrix.

    The eigenvalues of ``X^T X`` are the squared singular values of the centred ``X``, so this
    equals an SVD of ``X`` without forming it. Axes whose variance is below ``1e-10`` of the
    largest (directions the data does not span) are dropped rather than amplified.
    """
    vals, vecs = np.linalg.eigh(scatter)
    order = np.argsort(vals)[::-1]
    vals, vecs = vals[order], vecs[:, order]
    top = vals[0] if len(vals) else 0.0
    keep = np.flatnonzero(vals > max(top, 0.0) * 1e-10)[:dims] if top > 0 else np.array([], int)
    return vecs[:, keep], np.sqrt(vals[keep])


def fuse_embeddings(embeddings: np.ndarray, ok: np.ndarray | None, fusion: Fusion) -> FusionResult:
    """Normalise, centre, whiten and join the branches of a multi-branch embedding.

    Parameters
    ----------
    embeddings : numpy.ndarray
        (N, D) raw model output, D equal to ``fusion.dim``.
    ok : numpy.ndarray or None
        bool (N,), rows to use; None means all. Invalid rows do not enter any statistic and
        are zero in the output.
    fusion : Fusion
        The branches and their treatment (see the module docstring).

    Returns
    -------
    FusionResult
        The fused float32 (N, D') matrix, where D' sums each branch's dim, or ``whiten_dims``
        (at most) for a whitened branch, and a description of what was applied.

    Raises
    ------
    ValueError
        The embedding width does not match the fusion's branches, or ``ok`` has the wrong length.
    """
    x = np.asarray(embeddings, np.float32)
    if x.ndim != 2 or x.shape[1] != fusion.dim:
        raise ValueError(f"{fusion.name}: expected embeddings of shape (N, {fusion.dim}), got {x.shape}")
    n = x.shape[0]
    valid = np.ones(n, bool) if ok is None else np.asarray(ok, bool)
    if valid.shape != (n,):
        raise ValueError(f"ok has shape {valid.shape}, expected ({n},)")
    rows = np.flatnonzero(valid)
    n_valid = int(rows.size)
    do_whiten = n_valid >= fusion.min_whiten
    parts, notes = [], []
    start = 0
    for b in fusion.branches:
        xb = _l2_rows(x[rows, start:start + b.dim])
        start += b.dim
        mean, scatter = _centred_moments(xb)
        xb = xb - mean.astype(np.float32)
        step = "L2, centred"
        if b.whiten and do_whiten:
            axes, sing = _whitening(scatter, fusion.whiten_dims)
            if axes.shape[1]:
                xb = ((xb.astype(np.float64) @ axes) / sing).astype(np.float32)
                step += f", PCA-whitened to {axes.shape[1]}-d"
            else:  # every valid row is the same: nothing to whiten
                step += " (not whitened: no variance)"
        elif b.whiten:
            step += f" (not whitened: {n_valid} valid images < {fusion.min_whiten})"
        xb = _l2_rows(xb) * np.float32(b.weight)
        out = np.zeros((n, xb.shape[1]), np.float32)
        out[rows] = xb
        parts.append(out)
        notes.append(f"{b.name}[{b.dim}]: {step}, L2, x{b.weight:g}")
    fused = np.concatenate(parts, axis=1) if parts else np.zeros((n, 0), np.float32)
    whitened = any("PCA-whitened" in note for note in notes)
    desc = f"{fusion.name} on {n_valid} valid images: " + "; ".join(notes) + f"; concatenated ({fused.shape[1]}-d)"
    return FusionResult(fused, desc, whitened, n_valid)
