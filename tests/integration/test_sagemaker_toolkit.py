"""The packaged model on the real SageMaker PyTorch serving stack, outside Docker: the inference toolkit starts
TorchServe (Java frontend, Python workers) on the extracted model.tar.gz exactly as the container's entrypoint
does, with SAGEMAKER_BASE_DIR and SAGEMAKER_BIND_TO_PORT pointing at a temporary folder and a free port.

The toolkit runs in its own virtual environment (.venv/torchserve, installed by `make test` from
requirements-torchserve.txt), which has no onnxruntime: the handler must find it in the artifact's code/lib.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from local.twin import free_port
from training.inference import Classifier
from training.sagemaker.deploy import package_model

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
TOOLKIT = REPO / ".venv" / "torchserve" / "bin"
SHIPPED = REPO / "training" / "model"
SAMPLES = sorted((REPO / "local" / "sample_images").glob("*/*.png"))


def post(url: str, body: bytes, content_type: str, accept: str | None = None) -> tuple[int, str, str]:
    headers = {"Content-Type": content_type, **({"Accept": accept} if accept else {})}
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.headers.get("Content-Type", ""), answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read().decode()


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    if not (TOOLKIT / "python").exists():
        pytest.fail(f"{TOOLKIT.parent} is missing: `make test` installs the toolkit (requirements-torchserve.txt)")
    root = tmp_path_factory.mktemp("sagemaker")
    # The handler's dependency for this machine's Python, as packaging ships it for the container's.
    vendored = root / "lib"
    shutil.copytree(Path(importlib.util.find_spec("onnxruntime").submodule_search_locations[0]),
                    vendored / "onnxruntime", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    artifact = package_model(SHIPPED, root / "model.tar.gz", vendored)
    with tarfile.open(artifact) as tar:
        tar.extractall(root / "base" / "model", filter="data")
    port = free_port()
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(root / "base"), "SAGEMAKER_BIND_TO_PORT": str(port),
           "SAGEMAKER_PROGRAM": "training.sagemaker.handler", "PATH": f"{TOOLKIT}:{os.environ['PATH']}",
           "PYTHONDONTWRITEBYTECODE": "1"}
    for name in ("VIRTUAL_ENV", "PYTHONPATH"):
        env.pop(name, None)
    log = open(root / "serving.log", "w")
    started = time.monotonic()
    # The container's `serve` entrypoint.
    process = subprocess.Popen([str(TOOLKIT / "python"), "-c",
                                "from sagemaker_pytorch_serving_container import serving; serving.main()"],
                               cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline, first = time.monotonic() + 180, None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                first = post(f"{url}/invocations", SAMPLES[0].read_bytes(), "image/png")
                if first[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.5)
        assert first and first[0] == 200, (root / "serving.log").read_text()[-3000:]
        yield {"url": url, "root": root, "start_seconds": time.monotonic() - started, "artifact": artifact}
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # the toolkit, TorchServe's Java frontend and its workers
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()
        time.sleep(1)
        leftover = subprocess.run(["pgrep", "-f", f"SAGEMAKER_BASE_DIR={root}|{root}"], capture_output=True, text=True)
        assert not leftover.stdout.strip(), f"processes left behind: {leftover.stdout}"


def test_the_toolkit_answers_every_photo_exactly_as_the_model_does_locally(endpoint):
    local = Classifier.load(SHIPPED, threads=1)
    for path in SAMPLES:
        status, content_type, body = post(f"{endpoint['url']}/invocations", path.read_bytes(), "image/png")
        assert status == 200 and content_type.startswith("application/json"), (path, body)
        assert json.loads(body) == [float(p) for p in local.predict(path.read_bytes())], path
    artifact_mb = endpoint["artifact"].stat().st_size / 1e6
    print(f"\nreal toolkit: {len(SAMPLES)} photos identical; artifact {artifact_mb:.1f} MB, "
          f"start to first answer {endpoint['start_seconds']:.1f} s")


def huge_png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (7000, 7000), "white").save(out, format="PNG")  # 49 MP: past the 40 MP limit, ~150 kB
    return out.getvalue()


@pytest.mark.parametrize("body, content_type, accept, status", [
    (b"hello", "text/plain", None, 415),
    (b"", "image/png", None, 400),
    (b"not a png at all", "image/png", None, 400),
    (None, "image/png", None, 413),
    (b"png-bytes", "image/png", "text/csv", 406),
], ids=["wrong content type", "empty body", "not an image", "too many pixels", "unsupported accept"])
def test_bad_requests_get_their_status_and_a_short_json_body_without_a_traceback(endpoint, body, content_type,
                                                                                  accept, status):
    if body is None:
        body = huge_png()
    elif body == b"png-bytes":
        body = SAMPLES[0].read_bytes()
    got, answer_type, text = post(f"{endpoint['url']}/invocations", body, content_type, accept)
    assert got == status, text
    assert answer_type.startswith("application/json")
    error = json.loads(text)
    assert error["status"] == status and error["message"]
    assert "Traceback" not in text and "File \"" not in text and str(endpoint["root"]) not in text


def test_no_pip_at_start(endpoint):
    assert not (endpoint["root"] / "base" / "model" / "code" / "requirements.txt").exists()
    log = (endpoint["root"] / "serving.log").read_text()
    assert "installing packages from requirements.txt" not in log and "pip install" not in log
    # The traceback the body no longer carries is still in the endpoint's log.
    assert "Traceback" in log
