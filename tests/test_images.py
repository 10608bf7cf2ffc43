"""Decoding: modes, orientation, drafts, animations and every kind of broken file."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageOps

import imagegen
from dupscope.images import BACKGROUND, decode_image, failure_kind, load_image, load_images


def rgb_of(path, size=(4, 4), colour="rgb"):
    loaded = load_image(path, size, colour=colour)
    assert loaded.ok, loaded.error
    return loaded.pixels.astype(int)


def test_rgba_composited_on_the_fixed_background(tmp_path):
    img = Image.new("RGBA", (4, 4), (200, 0, 0, 0))  # fully transparent red: must not show
    img.putpixel((0, 0), (200, 0, 0, 255))
    img.paste((0, 0, 200, 128), (2, 0, 4, 4))  # half-transparent blue on the right half
    path = imagegen.save(img, tmp_path / "a.png")
    px = load_image(path, (4, 4)).pixels.astype(int)
    assert tuple(px[0, 0]) == (200, 0, 0)
    assert tuple(px[3, 1]) == BACKGROUND
    expect = np.round(np.array([0, 0, 200]) * 128 / 255 + np.array(BACKGROUND) * 127 / 255)
    assert np.abs(px[1, 3] - expect).max() <= 1


def test_la_and_palette_transparency(tmp_path):
    la = Image.new("LA", (4, 4), (50, 0))
    la.putpixel((1, 1), (50, 255))
    px = rgb_of(imagegen.save(la, tmp_path / "la.png"))
    assert tuple(px[0, 0]) == BACKGROUND and tuple(px[1, 1]) == (50, 50, 50)

    pal = Image.new("P", (4, 4), 0)
    pal.putpalette([10, 20, 30, 0, 255, 0] + [0] * 762)
    pal.putpixel((2, 2), 1)
    path = tmp_path / "p.gif"
    pal.save(path, transparency=0)  # palette index 0 is transparent
    px = rgb_of(path)
    assert tuple(px[0, 0]) == BACKGROUND and tuple(px[2, 2]) == (0, 255, 0)


def test_cmyk_and_16_bit_and_float(tmp_path):
    cmyk = Image.new("CMYK", (4, 4), (255, 0, 0, 0))  # pure cyan
    px = rgb_of(imagegen.save(cmyk, tmp_path / "c.tif"))
    assert tuple(px[0, 0]) == (0, 255, 255)

    # 16-bit grey: a naive convert("L") clips everything above 255 to white; we must scale.
    ramp = np.array([[0, 1000, 30000, 65535]] * 4, dtype=np.uint16)
    path = tmp_path / "g16.png"
    Image.fromarray(ramp).save(path)
    with Image.open(path) as check:
        assert check.mode.startswith("I")
    px = load_image(path, (4, 4), colour="gray").pixels.astype(int)
    assert list(px[0]) == [0, 4, 117, 255]

    flt = np.array([[0.0, 0.25, 0.5, 1.0]] * 4, dtype=np.float32)
    path = tmp_path / "f.tif"
    Image.fromarray(flt, "F").save(path)
    px = load_image(path, (4, 4), colour="gray").pixels.astype(int)
    assert list(px[0]) == [0, 64, 128, 255]


def test_bilevel_and_grey_to_rgb(tmp_path):
    one = Image.new("1", (4, 4), 0)
    one.putpixel((3, 3), 1)
    px = rgb_of(imagegen.save(one, tmp_path / "b.png"))
    assert tuple(px[0, 0]) == (0, 0, 0) and tuple(px[3, 3]) == (255, 255, 255)
    grey = load_image(imagegen.save(Image.new("RGB", (4, 4), (255, 0, 0)), tmp_path / "r.png"), 4, colour="gray")
    assert grey.pixels.shape == (4, 4) and grey.pixels[0, 0] == 76  # ITU-R 601 luma of red


def test_exif_orientation_is_applied(tmp_path):
    src = imagegen.scene(1, (60, 40))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display rotated 90 degrees clockwise
    path = tmp_path / "rot.jpg"
    src.save(path, exif=exif, quality=95, subsampling=0)
    loaded = load_image(path, (60, 40))
    assert (loaded.width, loaded.height) == (40, 60)  # upright size
    img, w, h = decode_image(path)
    assert img.size == (40, 60)
    got = np.asarray(img, float)
    right = np.abs(got - np.asarray(src.transpose(Image.Transpose.ROTATE_270), float)).mean()
    wrong = np.abs(got - np.asarray(src.transpose(Image.Transpose.ROTATE_90), float)).mean()
    assert right < 8 and right < wrong / 3  # JPEG noise only, far from the wrong rotation


def test_animation_uses_the_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    with Image.open(path) as check:
        assert check.n_frames == 3
    assert tuple(rgb_of(path)[0, 0]) == (255, 0, 0)


def test_jpeg_draft_keeps_size_and_content(tmp_path):
    big = imagegen.scene(2, (1600, 1200))
    path = imagegen.save(big, tmp_path / "big.jpg", quality=92)
    loaded = load_image(path, (224, 224))
    assert (loaded.width, loaded.height) == (1600, 1200)  # full size reported, not the draft's
    img, _, _ = decode_image(path, draft_size=224)
    assert 224 <= min(img.size) and img.size[0] <= 1600 // 4  # decoded at reduced scale
    full = np.asarray(big.resize((224, 224), Image.Resampling.BILINEAR), float)
    assert np.abs(loaded.pixels.astype(float) - full).mean() < 8


def test_resize_modes(tmp_path):
    img = Image.new("RGB", (200, 100), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 50, 100))  # red left quarter
    path = imagegen.save(img, tmp_path / "wide.png")
    stretch = load_image(path, (32, 32), resize="stretch").pixels
    crop = load_image(path, (32, 32), resize="crop").pixels
    assert stretch.shape == crop.shape == (32, 32, 3)
    assert tuple(stretch[16, 2]) == (255, 0, 0)  # stretched: the red quarter is still there
    assert tuple(crop[16, 2]) == (0, 0, 255)  # centre crop cut it away


def test_every_kind_of_bad_file_fails_with_its_reason_and_the_batch_goes_on(tmp_path):
    good = imagegen.save(imagegen.scene(0, (64, 48)), tmp_path / "good.png")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    paths = [
        str(good),
        str(tmp_path / "missing.png"),
        str(empty),
        str(imagegen.write_truncated_jpeg(tmp_path / "trunc.jpg")),
        str(imagegen.write_not_an_image(tmp_path / "list.png")),
        str(imagegen.write_png_bomb(tmp_path / "bomb.png")),
        str(tmp_path),  # a folder
        "",
        str(good),
    ]
    results = load_images(paths, (32, 32), workers=3)
    kinds = [failure_kind(r.error) for r in results]
    assert kinds == ["", "missing file", "empty file", "truncated image", "not an image",
                     "decompression bomb", "not a file", "missing file", ""]
    assert results[0].ok and results[-1].ok and results[0].pixels.shape == (32, 32, 3)
    assert all(r.pixels is None and r.width == 0 for r in results[1:-1])
    assert "MAX_IMAGE_PIXELS" in results[5].error and "400000000" in results[5].error


def test_bomb_limit_follows_pillow_setting(tmp_path, monkeypatch):
    path = imagegen.save(imagegen.scene(3, (100, 100)), tmp_path / "ten_k.png")
    assert load_image(path, 16).ok
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 4000)  # 10,000 px > 2 x 4000: refused
    r = load_image(path, 16)
    assert failure_kind(r.error) == "decompression bomb"


# ---- uniform frames -----------------------------------------------------------------------------

def _picture(rng, w=180, h=120):
    """A textured picture (no uniform band at any edge)."""
    base = rng.integers(30, 220, (h // 6, w // 6, 3), dtype=np.uint8)
    return Image.fromarray(base).resize((w, h), Image.Resampling.BICUBIC)


@pytest.mark.parametrize("fill", [(255, 255, 255), (0, 0, 0), (128, 128, 128)])
def test_frame_box_finds_a_border_and_the_model_sees_the_picture(tmp_path, fill):
    """A bordered copy is cut back to the picture (within a pixel or two of the reduction), and
    load_image gives pixels close to the original's."""
    from dupscope.images import frame_box
    rng = np.random.default_rng(7)
    pic = _picture(rng, 600, 400)
    framed = ImageOps.expand(pic, border=48, fill=fill)
    box = frame_box(framed)
    assert box is not None
    l, t, r, b = box
    assert 40 <= l <= 48 and 40 <= t <= 48 and 648 <= r <= 656 and 448 <= b <= 456
    assert frame_box(pic) is None
    pic.save(tmp_path / "pic.png")
    framed.save(tmp_path / "framed.png")
    a = load_image(str(tmp_path / "pic.png"), 64).pixels.astype(float)
    c = load_image(str(tmp_path / "framed.png"), 64).pixels.astype(float)
    u = load_image(str(tmp_path / "framed.png"), 64, trim=False).pixels.astype(float)
    assert np.abs(a - c).mean() < 0.5 * np.abs(a - u).mean()


def test_frame_box_letterbox_yes_one_sided_band_no():
    """Even bands on two opposite sides (a letterbox) are cut; a dark band on one side only (a
    night sky, say) and a mostly uniform image are left alone."""
    from dupscope.images import frame_box
    rng = np.random.default_rng(8)
    pic = _picture(rng, 400, 200)
    letter = Image.new("RGB", (400, 300), (0, 0, 0))
    letter.paste(pic, (0, 50))
    l, t, r, b = frame_box(letter)
    assert (l, r) == (0, 400) and 45 <= t <= 50 and 250 <= b <= 255
    one_sided = Image.new("RGB", (400, 300), (0, 0, 0))
    one_sided.paste(pic, (0, 100))
    assert frame_box(one_sided) is None
    mostly = Image.new("RGB", (400, 300), (250, 250, 250))
    mostly.paste(pic.resize((40, 30)), (180, 135))
    assert frame_box(mostly) is None
    assert frame_box(Image.new("RGB", (5, 5))) is None
