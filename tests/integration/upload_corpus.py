"""Bad and awkward uploads, as drivers' phones, browsers and scripts send them: each kind with the outcome it
must be recorded with. Built from the shipped sample photos; nothing is downloaded."""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass

from PIL import Image

from twin_helpers import sample

USABLE = ("classified", "needs_review")  # the model decided; which one depends on its confidence


@dataclass(frozen=True)
class Upload:
    kind: str
    key: str
    body: bytes
    outcomes: tuple[str, ...] = USABLE
    reason: str | None = None  # the failed record's reason


def _photo(label: str = "bicycle", index: int = 0, size: tuple[int, int] | None = None) -> Image.Image:
    image = Image.open(sample(label, index)).convert("RGB")
    return image.resize(size, Image.BICUBIC) if size else image


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def _png() -> bytes:
    return sample("bicycle").read_bytes()


def _bad_crc_png() -> bytes:
    data = bytearray(_png())
    data[8 + 8 + 13] ^= 0xFF  # the IHDR chunk's CRC
    return bytes(data)


def _bomb_png(width: int = 20_000, height: int = 20_000) -> bytes:
    """A tiny file that claims 400 million pixels: one compressed row repeated (a decompression bomb)."""
    raw = zlib.compress(b"".join(b"\x00" + b"\x00" * width for _ in range(64)), 9)
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


def _exif_rotated_jpeg() -> bytes:
    image = _photo("motorcycle", 1, (64, 48))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise on display
    return _encode(image, "JPEG", quality=90, exif=exif.tobytes())


def _animated_gif() -> bytes:
    frames = [_photo("bicycle", i) for i in range(3)]
    return _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def _heic() -> bytes:
    import pillow_heif

    pillow_heif.register_heif_opener()
    return _encode(_photo("motorcycle", 2, (64, 64)), "HEIF", quality=90)


def _sixteen_bit_png() -> bytes:
    gray = _photo("bicycle", 3).convert("L")
    return _encode(gray.point(lambda v: v * 257).convert("I;16"), "PNG")


def _oversized() -> bytes:
    """Over the 10 MiB limit, refused before it is read: noise does not compress."""
    import os

    header = _png()
    return header + os.urandom(10 * 1024 * 1024 + 1 - len(header))


def corpus(prefix: str) -> list[Upload]:
    p = prefix.rstrip("/") + "/"
    jpeg = _encode(_photo("motorcycle"), "JPEG", quality=90)
    return [
        # awkward keys, good photos
        Upload("space in the key", p + "driver 12/front view.png", _png()),
        Upload("plus and percent", p + "100%+sure.png", _png()),
        Upload("URL-reserved characters", p + "a&b=c;d,e@f:g$h!.png", _png()),
        Upload("question mark and hash", p + "what?#1.png", _png()),
        Upload("accents (NFC)", p + "fahrräder/ça-va.png", _png()),
        Upload("emoji", p + "🚲🏍️.png", _png()),
        Upload("CJK, 90 characters", p + "自転車" * 30 + ".png", _png()),
        Upload("no extension", p + "photo", _png()),
        Upload("upper-case extension", p + "IMG_0001.PNG", _png()),
        Upload("extension that lies (PNG named .jpg)", p + "liar.jpg", _png()),
        Upload("deep folders", p + "a/b/c/d/e/f/g/h/i/j/photo.png", _png()),
        Upload("dot segments", p + "x/../y/./photo.png", _png()),
        Upload("double slash", p + "x//photo.png", _png()),
        Upload("1,000-byte key", p + "k" * (1000 - len(p) - 4) + ".png", _png()),
        # formats phones and browsers send
        Upload("JPEG", p + "photo.jpeg", jpeg),
        Upload("WebP", p + "photo.webp", _encode(_photo(), "WEBP", quality=90)),
        Upload("HEIC (iPhone default)", p + "IMG_0002.HEIC", _heic()),
        Upload("AVIF", p + "photo.avif", _encode(_photo("motorcycle", 3, (64, 64)), "AVIF", quality=80)),
        Upload("animated GIF (first frame)", p + "moving.gif", _animated_gif()),
        Upload("EXIF-rotated JPEG", p + "rotated.jpg", _exif_rotated_jpeg()),
        Upload("CMYK JPEG", p + "cmyk.jpg", _encode(_photo().convert("CMYK"), "JPEG", quality=90)),
        Upload("transparent PNG", p + "alpha.png", _encode(_photo().convert("RGBA"), "PNG")),
        Upload("16-bit PNG", p + "deep.png", _sixteen_bit_png()),
        Upload("palette PNG", p + "palette.png", _encode(_photo().convert("P"), "PNG")),
        Upload("grayscale JPEG", p + "gray.jpg", _encode(_photo().convert("L"), "JPEG")),
        Upload("1x1 pixel", p + "dot.png", _encode(_photo(size=(1, 1)), "PNG")),
        Upload("12-megapixel JPEG", p + "big.jpg", _encode(_photo(size=(4000, 3000)), "JPEG", quality=85)),
        Upload("progressive JPEG", p + "progressive.jpg", _encode(_photo(), "JPEG", progressive=True)),
        # what must fail, each with a reason a person can act on
        Upload("empty object", p + "empty.png", b"", ("failed",), "EmptyImageError"),
        Upload("text file", p + "notes.txt", b"call the driver back\n", ("failed",), "UnsupportedImageTypeError"),
        Upload("random bytes named .png", p + "noise.png", bytes(range(256)) * 8, ("failed",),
               "UnsupportedImageTypeError"),
        Upload("PDF", p + "scan.pdf", b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n", ("failed",),
               "UnsupportedImageTypeError"),
        Upload("SVG", p + "drawing.svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"/>',
               ("failed",), "UnsupportedImageTypeError"),
        Upload("truncated JPEG", p + "cut.jpg", jpeg[: len(jpeg) // 2], ("failed",), "CorruptImageError"),
        Upload("PNG with a bad checksum", p + "crc.png", _bad_crc_png(), ("failed",), "CorruptImageError"),
        Upload("decompression bomb", p + "bomb.png", _bomb_png(), ("failed",), "DecompressionBombError"),
        Upload("over 10 MiB", p + "huge.png", _oversized(), ("failed",), "ImageTooLargeError"),
        Upload("damaged photo under an awkward key", p + "bad photo+1 (ça).png", _bad_crc_png(), ("failed",),
               "CorruptImageError"),
        Upload("empty object under a CJK key", p + "空の写真.png", b"", ("failed",), "EmptyImageError"),
    ]
