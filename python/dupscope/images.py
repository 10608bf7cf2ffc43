"""Decoding images into model-sized pixel arrays, with failures reported as reasons, never raised.

Every file goes through the same steps:

1. open with Pillow (only the header is read); Pillow's decompression-bomb limit
   (``PIL.Image.MAX_IMAGE_PIXELS``) is kept: a larger image fails with a message saying so;
2. for JPEG, ask the decoder for a reduced size (``draft``): libjpeg can decode at 1/2, 1/4 or 1/8
   scale directly, which makes large photos several times faster; the draft never goes below the
   model's input size;
3. the first frame only (animations, multi-page TIFF);
4. EXIF orientation applied, so a rotated copy of a photo and its upright original look the same;
5. the mode normalised to 8-bit RGB or grey (see :func:`to_colour`): transparency is composited on
   a fixed white background, palettes and CMYK converted, 16/32-bit and float images scaled to
   0-255 instead of being clipped;
6. a uniform frame cut off (:func:`frame_box`: a border, letterbox or pillarbox of even width on
   two opposite sides), so that a bordered copy reaches the model as the picture itself;
7. resized to the model's input. ``"stretch"`` (the default of the built-in models) resizes the
   whole image to the input size and ignores the aspect ratio: nothing is cut, so a cropped or
   padded copy still shares most of its content with the original. ``"crop"`` scales the shorter
   side and cuts the centre. On the test photos the default model ranked 70% corner crops as the
   top neighbour of their original more often with ``"stretch"``.

Resampling is Pillow's antialiased bilinear filter (after an integer box reduction for large
downscales), which releases the GIL, so decode threads run in parallel.

Width and height reported for an image are those of the full-resolution upright image, not of the
JPEG draft.
"""

from __future__ import annotations

import io
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "BACKGROUND",
    "IMAGE_EXTENSIONS",
    "ImageLoadError",
    "LoadedImage",
    "feature_grey",
    "grey_draft_scale",
    "decode_image",
    "failure_kind",
    "load_image",
    "load_images",
    "to_colour",
]

#: Colour that transparent pixels are composited on. Fixed (not per image) so that two copies of a
#: transparent image always get the same pixels.
BACKGROUND = (255, 255, 255)

#: File extensions treated as images when scanning folders (lower case).
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".gif", ".bmp", ".dib", ".tif", ".tiff",
     ".webp", ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".ico", ".jp2", ".j2k", ".avif", ".heic"}
)

# EXIF orientations 5-8 swap width and height.
_SWAPPING_ORIENTATIONS = {5, 6, 7, 8}
_HIGH_DEPTH_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}


class ImageLoadError(Exception):
    """An image could not be decoded; ``str(exc)`` is the reason stored in ``images/error``."""


@dataclass
class LoadedImage:
    """One decoded, resized image, or why it failed.

    Attributes
    ----------
    pixels : numpy.ndarray or None
        uint8 array, (H, W, 3) for RGB or (H, W) for grey; None on failure.
    width, height : int
        Size of the full-resolution upright image; 0 on failure.
    error : str
        Reason of the failure, ``""`` when ok.
    grey : numpy.ndarray or None
        The image for local features (:func:`feature_grey`), when :func:`load_image` was asked
        for it and decoded the image at full resolution.
    """

    pixels: np.ndarray | None
    width: int = 0
    height: int = 0
    error: str = ""
    grey: np.ndarray | None = None

    @property
    def ok(self) -> bool:
        """Whether the image decoded."""
        return self.pixels is not None


#: Side of :func:`layout_descriptor`'s grey thumbnail.
LAYOUT_SIDE = 16


def layout_descriptor(pixels: np.ndarray) -> np.ndarray:
    """A picture's coarse layout: its grey image reduced to 16 x 16 (box filter), centred and
    L2-normalised, as float32 (256,); zeros for a flat image.

    Copies that keep the frame (resized, re-encoded, blurred, recoloured, watermarked) keep this
    layout almost exactly, also where a network's embedding moves a lot (a faint object on a
    dark sky at a quarter of the size); it proposes extra candidate pairs for verification.
    """
    h, w = pixels.shape[:2]
    if h % LAYOUT_SIDE == 0 and w % LAYOUT_SIDE == 0:
        # The box filter of a size that divides evenly is a block mean: one integer sum per
        # cell (a fifth of the time of the float image and PIL's filter, the same values).
        # Rows of cells first, then the columns of each cell (contiguous runs).
        band = pixels.reshape(LAYOUT_SIDE, h // LAYOUT_SIDE, -1).sum(axis=1, dtype=np.uint32)
        cells = band.reshape(LAYOUT_SIDE, LAYOUT_SIDE, -1).sum(axis=2)
        v = (cells / (pixels.size // LAYOUT_SIDE**2)).astype(np.float32).ravel()
    else:
        grey = pixels.astype(np.float32) if pixels.ndim == 2 else pixels.astype(np.float32).mean(axis=2)
        img = Image.fromarray(grey, "F").resize((LAYOUT_SIDE, LAYOUT_SIDE), Image.Resampling.BOX)
        v = np.asarray(img, np.float32).ravel()
    v = v - v.mean()
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 1e-3 * LAYOUT_SIDE else np.zeros_like(v)


def failure_kind(reason: str) -> str:
    """Short category of a failure reason (the part before the first colon), for summaries."""
    return reason.split(":", 1)[0].strip() if reason else ""


def _scale_high_depth(img: Image.Image) -> np.ndarray:
    """16/32-bit integer or float grey image -> uint8 array, scaled rather than clipped."""
    arr = np.asarray(img)
    if img.mode.startswith("I;16"):
        # Nominal 16-bit range; 257 maps 65535 exactly to 255.
        return np.round(arr.astype(np.float32) / 257.0).astype(np.uint8)
    arr = arr.astype(np.float64)
    finite = np.isfinite(arr)
    if not finite.any():
        return np.zeros(arr.shape, np.uint8)
    lo, hi = float(arr[finite].min()), float(arr[finite].max())
    if img.mode == "F" and lo >= 0.0 and hi <= 1.0:
        scaled = arr * 255.0  # float images in [0, 1] are the common convention
    elif img.mode == "I" and lo >= 0 and hi <= 255:
        scaled = arr  # 8-bit data stored in a 32-bit container
    elif img.mode == "I" and lo >= 0 and hi <= 65535:
        scaled = arr / 257.0  # 16-bit data (older Pillow decodes 16-bit PNG as "I")
    else:
        # Arbitrary range (e.g. signed or HDR data): stretch min..max so the content stays visible.
        scaled = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
    scaled = np.where(finite, scaled, 0.0)
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


def to_colour(img: Image.Image, colour: str = "rgb", background: tuple[int, int, int] = BACKGROUND) -> Image.Image:
    """Convert any Pillow mode to 8-bit ``"RGB"`` or ``"L"``.

    Parameters
    ----------
    img : PIL.Image.Image
        A loaded image in any mode (1, L, P, PA, LA, La, RGB, RGBA, RGBa, RGBX, CMYK, YCbCr, LAB,
        HSV, I;16*, I, F).
    colour : {"rgb", "gray"}
        Target: three channels or luminance.
    background : tuple of int
        RGB colour that transparent pixels are composited on.

    Returns
    -------
    PIL.Image.Image
        Mode ``"RGB"`` or ``"L"``.
    """
    target = "RGB" if colour == "rgb" else "L"
    mode = img.mode
    if mode in _HIGH_DEPTH_MODES:
        img = Image.fromarray(_scale_high_depth(img), "L")
        mode = "L"
    if mode in ("RGBa", "La"):  # premultiplied alpha: un-premultiply first
        img = img.convert(mode[:-1] + "A")
        mode = img.mode
    if mode == "PA" or (mode in ("P", "L", "RGB", "1") and "transparency" in img.info):
        # Palette or colour-key transparency: make it an alpha channel so it can be composited.
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA"):
        alpha = img.getchannel("A")
        if alpha.getextrema() == (255, 255):
            img = img.convert(mode[:-1])  # fully opaque: nothing to composite
        else:
            base_mode = "RGB" if mode == "RGBA" else "L"
            bg_value = background if base_mode == "RGB" else int(round(
                0.299 * background[0] + 0.587 * background[1] + 0.114 * background[2]))
            base = Image.new(base_mode, img.size, bg_value)
            base.paste(img.convert(base_mode), mask=alpha)
            img = base
        mode = img.mode
    if mode != target:
        img = img.convert(target)  # P, 1, CMYK, YCbCr, LAB, HSV, RGBX, and RGB <-> L
    return img


def _open_error(path: str, exc: BaseException) -> ImageLoadError:
    """Turn whatever Pillow or the OS raised into a reason string."""
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        limit = Image.MAX_IMAGE_PIXELS
        return ImageLoadError(
            f"decompression bomb: {exc} Pillow's limit is {limit} pixels (2x that is refused); "
            "raise PIL.Image.MAX_IMAGE_PIXELS if you trust this file"
        )
    if isinstance(exc, FileNotFoundError):
        return ImageLoadError("missing file: no such file")
    if isinstance(exc, IsADirectoryError):
        return ImageLoadError("not a file: is a directory")
    if isinstance(exc, PermissionError):
        return ImageLoadError("unreadable: permission denied")
    if isinstance(exc, UnidentifiedImageError):
        return ImageLoadError("not an image: Pillow does not recognise the format")
    msg = str(exc) or type(exc).__name__
    if "truncated" in msg or "broken data stream" in msg or isinstance(exc, EOFError):
        return ImageLoadError(f"truncated image: {msg}")
    if isinstance(exc, MemoryError):
        return ImageLoadError("out of memory while decoding")
    return ImageLoadError(f"decode error: {type(exc).__name__}: {msg}")


def decode_image(
    path: str | os.PathLike,
    *,
    colour: str = "rgb",
    draft_size: int | None = None,
    draft_longer: int | None = None,
) -> tuple[Image.Image, int, int]:
    """Decode one image upright in 8-bit RGB or grey.

    Parameters
    ----------
    path : str or path-like
        Image file.
    colour : {"rgb", "gray"}
        Output mode ``"RGB"`` or ``"L"``.
    draft_size : int, optional
        For JPEG, let the decoder reduce the image by 1/2, 1/4 or 1/8 as long as both sides stay at
        least this large.
    draft_longer : int, optional
        For JPEG (instead of ``draft_size``), reduce as long as the longer side stays at least
        this large (:func:`grey_draft_scale`).

    Returns
    -------
    image : PIL.Image.Image
        The decoded image (possibly reduced by the draft). For a JPEG the decoder can reduce,
        ``image.info["draft_scale"]`` is the factor it reduced by (1, 2, 4 or 8).
    width, height : int
        Size of the full-resolution upright image.

    Raises
    ------
    ImageLoadError
        With a reason such as ``"missing file: ..."``, ``"empty file"``, ``"not an image: ..."``,
        ``"truncated image: ..."`` or ``"decompression bomb: ..."``.
    """
    path = os.fspath(path)
    if path == "":
        raise ImageLoadError("missing file: no path given")
    from .shards import is_member_address, read_member

    source = path
    try:
        if is_member_address(path):  # a member of a shard: its bytes, read in place
            try:
                source = io.BytesIO(read_member(path))
            except FileNotFoundError as exc:
                raise ImageLoadError(f"missing file: {exc}") from None
            st = None
            if not source.getbuffer().nbytes:
                raise ImageLoadError("empty file: 0 bytes")
        else:
            try:
                st = os.stat(path)
            except FileNotFoundError:
                st = None  # reported by the open below, with the usual reason
        if st is not None and not stat.S_ISREG(st.st_mode):
            # Opening a FIFO or a device would block or read forever.
            kind = ("a folder" if stat.S_ISDIR(st.st_mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode)
                    else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
                    else "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
            raise ImageLoadError(f"not a file: {path} is {kind}")
        if st is not None and st.st_size == 0:
            raise ImageLoadError("empty file: 0 bytes")
        opened = Image.open(source)
        out = None
        try:
            img = opened
            width, height = img.size
            try:
                orientation = int(img.getexif().get(0x0112, 1))
            except Exception:  # broken EXIF blocks are common; the pixels are still fine
                orientation = 1
            if orientation in _SWAPPING_ORIENTATIONS:
                width, height = height, width
            scale = None
            if img.format == "JPEG" and len(img.tile) == 1:  # what Pillow's draft can reduce
                raw_w, raw_h = img.size
                scale = 1
                if draft_longer:  # Pillow keeps both sides at least the request's: ask only the longer
                    request = (draft_longer, 1) if raw_w >= raw_h else (1, draft_longer)
                elif draft_size:
                    request = (draft_size, draft_size)
                else:
                    request = None
                drafted = img.draft("RGB" if colour == "rgb" else "L", request) if request is not None else None
                if drafted is not None:
                    scale = max(1, round(raw_w / drafted[1][2]))  # box = (0, 0, raw_w / scale, raw_h / scale)
            img.load()
            if orientation in range(2, 9):
                try:
                    img = ImageOps.exif_transpose(img)
                except Exception:
                    pass
            out = to_colour(img, colour)
            if out is opened and getattr(opened, "fp", None) is not None:
                # Still reading its file (a file of several frames): detach before closing it.
                # A single-frame file is closed once loaded, and its pixels need no copy.
                out = opened.copy()
            if scale is not None:
                out.info["draft_scale"] = scale
            return out, width, height
        finally:
            if out is not opened:
                opened.close()
    except ImageLoadError:
        raise
    except (Exception, Image.DecompressionBombWarning) as exc:
        raise _open_error(path, exc) from None


def grey_draft_scale(width: int, height: int, side: int) -> int:
    """The factor (1, 2, 4 or 8) by which :func:`decode_image` with ``draft_longer=side`` has a
    JPEG of ``width`` x ``height`` decoded: the largest that keeps the longer side at least
    ``side`` (Pillow's draft: the largest of 8, 4, 2, 1 not above the request's quotients)."""
    room = min(max(width, height) // max(side, 1), min(width, height))
    return next(s for s in (8, 4, 2, 1) if room >= s or s == 1)


def feature_grey(img: Image.Image, side: int) -> np.ndarray:
    """The grey image geometric verification describes: ``img`` (as :func:`decode_image` returns
    it in RGB) in grey levels, resized so that its longer side is ``side`` pixels (box filter
    down, bilinear up). One function for both places that make it, phase 1's decoding and the
    verification's own, so that both give the same array."""
    grey = img if img.mode == "L" else img.convert("L")
    scale = side / max(grey.size)
    size = (max(1, round(grey.width * scale)), max(1, round(grey.height * scale)))
    if size != grey.size:
        grey = grey.resize(size, Image.Resampling.BILINEAR if scale > 1 else Image.Resampling.BOX)
    return np.asarray(grey, dtype=np.uint8)


#: What reaches the model, recorded in each file (``preprocess``): files made with other steps
#: cannot take appended images (their embeddings would not compare).
PREPROCESS = "frame-trim-1"

#: Largest difference from the frame's colour (per channel, 0-255) a frame pixel may have: a
#: JPEG-compressed flat band stays within it.
FRAME_TOLERANCE = 10


def frame_box(img: Image.Image, tolerance: int = FRAME_TOLERANCE) -> tuple[int, int, int, int] | None:
    """The part of ``img`` inside a uniform frame, as a crop box (left, top, right, bottom), or
    None when there is no frame.

    A frame is a band of one colour (the median of the outermost pixels, within ``tolerance``)
    of even width on two opposite sides (within 10%, at least 2% of the shorter side): a border
    added around a picture, a letterbox or a pillarbox. A copy with such a border then reaches
    the model as the picture itself. Bands on one side only, or of very different widths, are
    left alone: they are more often part of the picture (a dark sky) than added to it. An image
    that is mostly uniform is left alone. Measured on a copy reduced to at most 256 pixels; the
    box keeps one reduced pixel of margin."""
    W, H = img.size
    f = max(1, -(-max(W, H) // 256))
    small = img.reduce(f) if f > 1 else img
    a = np.ascontiguousarray(small if small.mode == "RGB" else small.convert("RGB"), dtype=np.uint8)
    h, w = a.shape[:2]
    if h < 8 or w < 8:
        return None
    import cv2  # one C pass for the mask (numpy's reduction over the channel axis took 6 ms)

    ring = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    colour = np.median(ring, axis=0).round()
    ok = cv2.inRange(a, np.clip(colour - tolerance, 0, 255), np.clip(colour + tolerance, 0, 255)) > 0
    rows, cols = ok.all(axis=1), ok.all(axis=0)

    def lead(v: np.ndarray) -> int:
        return len(v) if v.all() else int(np.argmin(v))

    top, bottom, left, right = lead(rows), lead(rows[::-1]), lead(cols), lead(cols[::-1])
    if top + bottom >= h // 2 or left + right >= w // 2:
        return None
    least = max(2, round(0.02 * min(h, w)))

    def even(x: int, y: int) -> bool:
        return min(x, y) >= least and abs(x - y) <= max(1, 0.1 * max(x, y))

    if not even(top, bottom):
        top = bottom = 0
    if not even(left, right):
        left = right = 0
    if top + bottom + left + right == 0:
        return None
    sx, sy = W / w, H / h
    return (round(max(0, left - 1) * sx), round(max(0, top - 1) * sy),
            W - round(max(0, right - 1) * sx), H - round(max(0, bottom - 1) * sy))


def _resize(img: Image.Image, height: int, width: int, mode: str) -> Image.Image:
    box = None
    if mode == "crop":
        sw, sh = img.size
        if sw * height > sh * width:  # source wider than target: cut the sides
            cw = sh * width / height
            box = ((sw - cw) / 2, 0.0, (sw + cw) / 2, float(sh))
        else:
            ch = sw * height / width
            box = (0.0, (sh - ch) / 2, float(sw), (sh + ch) / 2)
    elif mode != "stretch":
        raise ValueError(f"resize mode must be 'stretch' or 'crop', not {mode!r}")
    if img.size == (width, height) and box is None:
        return img
    return img.resize((width, height), Image.Resampling.BILINEAR, box=box, reducing_gap=3.0)


def load_image(
    path: str | os.PathLike,
    size: int | tuple[int, int],
    *,
    colour: str = "rgb",
    resize: str = "stretch",
    grey_side: int | None = None,
    trim: bool = True,
) -> LoadedImage:
    """Decode and resize one image for a model; never raises for a bad file.

    Parameters
    ----------
    path : str or path-like
        Image file.
    size : int or (height, width)
        Model input size.
    colour : {"rgb", "gray"}
        Channels of the result.
    resize : {"stretch", "crop"}
        How the image is fitted to ``size`` (see the module docstring).
    grey_side : int, optional
        Also return :func:`feature_grey` of the decoded image at this side, so that verification
        need not decode the file again; only for RGB and when the image was decoded at the scale
        verification's own decoding uses (``draft_longer=grey_side``: a JPEG the model's draft
        reduced by the same factor, or any image decoded at full size that verification would
        not reduce either). It keeps any frame (verification matches through it).
    trim : bool
        Cut off a uniform frame before resizing (:func:`frame_box`).

    Returns
    -------
    LoadedImage
        ``pixels`` (uint8, (H, W, 3) or (H, W)) and the original size, or ``error``.
    """
    height, width = (size, size) if isinstance(size, int) else size
    try:
        img, w, h = decode_image(path, colour=colour, draft_size=max(height, width))
        grey = None
        if grey_side and colour == "rgb":
            scale = img.info.get("draft_scale")
            same = img.size == (w, h) if scale is None else scale == grey_draft_scale(w, h, grey_side)
            grey = feature_grey(img, grey_side) if same else None
        box = frame_box(img) if trim else None
        if box is not None:
            img = img.crop(box)
        img = _resize(img, height, width, resize)
        return LoadedImage(np.asarray(img, dtype=np.uint8), w, h, grey=grey)
    except ImageLoadError as exc:
        return LoadedImage(None, error=str(exc))
    except Exception as exc:  # a bug or resource problem must not stop a million-image run
        return LoadedImage(None, error=f"decode error: {type(exc).__name__}: {exc}")


def load_images(
    paths: Sequence[str] | Iterable[str],
    size: int | tuple[int, int],
    *,
    colour: str = "rgb",
    resize: str = "stretch",
    workers: int | None = None,
) -> list[LoadedImage]:
    """Decode many images in parallel threads, in order; failures are returned, not raised.

    Parameters
    ----------
    paths : sequence of str
        Image files.
    size, colour, resize
        As in :func:`load_image`.
    workers : int, optional
        Number of decode threads (default: the number of usable CPUs).

    Returns
    -------
    list of LoadedImage
        One per path, in the same order.
    """
    from .defaults import decode_threads

    workers = workers or decode_threads()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dupscope-decode") as pool:
        return list(pool.map(lambda p: load_image(p, size, colour=colour, resize=resize), paths))

