"""Data-set level post-processing of embeddings: centring, whitening, fusion, neighbour augmentation.

Some models (``dupscope-v3``) output several embeddings side by side, one per *branch* (two
feature maps of one network), that only become a good copy detector once each branch is
normalised against the data set they were computed on, the branches are joined, and every
embedding is blended with its nearest neighbours. That is done here, between
:func:`dupscope.embed.embed_images` and the similarity engine, by :func:`fuse_embeddings`: a
function of the embedding matrix and the ``ok`` mask only (no labels, no ground truth).

For every branch ``b`` (a block of columns), over the valid rows only:

1. L2-normalise each row.
2. Subtract the mean of the valid rows (centring): what all images share (a black sky, a
   typical colour layout) no longer makes two unrelated images look alike. L2-normalise again.
3. If the branch is marked for whitening, centre these unit rows once more and project them onto
   their top ``d`` principal axes, each divided by its singular value (PCA whitening), so that
   the few directions in which every image varies do not drown the many in which copies and
   non-copies differ. The axes are fitted on the re-normalised rows, so every image weighs the
   same in the fit rather than in proportion to its distance from the mean (fitting on the rows
   before the second normalisation lost 0.002 AP and 0.007-0.017 recall at precision 0.95 on the
   accuracy benchmark). ``d`` is the number of *distinct pictures* in the data set (at most
   ``whiten_dims`` and a third of the valid images), estimated without labels: the centred
   branches are joined, every image is linked to those of its ``same_picture_k`` nearest
   neighbours (:func:`dupscope.topk`) with cosine at least ``same_picture_cos``, and the
   connected groups are counted (above 20,000 images, in a random sample of 20,000 first; the
   whole set is counted only if the sample shows fewer than ``whiten_dims``). The number of axes
   matters: beyond the number of pictures, the remaining axes only describe how copies of one
   picture differ (resized, re-encoded, bordered), and whitening them pushes copies apart; far
   below it, truncation throws away what tells pictures apart (measured on the accuracy
   benchmark: with 20 pictures x 17 copies, 128 axes gave AP 0.64 and 21 axes 0.99; with 100
   pictures x 3 copies, 18 axes gave 0.79 and ~90 axes 0.99). Below ``min_whiten_dims`` the
   branch stays centred only.
4. L2-normalise each row (again) and multiply by the branch weight.

The branches are then concatenated and each row L2-normalised. Last, *neighbour augmentation*
(database-side augmentation in image retrieval): every row ``x_i`` is replaced by the
normalised sum ``x_i + sum_j max(cos_ij, 0)^power x_j`` over its ``neighbours`` nearest rows
(:func:`dupscope.topk`, so no N x N matrix is built). Two copies of one picture share most
neighbours (each other and the picture's other copies), so their augmented rows move closer; a
weak neighbour (cosine 0.5 weighs 0.125 at power 3) changes a row little.

Invalid rows are zero in the output and take no part in any statistic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Branch", "Fusion", "FusionFit", "FusionResult", "fuse_embeddings", "apply_fit", "augment_rows",
           "count_pictures", "DUPSCOPE_V3"]

_CHUNK = 8192  # rows per block of the row-wise passes: bounds float64 temporaries (~80 MB at D = 1280)
# Above this many valid images the distinct pictures are first counted in a random sample of this
# size: when the sample alone shows at least ``whiten_dims`` pictures, so does the whole set, and
# the count's neighbour search (on the full-width joined branches, 6x the columns of the final
# embedding for dupscope-v3) costs a fixed 20,000-image search instead of growing as N^2.
_COUNT_SAMPLE = 20_000


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
        Most principal axes kept by whitening.
    min_whiten_dims : int
        Fewest axes worth whitening to; with fewer distinct pictures, whitened branches are
        only centred.
    same_picture_cos : float
        Cosine (of the joined, centred branches) from which two neighbours count as one picture
        when distinct pictures are counted.
    same_picture_k : int
        Neighbours per image looked at when counting.
    neighbours : int
        Neighbours blended into each row (0: no neighbour augmentation).
    neighbour_power : float
        A neighbour's weight is ``max(cosine, 0) ** neighbour_power``.
    whiten_axes : int, optional
        A fixed number of axes (capped by the data's rank) instead of the distinct-picture
        estimate; for experiments.
    """

    name: str
    branches: tuple[Branch, ...]
    whiten_dims: int = 160
    min_whiten_dims: int = 8
    same_picture_cos: float = 0.65
    same_picture_k: int = 10
    neighbours: int = 0
    neighbour_power: float = 3.0
    whiten_axes: int | None = None

    @property
    def dim(self) -> int:
        """Total number of input columns."""
        return sum(b.dim for b in self.branches)

    def axes_for(self, n_pictures: int, n_valid: int) -> int:
        """Principal axes a whitened branch keeps for ``n_pictures`` distinct pictures among
        ``n_valid`` images (0: not whitened). At most a third of the images: axes estimated from
        barely more images than axes turn every direction into noise of equal weight."""
        d = min(self.whiten_dims, n_pictures, n_valid // 3)
        return d if d >= self.min_whiten_dims else 0


#: The fusion of the ``dupscope-v3`` model: the max-pooled head (1280 columns) and the max-pooled
#: expansion layer of block 9 (672 columns), each centred and whitened to as many axes as there
#: are distinct pictures (at most 160, at least 8), equal weights, then each image blended with
#: its 10 nearest neighbours at power 3. Pictures are counted with links at cosine 0.6: block 9
#: is less invariant than the head, so at 0.65 copies of one picture were often counted as
#: several (20 pictures x 17 copies counted as ~25). The rule was chosen for the worst case over
#: subsets of the accuracy benchmark from 36 to 2,599 images, with 3 or 18 images per picture
#: (benchmarks/ACCURACY.md has the sweep).
DUPSCOPE_V3 = Fusion(
    name="dupscope-v3",
    branches=(Branch("head-max", 1280, 1.0, whiten=True), Branch("block9-max", 672, 1.0, whiten=True)),
    whiten_dims=160,
    min_whiten_dims=8,
    same_picture_cos=0.6,
    same_picture_k=10,
    neighbours=10,
    neighbour_power=3.0,
)


@dataclass
class FusionFit:
    """What :func:`fuse_embeddings` fitted on one data set, so that rows added later (an append
    run, a query set checked against a reference) get exactly the same treatment
    (:func:`apply_fit`, :func:`augment_rows`) instead of a refit that would move every score.

    Attributes
    ----------
    fusion : Fusion
        The rule (branches, weights, neighbour augmentation).
    means : list of numpy.ndarray
        Per branch, float64 (dim,): the mean of the valid unit rows (step 2).
    whitening : list
        Per branch, None (only centred) or ``(mean, axes, singular)``: float64 (dim,), float64
        (dim, d), float64 (d,) of step 3.
    """

    fusion: Fusion
    means: list
    whitening: list

    def to_group(self, group) -> None:
        """Store in an HDF5 group (``fusion/`` of a similarity file, docs/SCHEMA.md)."""
        group.attrs["name"] = self.fusion.name
        for k, (b, mean, wh) in enumerate(zip(self.fusion.branches, self.means, self.whitening)):
            g = group.create_group(f"branch{k}")
            g.attrs.update({"name": b.name, "dim": b.dim, "weight": b.weight})
            g["mean"] = mean
            if wh is not None:
                g["whiten_mean"], g["whiten_axes"], g["whiten_singular"] = wh

    @classmethod
    def from_group(cls, group, fusion: Fusion) -> "FusionFit":
        """Read what :meth:`to_group` stored, for ``fusion`` (which must be the one it was made by)."""
        if group.attrs.get("name") != fusion.name or len(group) != len(fusion.branches):
            raise ValueError(f"the stored fit is of {group.attrs.get('name')!r}, not of {fusion.name!r}")
        means, whitening = [], []
        for k, b in enumerate(fusion.branches):
            g = group[f"branch{k}"]
            if int(g.attrs["dim"]) != b.dim:
                raise ValueError(f"the stored fit's branch {k} has {g.attrs['dim']} columns, not {b.dim}")
            means.append(np.asarray(g["mean"], np.float64))
            whitening.append(None if "whiten_axes" not in g else (
                np.asarray(g["whiten_mean"], np.float64), np.asarray(g["whiten_axes"], np.float64),
                np.asarray(g["whiten_singular"], np.float64)))
        return cls(fusion, means, whitening)

    @property
    def width(self) -> int:
        """Columns of the fused embedding."""
        return sum(b.dim if w is None else w[1].shape[1] for b, w in zip(self.fusion.branches, self.whitening))


def _fit_block(x: np.ndarray, fit: FusionFit) -> np.ndarray:
    """Steps 1-4 and the concatenation for a block of raw rows (float16/32, all valid): float32
    (rows, fit.width), each branch of norm equal to its weight."""
    out = np.empty((len(x), fit.width), np.float32)
    lo = start = 0
    for b, mean, wh in zip(fit.fusion.branches, fit.means, fit.whitening):
        u = _l2_rows(x[:, start:start + b.dim].astype(np.float32))
        u -= mean
        _l2_rows_inplace(u, weight=b.weight)
        if wh is not None:
            u = (((u.astype(np.float64) - wh[0]) @ wh[1]) / wh[2]).astype(np.float32)
        out[:, lo:lo + u.shape[1]] = _l2_rows(u) * np.float32(b.weight)
        lo += u.shape[1]
        start += b.dim
    return out


def apply_fit(raw: np.ndarray, fit: FusionFit, ok: np.ndarray | None = None) -> np.ndarray:
    """The fused rows of ``raw`` (N, fusion.dim) before neighbour augmentation, by a stored fit:
    float32 (N, fit.width), zero where ``ok`` is False. For the rows a fit was made on, this is
    exactly what :func:`fuse_embeddings` computed for them."""
    x = np.asarray(raw)
    if x.ndim != 2 or x.shape[1] != fit.fusion.dim:
        raise ValueError(f"{fit.fusion.name}: expected embeddings of shape (N, {fit.fusion.dim}), got {x.shape}")
    rows = np.flatnonzero(np.ones(len(x), bool) if ok is None else np.asarray(ok, bool))
    out = np.zeros((len(x), fit.width), np.float32)
    for i in range(0, len(rows), _CHUNK):
        sl = rows[i:i + _CHUNK]
        out[sl] = _fit_block(x[sl], fit)
    return out


def augment_rows(new: np.ndarray, pool: np.ndarray, fit: FusionFit, *, self_rows: np.ndarray | None = None
                 ) -> np.ndarray:
    """Neighbour augmentation of ``new`` rows (fused, before augmentation) against ``pool`` (the
    same kind of rows of the whole data set they belong to), as :func:`fuse_embeddings` does for
    its own rows: each row plus its ``fusion.neighbours`` nearest pool rows weighted
    ``max(cos, 0) ** power``, L2-normalised. ``self_rows[i]`` is new row i's own row in the pool
    (left out of its neighbours). All rows must be valid (non-zero)."""
    f = fit.fusion
    x = _l2_rows(np.asarray(new, np.float32))
    if f.neighbours <= 0 or len(pool) < 2:
        return x
    p = _l2_rows(np.asarray(pool, np.float32))
    idx, cos = _cross_topk(x, p, min(f.neighbours, len(p) - 1), self_rows)
    return _blend(x, p, idx, cos, f.neighbour_power)


def _blend(x: np.ndarray, pool: np.ndarray, index: np.ndarray, cos: np.ndarray, power: float) -> np.ndarray:
    """``x_i + sum_j max(cos_ij, 0)^power pool_j`` over the rows ``index[i]`` names (-1: none),
    L2-normalised, in blocks of rows (the gathered (rows, k, D) temporary stays ~52 MB at k = 10,
    D = 320). ``x`` is not changed."""
    weight = np.maximum(np.nan_to_num(cos, nan=0.0), 0.0) ** np.float32(power)
    weight[index < 0] = 0.0
    index = np.where(index < 0, 0, index)
    out = x.copy()  # every row's sum reads the original rows
    step = 4096
    for i in range(0, x.shape[0], step):
        sl = slice(i, i + step)
        out[sl] += np.einsum("rk,rkd->rd", weight[sl], pool[index[sl]])
    _l2_rows_inplace(out)
    return out


def _cross_topk(q: np.ndarray, p: np.ndarray, k: int, self_rows: np.ndarray | None, block: int = 1024
                ) -> tuple[np.ndarray, np.ndarray]:
    """Each unit row of ``q``'s ``k`` nearest unit rows of ``p`` (its own row ``self_rows[i]`` left
    out), best first, ties by lower row: (index, cosine), the cosine read back from the engine's
    float16 ``(1 + cos) / 2`` as :func:`_neighbour_cosines` does, so the weights are the same."""
    from .search import query_topk

    index, sim = query_topk(q, p, k, exclude=self_rows, block=block, metric="engine")
    return index, 2.0 * sim.astype(np.float32) - 1.0


@dataclass
class FusionResult:
    """Output of :func:`fuse_embeddings`.

    Attributes
    ----------
    embeddings : numpy.ndarray
        float32 (N, D'), the fused embedding; zero rows where ``ok`` is False.
    description : str
        One line saying what was applied, for people (the ``embedding_postprocess`` attribute);
        code reads the fields below instead.
    whitened : bool
        Whether any branch was whitened.
    n_valid : int
        Rows the statistics were computed on.
    n_pictures : int
        Estimated number of distinct pictures the whitening was sized by (0: not estimated).
    axes : tuple of int
        Whitened dimensions kept per branch (0: that branch was only centred).
    neighbours : int
        Neighbours of the neighbour augmentation (0: none).
    fit : FusionFit or None
        The fitted statistics, to treat rows added later the same way.
    """

    embeddings: np.ndarray
    description: str
    whitened: bool
    n_valid: int
    n_pictures: int = 0
    axes: tuple = ()
    neighbours: int = 0
    fit: FusionFit | None = None


def _l2_rows(x: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm; all-zero rows stay zero."""
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def _l2_rows_inplace(x: np.ndarray, weight: float = 1.0) -> None:
    """Scale each row of ``x`` (a float32 array or view) to L2 norm ``weight``, in blocks of
    rows; all-zero rows stay zero."""
    for i in range(0, x.shape[0], _CHUNK):
        blk = x[i:i + _CHUNK]
        norm = np.linalg.norm(blk, axis=1, keepdims=True)
        blk *= np.float32(weight) / np.where(norm > 0, norm, 1.0).astype(np.float32)


def _row_mean_of(block, n: int, d: int) -> np.ndarray:
    """Mean, in float64, of the ``n`` rows that ``block(i, j)`` returns ``j - i`` at a time."""
    mean = np.zeros(d, np.float64)
    for i in range(0, n, _CHUNK):
        mean += block(i, min(i + _CHUNK, n)).sum(axis=0, dtype=np.float64)
    return mean / max(n, 1)


def _centred_moments_of(block, n: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and scatter matrix ``sum (x - mean)^T (x - mean)``, in float64, of the ``n`` rows that
    ``block(i, j)`` returns ``j - i`` at a time (two passes: the mean, then the scatter)."""
    mean = _row_mean_of(block, n, d)
    scatter = np.zeros((d, d), np.float64)
    for i in range(0, n, _CHUNK):
        c = block(i, min(i + _CHUNK, n)).astype(np.float64) - mean
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


def fuse_embeddings(embeddings: np.ndarray, ok: np.ndarray | None, fusion: Fusion, *,
                    device: str = "auto", threads: int | None = None) -> FusionResult:
    """Normalise, centre, whiten and join the branches of a multi-branch embedding, then blend
    each row with its nearest neighbours.

    Parameters
    ----------
    embeddings : numpy.ndarray
        (N, D) raw model output, D equal to ``fusion.dim``; float16 or float32 are read as they
        are, in float32 blocks of rows (no float32 copy of a float16 input), other dtypes are
        converted first.
    ok : numpy.ndarray or None
        bool (N,), rows to use; None means all. Invalid rows do not enter any statistic and
        are zero in the output.
    fusion : Fusion
        The branches and their treatment (see the module docstring).
    device : {"auto", "cpu", "cuda"}
        Where the neighbour search of the augmentation runs.
    threads : int, optional
        Engine threads for that search.

    Returns
    -------
    FusionResult
        The fused float32 (N, D') matrix, where D' sums each branch's dim, or the number of
        axes kept for a whitened branch, and a description of what was applied.

    Raises
    ------
    ValueError
        The embedding width does not match the fusion's branches, or ``ok`` has the wrong length.
    """
    x = np.asarray(embeddings)
    if x.dtype not in (np.float16, np.float32):
        x = x.astype(np.float32)
    if x.ndim != 2 or x.shape[1] != fusion.dim:
        raise ValueError(f"{fusion.name}: expected embeddings of shape (N, {fusion.dim}), got {x.shape}")
    n = x.shape[0]
    valid = np.ones(n, bool) if ok is None else np.asarray(ok, bool)
    if valid.shape != (n,):
        raise ValueError(f"ok has shape {valid.shape}, expected ({n},)")
    rows = np.flatnonzero(valid)
    n_valid = int(rows.size)
    # Nothing of size N x D is kept besides the input: every pass below recomputes a branch's
    # normalised rows from the input, a block of rows at a time (cheap next to the scatter
    # matrices), so memory beyond the input and the (N, D') output is a few blocks, the scatter
    # matrices and the rows the picture count compares (at most _COUNT_SAMPLE of them on a
    # large set).
    starts = np.cumsum([0] + [b.dim for b in fusion.branches])

    def unit_rows(k: int, idx) -> np.ndarray:
        """Branch k of the valid rows ``idx`` (positions in ``rows``: a slice or an index array),
        in float32, each row L2-normalised."""
        lo = starts[k]
        return _l2_rows(x[rows[idx], lo:lo + fusion.branches[k].dim].astype(np.float32))

    # float64, as _row_mean_of returns them (cast to float32, the 30,000 x 1952 run of
    # benchmarks/RESULTS.md peaked at 659 instead of 608 MiB).
    means = [_row_mean_of(lambda i, j, k=k: unit_rows(k, slice(i, j)), n_valid, b.dim)
             for k, b in enumerate(fusion.branches)]

    def branch_rows(k: int, idx) -> np.ndarray:
        """Branch k of the valid rows ``idx``: L2, centred, L2, weighted."""
        u = unit_rows(k, idx)
        u -= means[k]
        _l2_rows_inplace(u, weight=fusion.branches[k].weight)
        return u

    def joined_rows(idx: np.ndarray) -> np.ndarray:
        """All branches of the valid rows ``idx`` side by side, each row of unit norm: what the
        picture count compares."""
        j = np.concatenate([branch_rows(k, idx) for k in range(len(fusion.branches))], axis=1)
        _l2_rows_inplace(j)
        return j

    notes = []
    n_pictures = axes_kept = sampled = 0
    if fusion.whiten_axes is not None:
        axes_kept = fusion.whiten_axes
    elif any(b.whiten for b in fusion.branches) and n_valid > 1:
        n_pictures, sampled = _count_for_axes(joined_rows, n_valid, fusion, device=device, threads=threads)
        axes_kept = fusion.axes_for(n_pictures, n_valid)
    kept_axes = []
    whitening = []
    for k, b in enumerate(fusion.branches):
        step = "L2, centred"
        wh = None
        if b.whiten and axes_kept:
            # Every row of the branch has norm b.weight here, so each image weighs the same in the fit.
            mean, scatter = _centred_moments_of(lambda i, j, k=k: branch_rows(k, slice(i, j)), n_valid, b.dim)
            axes, sing = _whitening(scatter, axes_kept)
            if axes.shape[1]:
                wh = (mean, axes, sing)
                step += f", L2, centred, PCA-whitened to {axes.shape[1]}-d"
            else:  # every valid row is the same: nothing to whiten
                step += " (not whitened: no variance)"
        elif b.whiten and fusion.whiten_axes is not None:
            step += " (not whitened: 0 axes asked)"
        elif b.whiten:
            step += (f" (not whitened: {n_pictures} distinct pictures in {n_valid} images give fewer than "
                     f"{fusion.min_whiten_dims} axes)")
        whitening.append(wh)
        kept_axes.append(0 if wh is None else int(wh[1].shape[1]))
        notes.append(f"{b.name}[{b.dim}]: {step}, L2, x{b.weight:g}")
    fit = FusionFit(fusion, means, whitening)
    fused = np.zeros((n, fit.width), np.float32)
    for i in range(0, n_valid, _CHUNK):
        sl = rows[i:i + _CHUNK]
        fused[sl] = _fit_block(x[sl], fit)
    if n_pictures:
        where = f" in a random sample of {sampled} images, enough for {fusion.whiten_dims} axes" if sampled else ""
        notes.insert(0, f"~{n_pictures} distinct pictures{where} (neighbours at cosine >= "
                        f"{fusion.same_picture_cos:g} joined)")
    whitened = any(kept_axes)
    desc = f"{fusion.name} on {n_valid} valid images: " + "; ".join(notes) + f"; concatenated ({fused.shape[1]}-d)"
    if fusion.neighbours > 0 and n_valid > 1:
        if n_valid == n:  # no gather/scatter copies of the (N, D') matrix
            _l2_rows_inplace(fused)
            fused = _neighbour_augment(fused, fusion.neighbours, fusion.neighbour_power, device=device,
                                       threads=threads)
        else:
            fused[rows] = _neighbour_augment(_l2_rows(fused[rows]), fusion.neighbours, fusion.neighbour_power,
                                             device=device, threads=threads)
        desc += (f"; L2; each image + its {min(fusion.neighbours, n_valid - 1)} nearest neighbours "
                 f"weighted max(cos, 0)^{fusion.neighbour_power:g}, L2")
    used_neighbours = min(fusion.neighbours, n_valid - 1) if fusion.neighbours > 0 and n_valid > 1 else 0
    return FusionResult(fused, desc, whitened, n_valid, n_pictures=int(n_pictures), axes=tuple(kept_axes),
                        neighbours=int(used_neighbours), fit=fit)


def _count_for_axes(joined_rows, n: int, fusion: Fusion, *, device: str, threads: int | None) -> tuple[int, int]:
    """Distinct pictures among ``n`` images whose unit joined rows ``joined_rows(idx)`` gives, as far
    as the whitening needs to know: returns (count, sample size or 0). Large sets are counted in a
    random sample (fixed seed) first; the whole set is counted only when the sample shows fewer
    than ``fusion.whiten_dims``."""
    if n > _COUNT_SAMPLE:
        pick = np.sort(np.random.default_rng(0).choice(n, _COUNT_SAMPLE, replace=False))
        in_sample = count_pictures(joined_rows(pick), fusion.same_picture_cos, fusion.same_picture_k,
                                   device=device, threads=threads)
        if in_sample >= fusion.whiten_dims:
            return in_sample, _COUNT_SAMPLE
    return count_pictures(joined_rows(np.arange(n)), fusion.same_picture_cos, fusion.same_picture_k,
                          device=device, threads=threads), 0


def count_pictures(x: np.ndarray, min_cos: float, k: int, *, device: str = "auto",
                   threads: int | None = None) -> int:
    """Estimate how many distinct pictures the unit rows of ``x`` show.

    Each row is linked to those of its ``k`` nearest rows whose cosine is at least ``min_cos``;
    the number of connected groups is returned. It is an estimate: chains of neighbours can join
    two pictures, and a heavily altered copy can stay apart. On the accuracy benchmark at
    ``min_cos`` 0.65 it gave 0.95-1.47 times the true count (most above 1 when each picture has
    17 copies); at 0.6 it undercounted large sets (153 pictures counted as 108).
    """
    from .pairs import connected_groups

    n = x.shape[0]
    if n < 2:
        return n
    index, cos = _neighbour_cosines(x, min(k, n - 1), device=device, threads=threads)
    linked = (index >= 0) & (cos >= np.float32(min_cos))  # NaN (no neighbour) is never linked
    a = np.broadcast_to(np.arange(n)[:, None], index.shape)[linked]
    roots = connected_groups(n, a, index[linked])
    return int(np.count_nonzero(roots == np.arange(n)))


def _neighbour_cosines(x: np.ndarray, k: int, *, device: str, threads: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The engine's top-k of the unit rows of ``x``: (N, k) indices (-1 pads) and their cosines
    as float32 (NaN where the index is -1), converted back from the engine's ``(1 + cos) / 2``."""
    from .engine import topk

    index, sim = topk(x, k, device, threads=threads)
    return index, 2.0 * sim.astype(np.float32) - 1.0


def _neighbour_augment(x: np.ndarray, k: int, power: float, *, device: str, threads: int | None) -> np.ndarray:
    """``x_i + sum_j max(cos_ij, 0)^power x_j`` over the ``k`` nearest other rows, L2-normalised.

    ``x`` holds unit rows (all valid).
    """
    index, cos = _neighbour_cosines(x, min(k, x.shape[0] - 1), device=device, threads=threads)
    return _blend(x, x, index, cos, power)
