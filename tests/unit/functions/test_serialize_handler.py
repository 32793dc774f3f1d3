"""serialize: S3 (moto) -> normalised base64 image, both event shapes, named errors, metrics."""

from __future__ import annotations

import base64
import io
import json
import re
import struct
import warnings
import zlib
from urllib.parse import quote, quote_plus

import boto3
import pytest
from moto import mock_aws
from PIL import Image

INTAKE_BUCKET = "scones-intake-123456789012-us-east-1"

PAYLOAD_LIMIT_CHARS = 150_000


# ---------- image builders ----------


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def noise(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    """Incompressible content: the worst case for the payload budget."""
    return Image.frombytes(mode, size, bytes(_random_bytes(size[0] * size[1] * len(mode))))


def _random_bytes(n: int) -> bytes:
    # Deterministic, fast pseudo-random bytes (no global random state).
    out = bytearray()
    seed = 12345
    while len(out) < n:
        seed = zlib.crc32(seed.to_bytes(4, "little")) or 1
        out += seed.to_bytes(4, "little")
    return bytes(out[:n])


def png_with_claimed_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height (no pixel data needed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def decode_output(result: dict) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(result["image_data"])))
    image.load()
    return image


# ---------- fixtures ----------


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=INTAKE_BUCKET)
        yield client


@pytest.fixture
def serialize(load_function, s3):
    return load_function("serialize", ENDPOINT_NAME="scones-vehicle-classifier")


@pytest.fixture
def run(serialize, s3, lambda_context):
    """Upload bytes under key, invoke with the workflow-state event, return the result."""

    def invoke(body: bytes, key: str = "photos/upload.png", **extra):
        s3.put_object(Bucket=INTAKE_BUCKET, Key=key, Body=body)
        return serialize.lambda_handler({"s3_bucket": INTAKE_BUCKET, "s3_key": key, **extra}, lambda_context)

    return invoke


def rejection(result: dict) -> tuple[str, str]:
    """(error name, message) of an upload serialize answered as unusable; fails the test if it was not."""
    assert "image_data" not in result, "the upload was accepted"
    error = result["error"]
    cause = json.loads(error["Cause"])
    assert cause["errorType"] == error["Error"]
    return error["Error"], cause["errorMessage"]


def eventbridge_event(encoded_key: str, size: int = 1234) -> dict:
    return {
        "version": "0",
        "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": "123456789012",
        "time": "2025-11-20T14:03:27Z",
        "region": "us-east-1",
        "resources": [f"arn:aws:s3:::{INTAKE_BUCKET}"],
        "detail": {
            "version": "0",
            "bucket": {"name": INTAKE_BUCKET},
            "object": {"key": encoded_key, "size": size, "etag": "0" * 32, "sequencer": "617f08299329d189"},
            "request-id": "N4N7GDK58NMKJ12R",
            "requester": "123456789012",
            "source-ip-address": "1.2.3.4",
            "reason": "PutObject",
        },
    }


# ---------- formats and colour modes ----------


def test_small_png_stays_png_and_pixels_are_bit_exact(run):
    # CIFAR images are 32x32 RGBA with alpha 255 everywhere: the model must see the same RGB.
    rgb = noise((32, 32))
    rgba = rgb.copy()
    rgba.putalpha(255)
    result = run(encode(rgba, "PNG"))
    assert result["content_type"] == "image/png"
    assert (result["width"], result["height"]) == (32, 32)
    assert result["source_format"] == "PNG"
    out = decode_output(result)
    assert out.mode == "RGB"
    assert out.tobytes() == rgb.tobytes()


def test_jpeg_is_accepted_and_reported(run):
    photo = Image.new("RGB", (200, 120), (10, 120, 200))
    body = encode(photo, "JPEG", quality=92)
    result = run(body, key="photos/car.jpg")
    assert result["source_format"] == "JPEG"
    assert result["source_bytes"] == len(body)
    assert (result["width"], result["height"]) == (200, 120)
    r, g, b = decode_output(result).getpixel((100, 60))
    assert abs(r - 10) <= 3 and abs(g - 120) <= 3 and abs(b - 200) <= 3


def test_lossless_webp_is_accepted_and_reencoded_losslessly(run):
    image = noise((48, 40))
    result = run(encode(image, "WEBP", lossless=True), key="photos/bike.webp")
    assert result["source_format"] == "WEBP"
    assert result["content_type"] == "image/png"
    assert decode_output(result).tobytes() == image.tobytes()


def test_transparent_pixels_become_white(run):
    image = Image.new("RGBA", (10, 10), (200, 30, 40, 255))
    image.putpixel((0, 0), (0, 0, 0, 0))  # fully transparent black
    out = decode_output(run(encode(image, "PNG")))
    assert out.getpixel((0, 0)) == (255, 255, 255)
    assert out.getpixel((5, 5)) == (200, 30, 40)


def test_palette_image_keeps_its_colours(run):
    image = Image.new("P", (8, 8))
    image.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    image.putpixel((1, 1), 1)
    out = decode_output(run(encode(image, "PNG")))
    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == (255, 0, 0)
    assert out.getpixel((1, 1)) == (0, 255, 0)


def test_greyscale_becomes_three_equal_channels(run):
    out = decode_output(run(encode(Image.new("L", (16, 16), 77), "PNG")))
    assert out.mode == "RGB"
    assert out.getpixel((3, 3)) == (77, 77, 77)


def test_sixteen_bit_greyscale_is_scaled_not_clipped(run):
    image = Image.new("I;16", (4, 4), 32768)  # mid grey at 16 bits
    out = decode_output(run(encode(image, "PNG")))
    assert out.getpixel((0, 0)) == (128, 128, 128)


def test_cmyk_jpeg_becomes_rgb(run):
    image = Image.new("CMYK", (20, 20), (0, 255, 255, 0))  # red in CMYK
    out = decode_output(run(encode(image, "JPEG", quality=95)))
    r, g, b = out.getpixel((10, 10))
    assert r > 200 and g < 50 and b < 50


def test_exif_orientation_is_applied(run):
    # Stored landscape: left half red, right half blue. Orientation 6 = "rotate 90 CW to view",
    # so the viewer (and the model) must get a portrait with red on top.
    stored = Image.new("RGB", (80, 40), (255, 0, 0))
    stored.paste((0, 0, 255), (40, 0, 80, 40))
    exif = Image.Exif()
    exif[0x0112] = 6
    result = run(encode(stored, "JPEG", quality=95, exif=exif.tobytes()), key="photos/phone.jpg")
    assert (result["width"], result["height"]) == (40, 80)
    out = decode_output(result)
    top, bottom = out.getpixel((20, 10)), out.getpixel((20, 70))
    assert top[0] > 200 and top[2] < 60
    assert bottom[2] > 200 and bottom[0] < 60


def test_output_carries_no_exif(run):
    exif = Image.Exif()
    exif[0x8825] = {1: "N"}  # GPS IFD
    photo = Image.new("RGB", (20, 20), (1, 2, 3))
    out = decode_output(run(encode(photo, "JPEG", exif=exif.tobytes())))
    assert "exif" not in out.info
    assert len(out.getexif()) == 0


# ---------- size handling ----------


def test_large_photo_is_downscaled_keeping_aspect_and_fits_the_payload(run):
    body = encode(noise((3000, 2000)), "JPEG", quality=95)
    result = run(body, key="photos/huge.jpg")
    assert (result["width"], result["height"]) == (384, 256)
    assert result["content_type"] == "image/jpeg"
    assert len(result["image_data"]) <= PAYLOAD_LIMIT_CHARS
    assert result["source_bytes"] == len(body)


def test_large_noisy_png_switches_to_jpeg_to_fit_the_payload(run):
    result = run(encode(noise((900, 600)), "PNG"))
    assert max(result["width"], result["height"]) == 384
    assert result["content_type"] == "image/jpeg"
    assert len(result["image_data"]) <= PAYLOAD_LIMIT_CHARS


def test_payload_bound_holds_even_with_a_large_output_side(load_function, s3, lambda_context):
    serialize = load_function("serialize", MAX_OUTPUT_SIDE="1024")
    s3.put_object(Bucket=INTAKE_BUCKET, Key="noise.png", Body=encode(noise((1024, 1024)), "PNG"))
    result = serialize.lambda_handler({"s3_bucket": INTAKE_BUCKET, "s3_key": "noise.png"}, lambda_context)
    assert len(result["image_data"]) <= PAYLOAD_LIMIT_CHARS
    assert result["width"] == result["height"]


def test_max_output_side_is_configurable(load_function, s3, lambda_context):
    serialize = load_function("serialize", MAX_OUTPUT_SIDE="64")
    s3.put_object(Bucket=INTAKE_BUCKET, Key="wide.png", Body=encode(Image.new("RGB", (300, 100), (9, 9, 9)), "PNG"))
    result = serialize.lambda_handler({"s3_bucket": INTAKE_BUCKET, "s3_key": "wide.png"}, lambda_context)
    assert (result["width"], result["height"]) == (64, 21)


# ---------- event shapes and keys ----------

AWKWARD_KEYS = [
    "photos/my bike.png",
    "photos/c++ bike+1.png",
    "photos/vélo 自転車 🚲.png",
    "photos/100%2Bbikes.png",  # a literal '%2B' in the key, not an encoded '+'
    "photos/a&b=c;d:e,f?g@h$.png",
]


@pytest.mark.parametrize("key", AWKWARD_KEYS)
def test_eventbridge_keys_are_url_decoded(serialize, s3, lambda_context, key):
    s3.put_object(Bucket=INTAKE_BUCKET, Key=key, Body=encode(Image.new("RGB", (4, 4)), "PNG"))
    result = serialize.lambda_handler(eventbridge_event(quote_plus(key)), lambda_context)
    assert result["s3_key"] == key
    assert result["s3_bucket"] == INTAKE_BUCKET
    assert result["uploaded_at"] == "2025-11-20T14:03:27Z"


def test_eventbridge_key_with_percent20_spaces_is_decoded(serialize, s3, lambda_context):
    key = "photos/my bike.png"
    s3.put_object(Bucket=INTAKE_BUCKET, Key=key, Body=encode(Image.new("RGB", (4, 4)), "PNG"))
    result = serialize.lambda_handler(eventbridge_event(quote(key)), lambda_context)
    assert result["s3_key"] == key


@pytest.mark.parametrize("key", AWKWARD_KEYS)
def test_workflow_state_keys_are_used_literally(run, key):
    assert run(encode(Image.new("RGB", (4, 4)), "PNG"), key=key)["s3_key"] == key


@pytest.mark.parametrize("key", AWKWARD_KEYS)
def test_state_machine_keys_marked_url_encoded_are_decoded(serialize, s3, lambda_context, key):
    # The state machine's FromEventBridgeEvent state copies EventBridge's encoded key and marks it.
    s3.put_object(Bucket=INTAKE_BUCKET, Key=key, Body=encode(Image.new("RGB", (4, 4)), "PNG"))
    state = {"s3_bucket": INTAKE_BUCKET, "s3_key": quote_plus(key, safe="/"), "s3_key_encoding": "url",
             "uploaded_at": "2025-11-20T14:03:27Z"}
    result = serialize.lambda_handler(state, lambda_context)
    assert result["s3_key"] == key
    assert "s3_key_encoding" not in result


@pytest.mark.parametrize("key", AWKWARD_KEYS)
def test_after_a_failure_the_state_machine_gets_the_literal_key_and_nothing_else_changes(serialize, s3,
                                                                                        lambda_context, key):
    # Serialize crashed on this upload; its state (with the catch's error) comes back with the literal key.
    s3.put_object(Bucket=INTAKE_BUCKET, Key=key, Body=b"whatever made it crash")
    state = {"s3_bucket": INTAKE_BUCKET, "s3_key": quote_plus(key, safe="/"), "s3_key_encoding": "url",
             "uploaded_at": "2025-11-20T14:03:27Z", "upload": {"sequencer": "0A"},
             "error": {"Error": "FunctionCrashed", "Cause": "{}"}}
    answer = serialize.lambda_handler({"decode_key": state}, lambda_context)
    assert answer == {**{k: v for k, v in state.items() if k != "s3_key_encoding"}, "s3_key": key}


def test_the_literal_key_is_the_delivered_one_when_only_that_exists(serialize, s3, lambda_context):
    # EventBridge may deliver a key unencoded: 'a+b.png' then names itself, not 'a b.png'.
    s3.put_object(Bucket=INTAKE_BUCKET, Key="photos/a+b.png", Body=b"x")
    state = {"s3_bucket": INTAKE_BUCKET, "s3_key": "photos/a+b.png", "s3_key_encoding": "url"}
    assert serialize.lambda_handler({"decode_key": state}, lambda_context)["s3_key"] == "photos/a+b.png"
    # Neither exists any more (deleted since): the decoded key, as S3 documents its events.
    s3.delete_object(Bucket=INTAKE_BUCKET, Key="photos/a+b.png")
    assert serialize.lambda_handler({"decode_key": state}, lambda_context)["s3_key"] == "photos/a b.png"


def test_a_decode_request_for_a_malformed_state_is_an_invalid_event(serialize, lambda_context):
    with pytest.raises(serialize.InvalidEventError):
        serialize.lambda_handler({"decode_key": {"s3_key": "a.png"}}, lambda_context)


def test_an_unknown_key_encoding_is_an_invalid_event(serialize, lambda_context):
    with pytest.raises(serialize.InvalidEventError):
        serialize.lambda_handler({"s3_bucket": INTAKE_BUCKET, "s3_key": "a.png", "s3_key_encoding": "base64"},
                                 lambda_context)


def test_eventbridge_output_is_the_normalised_state(serialize, s3, lambda_context):
    s3.put_object(Bucket=INTAKE_BUCKET, Key="a.png", Body=encode(Image.new("RGB", (4, 4)), "PNG"))
    result = serialize.lambda_handler(eventbridge_event("a.png"), lambda_context)
    assert set(result) == {
        "s3_bucket", "s3_key", "uploaded_at", "image_data", "content_type",
        "width", "height", "source_bytes", "source_format", "inferences",
    }  # fmt: skip
    assert result["inferences"] == []


def test_unknown_state_fields_pass_through_and_inferences_reset(run):
    result = run(encode(Image.new("RGB", (4, 4)), "PNG"), trace_id="abc-123", inferences=[0.4, 0.6])
    assert result["trace_id"] == "abc-123"
    assert result["inferences"] == []


# ---------- named errors ----------

TRUNCATED_PNG = encode(noise((64, 64)), "PNG")[:-600]
TRUNCATED_JPEG = encode(noise((64, 64)), "JPEG")[:-400]

BAD_IMAGES = [
    pytest.param(b"", "EmptyImageError", "empty", id="empty"),
    pytest.param(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "CorruptImageError", "GIF", id="truncated-gif"),
    pytest.param(b"hello, this is not an image\n", "UnsupportedImageTypeError",
                 "PNG, JPEG, WebP, HEIC/HEIF, AVIF and GIF", id="text"),
    pytest.param(b"II*\x00" + b"\x00" * 40, "UnsupportedImageTypeError", "TIFF", id="tiff"),
    pytest.param(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "UnsupportedImageTypeError", "PDF", id="pdf"),
    pytest.param(TRUNCATED_PNG, "CorruptImageError", "PNG", id="truncated-png"),
    pytest.param(TRUNCATED_JPEG, "CorruptImageError", "JPEG", id="truncated-jpeg"),
    pytest.param(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "CorruptImageError", "PNG", id="png-magic-garbage"),
    pytest.param(png_with_claimed_size(8_000, 8_000), "DecompressionBombError", "8000x8000", id="bomb-64M"),
    # Above Pillow's own warning threshold (~89 M pixels): still our check, not a warning.
    pytest.param(png_with_claimed_size(10_000, 10_000), "DecompressionBombError", "10000x10000", id="bomb-100M"),
    # Above twice that, Pillow refuses at open; it still surfaces under our name.
    pytest.param(png_with_claimed_size(20_000, 20_000), "DecompressionBombError", "400000000", id="bomb-400M"),
]


@pytest.mark.parametrize("body, error_name, message_part", BAD_IMAGES)
def test_bad_images_are_answered_with_named_errors(run, body, error_name, message_part):
    name, message = rejection(run(body, key="photos/bad-upload.bin"))
    assert name == error_name
    assert message_part in message


def test_pillow_bomb_warning_never_preempts_our_limit(serialize):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(serialize.DecompressionBombError):
            serialize.normalize(png_with_claimed_size(10_000, 10_000), max_pixels=40_000_000, max_side=384)


def test_bad_image_errors_name_the_object(run):
    result = run(b"plain text", key="photos/notes.txt")
    assert "photos/notes.txt" in rejection(result)[1] and result["s3_key"] == "photos/notes.txt"


def test_a_bad_upload_is_answered_under_its_literal_key(serialize, s3, lambda_context):
    """EventBridge delivers the key URL-encoded; the answer carries the key the record must be written under."""
    key = "photos/bad photo+1 (ça).png"
    s3.put_object(Bucket=INTAKE_BUCKET, Key=key, Body=b"")
    result = serialize.lambda_handler(eventbridge_event(quote_plus(key, safe="/")), lambda_context)
    assert rejection(result)[0] == "EmptyImageError" and result["s3_key"] == key


def test_too_large_is_refused_from_content_length(load_function, s3, lambda_context):
    serialize = load_function("serialize", MAX_IMAGE_BYTES="1000")
    s3.put_object(Bucket=INTAKE_BUCKET, Key="big.png", Body=encode(noise((40, 40)), "PNG"))
    answer = serialize.lambda_handler({"s3_bucket": INTAKE_BUCKET, "s3_key": "big.png"}, lambda_context)
    name, message = rejection(answer)
    assert name == "ImageTooLargeError" and re.search("big.png.*limit", message)


def test_pixel_limit_is_configurable(load_function, s3, lambda_context):
    serialize = load_function("serialize", MAX_IMAGE_PIXELS="5000")
    s3.put_object(Bucket=INTAKE_BUCKET, Key="p.png", Body=encode(Image.new("RGB", (100, 100)), "PNG"))
    name, message = rejection(serialize.lambda_handler({"s3_bucket": INTAKE_BUCKET, "s3_key": "p.png"}, lambda_context))
    assert name == "DecompressionBombError" and "10000 pixels" in message


def test_missing_key_is_image_not_found(serialize, lambda_context):
    name, message = rejection(serialize.lambda_handler({"s3_bucket": INTAKE_BUCKET, "s3_key": "photos/gone.png"},
                                                       lambda_context))
    assert name == "ImageNotFoundError" and "photos/gone.png" in message


def test_missing_bucket_is_image_not_found(serialize, lambda_context):
    name, message = rejection(serialize.lambda_handler({"s3_bucket": "no-such-bucket-here", "s3_key": "a.png"},
                                                       lambda_context))
    assert name == "ImageNotFoundError" and "no-such-bucket-here" in message


MALFORMED_EVENTS = [
    pytest.param([], id="list"),
    pytest.param({}, id="empty"),
    pytest.param({"s3_bucket": INTAKE_BUCKET}, id="no-key"),
    pytest.param({"s3_key": "a.png"}, id="no-bucket"),
    pytest.param({"s3_bucket": INTAKE_BUCKET, "s3_key": ""}, id="empty-key"),
    pytest.param({"s3_bucket": INTAKE_BUCKET, "s3_key": 7}, id="key-not-string"),
    pytest.param({"s3_bucket": INTAKE_BUCKET, "s3_key": "k" * 1025}, id="key-too-long"),
    pytest.param({"Records": [{"s3": {"bucket": {"name": INTAKE_BUCKET}, "object": {"key": "a.png"}}}]},
                 id="s3-records"),
    pytest.param({**eventbridge_event("a.png"), "detail-type": "Object Deleted"}, id="eb-deleted"),
    pytest.param({**eventbridge_event("a.png"), "source": "aws.ec2"}, id="eb-wrong-source"),
    pytest.param({**eventbridge_event("a.png"), "detail": {"bucket": {"name": INTAKE_BUCKET}}}, id="eb-no-object"),
]


@pytest.mark.parametrize("event", MALFORMED_EVENTS)
def test_malformed_events_raise_invalid_event_error(serialize, lambda_context, event):
    with pytest.raises(serialize.InvalidEventError):
        serialize.lambda_handler(event, lambda_context)


@pytest.mark.parametrize(
    "env",
    [
        {"MAX_OUTPUT_SIDE": "abc"},
        {"MAX_OUTPUT_SIDE": "8"},
        {"MAX_IMAGE_BYTES": "-1"},
        {"MAX_IMAGE_PIXELS": "1.5"},
        {"MAX_IMAGE_PIXELS": "500000000"},  # above the point where Pillow refuses on its own
    ],
)
def test_bad_configuration_fails_at_cold_start(load_function, env):
    with pytest.raises(Exception) as caught:
        load_function("serialize", **env)
    assert type(caught.value).__name__ == "ConfigurationError"
    name, value = next(iter(env.items()))
    assert name in str(caught.value) and value in str(caught.value)


# ---------- metrics ----------


def test_success_emits_received_and_bytes(run, emitted_metrics):
    emitted_metrics()  # discard anything printed while setting up
    body = encode(Image.new("RGB", (4, 4)), "PNG")
    run(body)
    metrics = {m["name"]: m for m in emitted_metrics()}
    assert set(metrics) == {"ImagesReceived", "ImageBytes"}
    assert metrics["ImagesReceived"]["value"] == 1 and metrics["ImagesReceived"]["unit"] == "Count"
    assert metrics["ImageBytes"]["value"] == len(body) and metrics["ImageBytes"]["unit"] == "Bytes"
    for metric in metrics.values():
        assert metric["namespace"] == "SconesTest"
        assert metric["dimensions"]["EndpointName"] == "scones-vehicle-classifier"


def test_rejection_emits_a_metric_per_reason(run, emitted_metrics):
    emitted_metrics()
    rejection(run(b"%PDF-1.7 ....", key="photos/scan.pdf"))
    rejected = [m for m in emitted_metrics() if m["name"] == "ImagesRejected"]
    assert len(rejected) == 1
    assert rejected[0]["value"] == 1 and rejected[0]["unit"] == "Count"
    assert rejected[0]["dimensions"]["Reason"] == "UnsupportedImageTypeError"
    assert rejected[0]["dimensions"]["EndpointName"] == "scones-vehicle-classifier"


def test_no_endpoint_dimension_without_endpoint_name(load_function, s3, lambda_context, emitted_metrics):
    serialize = load_function("serialize")
    s3.put_object(Bucket=INTAKE_BUCKET, Key="a.png", Body=encode(Image.new("RGB", (4, 4)), "PNG"))
    emitted_metrics()
    serialize.lambda_handler({"s3_bucket": INTAKE_BUCKET, "s3_key": "a.png"}, lambda_context)
    metrics = emitted_metrics()
    assert metrics and all("EndpointName" not in m["dimensions"] for m in metrics)


# ---------- what phones and browsers send ----------


def _heic(image: Image.Image) -> bytes:
    import pillow_heif

    buffer = io.BytesIO()
    pillow_heif.from_pillow(image).save(buffer, quality=95)
    return buffer.getvalue()


def _halves(size=(64, 64)) -> Image.Image:
    """Left half red, right half blue: easy to recognise after a lossy round trip."""
    image = Image.new("RGB", size, (220, 20, 20))
    image.paste((20, 20, 220), (size[0] // 2, 0, size[0], size[1]))
    return image


@pytest.mark.parametrize("fmt, body", [
    ("HEIF", lambda: _heic(_halves())),  # the iPhone camera's default
    ("AVIF", lambda: encode(_halves(), "AVIF", quality=95)),
    ("GIF", lambda: encode(_halves(), "GIF")),
])
def test_photo_formats_of_phones_and_browsers_are_read(run, fmt, body):
    result = run(body(), key=f"photos/upload.{fmt.lower()}")
    assert result["source_format"] == fmt and (result["width"], result["height"]) == (64, 64)
    out = Image.open(io.BytesIO(base64.b64decode(result["image_data"]))).convert("RGB")
    red, blue = out.getpixel((8, 32)), out.getpixel((56, 32))
    assert red[0] > 150 > red[2] and blue[2] > 150 > blue[0], (red, blue)


def test_an_animated_gif_is_read_by_its_first_frame(run):
    first, second = _halves(), _halves().transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    body = encode(first, "GIF", save_all=True, append_images=[second], duration=100, loop=0)
    out = Image.open(io.BytesIO(base64.b64decode(run(body, key="photos/anim.gif")["image_data"]))).convert("RGB")
    assert out.getpixel((8, 32))[0] > 150  # red on the left, as in the first frame


def test_a_damaged_heic_is_a_corrupt_image(run, serialize):
    name, message = rejection(run(_heic(_halves())[:200], key="photos/cut.heic"))
    assert name == "CorruptImageError" and "HEIF" in message


# ---------- keys EventBridge may deliver encoded or not ----------


@pytest.mark.parametrize("shape", ["eventbridge", "state"])
def test_a_key_delivered_literally_is_found_when_its_decoded_form_is_not(serialize, s3, lambda_context, shape):
    # "a+b.png" exists; decoding the delivered key would look for "a b.png". Either way is read right.
    key = "photos/a+b.png"
    s3.put_object(Bucket=INTAKE_BUCKET, Key=key, Body=encode(noise((40, 30)), "PNG"))
    event = (eventbridge_event(key) if shape == "eventbridge"
             else {"s3_bucket": INTAKE_BUCKET, "s3_key": key, "s3_key_encoding": "url"})
    result = serialize.lambda_handler(event, lambda_context)
    assert result["s3_key"] == key and (result["width"], result["height"]) == (40, 30)


def test_the_decoded_key_wins_when_it_exists(serialize, s3, lambda_context):
    s3.put_object(Bucket=INTAKE_BUCKET, Key="photos/a b.png", Body=encode(noise((40, 30)), "PNG"))
    s3.put_object(Bucket=INTAKE_BUCKET, Key="photos/a+b.png", Body=encode(noise((20, 10)), "PNG"))
    result = serialize.lambda_handler(eventbridge_event("photos/a+b.png"), lambda_context)
    assert result["s3_key"] == "photos/a b.png" and result["width"] == 40


def test_neither_form_existing_is_not_found(serialize, s3, lambda_context):
    result = serialize.lambda_handler(eventbridge_event("photos/gone+away.png"), lambda_context)
    name, message = rejection(result)
    assert name == "ImageNotFoundError" and "NoSuchKey" in message
    assert result["s3_key"] == "photos/gone away.png"  # the decoded form: the key S3 was asked for first


def _flip_byte_in_idat(png: bytes) -> bytes:
    """The PNG with one byte of its compressed pixel data changed, chunk structure and CRC fields untouched."""
    at = png.index(b"IDAT") + 4 + 20
    return png[:at] + bytes([png[at] ^ 0x01]) + png[at + 1:]


def test_a_png_whose_checksum_does_not_match_is_refused_as_damaged(run):
    damaged = _flip_byte_in_idat(encode(noise((64, 64)), "PNG"))
    name, message = rejection(run(damaged, key="photos/damaged.png"))
    assert name == "CorruptImageError"
    assert "checksum does not match" in message


def test_a_jpeg_with_a_flipped_bit_is_classified_like_any_photo(run):
    # JPEG has no checksum: a bit flipped in its scan data cannot be told from a real photo (see image_normalizer).
    photo = encode(noise((64, 64)), "JPEG")
    flipped = photo[:len(photo) // 2] + bytes([photo[len(photo) // 2] ^ 0x10]) + photo[len(photo) // 2 + 1:]
    result = run(flipped, key="photos/flipped.jpg")
    assert decode_output(result).size == (64, 64)
