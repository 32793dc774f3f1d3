"""The handler the SageMaker PyTorch inference container runs for our ONNX model.

The container (sagemaker-pytorch-inference-toolkit) imports the module named by SAGEMAKER_PROGRAM
from /opt/ml/model/code and calls model_fn once, then input_fn -> predict_fn -> output_fn per
request. `sagemaker_deploy.package_model` puts this file, the training modules it imports and a
requirements.txt (onnxruntime, Pillow) under code/ and sets
SAGEMAKER_PROGRAM=training.sagemaker_inference (a plain "sagemaker_inference" would collide with
the toolkit's own package of that name).

Contract, the same as training.serve and the built-in algorithm: one image per request
(image/png, image/jpeg or application/x-image), answer application/json, the list of class
probabilities in metadata order, e.g. [0.02, 0.98].
"""

from __future__ import annotations

import json

from .inference import Classifier, ImageTooLargeError, InvalidImageError

IMAGE_CONTENT_TYPES = ("image/png", "image/jpeg", "application/x-image")
JSON_CONTENT_TYPE = "application/json"

try:  # inside the container: the toolkit turns these into HTTP status codes
    from sagemaker_inference.errors import BaseInferenceToolkitError as _ErrorBase
except ImportError:  # elsewhere (tests, local use) the same attributes on a plain exception
    _ErrorBase = Exception


class RequestError(_ErrorBase):
    """A client error: status_code is the HTTP status the container answers with."""

    def __init__(self, status_code: int, message: str):
        self.status_code, self.message, self.phrase = status_code, message, message
        Exception.__init__(self, status_code, message, message)


def _media_type(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip().lower()


def model_fn(model_dir: str) -> Classifier:
    return Classifier.load(model_dir)


def input_fn(request_body, content_type: str | None) -> bytes:
    if _media_type(content_type) not in IMAGE_CONTENT_TYPES:
        raise RequestError(415, f"unsupported content type {content_type!r}; send one image as "
                                f"{', '.join(IMAGE_CONTENT_TYPES)}")
    if isinstance(request_body, str):  # the toolkit decodes only text types, but be strict
        raise RequestError(400, "expected raw image bytes, got text")
    body = bytes(request_body or b"")
    if not body:
        raise RequestError(400, "empty request body; send the image bytes")
    return body


def predict_fn(image: bytes, model: Classifier) -> list[float]:
    try:
        return model.predict(image)
    except ImageTooLargeError as exc:
        raise RequestError(413, f"image too large: {exc}") from exc
    except InvalidImageError as exc:
        raise RequestError(400, f"cannot read the image: {exc}") from exc


def output_fn(prediction: list[float], accept: str | None) -> tuple[str, str]:
    media = _media_type(accept)
    if media not in ("", "*/*", JSON_CONTENT_TYPE):
        raise RequestError(406, f"cannot answer as {accept!r}; the response is {JSON_CONTENT_TYPE}")
    return json.dumps([float(p) for p in prediction]), JSON_CONTENT_TYPE
