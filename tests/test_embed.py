"""The decode -> embed pipeline on the shipped models: planted copies must find their originals."""

from __future__ import annotations

import os

import numpy as np
import pytest

import imagegen
from dupscope.embed import ModelRunner, create_session, embed_images, preprocess
from dupscope.models import get_model

N_ORIGINALS = 8
# Pictures large enough that a 60% copy is still above the model's 224 px input.
SIZE = (448, 336)
COPIES = {
    "exact": lambda im: im,
    "resized": lambda im: imagegen.resized(im, 0.6),
    "jpeg": lambda im: imagegen.jpeg(im, 50),
    "crop": lambda im: imagegen.cropped(im, 0.9),
}


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Originals (PNG) and, for each kind of copy, one copy of every original (copies as JPEG/PNG)."""
    root = tmp_path_factory.mktemp("planted")
    originals, copies = [], {k: [] for k in COPIES}
    for s in range(N_ORIGINALS):
        img = imagegen.scene(s, SIZE)
        originals.append(str(imagegen.save(img, root / f"orig{s}.png")))
        for kind, make in COPIES.items():
            ext = "jpg" if kind == "jpeg" else "png"
            copies[kind].append(str(imagegen.save(make(img), root / f"{kind}{s}.{ext}", quality=95)
                                    if ext == "jpg" else imagegen.save(make(img), root / f"{kind}{s}.{ext}")))
    return originals, copies


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def check_copies_find_originals(model, planted, kinds, min_cos):
    originals, copies = planted
    paths = originals + [p for k in kinds for p in copies[k]]
    res = embed_images(paths, model, batch_size=16, device="cpu")
    assert res.ok.all(), [e for e in res.errors if e]
    emb = unit(res.embeddings.astype(np.float64))
    orig = emb[:N_ORIGINALS]
    # Distinct originals must not look like copies of each other, or the test below proves nothing.
    between = orig @ orig.T
    np.fill_diagonal(between, -1)
    for j, kind in enumerate(kinds):
        block = emb[N_ORIGINALS * (j + 1): N_ORIGINALS * (j + 2)]
        sims = block @ orig.T
        assert (sims.argmax(axis=1) == np.arange(N_ORIGINALS)).all(), (kind, sims.round(3))
        assert np.diag(sims).min() >= min_cos[kind], (kind, np.diag(sims).round(3))
    return between.max()


def test_default_model_finds_planted_copies(planted):
    worst_distinct = check_copies_find_originals(
        "efficientnet-lite0", planted, list(COPIES),
        {"exact": 0.9999, "resized": 0.9, "jpeg": 0.8, "crop": 0.6},
    )
    assert worst_distinct < 0.9


def test_dct_model_finds_planted_copies(planted):
    worst_distinct = check_copies_find_originals(
        "dct32", planted, ["exact", "resized", "jpeg"], {"exact": 0.9999, "resized": 0.99, "jpeg": 0.99},
    )
    assert worst_distinct < 0.8


def test_failures_get_zero_rows_and_order_is_kept(tmp_path):
    good = [str(imagegen.save(imagegen.scene(s, (64, 48)), tmp_path / f"g{s}.png")) for s in range(5)]
    bad = str(imagegen.write_not_an_image(tmp_path / "bad.jpg"))
    paths = [good[0], bad, good[1], good[2], str(tmp_path / "gone.png"), good[3], good[4]]
    seen = []
    res = embed_images(paths, "dct32", batch_size=2, workers=2, device="cpu", progress=seen.append)
    assert res.ok.tolist() == [True, False, True, True, False, True, True]
    assert res.errors[1].startswith("not an image") and res.errors[4].startswith("missing file")
    assert not res.embeddings[[1, 4]].any()
    assert (res.widths[res.ok] == 64).all() and (res.widths[~res.ok] == 0).all()
    assert seen == sorted(seen) and seen[-1] == len(paths)
    # Batch boundaries and threading must not change anything: one image at a time gives the same rows.
    one_by_one = np.stack([embed_images([p], "dct32", device="cpu").embeddings[0] for p in paths])
    np.testing.assert_allclose(res.embeddings, one_by_one, rtol=1e-5, atol=1e-6)


def test_preprocess_normalises_like_the_spec():
    spec = get_model("efficientnet-lite0")
    px = np.zeros((224, 224, 3), np.uint8)
    px[0, 0] = (255, 128, 0)
    x = preprocess([px, px], spec)
    assert x.shape == (2, 3, 224, 224) and x.dtype == np.float32
    expect = (np.array([255, 128, 0]) / 255 - np.array(spec.mean)) / np.array(spec.std)
    np.testing.assert_allclose(x[1, :, 0, 0], expect, rtol=1e-5)
    grey = preprocess([np.full((32, 32), 51, np.uint8)], get_model("dct32"))
    assert grey.shape == (1, 1, 32, 32) and np.allclose(grey, 0.2)


def _numpy_preprocess(pixels, spec):
    """The model input as numpy computes it (stack, float32 multiply, subtract, transpose)."""
    x = np.stack(pixels)
    if x.ndim == 3:
        x = x[..., None]
    if spec.input_dtype != "uint8":
        scale = (1.0 / (255.0 * np.asarray(spec.std, np.float32))).astype(np.float32)
        shift = (np.asarray(spec.mean, np.float32) / np.asarray(spec.std, np.float32)).astype(np.float32)
        x = x.astype(np.float32) * scale - shift
    if spec.layout == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x, dtype=spec.input_dtype)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", ["float32", "float16", "uint8"])
@pytest.mark.parametrize("shape,mean,std", [((37, 29, 3), None, None), ((9, 11), (0.5,), (0.25,)),
                                            ((6, 5, 3), (0.5,), (0.2,)), ((6, 5), (0.1, 0.2, 0.3), (0.3, 0.2, 0.1)),
                                            ((4, 3, 4), (0.1, 0.2, 0.3, 0.4), (0.5, 0.6, 0.7, 0.8))])
def test_preprocess_gives_numpys_values_bit_for_bit(layout, dtype, shape, mean, std):
    """The compiled one-pass input (``_core.model_input``) against numpy's own arithmetic, every
    grey level in every channel, at awkward sizes, channel counts and layouts."""
    import dataclasses

    base = get_model("efficientnet-lite0")
    spec = dataclasses.replace(base, layout=layout, input_dtype=dtype, mean=mean or base.mean, std=std or base.std)
    rng = np.random.default_rng(7)
    pixels = [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(3)]
    flat = pixels[0].reshape(-1)
    flat[:] = np.arange(flat.size) % 256  # every grey level where the image is large enough
    got, want = preprocess(pixels, spec), _numpy_preprocess(pixels, spec)
    assert got.shape == want.shape and got.dtype == want.dtype
    assert got.tobytes() == want.tobytes()


def test_model_input_rejects_bad_images():
    from dupscope._core import model_input

    one = np.ones(3, np.float32)
    with pytest.raises(ValueError, match="at least one"):
        model_input([], one, one)
    with pytest.raises(TypeError, match="uint8"):
        model_input([np.zeros((4, 4, 3), np.float32)], one, one)
    with pytest.raises(ValueError, match="one shape"):
        model_input([np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 3), np.uint8)], one, one)
    with pytest.raises(ValueError, match="per channel"):
        model_input([np.zeros((4, 4, 3), np.uint8)], one[:2], one[:2])
    # A view that is not contiguous is copied, not misread.
    wide = np.arange(4 * 8 * 3, dtype=np.uint8).reshape(4, 8, 3)
    out = model_input([wide[:, ::2]], one, np.zeros(3, np.float32), True)
    np.testing.assert_array_equal(out[0], wide[:, ::2].transpose(2, 0, 1).astype(np.float32))


def test_cuda_device_without_cuda_is_a_clear_error():
    import onnxruntime as ort

    from dupscope.device import gpu_status
    from dupscope.errors import DeviceError

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    # Without a GPU the message is about the GPU; with one, about the missing provider.
    want = "no CUDA provider.*onnxruntime-gpu" if gpu_status()[0] else "no usable GPU|built without CUDA"
    with pytest.raises(DeviceError, match=want):
        create_session(get_model("dct32"), device="cuda")
    _, used = create_session(get_model("dct32"), device="auto")
    assert used == "cpu"


def test_real_photo_crops_with_default_model():
    """Crops of real photographs (from the scikit-image wheel, when installed)."""
    skimage = pytest.importorskip("skimage")
    from PIL import Image

    data = os.path.join(os.path.dirname(skimage.__file__), "data")
    names = ["astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg", "horse.png"]
    paths = [os.path.join(data, n) for n in names]
    if not all(os.path.isfile(p) for p in paths):
        pytest.skip("scikit-image wheel without its sample photos")
    tmp = []
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        for i, p in enumerate(paths):
            with Image.open(p) as im:
                tmp.append(str(imagegen.save(imagegen.cropped(im.convert("RGB"), 0.8), os.path.join(d, f"c{i}.png"))))
        res = embed_images(paths + tmp, "efficientnet-lite0", device="cpu")
    emb = unit(res.embeddings.astype(np.float64))
    sims = emb[len(paths):] @ emb[: len(paths)].T
    assert (sims.argmax(axis=1) == np.arange(len(paths))).all(), sims.round(3)


@pytest.mark.parametrize("model", ["dct32", "dupscope-v3"])
def test_io_binding_runner_gives_the_sessions_output(model):
    """The CUDA path's IO binding, run on the CPU provider: the same numbers as session.run, for
    batches of changing size (the bound output is reallocated) and for a model with two outputs
    (only the model's own is bound)."""
    spec = get_model(model)
    sess, used = create_session(spec, device="cpu")
    plain, bound = ModelRunner(sess, used, spec), ModelRunner(sess, used, spec, binding=True)
    assert plain.io is None and bound.io is not None
    rng = np.random.default_rng(7)
    for n in (3, 3, 1, 4):
        pixels = [rng.integers(0, 256, (spec.height, spec.width, spec.channels), dtype=np.uint8) for _ in range(n)]
        x = preprocess(pixels, spec)
        want = sess.run([spec.output_name], {spec.input_name: x})[0]
        got = bound(x)
        assert got.shape == want.shape == (n, want.shape[1])
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(plain(x), want)
