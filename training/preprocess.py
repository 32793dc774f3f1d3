"""Image decoding and preprocessing: the single definition used by training, evaluation and serving.

bytes -> load_image (format allow-list, size guard before decoding, full decode, EXIF
orientation, RGB) -> to_input (resize the whole image to the model's native size with a
deterministic antialiased PIL filter, float32 CHW in [0, 1]).

Everything after this (upsampling, normalisation) happens inside the exported graph.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

# Decoders we accept. An explicit list keeps exotic PIL plugins (e.g. EPS, which shells out to
# Ghostscript) away from untrusted uploads.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")  # JPEG also yields multi-picture (MPO) files
# File suffixes the dataset/evaluation folder readers pick up (content is still checked on decode).
# Where `make data` (python -m training stage-data) stages CIFAR-100: {split}/{class}/*.png.
STAGED_DATA = "data/staged"


def missing_data(path) -> str:
    """The error for a data folder that is not there, naming the command that makes it."""
    return (f"data directory {path} does not exist: stage CIFAR-100 with `make data` (python -m training stage-data "
            f"--out {STAGED_DATA}), or pass a folder of bicycle/ and motorcycle/ images")


# train.py's validation hold-out, and the images training.gate scores both models on.
def stratified_split(items: list[tuple[Path, int]], val_fraction: float):
    """Deterministic stratified split: per class, files ordered by sha256("class/name"), first share -> val.

    Depends only on class and file names (not on listing order, seeds or the machine), so the
    same images are held out everywhere and adding files elsewhere does not reshuffle much.
    """
    def key(item):
        path, label = item
        return hashlib.sha256(f"{path.parent.name}/{path.name}".encode()).hexdigest()

    train, val = [], []
    for label in sorted({lab for _, lab in items}):
        members = sorted((it for it in items if it[1] == label), key=key)
        n_val = max(1, round(len(members) * val_fraction)) if len(members) > 1 else 0
        val += members[:n_val]
        train += members[n_val:]
    return sorted(train), sorted(val)


# Marks a class tree of reviewers' labels (training.stage_data --from-manifest): training data only,
# never a validation or test split.
REVIEWED_MARKER = ".reviewed"
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
DEFAULT_MAX_PIXELS = 40_000_000  # ~ a 48 MP phone photo; larger is refused before decoding
RESAMPLE = Image.Resampling.LANCZOS  # antialiased when downscaling (PIL widens the kernel); sharpest round trip
BACKGROUND = (255, 255, 255)  # transparent pixels are composited onto white


class InvalidImageError(ValueError):
    """The bytes are not a decodable image in a supported format (or are truncated/corrupt)."""


class ImageTooLargeError(InvalidImageError):
    """The image header declares more pixels than allowed (decompression-bomb guard)."""


def load_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode image bytes to an upright RGB PIL image; raises InvalidImageError / ImageTooLargeError."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidImageError(f"expected image bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise InvalidImageError("empty image data")
    try:
        image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.UnidentifiedImageError as exc:
        raise InvalidImageError(f"not an image in a supported format ({', '.join(ALLOWED_FORMATS)})") from exc
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(str(exc)) from exc
    width, height = image.size
    if width * height > max_pixels:  # only the header has been read so far
        raise ImageTooLargeError(f"image is {width}x{height} = {width * height} pixels; limit is {max_pixels}")
    if width < 1 or height < 1:
        raise InvalidImageError(f"image has no pixels ({width}x{height})")
    try:
        image.load()  # decode now so truncation surfaces here, not halfway through a batch
        image = ImageOps.exif_transpose(image)
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(str(exc)) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidImageError(f"cannot decode {image.format} image: {exc}") from exc
    return _to_rgb(image)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        # 16-bit greyscale (PNG): scale 0..65535 to 0..255; PIL's direct RGB conversion would clip
        array = np.asarray(image, dtype=np.float64) / 257.0
        image = Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8), mode="L")
    return image.convert("RGB")


def to_input(image: Image.Image, size: int) -> np.ndarray:
    """RGB PIL image -> (3, size, size) float32 in [0, 1], the whole image resized (aspect not kept).

    Training images are already size x size and pass through unchanged; larger photos are
    squeezed to the same square the CIFAR images were made with.
    """
    if image.mode != "RGB":
        image = _to_rgb(image)
    if image.size != (size, size):
        image = image.resize((size, size), RESAMPLE)
    return np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / np.float32(255.0)
