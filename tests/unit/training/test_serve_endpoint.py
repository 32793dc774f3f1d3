"""The local endpoint over real HTTP: the hosting contract with http.client, InvokeEndpoint with boto3."""

from __future__ import annotations

import http.client
import io
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
import numpy as np
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from PIL import Image

from training.inference import DEFAULT_MODEL_DIR, Classifier
from training.serving.endpoint import MAX_PAYLOAD_BYTES, ModelLoadError, start_endpoint

REPO = pathlib.Path(__file__).resolve().parents[3]
DATA = REPO.parent / "shared" / "data" / "cifar100-bikes" / "train"
# VEHICLE_MODEL_DIR runs these tests against another model folder (e.g. a freshly trained one).
MODEL_DIR = pathlib.Path(os.environ.get("VEHICLE_MODEL_DIR", DEFAULT_MODEL_DIR))
ENDPOINT = "vehicle-classifier"


def _endpoint_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith(("endpoint-", "capture-"))}


def _cifar(cls: str, i: int) -> bytes:
    return sorted((DATA / cls).glob("*.png"))[i].read_bytes()


def _jpeg(png: bytes, size: tuple[int, int] | None = None, quality: int = 90) -> bytes:
    image = Image.open(io.BytesIO(png)).convert("RGB")
    if size:
        image = image.resize(size, Image.BICUBIC)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def _runtime(url: str):
    return boto3.client("sagemaker-runtime", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id="local", aws_secret_access_key="local",
                        config=Config(retries={"total_max_attempts": 1}))


def _post(url: str, path: str, body: bytes, content_type: str | None = "image/png", method: str = "POST"):
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        headers = {"Content-Type": content_type} if content_type else {}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def classifier():
    return Classifier.load(MODEL_DIR)


@pytest.fixture(scope="module")
def server():
    with start_endpoint(MODEL_DIR, port=0, endpoint_name=ENDPOINT) as s:
        yield s


@pytest.fixture(scope="module")
def runtime(server):
    return _runtime(server.url)


def test_ping_is_healthy_when_model_loaded(server):
    status, headers, body = _post(server.url, "/ping", b"", None, method="GET")
    assert status == 200
    assert json.loads(body) == {"status": "Healthy"}


@pytest.mark.parametrize("kind", ["png", "jpeg", "x-image"])
def test_invoke_endpoint_matches_classifier(server, runtime, classifier, kind):
    png = _cifar("motorcycle", 3)
    body, ctype = {"png": (png, "image/png"), "jpeg": (_jpeg(png), "image/jpeg"),
                   "x-image": (_jpeg(png), "application/x-image")}[kind]
    resp = runtime.invoke_endpoint(EndpointName=ENDPOINT, ContentType=ctype, Body=body)
    assert resp["ContentType"] == "application/json"
    assert resp["InvokedProductionVariant"] == "AllTraffic"
    probs = json.loads(resp["Body"].read())
    assert len(probs) == len(classifier.classes)
    assert sum(probs) == pytest.approx(1.0, abs=1e-4)
    np.testing.assert_allclose(probs, classifier.predict(body), rtol=1e-5, atol=1e-6)


def test_large_photo_is_preprocessed_like_training(server, runtime, classifier):
    # A 12-megapixel JPEG, close to what a phone uploads, well under the 6 MB payload limit.
    rng = np.random.default_rng(0)
    base = Image.open(io.BytesIO(_cifar("bicycle", 5))).convert("RGB").resize((4000, 3000), Image.BICUBIC)
    noisy = np.clip(np.asarray(base, dtype=np.int16) + rng.integers(-8, 9, (3000, 4000, 3)), 0, 255)
    out = io.BytesIO()
    Image.fromarray(noisy.astype(np.uint8)).save(out, "JPEG", quality=85)
    photo = out.getvalue()
    assert 1_000_000 < len(photo) < MAX_PAYLOAD_BYTES
    resp = runtime.invoke_endpoint(EndpointName=ENDPOINT, ContentType="image/jpeg", Body=photo)
    np.testing.assert_allclose(json.loads(resp["Body"].read()), classifier.predict(photo), rtol=1e-5, atol=1e-6)


def test_container_invocations_route_answers_probabilities(server, classifier):
    png = _cifar("bicycle", 0)
    status, headers, body = _post(server.url, "/invocations", png, "image/png")
    assert status == 200 and headers["Content-Type"] == "application/json"
    np.testing.assert_allclose(json.loads(body), classifier.predict(png), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("path,body,ctype,method,status", [
    ("/invocations", b"1,2,3", "text/csv", "POST", 415),
    ("/invocations", b"not an image at all", "image/png", "POST", 400),
    ("/invocations", b"", "image/png", "POST", 400),
    ("/invocations", b"x" * (MAX_PAYLOAD_BYTES + 1), "image/png", "POST", 413),
    ("/models", b"", None, "GET", 404),
    ("/invocations", b"", None, "GET", 405),
])
def test_container_rejects_bad_requests_with_json_and_keeps_serving(server, path, body, ctype, method, status):
    got, headers, answer = _post(server.url, path, body, ctype, method=method)
    assert got == status
    assert headers["Content-Type"] == "application/json"
    assert json.loads(answer)["message"]
    # The same server still classifies afterwards.
    assert _post(server.url, "/invocations", _cifar("bicycle", 1))[0] == 200


def test_truncated_image_is_a_client_error(server):
    png = _cifar("bicycle", 2)
    status, _, answer = _post(server.url, "/invocations", png[: len(png) // 2], "image/png")
    assert status == 400, answer


def test_unknown_endpoint_name_is_validation_error(server, runtime):
    with pytest.raises(ClientError) as err:
        runtime.invoke_endpoint(EndpointName="no-such-endpoint", ContentType="image/png", Body=_cifar("bicycle", 0))
    assert err.value.response["Error"]["Code"] == "ValidationError"
    assert err.value.response["Error"]["Message"] == "Endpoint no-such-endpoint of account 123456789012 not found."
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_refusal_before_reading_a_large_body_still_reaches_the_client(server, runtime):
    body = b"\0" * (5 * 1024 * 1024)  # refused on the endpoint name alone, before the body is read
    for _ in range(3):
        with pytest.raises(ClientError) as err:
            runtime.invoke_endpoint(EndpointName="no-such-endpoint", ContentType="image/png", Body=body)
        assert err.value.response["Error"]["Code"] == "ValidationError"


def test_missing_content_length_is_refused(server):
    import socket

    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(b"POST /invocations HTTP/1.0\r\nContent-Type: image/png\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split()[1] == b"411"
    assert json.loads(body)["message"] == "Content-Length is required"


@pytest.mark.parametrize("body,ctype,original", [
    (b"1,2", "text/csv", 415),
    (b"garbage bytes", "image/jpeg", 400),
])
def test_container_errors_surface_as_model_error(server, runtime, body, ctype, original):
    with pytest.raises(ClientError) as err:
        runtime.invoke_endpoint(EndpointName=ENDPOINT, ContentType=ctype, Body=body)
    response = err.value.response
    assert response["Error"]["Code"] == "ModelError"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert response["OriginalStatusCode"] == original
    assert response["OriginalMessage"] and response["OriginalMessage"] in response["Error"]["Message"]
    assert f"Received client error ({original})" in response["Error"]["Message"]
    assert response["LogStreamArn"].startswith("arn:aws:logs:")


def test_oversized_payload_is_rejected_like_the_runtime(server, runtime):
    with pytest.raises(ClientError) as err:
        runtime.invoke_endpoint(EndpointName=ENDPOINT, ContentType="image/png", Body=b"\0" * (MAX_PAYLOAD_BYTES + 1))
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert "HTTP content length exceeded" in err.value.response["Error"]["Message"]
    assert runtime.invoke_endpoint(EndpointName=ENDPOINT, ContentType="image/png", Body=_cifar("bicycle", 0))


@pytest.mark.parametrize("code,status", [("ThrottlingException", 400), ("ModelNotReadyException", 429),
                                         ("ServiceUnavailable", 503), ("InternalFailure", 500),
                                         ("ModelError", 424)])
def test_injected_faults_raise_the_service_error_codes_then_clear(server, runtime, code, status):
    server.inject_fault(code, count=2)
    for _ in range(2):
        with pytest.raises(ClientError) as err:
            runtime.invoke_endpoint(EndpointName=ENDPOINT, ContentType="image/png", Body=_cifar("bicycle", 0))
        assert err.value.response["Error"]["Code"] == code
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert runtime.invoke_endpoint(EndpointName=ENDPOINT, ContentType="image/png", Body=_cifar("bicycle", 0))


def test_inject_fault_rejects_unknown_codes(server):
    with pytest.raises(ValueError, match="unknown fault"):
        server.inject_fault("Teapot")


def test_env_var_endpoint_url_reaches_the_server(server, monkeypatch, classifier):
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", server.url)
    client = boto3.client("sagemaker-runtime", region_name="us-east-1", aws_access_key_id="local",
                          aws_secret_access_key="local")
    png = _cifar("motorcycle", 0)
    resp = client.invoke_endpoint(EndpointName=ENDPOINT, ContentType="image/png", Body=png)
    np.testing.assert_allclose(json.loads(resp["Body"].read()), classifier.predict(png), rtol=1e-5, atol=1e-6)


def test_concurrent_requests_each_get_their_own_answer(server, classifier):
    images = [_cifar(cls, i) for cls in ("bicycle", "motorcycle") for i in range(12)]
    expected = classifier.predict_many(images)
    client = _runtime(server.url)

    def invoke(image):
        return json.loads(client.invoke_endpoint(EndpointName=ENDPOINT, ContentType="image/png",
                                                 Body=image)["Body"].read())

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(invoke, images))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


class _GatedClassifier:
    """The real classifier, but predict() waits for a gate: makes concurrency observable."""

    def __init__(self, inner: Classifier):
        self.inner, self.entered, self.gate = inner, threading.Event(), threading.Event()

    def predict(self, image: bytes):
        self.entered.set()
        assert self.gate.wait(30)
        return self.inner.predict(image)


def test_invocations_beyond_the_concurrency_limit_are_throttled(classifier):
    gated = _GatedClassifier(classifier)
    with start_endpoint(MODEL_DIR, port=0, endpoint_name=ENDPOINT, max_concurrent_invocations=1,
                        loader=lambda _: gated) as s:
        client = _runtime(s.url)
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(client.invoke_endpoint, EndpointName=ENDPOINT, ContentType="image/png",
                                Body=_cifar("bicycle", 0))
            assert gated.entered.wait(30)
            with pytest.raises(ClientError) as err:
                client.invoke_endpoint(EndpointName=ENDPOINT, ContentType="image/png", Body=_cifar("bicycle", 1))
            assert err.value.response["Error"]["Code"] == "ThrottlingException"
            gated.gate.set()
            assert first.result(30)["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_model_not_ready_while_loading_in_background(classifier):
    loaded = threading.Event()

    def slow_loader(model_dir):
        assert loaded.wait(30)
        return classifier

    with start_endpoint(MODEL_DIR, port=0, endpoint_name=ENDPOINT, loader=slow_loader, wait=False) as s:
        assert _post(s.url, "/ping", b"", None, method="GET")[0] == 503
        with pytest.raises(ClientError) as err:
            _runtime(s.url).invoke_endpoint(EndpointName=ENDPOINT, ContentType="image/png", Body=_cifar("bicycle", 0))
        assert err.value.response["Error"]["Code"] == "ModelNotReadyException"
        loaded.set()
        assert s.wait_ready(30)
        assert _post(s.url, "/ping", b"", None, method="GET")[0] == 200


def test_unloadable_model_fails_start_and_frees_the_port(tmp_path):
    before = _endpoint_threads()
    with pytest.raises(ModelLoadError, match="cannot load the model"):
        start_endpoint(tmp_path, port=0)
    assert _endpoint_threads() == before


def test_restart_on_the_same_port_after_stop(classifier):
    before = _endpoint_threads()
    first = start_endpoint(MODEL_DIR, port=0, endpoint_name=ENDPOINT, loader=lambda _: classifier)
    port = first.port
    client = _runtime(first.url)
    assert client.invoke_endpoint(EndpointName=ENDPOINT, ContentType="image/png", Body=_cifar("bicycle", 0))
    first.stop()
    with pytest.raises(OSError):
        _post(first.url, "/ping", b"", None, method="GET")
    for _ in range(3):  # stop and restart repeatedly, as the twin's tests do mid-run
        with start_endpoint(MODEL_DIR, port=port, endpoint_name=ENDPOINT, loader=lambda _: classifier) as again:
            assert again.port == port
            assert client.invoke_endpoint(EndpointName=ENDPOINT, ContentType="image/png", Body=_cifar("bicycle", 0))
    assert _endpoint_threads() == before


def test_stop_is_prompt_and_leaves_no_threads(classifier):
    before = _endpoint_threads()
    s = start_endpoint(MODEL_DIR, port=0, loader=lambda _: classifier, workers=4)
    assert len(_endpoint_threads() - before) == 5  # accept loop + 4 workers
    started = time.monotonic()
    s.stop()
    s.stop()  # idempotent
    assert time.monotonic() - started < 5
    assert _endpoint_threads() == before


def test_cli_prints_url_serves_and_exits_cleanly_on_ctrl_c(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "training", "serve", "--model-dir", str(MODEL_DIR), "--port", "0",
                             "--endpoint-name", "cli-test", "--capture-destination", str(tmp_path)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert "serving" in first and "http://127.0.0.1:" in first, first + proc.stderr.read()
        url = "http://" + first.split("http://", 1)[1].split()[0]
        example = ""
        while "Ctrl-C" not in example:
            line = proc.stdout.readline()
            assert line, "the CLI exited early: " + proc.stderr.read()
            example += line
        assert "invoke_endpoint" in example and "cli-test" in example
        resp = _runtime(url).invoke_endpoint(EndpointName="cli-test", ContentType="image/png",
                                             Body=_cifar("bicycle", 0))
        assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "POST /endpoints/cli-test/invocations 200" in err  # one log line per request
    assert len(list(tmp_path.rglob("*.jsonl"))) == 1  # capture flushed on Ctrl-C


def test_cli_reports_a_missing_model_clearly(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "training", "serve", "--model-dir", str(tmp_path), "--port", "0"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "cannot load the model" in proc.stderr


class _CountingClassifier:
    """The real classifier, slowed a little, counting how many predictions run at once."""

    def __init__(self, inner):
        self.inner, self.running, self.most = inner, 0, 0
        self._lock = threading.Lock()

    def predict(self, image):
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(0.05)
            return self.inner.predict(image)
        finally:
            with self._lock:
                self.running -= 1


def test_requests_beyond_the_cores_wait_for_a_model_run_and_all_succeed(classifier):
    """8 concurrent requests on one-thread sessions: as many model runs at once as cores, no more, none lost."""
    counting = _CountingClassifier(classifier)
    with start_endpoint(MODEL_DIR, port=0, endpoint_name=ENDPOINT, workers=8, loader=lambda _: counting) as s:
        assert s.model_runs == (os.cpu_count() or 1)  # one-thread sessions (the default): one run per core
        client = _runtime(s.url)
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda i: client.invoke_endpoint(
                EndpointName=ENDPOINT, ContentType="image/png", Body=_cifar("bicycle", i % 5)), range(16)))
    assert all(a["ResponseMetadata"]["HTTPStatusCode"] == 200 for a in answers)
    assert counting.most == s.model_runs
