"""training.preprocess / training.inference: what happens to bad, odd and hostile image bytes."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from training.inference import ImageTooLargeError, InvalidImageError
from training.preprocess import load_image, to_input


def encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def gradient(w=48, h=40, mode="RGB") -> Image.Image:
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([x * 255 // w, y * 255 // h, (x + y) % 256], -1).astype(np.uint8)
    return Image.fromarray(rgb, "RGB").convert(mode)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG header declaring width x height followed by a few bytes of pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


@pytest.mark.parametrize("data", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\0" * 40],
                         ids=["empty", "text", "png-signature-garbage"])
def test_undecodable_bytes_raise_invalid_image(data):
    with pytest.raises(InvalidImageError):
        load_image(data)


def test_non_bytes_input_is_rejected_with_the_named_error():
    with pytest.raises(InvalidImageError, match="expected image bytes"):
        load_image("bicycle.png")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file_raises_invalid_image_not_a_partial_image(fmt):
    data = encode(gradient(256, 256), fmt)
    with pytest.raises(InvalidImageError) as info:
        load_image(data[: len(data) // 2])
    assert type(info.value) is InvalidImageError


def test_unsupported_format_is_refused_even_if_pillow_could_read_it():
    ico = encode(gradient(32, 32), "ICO")
    assert Image.open(io.BytesIO(ico)).format == "ICO"  # Pillow alone would accept it
    with pytest.raises(InvalidImageError, match="supported format"):
        load_image(ico)


@pytest.mark.parametrize("side", [9000, 60000])
def test_decompression_bomb_is_refused_from_the_header_before_decoding(side):
    # a few hundred bytes claiming 81 MP / 3.6 GP: decoding them would hit truncation instead
    data = png_header_only(side, side)
    assert len(data) < 200
    with pytest.raises(ImageTooLargeError, match="pixels"):
        load_image(data)


def test_max_pixels_is_configurable():
    data = encode(gradient(100, 100), "PNG")
    with pytest.raises(ImageTooLargeError):
        load_image(data, max_pixels=9_999)
    assert load_image(data, max_pixels=10_000).size == (100, 100)


def test_image_too_large_is_a_kind_of_invalid_image():
    assert issubclass(ImageTooLargeError, InvalidImageError)
    assert issubclass(InvalidImageError, ValueError)


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "CMYK", "I;16"])
def test_every_mode_becomes_rgb(mode):
    fmt = "JPEG" if mode == "CMYK" else ("TIFF" if mode == "I;16" else "PNG")
    image = load_image(encode(gradient(mode=mode if mode != "I;16" else "L").convert(mode), fmt))
    assert image.mode == "RGB" and image.size == (48, 40)


def test_sixteen_bit_greyscale_keeps_its_brightness():
    grey16 = Image.fromarray(np.full((8, 8), 32768, dtype=np.uint16))
    rgb = np.asarray(load_image(encode(grey16, "PNG")))
    assert np.all(np.abs(rgb.astype(int) - 128) <= 1)


def test_opaque_rgba_equals_its_rgb_pixels_and_transparency_becomes_white():
    rgb = gradient()
    opaque = rgb.copy()
    opaque.putalpha(255)
    assert np.array_equal(np.asarray(load_image(encode(opaque, "PNG"))), np.asarray(rgb))
    clear = rgb.copy()
    clear.putalpha(0)
    assert np.all(np.asarray(load_image(encode(clear, "PNG"))) == 255)


def test_exif_orientation_is_applied():
    upright = gradient(30, 50)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": the stored pixels are the upright image rotated back
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    data = encode(stored, "PNG", exif=exif)
    assert np.array_equal(np.asarray(load_image(data)), np.asarray(upright))


def test_to_input_contract():
    x = to_input(gradient(300, 200), 32)
    assert x.shape == (3, 32, 32) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    native = gradient(32, 32)
    assert np.array_equal(to_input(native, 32), np.asarray(native, dtype=np.float32).transpose(2, 0, 1) / 255)
