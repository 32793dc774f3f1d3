"""The handler the SageMaker PyTorch inference container runs for our ONNX model.

The container (sagemaker-pytorch-inference-toolkit) imports the module named by SAGEMAKER_PROGRAM
from /opt/ml/model/code and calls model_fn once, then input_fn -> predict_fn -> output_fn per
request. `deploy.package_model` puts this file and the training modules it imports under
code/, with onnxruntime for the container's Python in code/lib (so no pip runs when an instance starts),
and sets SAGEMAKER_PROGRAM=training.sagemaker.handler (a top-level "sagemaker_inference" module would collide
with the toolkit's own package of that name).

Errors answer a short JSON body, {"status": 415, "message": "..."}: the toolkit would append the whole
Python traceback (file paths, code) to the body, and SageMaker hands the body to the caller. The
traceback still goes to the endpoint's log.

Contract, the same as training.serving.endpoint and the built-in algorithm: one image per request
(image/png, image/jpeg or application/x-image), answer application/json, the list of class
probabilities in metadata order, e.g. [0.02, 0.98].
"""

from __future__ import annotations

import json
import os
import sys

# The dependencies shipped in the artifact (code/lib) come first: the container has no onnxruntime.
_LIB = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "lib")  # code/lib
if os.path.isdir(_LIB) and _LIB not in sys.path:
    sys.path.insert(0, _LIB)

from ..inference import Classifier, ImageTooLargeError, InvalidImageError  # noqa: E402 - after the path

IMAGE_CONTENT_TYPES = ("image/png", "image/jpeg", "application/x-image")
JSON_CONTENT_TYPE = "application/json"

try:  # inside the container: the toolkit turns these into HTTP status codes
    from sagemaker_inference import transformer as _transformer
    from sagemaker_inference.errors import BaseInferenceToolkitError as _ErrorBase
except ImportError:  # elsewhere (tests, local use) the same attributes on a plain exception
    _ErrorBase, _transformer = Exception, None


def error_body(status_code: int, message: str) -> str:
    return json.dumps({"status": status_code, "message": message})


def _short_errors(handle_error):
    """The toolkit's Transformer.handle_error (it logs the traceback and sets the status), answering a short
    JSON body instead of the message followed by the traceback."""
    def handle(context, inference_exception, trace):
        handle_error(context, inference_exception, trace)
        context.set_response_content_type(0, JSON_CONTENT_TYPE)
        return [error_body(inference_exception.status_code, inference_exception.message)]
    handle.wrapped = handle_error
    return staticmethod(handle)


if _transformer is not None and not hasattr(_transformer.Transformer.handle_error, "wrapped"):
    _transformer.Transformer.handle_error = _short_errors(_transformer.Transformer.handle_error)


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
