"""Embedding images with an ONNX model: onnxruntime sessions and the decode -> embed pipeline.

The pipeline keeps both the decoder threads and the model busy: a bounded window of decode jobs
(a few batches ahead) runs in a thread pool while the calling thread assembles batches in file
order and runs the model. onnxruntime releases the GIL during ``run`` and Pillow releases it while
decoding and resizing, so the two overlap; the window bounds memory to a few batches of pixels no
matter how many images there are.
"""

from __future__ import annotations

import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from . import defaults
from .images import LAYOUT_SIDE, LoadedImage, layout_descriptor, load_image
from .models import ModelSpec, get_model

__all__ = ["EmbedResult", "ModelRunner", "create_session", "embed_images", "preprocess", "DEFAULT_BATCH_SIZE"]

DEFAULT_BATCH_SIZE = defaults.BATCH_SIZE
# Decode jobs kept in flight, in batches: enough to hide the model's run time behind decoding.
_BATCHES_AHEAD = 3


@dataclass
class EmbedResult:
    """Embeddings of a list of images, row i for image i.

    Attributes
    ----------
    embeddings : numpy.ndarray
        (N, D), the model's raw output (not normalised), float32 unless ``embed_images`` was
        asked for float16; zero rows for failed images.
    ok : numpy.ndarray
        bool (N,), whether the image decoded and was embedded.
    errors : list of str
        Failure reason per image, ``""`` when ok.
    widths, heights : numpy.ndarray
        int32 (N,), size of the full-resolution upright image, 0 when failed.
    device : str
        ``"cpu"`` or ``"cuda"``: where the model ran.
    seconds : float
        Wall time of the whole run.
    decode_cpu_seconds : float
        CPU time the decode threads spent decoding and resizing, summed over threads.
    inference_seconds : float
        Wall time spent in the model (``session.run``), preprocessing included.
    decode_wait_seconds : float
        Wall time the model thread waited for decoded images: near zero when the model is the
        bottleneck, most of ``seconds`` when decoding is.
    layout : numpy.ndarray or None
        float16 (N, 256) :func:`dupscope.images.layout_descriptor` of each image (zeros for
        failed ones), computed from the decoded pixels; None when not asked for.
    """

    embeddings: np.ndarray
    ok: np.ndarray
    errors: list[str]
    widths: np.ndarray
    heights: np.ndarray
    device: str = "cpu"
    seconds: float = 0.0
    model: ModelSpec | None = field(default=None, repr=False)
    decode_cpu_seconds: float = 0.0
    inference_seconds: float = 0.0
    decode_wait_seconds: float = 0.0
    layout: np.ndarray | None = None


def create_session(spec: ModelSpec, *, device: str = "auto", threads: int | None = None):
    """Open an onnxruntime session for a model.

    Parameters
    ----------
    spec : ModelSpec
        The model.
    device : {"auto", "cpu", "cuda", "cuda:N"}
        ``"auto"`` uses CUDA when onnxruntime has the CUDA provider, else the CPU; ``"cuda"`` fails
        when it has not.
    threads : int, optional
        Intra-op threads for the CPU provider (default: onnxruntime's choice, one per core).

    Returns
    -------
    session : onnxruntime.InferenceSession
    device : str
        ``"cuda"`` or ``"cpu"``, from the providers the session actually got.
    """
    import onnxruntime as ort

    from .device import gpu_status, parse_device, require_gpu
    from .errors import DeviceError

    dev = parse_device(device)
    available = ort.get_available_providers()
    has_cuda = "CUDAExecutionProvider" in available
    device_id = dev.index
    if dev.kind == "auto":
        use_cuda = has_cuda and gpu_status()[0]
    elif dev.kind == "cpu":
        use_cuda = False
    else:
        require_gpu(dev)  # first what the machine lacks, then what the install lacks
        if not has_cuda:
            raise DeviceError(
                f"--device {dev}: a GPU is present, but this onnxruntime has no CUDA provider "
                f"(available: {', '.join(available)}); pip install onnxruntime-gpu instead of onnxruntime, "
                "or use --device cpu"
            )
        use_cuda = True

    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # onnxruntime's warnings about unused initialisers etc. are noise here
    if threads:
        opts.intra_op_num_threads = int(threads)
    # onnxruntime's pool threads busy-wait between (and within) runs by default. Here decode
    # threads share the same cores, and spinning takes their CPU: on a loaded 2-core machine
    # embedding ran 1.2x faster without it, and it cost nothing on an idle one
    # (benchmarks/PHASE1.md).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers: list = ["CPUExecutionProvider"]
    if use_cuda:
        providers.insert(0, ("CUDAExecutionProvider", {"device_id": device_id}))
    sess = ort.InferenceSession(spec.path, opts, providers=providers)
    got = "cuda" if sess.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
    if dev.kind == "cuda" and got != "cuda":
        raise DeviceError(f"--device {dev}: onnxruntime could not start its CUDA provider on GPU {device_id} "
                          "(see onnxruntime's CUDA requirements); use --device cpu")
    return sess, got


class ModelRunner:
    """Runs a session's model on input batches and returns the float32 output as a numpy array.

    On the CPU provider it calls ``session.run``. On CUDA it goes through an onnxruntime IO
    binding: the output buffer is allocated on the device once per batch shape and bound again
    for every batch, instead of being allocated inside each run. Only the model's own output
    (``spec.output_name``) is bound, so a model with more outputs computes no others.

    Parameters
    ----------
    session : onnxruntime.InferenceSession
    device : str
        What :func:`create_session` returned with it (``"cuda"`` or ``"cpu"``).
    spec : ModelSpec
    binding : bool, optional
        Use the IO binding (default: on CUDA only). On the CPU it gives the same numbers, which
        is how the tests check it without a GPU.
    """

    def __init__(self, session, device: str, spec: ModelSpec, *, binding: bool | None = None) -> None:
        self.session, self.spec = session, spec
        self.binding = device == "cuda" if binding is None else bool(binding)
        # Where the bound output lives: the session's own device.
        self.where = "cuda" if device == "cuda" else "cpu"
        self.index = int(session.get_provider_options().get("CUDAExecutionProvider", {}).get("device_id", 0))
        out = next(o for o in session.get_outputs() if o.name == spec.output_name)
        # Output dimensions after the batch, when the model states them (else onnxruntime allocates).
        tail = out.shape[1:]
        self.tail = tuple(tail) if out.type == "tensor(float)" and all(isinstance(t, int) for t in tail) else None
        self.io = session.io_binding() if self.binding else None
        self.out = None  # the bound output, for batches of self.out.shape()[0] rows

    def __call__(self, x: np.ndarray) -> np.ndarray:
        spec = self.spec
        if self.io is None:
            return np.asarray(self.session.run([spec.output_name], {spec.input_name: x})[0])
        import onnxruntime as ort

        io = self.io
        io.bind_cpu_input(spec.input_name, np.ascontiguousarray(x))
        if self.tail is None:
            io.bind_output(spec.output_name, self.where, self.index)
        else:
            if self.out is None or self.out.shape()[0] != len(x):
                self.out = ort.OrtValue.ortvalue_from_shape_and_type((len(x),) + self.tail, np.float32,
                                                                     self.where, self.index)
            io.bind_ortvalue_output(spec.output_name, self.out)
        self.session.run_with_iobinding(io)
        return np.asarray(io.get_outputs()[0].numpy())


def preprocess(pixels: Sequence[np.ndarray], spec: ModelSpec) -> np.ndarray:
    """Stack uint8 images into the model's input tensor.

    Parameters
    ----------
    pixels : sequence of numpy.ndarray
        uint8 arrays of shape (H, W, 3) (RGB) or (H, W) (grey), all of the model's input size.
    spec : ModelSpec
        Gives layout, normalisation and dtype.

    Returns
    -------
    numpy.ndarray
        (B, C, H, W) or (B, H, W, C), ``(pixel / 255 - mean) / std`` in the model's dtype (raw
        pixels for uint8 models).
    """
    channels = 1 if pixels[0].ndim == 2 else pixels[0].shape[2]
    if spec.input_dtype != "uint8":
        # Fold /255 into the normalisation: (x/255 - m)/s == x * (1/(255 s)) - m/s.
        scale = (1.0 / (255.0 * np.asarray(spec.std, np.float32))).astype(np.float32)
        shift = (np.asarray(spec.mean, np.float32) / np.asarray(spec.std, np.float32)).astype(np.float32)
        if len(scale) in (1, channels):
            from ._core import model_input

            # One pass in the compiled core: the same float32 values as numpy's multiply then
            # subtract, at about a fifteenth of the time numpy takes for the stack, the cast,
            # the two operations and the transpose.
            out = model_input(list(pixels), np.broadcast_to(scale, channels).copy(),
                              np.broadcast_to(shift, channels).copy(), spec.layout == "NCHW")
            return out if spec.input_dtype == "float32" else out.astype(spec.input_dtype)
    x = np.stack(pixels)
    if x.ndim == 3:
        x = x[..., None]  # grey -> one channel
    out = x if spec.input_dtype == "uint8" else x.astype(np.float32) * scale - shift
    if spec.layout == "NCHW":
        out = out.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(out, dtype=spec.input_dtype)


def embed_images(
    paths: Sequence[str],
    model: str | os.PathLike | ModelSpec = "efficientnet-lite0",
    *,
    batch_size: int | None = None,
    workers: int | None = None,
    device: str = "auto",
    threads: int | None = None,
    progress: Callable[[int], None] | None = None,
    dtype: str | np.dtype = "float32",
    layout: bool = False,
    resume: tuple[np.ndarray, EmbedResult] | None = None,
    on_batch: Callable[[np.ndarray, EmbedResult], None] | None = None,
    keep_greys=None,
    onnx_session: tuple | None = None,
) -> EmbedResult:
    """Decode and embed images in parallel, keeping file order.

    Parameters
    ----------
    paths : sequence of str
        Image files (absolute or relative to the working directory).
    model : str, path or ModelSpec
        Built-in name, ONNX path or a spec from :func:`dupscope.models.get_model`. For a model
        with a fusion (``dupscope-v3``, ``spec.fusion`` not None) the result is its raw
        multi-branch output; :func:`dupscope.fusion.fuse_embeddings` turns it into the
        embedding to compare (:func:`dupscope.pipeline.compute_similarity` does so).
    batch_size : int, optional
        Images per model call (default 32; a model with a fixed batch size uses that).
    workers : int, optional
        Decode threads (default: the number of usable CPUs).
    device : {"auto", "cpu", "cuda", "cuda:N"}
        Where the model runs (decoding is always on the CPU).
    threads : int, optional
        onnxruntime intra-op threads on the CPU.
    progress : callable, optional
        Called as ``progress(n_done)`` with the number of images finished so far (ok or failed),
        after each batch.
    dtype : {"float32", "float16"}
        How the embeddings are kept. float16 halves their memory (a million 1952-d embeddings:
        3.9 GB instead of 7.8 GB); :func:`dupscope.pipeline.compute_similarity` uses it for
        models with a fusion, whose post-processing reads them in float32 blocks. A row with a
        value beyond float16's range (65504) fails with a message rather than turning to inf.
    layout : bool
        Also compute each image's layout descriptor (``EmbedResult.layout``) from the decoded
        pixels, in the decode threads (256 float16 values per image).
    resume : (done, EmbedResult), optional
        Rows already embedded (``done``, a bool mask) and a result holding them (all N rows;
        the others are ignored): only the other rows are decoded and embedded (the checkpoint of
        an interrupted run, :mod:`dupscope.checkpoint`).
    on_batch : callable, optional
        Called as ``on_batch(rows, result)`` after each model call with the rows finished since
        the last call (embedded or failed) and the result so far (its arrays are filled for those
        rows), e.g. to checkpoint them.
    keep_greys : dupscope.verify.KeptGreys, optional
        Where the decode threads put each image's grey image for verification
        (:func:`dupscope.images.feature_grey` at ``keep_greys.side``), while its budget lasts.
    onnx_session : (session, device), optional
        What :func:`create_session` returned for this model, to reuse (a Ray actor embeds
        many shards with one session); ``device`` and ``threads`` are then not read.

    Returns
    -------
    EmbedResult
        Failed images have a zero row, ``ok=False`` and a reason in ``errors``.
    """
    t0 = time.perf_counter()
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float16):
        raise ValueError(f"dtype must be float32 or float16, got {dtype}")
    spec = model if isinstance(model, ModelSpec) else get_model(model)
    sess, used = onnx_session if onnx_session is not None else create_session(spec, device=device, threads=threads)
    run_model = ModelRunner(sess, used, spec)
    if spec.batch is not None:
        batch_size = spec.batch
    batch_size = max(1, int(batch_size or DEFAULT_BATCH_SIZE))
    workers = max(1, int(workers or defaults.decode_threads()))

    n = len(paths)
    dim = spec.dim
    emb: np.ndarray | None = np.zeros((n, dim), dtype) if dim else None
    ok = np.zeros(n, bool)
    errors = [""] * n
    widths = np.zeros(n, np.int32)
    heights = np.zeros(n, np.int32)
    size = (spec.height, spec.width)

    decode_cpu = [0.0]
    timing = {"inference": 0.0, "wait": 0.0}

    lay = np.zeros((n, LAYOUT_SIDE * LAYOUT_SIDE), np.float16) if layout else None
    todo = np.arange(n)
    if resume is not None:
        done_mask, prev = resume
        done_mask = np.asarray(done_mask, bool)
        if len(done_mask) != n or len(prev.ok) != n:
            raise ValueError("resume must cover every row")
        if prev.embeddings.shape[1]:
            emb = np.array(prev.embeddings, dtype=dtype)
            if dim and emb.shape[1] != dim:
                raise ValueError(f"resumed embeddings have {emb.shape[1]} dimensions, the model {dim}")
        ok = np.asarray(prev.ok, bool) & done_mask
        errors = [e if d else "" for e, d in zip(prev.errors, done_mask)]
        widths, heights = np.array(prev.widths, np.int32), np.array(prev.heights, np.int32)
        if lay is not None and prev.layout is not None:
            lay = np.array(prev.layout, np.float16)
        todo = np.flatnonzero(~done_mask)
    n_before = n - len(todo)

    def snapshot() -> EmbedResult:
        return EmbedResult(emb if emb is not None else np.zeros((n, 0), dtype), ok, errors, widths, heights,
                           device=used, seconds=time.perf_counter() - t0, model=spec, layout=lay)

    def decode(row: int, path: str) -> tuple[LoadedImage, np.ndarray | None]:
        c0 = time.thread_time()
        img = load_image(path, size, colour=spec.colour, resize=spec.resize,
                         grey_side=keep_greys.side if keep_greys is not None and keep_greys.has_room() else None)
        desc = layout_descriptor(img.pixels) if layout and img.ok else None
        if img.grey is not None:
            keep_greys.put(row, img.grey)
            img.grey = None
        # A float += under the GIL is one bytecode-level read-modify-write race at worst; the
        # lost nanoseconds do not matter for a timing summary.
        decode_cpu[0] += time.thread_time() - c0
        return img, desc

    def run_batch(rows: list[int], pixels: list[np.ndarray]) -> None:
        nonlocal emb
        t_run = time.perf_counter()
        x = preprocess(pixels, spec)
        if spec.batch is not None and len(pixels) < spec.batch:
            # Fixed-batch model: pad the last batch with zeros and drop the padding's outputs.
            pad = np.zeros((spec.batch - len(pixels),) + x.shape[1:], x.dtype)
            x = np.concatenate([x, pad])
        out = run_model(x)
        out = np.asarray(out, dtype=np.float32).reshape(out.shape[0], -1)[: len(rows)]
        timing["inference"] += time.perf_counter() - t_run
        if emb is None:
            emb = np.zeros((n, out.shape[1]), dtype)
        if out.shape[1] != emb.shape[1]:
            raise RuntimeError(f"model output changed size from {emb.shape[1]} to {out.shape[1]}")
        finite = np.isfinite(out).all(axis=1)
        fits = finite & (np.abs(out) <= np.finfo(dtype).max).all(axis=1) if dtype != np.float32 else finite
        idx = np.asarray(rows)
        emb[idx[fits]] = out[fits]
        ok[idx[fits]] = True
        for r in idx[~finite]:
            errors[r] = "model error: the embedding contains NaN or infinity"
        for r in idx[finite & ~fits]:
            errors[r] = f"model error: the embedding has values beyond {dtype.name}'s range"

    done = 0
    window = batch_size * _BATCHES_AHEAD
    m = len(todo)
    since: list[int] = []  # rows popped since the last model call: all final after it
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dupscope-decode") as pool:
        pending: deque = deque()
        next_submit = 0
        rows: list[int] = []
        pixels: list[np.ndarray] = []
        while next_submit < m or pending:
            while next_submit < m and len(pending) < window:
                r = int(todo[next_submit])
                pending.append((r, next_submit, pool.submit(decode, r, paths[r])))
                next_submit += 1
            i, pos, fut = pending.popleft()
            since.append(i)
            t_wait = time.perf_counter()
            img, desc = fut.result()  # load_image never raises
            if desc is not None:
                lay[i] = desc
            timing["wait"] += time.perf_counter() - t_wait
            if img.ok:
                rows.append(i)
                pixels.append(img.pixels)
                widths[i], heights[i] = img.width, img.height
            else:
                errors[i] = img.error
            finished = not pending and next_submit >= m
            if len(rows) == batch_size or (finished and rows):
                run_batch(rows, pixels)
                rows, pixels = [], []
            if on_batch is not None and since and (not rows or finished):
                # Failed rows widths stay 0, as the store documents.
                widths[since] = np.where(ok[since], widths[since], 0)
                heights[since] = np.where(ok[since], heights[since], 0)
                on_batch(np.asarray(since, np.int64), snapshot())
                since = []
            if progress is not None and (finished or (pos + 1) % batch_size == 0):
                progress(n_before + pos + 1)
            done = pos + 1
    if emb is None:  # nothing decoded and the dimension was unknown
        emb = np.zeros((n, 0), dtype)
    # Failed rows carry no size: the store documents 0 for them.
    widths[~ok] = 0
    heights[~ok] = 0
    assert done == m
    return EmbedResult(emb, ok, errors, widths, heights, device=used,
                       seconds=time.perf_counter() - t0, model=spec,
                       decode_cpu_seconds=decode_cpu[0], inference_seconds=timing["inference"],
                       decode_wait_seconds=timing["wait"], layout=lay)
