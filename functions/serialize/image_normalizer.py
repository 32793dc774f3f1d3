"""Turn untrusted upload bytes into a small RGB image the classifier can take.

Pure image handling, no AWS: the format is decided by magic bytes (never by file
name or Content-Type), the pixel count is checked from the header before any
pixel is decoded, EXIF orientation is applied, every colour mode is flattened to
RGB, the image is downscaled and re-encoded so its base64 form fits comfortably
in a Step Functions payload (256 KB limit). The output carries no metadata
(EXIF, GPS, ICC), so nothing from the upload leaks into workflow history.
"""

from __future__ import annotations

import functools
import io
import math
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

# Pillow's own guard warns above Image.MAX_IMAGE_PIXELS (~89 M) and refuses above twice
# that. Our limit (checked from the header, before decoding) must stay below the refusal
# point so that it is always ours that decides; Pillow's warning is silenced around decoding.
PILLOW_HARD_LIMIT = 2 * Image.MAX_IMAGE_PIXELS

# Base64 budget for the re-encoded image: far below the 256 KB state payload limit,
# leaving room for the other state fields.
MAX_BASE64_CHARS = 150_000

_JPEG_QUALITIES = (90, 80, 70, 60, 50, 40)
_FALLBACK_SHRINK = 0.75
_WHITE = (255, 255, 255, 255)

# ISO base media files (HEIF, AVIF) name their kind in the "ftyp" box's major brand.
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}


def _brand(head: bytes) -> bytes | None:
    return head[8:12] if head[4:8] == b"ftyp" else None


# Accepted formats (Pillow's names): name -> predicate on the first bytes. What phones and browsers send.
_ACCEPTED = {
    "PNG": lambda head: head.startswith(b"\x89PNG\r\n\x1a\n"),
    "JPEG": lambda head: head.startswith(b"\xff\xd8\xff"),
    "WEBP": lambda head: head[:4] == b"RIFF" and head[8:12] == b"WEBP",
    "HEIF": lambda head: _brand(head) in _HEIF_BRANDS,  # the iPhone camera's default (.heic)
    "AVIF": lambda head: _brand(head) in _AVIF_BRANDS,
    "GIF": lambda head: head[:6] in (b"GIF87a", b"GIF89a"),  # the first frame of an animation
}
ACCEPTED_NAMES = "PNG, JPEG, WebP, HEIC/HEIF, AVIF and GIF"
# Formats we recognise only to name them in the error message.
_REJECTED = (
    (b"%PDF", "PDF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


class EmptyImageError(Exception):
    """The object has no bytes."""


class UnsupportedImageTypeError(Exception):
    """The bytes are not PNG, JPEG, WebP, HEIC/HEIF, AVIF or GIF."""


class CorruptImageError(Exception):
    """The bytes claim a supported format but cannot be decoded (truncated, damaged)."""


class DecompressionBombError(Exception):
    """The header claims more pixels than we are willing to decode."""


@dataclass(frozen=True)
class NormalizedImage:
    data: bytes
    content_type: str  # "image/png" | "image/jpeg"
    width: int
    height: int
    source_format: str  # one of _ACCEPTED's names


def sniff_format(data: bytes) -> str | None:
    """The accepted format the bytes start with, or None."""
    head = data[:16]
    for name, matches in _ACCEPTED.items():
        if matches(head):
            return name
    return None


def _describe_unsupported(data: bytes) -> str:
    for signature, name in _REJECTED:
        if data.startswith(signature):
            return name
    return f"unrecognised content (first bytes {data[:8]!r})"


def normalize(
    data: bytes,
    *,
    max_pixels: int,
    max_side: int,
    max_base64_chars: int = MAX_BASE64_CHARS,
    name: str = "image",
) -> NormalizedImage:
    """Validate, orient, flatten, downscale and re-encode one image.

    `name` only labels error messages (the S3 key, for instance).
    """
    if not data:
        raise EmptyImageError(f"{name} is empty (0 bytes)")
    source_format = sniff_format(data)
    if source_format is None:
        raise UnsupportedImageTypeError(
            f"{name} is {_describe_unsupported(data)}; only {ACCEPTED_NAMES} are accepted"
        )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return _decode_and_encode(data, source_format, max_pixels, max_side, max_base64_chars, name)


def _decode_and_encode(
    data: bytes, source_format: str, max_pixels: int, max_side: int, max_base64_chars: int, name: str
) -> NormalizedImage:
    if source_format == "HEIF":
        _register_heif()
    if source_format == "PNG":
        _check_png_checksums(data, name)
    try:
        # formats=[...]: only the decoder the magic bytes chose may parse the input.
        image = Image.open(io.BytesIO(data), formats=[source_format])
    except Image.DecompressionBombError as exc:
        raise DecompressionBombError(f"{name}: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise CorruptImageError(f"{name}: {source_format} header is unreadable") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise CorruptImageError(f"{name}: {source_format} header is unreadable: {exc}") from exc

    with image:
        width, height = image.size
        if width <= 0 or height <= 0:
            raise CorruptImageError(f"{name}: {source_format} header gives size {width}x{height}")
        if width * height > max_pixels:
            raise DecompressionBombError(
                f"{name}: {width}x{height} = {width * height} pixels exceeds the limit of {max_pixels}"
            )
        if source_format == "JPEG" and max(width, height) > max_side:
            # Let libjpeg decode at 1/2, 1/4 or 1/8 scale: big photos never hit full-size memory.
            image.draft(None, _fit((width, height), max_side))
        try:
            image.load()
            rgb = _to_rgb(ImageOps.exif_transpose(image))
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise CorruptImageError(f"{name}: {source_format} data cannot be decoded: {exc}") from exc

    if max(rgb.size) > max_side:
        rgb = rgb.resize(_fit(rgb.size, max_side), Image.Resampling.LANCZOS)
    data_out, content_type, rgb = _encode(rgb, max_base64_chars)
    return NormalizedImage(data_out, content_type, rgb.width, rgb.height, source_format)


def _check_png_checksums(data: bytes, name: str) -> None:
    """A PNG carries a CRC per chunk; Pillow checks the pixel data's only when asked (verify). A mismatch proves
    the file is not what the camera wrote (damaged in transit or storage), so it is refused and the driver can
    send it again. JPEG, WebP, GIF and HEIF carry no such checksum: a flipped bit there cannot be told from a
    real photo, and such a file is classified like any other."""
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as probe:
            probe.verify()
    except Image.DecompressionBombError:
        return  # the size check below names it
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CorruptImageError(f"{name}: PNG is damaged (a chunk's checksum does not match: {exc})") from exc


@functools.cache
def _register_heif() -> None:
    """pillow-heif's decoder, loaded on the first HEIF photo rather than at every cold start."""
    from pillow_heif import register_heif_opener

    register_heif_opener()


def _fit(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """Size with the longest side == max_side, aspect ratio kept (each side >= 1)."""
    width, height = size
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        # 16-bit greyscale: keep the high byte rather than clipping everything to white.
        image = image.convert("I").point(lambda value: value / 256).convert("L")
    has_alpha = image.mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in image.info
    if has_alpha:
        # Transparent areas become white (as a viewer would show them), not whatever
        # colour happens to sit under alpha 0. Opaque pixels are unchanged.
        rgba = image.convert("RGBA")
        flattened = Image.alpha_composite(Image.new("RGBA", rgba.size, _WHITE), rgba)
        return flattened.convert("RGB")
    return image.convert("RGB")


def _base64_len(n_bytes: int) -> int:
    return 4 * math.ceil(n_bytes / 3)


def _save(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _encode(image: Image.Image, max_base64_chars: int) -> tuple[bytes, str, Image.Image]:
    """PNG if it fits the budget (lossless), else the best JPEG quality that fits.

    If even the lowest quality is too big (only possible with a large max side),
    shrink and try again, so the budget always holds.
    """
    image.info.clear()  # drop EXIF/ICC/text chunks carried over by convert()
    png = _save(image, "PNG")
    if _base64_len(len(png)) <= max_base64_chars:
        return png, "image/png", image
    while True:
        for quality in _JPEG_QUALITIES:
            jpeg = _save(image, "JPEG", quality=quality)
            if _base64_len(len(jpeg)) <= max_base64_chars:
                return jpeg, "image/jpeg", image
        smaller = (max(1, int(image.width * _FALLBACK_SHRINK)), max(1, int(image.height * _FALLBACK_SHRINK)))
        image = image.resize(smaller, Image.Resampling.LANCZOS)
