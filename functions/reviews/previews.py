"""A bounded preview of each waiting photo, made once, shown through a short-lived URL.

A phone photo can be 40 megapixels; decoding it at every view (as the old local page did: 8 views at once took
4.6 s and 1.26 GB) is not acceptable. The first listing that leases a photo decodes it once - JPEGs at a
reduced scale straight from the DCT (Pillow's draft mode) - into a JPEG of at most PREVIEW_SIDE pixels in the
previews bucket (expired by its lifecycle rule); the page gets a presigned GET of that small object. The
browser never sees the intake bucket, and a key full of markup reaches it only as text.
"""

from __future__ import annotations

import io
from urllib.parse import urlsplit

from botocore.exceptions import ClientError
from PIL import Image, UnidentifiedImageError

from waiting import WaitingImage

PREVIEW_SIDE = 512  # pixels: CIFAR's 32 px photos are drawn larger by the browser, phone photos smaller
MAX_PREVIEW_PIXELS = 40_000_000  # the serialize function's MAX_IMAGE_PIXELS: no decompression bombs

try:  # phones upload HEIC; the serialize function reads it too
    from pillow_heif import register_heif_opener
    register_heif_opener()
except ImportError:  # pragma: no cover - depends on the installation
    pass

READY, DELETED, UNREADABLE = "ready", "deleted", "unreadable"


class Previews:
    def __init__(self, s3, bucket: str, url_seconds: int, max_image_bytes: int):
        self._s3, self.bucket, self._url_seconds, self._max_bytes = s3, bucket, url_seconds, max_image_bytes

    def key(self, image: WaitingImage) -> str:
        return f"{image.id}.jpg"

    def make(self, image: WaitingImage) -> str:
        """Write the photo's preview; READY, or why there is none (DELETED, UNREADABLE)."""
        try:
            answer = self._s3.get_object(Bucket=image.bucket, Key=image.key)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404", "AccessDenied"):
                return DELETED
            raise
        if answer.get("ContentLength", 0) > self._max_bytes:
            answer["Body"].close()
            return UNREADABLE
        try:
            data = preview_jpeg(answer["Body"].read())
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
            return UNREADABLE
        self._s3.put_object(Bucket=self.bucket, Key=self.key(image), Body=data, ContentType="image/jpeg",
                            CacheControl="private, max-age=300")
        return READY

    def url(self, image: WaitingImage) -> str:
        return self._s3.generate_presigned_url("get_object", ExpiresIn=self._url_seconds,
                                               Params={"Bucket": self.bucket, "Key": self.key(image)})

    def origin(self) -> str:
        """Where preview URLs point (scheme://host), for the page's Content-Security-Policy img-src."""
        parts = urlsplit(self._s3.generate_presigned_url("get_object", ExpiresIn=60,
                                                         Params={"Bucket": self.bucket, "Key": "origin"}))
        return f"{parts.scheme}://{parts.netloc}"


def preview_jpeg(data: bytes) -> bytes:
    """Any image Pillow reads, as a JPEG no larger than PREVIEW_SIDE (first frame of an animation). The pixel
    count is checked from the header before anything is decoded (no decompression bombs)."""
    with Image.open(io.BytesIO(data)) as image:
        if image.width * image.height > MAX_PREVIEW_PIXELS:
            raise ValueError(f"{image.width}x{image.height} is over {MAX_PREVIEW_PIXELS} pixels")
        image.draft("RGB", (PREVIEW_SIDE, PREVIEW_SIDE))  # JPEG: decode at 1/2, 1/4 or 1/8 scale
        image.seek(0)
        rgb = image.convert("RGB")
    rgb.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
    out = io.BytesIO()
    rgb.save(out, format="JPEG", quality=85)
    return out.getvalue()
