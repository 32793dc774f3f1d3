"""Serve the classifier over HTTP the way SageMaker does, for local use, the twin and the benchmark.

One server speaks two contracts:

* SageMaker hosting (what a model container must implement): ``GET /ping`` and
  ``POST /invocations`` on port 8080. Errors are plain HTTP 4xx/5xx with a JSON message.
* SageMaker Runtime (the InvokeEndpoint API that clients call): ``POST /endpoints/{name}/invocations``,
  so ``boto3.client("sagemaker-runtime", endpoint_url=URL).invoke_endpoint(...)`` (or
  AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME=URL) works unchanged. Like the real service it answers with
  ``x-Amzn-Invoked-Production-Variant``, wraps container errors in ``ModelError`` (424, with
  OriginalStatusCode / OriginalMessage), rejects unknown endpoint names with ``ValidationError``, and
  reports ``ModelNotReadyException`` / ``ThrottlingException`` / ``ServiceUnavailable`` through the
  ``x-amzn-ErrorType`` header so botocore raises the same ClientError codes. Only this path does data
  capture, as in SageMaker, where capture is a feature of the endpoint and not of the container.

Input: one image per request, ``image/png``, ``image/jpeg`` or ``application/x-image`` (PNG or JPEG
bytes, the built-in image-classification algorithm's name), any size up to the payload limit.
Output: ``application/json``, a list of probabilities in class order, e.g. ``[0.02, 0.98]``.
Preprocessing and inference are training.inference.Classifier's, shared by all request threads.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pathlib
import queue
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import unquote

from training.inference import (DEFAULT_MODEL_DIR, SERVING_THREADS, Classifier, ImageTooLargeError,
                                InvalidImageError)
from training.serving.capture import CaptureConfig, CaptureWriter

log = logging.getLogger(__name__)

DEFAULT_PORT = 8080
DEFAULT_ENDPOINT_NAME = "vehicle-classifier"
DEFAULT_VARIANT = "AllTraffic"
DEFAULT_ACCOUNT_ID = "123456789012"
DEFAULT_REGION = "us-east-1"
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # SageMaker real-time InvokeEndpoint limit
ACCEPTED_CONTENT_TYPES = ("image/png", "image/jpeg", "application/x-image")
RESPONSE_CONTENT_TYPE = "application/json"
# Runtime errors a caller can ask the endpoint to simulate (inject_fault): code -> HTTP status.
SIMULATED_FAULTS = {
    "ServiceUnavailable": 503,
    "ThrottlingException": 400,
    "ModelNotReadyException": 429,
    "InternalFailure": 500,
    "ModelError": 424,
}
_DRAIN_LIMIT = 64 * 1024 * 1024  # read and discard oversized bodies up to this, so the client sees the 413


class ModelLoadError(RuntimeError):
    """The model could not be loaded, so the endpoint cannot serve."""


class _Answer(Exception):
    """An HTTP answer decided part-way through handling a request."""

    def __init__(self, status: int, message: str, *, error_type: str | None = None,
                 fields: dict | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.error_type = status, message, error_type
        self.fields = fields or {}  # extra members of a modelled runtime error (ModelError's)
        self.headers = headers or {}


class _PooledHTTPServer(HTTPServer):
    """HTTPServer whose connections are handled by a fixed pool of worker threads.

    ThreadingHTTPServer starts one thread per connection with no bound and does not join them;
    here a full queue makes the accept loop wait (TCP backlog = back-pressure) and stop() joins
    every worker.
    """

    allow_reuse_address = True  # SO_REUSEADDR: restart on the same port right after stop
    request_queue_size = 64

    def __init__(self, address, handler, endpoint: EndpointServer, workers: int):
        super().__init__(address, handler)
        self.endpoint = endpoint
        self._connections: queue.Queue = queue.Queue(maxsize=workers * 4)
        self._workers = [threading.Thread(target=self._work, name=f"endpoint-worker-{i}", daemon=True)
                         for i in range(workers)]
        for t in self._workers:
            t.start()

    def process_request(self, request, client_address):
        self._connections.put((request, client_address))

    def _work(self):
        while True:
            item = self._connections.get()
            if item is None:
                return
            request, client_address = item
            try:
                self.finish_request(request, client_address)
            except Exception:
                self.handle_error(request, client_address)
            finally:
                self.shutdown_request(request)

    def handle_error(self, request, client_address):
        log.exception("unhandled error serving %s", client_address)

    def stop_workers(self):
        for _ in self._workers:
            self._connections.put(None)  # after any connections already queued: those get answered
        for t in self._workers:
            t.join()


class _Handler(BaseHTTPRequestHandler):
    server: _PooledHTTPServer
    protocol_version = "HTTP/1.0"  # one request per connection: an idle client never pins a worker
    timeout = 30  # seconds a client may take to send its request
    server_version = "SageMakerLocal/1.0"

    def log_message(self, format, *args):  # the per-request line is logged in _respond
        pass

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def _dispatch(self, method: str):
        self._started = time.perf_counter()
        self._request_id = None
        self._body_read = False
        ep = self.server.endpoint
        path = self.path.split("?", 1)[0]
        try:
            if path == "/ping":
                self._only(method, "GET")
                status, body, ctype = ep.ping()
                self._respond(status, body, ctype)
            elif path == "/invocations":
                self._only(method, "POST")
                status, body, ctype = ep.invoke_container(self._read_body(), self.headers.get("Content-Type"),
                                                          self.headers.get("Accept"))
                self._respond(status, body, ctype)
            elif path.startswith("/endpoints/") and path.endswith("/invocations"):
                name = unquote(path[len("/endpoints/"):-len("/invocations")])
                self._only(method, "POST")
                self._runtime(ep, name)
            else:
                raise _Answer(404, f"No route for {method} {path}; this server answers GET /ping, "
                                   "POST /invocations and POST /endpoints/{name}/invocations")
        except _Answer as answer:
            self._answer(answer, runtime=path.startswith("/endpoints/"))
        except (ConnectionError, TimeoutError) as exc:
            log.info("%s %s client went away: %s", method, path, exc)

    def _runtime(self, ep: EndpointServer, name: str):
        self._request_id = str(uuid.uuid4())  # botocore reports it as ResponseMetadata.RequestId
        ep.check_runtime_request(name)  # ValidationError / faults / not ready / stopping
        body = self._read_body(runtime=True)
        status, out, ctype = ep.invoke_runtime(body, self.headers.get("Content-Type"), self.headers.get("Accept"),
                                               inference_id=self.headers.get("X-Amzn-SageMaker-Inference-Id"))
        self._respond(status, out, ctype, {"x-Amzn-Invoked-Production-Variant": ep.variant})

    def _only(self, method: str, allowed: str):
        if method != allowed:
            raise _Answer(405, f"{method} is not allowed here; use {allowed}", headers={"Allow": allowed})

    def _read_body(self, runtime: bool = False) -> bytes:
        limit = self.server.endpoint.max_payload_bytes
        length = self._content_length()
        if length > limit:
            # The runtime's own wording, as botocore reports it: "An error occurred (413) ...".
            message = (f"HTTP content length exceeded {limit} bytes." if runtime else
                       f"payload of {length} bytes is larger than the {limit}-byte limit")
            raise _Answer(413, message)
        body = self.rfile.read(length)
        self._body_read = True
        if len(body) != length:
            raise _Answer(400, f"request body ended after {len(body)} of {length} bytes")
        return body

    def _content_length(self) -> int:
        raw = self.headers.get("Content-Length")
        if raw is None:
            raise _Answer(411, "Content-Length is required")
        try:
            length = int(raw)
        except ValueError:
            length = -1
        if length < 0:
            raise _Answer(400, f"invalid Content-Length {raw!r}")
        return length

    def _discard_body(self):
        """Read an unread body before answering: closing a socket with unread input sends a TCP
        reset, which can destroy the answer before the client reads it."""
        self._body_read = True
        self.close_connection = True
        try:
            remaining = self._content_length()
        except _Answer:
            return
        if remaining > _DRAIN_LIMIT:
            return  # not worth reading; the client may see a reset
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 20))
            if not chunk:
                break
            remaining -= len(chunk)

    def _answer(self, answer: _Answer, runtime: bool):
        if not self._body_read:
            self._discard_body()
        headers = dict(answer.headers)
        if runtime and answer.error_type:
            # botocore takes the error code from this header and the message from "message".
            headers["x-amzn-ErrorType"] = answer.error_type
            payload = {"message": answer.message, **answer.fields}
        else:
            payload = {"code": answer.status, "message": answer.message}
        self._respond(answer.status, json.dumps(payload).encode(), RESPONSE_CONTENT_TYPE, headers)

    def _respond(self, status: int, body: bytes, content_type: str, headers: dict | None = None):
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            if self._request_id:
                self.send_header("x-amzn-RequestId", self._request_id)
            for key, value in (headers or {}).items():
                self.send_header(key, str(value))
            self.end_headers()
            self.wfile.write(body)
        finally:
            ms = (time.perf_counter() - self._started) * 1000
            log.info("%s %s %d %.1fms", self.command, self.path, status, ms)


class EndpointServer:
    """A local SageMaker endpoint: one shared Classifier behind a pooled HTTP server.

    Build it with start_endpoint(). Use as a context manager or call stop().
    """

    def __init__(self, model_dir: str | pathlib.Path = DEFAULT_MODEL_DIR, *, host: str = "127.0.0.1",
                 port: int = DEFAULT_PORT, endpoint_name: str = DEFAULT_ENDPOINT_NAME,
                 variant: str = DEFAULT_VARIANT, capture: CaptureConfig | None = None,
                 max_payload_bytes: int = MAX_PAYLOAD_BYTES, workers: int = 8,
                 max_concurrent_invocations: int | None = None, threads: int | None = SERVING_THREADS,
                 model_runs: int | None = None,
                 account_id: str = DEFAULT_ACCOUNT_ID, region: str = DEFAULT_REGION,
                 loader: Callable[[pathlib.Path], Classifier] | None = None):
        if workers < 1:
            raise ValueError("workers must be at least 1")
        if max_concurrent_invocations is not None and max_concurrent_invocations < 1:
            raise ValueError("max_concurrent_invocations must be at least 1 (or None for no limit)")
        self.model_dir = pathlib.Path(model_dir)
        self.endpoint_name = endpoint_name
        self.variant = variant
        self.account_id = account_id
        self.region = region
        self.max_payload_bytes = max_payload_bytes
        self.classifier: Classifier | None = None
        self.load_error: BaseException | None = None
        self._loader = loader or (lambda d: Classifier.load(d, threads=threads))
        self._slots = (threading.BoundedSemaphore(max_concurrent_invocations)
                       if max_concurrent_invocations else None)
        # Requests beyond the cores wait here rather than time-slice: same throughput, shorter latency.
        self.model_runs = model_runs or default_model_runs(threads)
        self._model_run_slots = threading.BoundedSemaphore(self.model_runs)
        self._faults: list[str] = []
        self._lock = threading.Lock()
        self._stopping = False
        self._stopped = False
        self.capture = CaptureWriter(capture, endpoint_name, variant) if capture else None
        try:
            self._httpd = _PooledHTTPServer((host, port), _Handler, self, workers)
        except BaseException:
            if self.capture:
                self.capture.close()
            raise
        self.host, self.port = self._httpd.server_address[:2]
        self._serve_thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                              name=f"endpoint-{endpoint_name}", daemon=True)
        self._load_thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ready(self) -> bool:
        return self.classifier is not None

    def start(self, wait: bool = True) -> EndpointServer:
        """Start serving; load the model now (wait=True) or in the background (wait=False, during
        which /ping answers 503 and InvokeEndpoint ModelNotReadyException, like a loading endpoint)."""
        if wait:
            self._load()
            if self.load_error is not None:
                self.stop()
                raise ModelLoadError(f"cannot load the model from {self.model_dir}: {self.load_error}") \
                    from self.load_error
        else:
            self._load_thread = threading.Thread(target=self._load, name="endpoint-model-load", daemon=True)
            self._load_thread.start()
        self._serve_thread.start()
        return self

    def _load(self):
        try:
            self.classifier = self._loader(self.model_dir)
        except Exception as exc:
            self.load_error = exc
            log.error("model load from %s failed: %s", self.model_dir, exc)

    def wait_ready(self, timeout: float | None = None) -> bool:
        if self._load_thread is not None:
            self._load_thread.join(timeout)
        return self.ready

    def stop(self) -> None:
        """Stop accepting, answer what is already queued, join every thread, flush capture."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            self._stopping = True
        if self._serve_thread.is_alive():
            self._httpd.shutdown()
        self._httpd.stop_workers()
        self._httpd.server_close()
        if self._load_thread is not None:
            self._load_thread.join()
        if self.capture is not None:
            self.capture.close()

    def __enter__(self) -> EndpointServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def inject_fault(self, error_code: str, count: int = 1) -> None:
        """Make the next `count` InvokeEndpoint calls fail with `error_code` (one of SIMULATED_FAULTS),
        to exercise callers' retry and catch paths (e.g. the state machine's Retry on throttling)."""
        if error_code not in SIMULATED_FAULTS:
            raise ValueError(f"unknown fault {error_code!r}; choose from {sorted(SIMULATED_FAULTS)}")
        with self._lock:
            self._faults.extend([error_code] * count)

    # -- the hosting (container) contract --------------------------------------------------
    def ping(self) -> tuple[int, bytes, str]:
        if self.ready:
            return 200, b'{"status": "Healthy"}', RESPONSE_CONTENT_TYPE
        state = "LoadFailed" if self.load_error else "Loading"
        return 503, json.dumps({"status": state}).encode(), RESPONSE_CONTENT_TYPE

    def invoke_container(self, body: bytes, content_type: str | None, accept: str | None) -> tuple[int, bytes, str]:
        """POST /invocations: (status, body, content type). Never raises for bad input."""
        if self.classifier is None:
            return _error(503, "the model is not loaded yet")
        media = (content_type or "").split(";", 1)[0].strip().lower()
        if media not in ACCEPTED_CONTENT_TYPES:
            return _error(415, f"unsupported content type {content_type!r}; send one image as "
                               f"{', '.join(ACCEPTED_CONTENT_TYPES)}")
        if accept and not any(a.split(";", 1)[0].strip() in ("*/*", "application/*", RESPONSE_CONTENT_TYPE)
                              for a in accept.split(",")):
            return _error(406, f"cannot answer in {accept!r}; the response is {RESPONSE_CONTENT_TYPE}")
        if not body:
            return _error(400, "empty request body; send the image bytes")
        try:
            with self._model_run_slots:
                probabilities = self.classifier.predict(body)
        except ImageTooLargeError as exc:
            return _error(413, f"image too large: {exc}")
        except InvalidImageError as exc:
            return _error(400, f"cannot read the image: {exc}")
        except Exception as exc:
            log.exception("inference failed")
            return _error(500, f"inference failed: {type(exc).__name__}: {exc}")
        return 200, json.dumps([float(p) for p in probabilities]).encode(), RESPONSE_CONTENT_TYPE

    # -- the runtime (InvokeEndpoint) contract ---------------------------------------------
    def check_runtime_request(self, name: str) -> None:
        """Refuse an InvokeEndpoint call before reading its body, as the service would."""
        if name != self.endpoint_name:
            raise _Answer(400, f"Endpoint {name} of account {self.account_id} not found.",
                          error_type="ValidationError")
        with self._lock:
            fault = self._faults.pop(0) if self._faults else None
            stopping = self._stopping
        if fault == "ModelError":
            raise _Answer(424, self._model_error_message(500, "simulated model failure"),
                          error_type="ModelError", fields=self._model_error_fields(500, "simulated model failure"))
        if fault:
            raise _Answer(SIMULATED_FAULTS[fault], f"simulated {fault}", error_type=fault)
        if stopping:
            raise _Answer(503, "The endpoint is shutting down. Try your call again.", error_type="ServiceUnavailable")
        if self.load_error is not None:
            raise _Answer(503, f"The endpoint cannot serve: model load failed ({self.load_error}).",
                          error_type="ServiceUnavailable")
        if not self.ready:
            raise _Answer(429, f"Model for endpoint {name} is not ready yet. Try your call again.",
                          error_type="ModelNotReadyException")

    def invoke_runtime(self, body: bytes, content_type: str | None, accept: str | None, *,
                       inference_id: str | None = None) -> tuple[int, bytes, str]:
        if self._slots is not None and not self._slots.acquire(blocking=False):
            raise _Answer(400, "Rate exceeded: the endpoint is at its maximum concurrent invocations.",
                          error_type="ThrottlingException")
        try:
            status, out, ctype = self.invoke_container(body, content_type, accept)
        finally:
            if self._slots is not None:
                self._slots.release()
        if status >= 400:
            original = json.loads(out)["message"]
            raise _Answer(424, self._model_error_message(status, original), error_type="ModelError",
                          fields=self._model_error_fields(status, original))
        if self.capture is not None and self.capture.sampled():
            self.capture.record(input_body=body, input_content_type=content_type, output_body=out,
                                output_content_type=ctype, inference_id=inference_id)
        return status, out, ctype

    def _model_error_fields(self, status: int, original: str) -> dict:
        return {"OriginalStatusCode": status, "OriginalMessage": original,
                "LogStreamArn": f"arn:aws:logs:{self.region}:{self.account_id}:log-group:"
                                f"/aws/sagemaker/Endpoints/{self.endpoint_name}"}

    def _model_error_message(self, status: int, original: str) -> str:
        kind = "client" if status < 500 else "server"
        return (f"Received {kind} error ({status}) from primary with message \"{original}\". "
                f"See the log group /aws/sagemaker/Endpoints/{self.endpoint_name} in account "
                f"{self.account_id} for more information.")


def default_model_runs(threads: int | None) -> int:
    """Model runs at once that keep every core busy: cores / intra-op threads per run (None = all cores)."""
    cores = os.cpu_count() or 1
    return max(1, cores // (threads or cores))


def _error(status: int, message: str) -> tuple[int, bytes, str]:
    return status, json.dumps({"code": status, "message": message}).encode(), RESPONSE_CONTENT_TYPE


def start_endpoint(model_dir: str | pathlib.Path = DEFAULT_MODEL_DIR, *, wait: bool = True,
                   **options) -> EndpointServer:
    """Start a local endpoint serving `model_dir`; see EndpointServer for the options.

    port=0 picks a free port (read it back from .port / .url).
    """
    return EndpointServer(model_dir, **options).start(wait=wait)


def _invoke_example(server: EndpointServer) -> str:
    return (f"  curl -s -H 'Content-Type: image/png' --data-binary @IMAGE.png {server.url}/invocations\n"
            f"  AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME={server.url} AWS_ACCESS_KEY_ID=local "
            f"AWS_SECRET_ACCESS_KEY=local AWS_DEFAULT_REGION={server.region} \\\n"
            f"    python -c \"import boto3,sys; print(boto3.client('sagemaker-runtime').invoke_endpoint("
            f"EndpointName='{server.endpoint_name}', ContentType='image/png', "
            f"Body=open(sys.argv[1],'rb').read())['Body'].read().decode())\" IMAGE.png")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training serve", description=__doc__.split("\n\n")[0])
    p.add_argument("--model-dir", default=str(DEFAULT_MODEL_DIR), help="folder with model.onnx and metadata.json")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default 8080; 0 = any free port)")
    p.add_argument("--endpoint-name", default=DEFAULT_ENDPOINT_NAME)
    p.add_argument("--variant", default=DEFAULT_VARIANT)
    p.add_argument("--capture-destination", help="capture invocations to this folder or s3://bucket/prefix")
    p.add_argument("--capture-sampling", type=int, default=100, help="percentage of invocations captured (0-100)")
    p.add_argument("--max-payload-bytes", type=int, default=MAX_PAYLOAD_BYTES)
    p.add_argument("--workers", type=int, default=8, help="request-handling threads (default 8)")
    p.add_argument("--threads", type=int, default=SERVING_THREADS,
                   help=f"onnxruntime intra-op threads per request (default {SERVING_THREADS}: "
                        "requests run side by side, one per core)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        capture = (CaptureConfig(args.capture_destination, sampling_percentage=args.capture_sampling)
                   if args.capture_destination else None)
        server = start_endpoint(args.model_dir, host=args.host, port=args.port, endpoint_name=args.endpoint_name,
                                variant=args.variant, capture=capture, max_payload_bytes=args.max_payload_bytes,
                                workers=args.workers, threads=args.threads)
    except (ValueError, OSError, ModelLoadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"Endpoint {server.endpoint_name} (variant {server.variant}) serving {args.model_dir} at {server.url} "
          f"({server.model_runs} request(s) at a time, {args.threads} onnxruntime thread(s) each)", flush=True)
    if capture:
        print(f"Capturing {capture.sampling_percentage}% of invocations to {capture.destination}", flush=True)
    print(f"Try:\n{_invoke_example(server)}\nCtrl-C stops.", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    print("stopping...", flush=True)
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
