"""Data capture: SageMaker's JSONL records and object layout, to a folder and to S3 (moto)."""

from __future__ import annotations

import base64
import json
import os
import pathlib
import re
import threading
from datetime import datetime, timezone

import boto3
import pytest
from botocore.config import Config
from moto import mock_aws

from training.serving.capture import CaptureConfig, CaptureError, CaptureWriter, decode_payload, iter_capture_records
from training.inference import DEFAULT_MODEL_DIR, Classifier
from training.serving.endpoint import start_endpoint

REPO = pathlib.Path(__file__).resolve().parents[3]
DATA = REPO.parent / "shared" / "data" / "cifar100-bikes" / "train"
MODEL_DIR = pathlib.Path(os.environ.get("VEHICLE_MODEL_DIR", DEFAULT_MODEL_DIR))
ENDPOINT = "vehicle-classifier"
# {endpoint}/{variant}/yyyy/mm/dd/hh/MM-SS-mmm-<uuid>.jsonl, as SageMaker names capture objects
KEY = re.compile(r"(?P<endpoint>[^/]+)/(?P<variant>[^/]+)/(?P<y>\d{4})/(?P<m>\d\d)/(?P<d>\d\d)/(?P<h>\d\d)/"
                 r"\d\d-\d\d-\d{3}-[0-9a-f-]{36}\.jsonl$")


@pytest.fixture(scope="module")
def classifier():
    return Classifier.load(MODEL_DIR)


@pytest.fixture(scope="module")
def images():
    return [p.read_bytes() for p in sorted(DATA.glob("*/*.png"))[::100][:8]]


def _runtime(url):
    return boto3.client("sagemaker-runtime", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id="local", aws_secret_access_key="local",
                        config=Config(retries={"total_max_attempts": 1}))


def _invoke_all(capture: CaptureConfig, classifier, images, inference_ids=None) -> list[bytes]:
    with start_endpoint(MODEL_DIR, port=0, endpoint_name=ENDPOINT, capture=capture,
                        loader=lambda _: classifier) as server:
        client = _runtime(server.url)
        answers = []
        for i, image in enumerate(images):
            extra = {"InferenceId": inference_ids[i]} if inference_ids else {}
            answers.append(client.invoke_endpoint(EndpointName=ENDPOINT, ContentType="image/png", Body=image,
                                                  **extra)["Body"].read())
        # A rejected request is not captured (only successful invocations are).
        with pytest.raises(client.exceptions.ModelError):
            client.invoke_endpoint(EndpointName=ENDPOINT, ContentType="text/csv", Body=b"1,2")
    return answers


def _check_sagemaker_record(record: dict) -> None:
    assert record["eventVersion"] == "0"
    meta = record["eventMetadata"]
    assert re.fullmatch(r"[0-9a-f-]{36}", meta["eventId"])
    datetime.strptime(meta["inferenceTime"], "%Y-%m-%dT%H:%M:%SZ")
    data_in, data_out = record["captureData"]["endpointInput"], record["captureData"]["endpointOutput"]
    assert data_in["mode"] == "INPUT" and data_in["observedContentType"] == "image/png"
    assert data_in["encoding"] == "BASE64"
    assert data_out["mode"] == "OUTPUT" and data_out["observedContentType"] == "application/json"
    assert data_out["encoding"] == "JSON"


def test_every_invocation_captured_at_100_percent_in_few_files(tmp_path, classifier, images):
    answers = _invoke_all(CaptureConfig(str(tmp_path), sampling_percentage=100), classifier, images,
                          inference_ids=[f"req-{i}" for i in range(len(images))])
    files = sorted(tmp_path.rglob("*.jsonl"))
    assert 1 <= len(files) <= 2  # many records per file (two only if the hour changed mid-test)
    for f in files:
        match = KEY.search(f.relative_to(tmp_path).as_posix())
        assert match and match["endpoint"] == ENDPOINT and match["variant"] == "AllTraffic"
    records = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert len(records) == len(images)
    for record in records:
        _check_sagemaker_record(record)
    by_id = {r["eventMetadata"]["inferenceId"]: r for r in records}
    for i, (image, answer) in enumerate(zip(images, answers)):
        record = by_id[f"req-{i}"]
        assert base64.b64decode(record["captureData"]["endpointInput"]["data"]) == image
        assert record["captureData"]["endpointOutput"]["data"].encode() == answer
        assert json.loads(record["captureData"]["endpointOutput"]["data"]) == json.loads(answer)
    assert len({r["eventMetadata"]["eventId"] for r in records}) == len(records)


def test_nothing_captured_at_0_percent(tmp_path, classifier, images):
    _invoke_all(CaptureConfig(str(tmp_path), sampling_percentage=0), classifier, images)
    assert list(tmp_path.rglob("*.jsonl")) == []


def test_partial_sampling_captures_a_share(tmp_path):
    writer = CaptureWriter(CaptureConfig(str(tmp_path), sampling_percentage=30, seed=7), ENDPOINT, "AllTraffic")
    try:
        picked = sum(writer.sampled() for _ in range(2000))
    finally:
        writer.close()
    assert 450 < picked < 750  # 30% of 2000 = 600; bounds are > 6 standard deviations


def test_capture_to_s3_with_moto(classifier, images, monkeypatch):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(var, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="captures")
        # moto intercepts boto3 in-process, so the endpoint must be reached without it: use http.
        with start_endpoint(MODEL_DIR, port=0, endpoint_name=ENDPOINT, loader=lambda _: classifier,
                            capture=CaptureConfig("s3://captures/datacapture")) as server:
            for image in images:
                status = _http_invoke(server.url, image)
                assert status == 200
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="captures")["Contents"]]
        assert keys and all(k.startswith(f"datacapture/{ENDPOINT}/AllTraffic/") for k in keys)
        assert all(KEY.search(k.removeprefix("datacapture/")) for k in keys)
        records = list(iter_capture_records("s3://captures/datacapture", ENDPOINT, s3_client=s3))
    assert sorted(decode_payload(r["captureData"]["endpointInput"]) for r in records) == sorted(images)
    for record in records:
        _check_sagemaker_record(record)


def _http_invoke(url: str, body: bytes) -> int:
    import http.client

    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("POST", f"/endpoints/{ENDPOINT}/invocations", body=body, headers={"Content-Type": "image/png"})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


class _Clock:
    def __init__(self, start: float):
        self.now = start

    def __call__(self) -> float:
        return self.now


def _write(writer: CaptureWriter, n: int, size: int = 100) -> None:
    for i in range(n):
        writer.record(input_body=bytes([i % 256]) * size, input_content_type="image/png",
                      output_body=b"[0.5, 0.5]", output_content_type="application/json")


def test_files_roll_over_by_size_and_keep_every_record(tmp_path):
    config = CaptureConfig(str(tmp_path), max_file_bytes=2000)
    writer = CaptureWriter(config, ENDPOINT, "AllTraffic")
    _write(writer, 30)
    writer.close()
    files = list(tmp_path.rglob("*.jsonl"))
    assert len(files) > 3
    assert sum(len(f.read_text().splitlines()) for f in files) == 30
    sizes = []
    for f in files:  # a file is closed by the record that takes it to the limit...
        lines = f.read_bytes().splitlines(keepends=True)
        assert sum(map(len, lines[:-1])) < 2000
        sizes.append(sum(map(len, lines)))
    assert sum(size < 2000 for size in sizes) <= 1  # ...except the last one, closed by close()
    assert len(list(iter_capture_records(str(tmp_path), ENDPOINT))) == 30


def test_files_roll_over_by_time_without_waiting_for_stop(tmp_path):
    writer = CaptureWriter(CaptureConfig(str(tmp_path), max_file_seconds=0.2), ENDPOINT, "AllTraffic")
    try:
        _write(writer, 3)
        deadline = threading.Event()
        for _ in range(50):  # the background flusher writes the file within ~2 ticks
            if list(tmp_path.rglob("*.jsonl")):
                break
            deadline.wait(0.1)
        files = list(tmp_path.rglob("*.jsonl"))
        assert len(files) == 1 and len(files[0].read_text().splitlines()) == 3
    finally:
        writer.close()


def test_records_go_to_their_utc_hour_partition(tmp_path):
    start = datetime(2026, 3, 1, 23, 59, 58, tzinfo=timezone.utc).timestamp()
    clock = _Clock(start)
    writer = CaptureWriter(CaptureConfig(str(tmp_path)), ENDPOINT, "AllTraffic", clock=clock)
    _write(writer, 2)
    clock.now = start + 4  # next day, hour 00
    _write(writer, 3)
    writer.close()
    parts = sorted(f.relative_to(tmp_path).parent.as_posix() for f in tmp_path.rglob("*.jsonl"))
    assert parts == [f"{ENDPOINT}/AllTraffic/2026/03/01/23", f"{ENDPOINT}/AllTraffic/2026/03/02/00"]
    first = next(tmp_path.rglob("2026/03/01/23/*.jsonl"))
    assert first.name.startswith("59-58-")
    times = [r["eventMetadata"]["inferenceTime"] for r in iter_capture_records(str(tmp_path))]
    assert times == ["2026-03-01T23:59:58Z"] * 2 + ["2026-03-02T00:00:02Z"] * 3


def test_capture_modes_and_text_encodings(tmp_path):
    writer = CaptureWriter(CaptureConfig(str(tmp_path), mode="Output"), ENDPOINT, "AllTraffic")
    record = writer.record(input_body=b"\x89PNG", input_content_type="image/png", output_body=b"1,0",
                           output_content_type="text/csv")
    writer.close()
    assert list(record["captureData"]) == ["endpointOutput"]
    assert record["captureData"]["endpointOutput"] == {"observedContentType": "text/csv", "mode": "OUTPUT",
                                                       "data": "1,0", "encoding": "CSV"}


def test_failed_s3_writes_are_reported_on_close(monkeypatch):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(var, "testing")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")  # the bucket does not exist
        writer = CaptureWriter(CaptureConfig("s3://missing-bucket/p"), ENDPOINT, "AllTraffic", s3_client=s3)
        _write(writer, 2)
        with pytest.raises(CaptureError, match="2 capture records not written"):
            writer.close()


@pytest.mark.parametrize("kwargs,message", [
    ({"sampling_percentage": 101}, "0-100"),
    ({"sampling_percentage": -1}, "0-100"),
    ({"sampling_percentage": 50.5}, "0-100"),
    ({"mode": "Everything"}, "capture mode"),
    ({"max_file_bytes": 0}, "positive"),
])
def test_invalid_capture_config_is_refused(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        CaptureConfig(str(tmp_path), **kwargs)


def test_s3_destination_needs_a_bucket():
    with pytest.raises(ValueError, match="no bucket"):
        CaptureConfig("s3:///prefix")
