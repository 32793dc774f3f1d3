"""Reading SageMaker data capture from a folder and from S3: every line of every file counts."""

import base64
import json
from datetime import timedelta

import boto3
import pytest
from moto import mock_aws

from drift_report_helpers import (
    CLASSES,
    START,
    capture_files,
    capture_key,
    capture_line,
    healthy_probabilities,
    write_tree,
)
from contracts.times import parse_time
from monitoring.capture import read_capture
from monitoring.errors import MonitoringInputError


def _line_with_output(data, encoding="JSON", content_type="application/json", when="2026-11-21T06:00:00Z"):
    return json.dumps(
        {
            "captureData": {
                "endpointOutput": {"observedContentType": content_type, "mode": "OUTPUT", "data": data,
                                   "encoding": encoding}
            },
            "eventMetadata": {"eventId": "e", "inferenceTime": when},
            "eventVersion": "0",
        }
    )


def test_every_record_of_every_file_across_hour_folders_is_read(tmp_path):
    probabilities = healthy_probabilities(25, seed=7)
    # 4 records per file, 10 minutes apart: 7 files spread over 5 hour folders.
    files = capture_files(probabilities, per_file=4, spacing_s=600)
    write_tree(tmp_path, files)
    hours = {key.rsplit("/", 1)[0] for key in files}
    assert len(hours) == 5 and all(text.count("\n") > 1 for text in list(files.values())[:-1])

    data = read_capture(tmp_path, classes=CLASSES)

    assert data.files == len(files) == 7
    assert data.lines == len(data.records) == 25
    assert not data.bad_lines
    # Sorted by time, so record i is the i-th prediction made.
    assert [r.probabilities for r in data.records] == [tuple(p) for p in probabilities]
    assert [r.inference_time for r in data.records] == [START + timedelta(seconds=600 * i) for i in range(25)]


def test_base64_and_json_encoded_outputs_give_the_same_probabilities(tmp_path):
    write_tree(tmp_path, {
        capture_key(START, "mixed"): "\n".join([
            capture_line([0.25, 0.75], START, encoding="JSON"),
            capture_line([0.25, 0.75], START + timedelta(seconds=1), encoding="BASE64"),
        ]) + "\n",
    })
    data = read_capture(tmp_path, classes=CLASSES)
    assert [r.probabilities for r in data.records] == [(0.25, 0.75), (0.25, 0.75)]
    assert data.records[0].predicted_index == 1 and data.records[0].confidence == 0.75


@pytest.mark.parametrize(
    "data, encoding, content_type",
    [
        ([[0.1, 0.9]], "JSON", "application/json"),  # a batch of one, embedded as a JSON value
        (json.dumps({"probabilities": {"motorcycle": 0.9, "bicycle": 0.1}}), "JSON", "application/json"),
        ("0.1,0.9", "CSV", "text/csv"),
        (base64.b64encode(b"0.1,0.9").decode(), "BASE64", "text/csv"),
    ],
)
def test_other_output_shapes_are_read_in_the_baselines_class_order(tmp_path, data, encoding, content_type):
    write_tree(tmp_path, {capture_key(START, "a"): _line_with_output(data, encoding, content_type) + "\n"})
    data = read_capture(tmp_path, classes=CLASSES)
    assert not data.bad_lines
    assert [r.probabilities for r in data.records] == [(0.1, 0.9)]


def test_corrupt_and_unusable_lines_are_counted_not_fatal(tmp_path):
    good = [capture_line([0.9, 0.1], START + timedelta(seconds=i)) for i in range(3)]
    lines = [
        good[0],
        good[1][: len(good[1]) // 2],  # a torn write
        "",  # blank lines are padding, not records
        _line_with_output("[0.5, 0.9]"),  # not probabilities
        _line_with_output("[0.2, 0.3, 0.5]"),  # wrong number of classes
        _line_with_output("bm90IGpzb24=", encoding="BASE64"),  # base64 of "not json"
        json.dumps({"captureData": {"endpointOutput": {"data": "[0.5, 0.5]", "encoding": "JSON"}},
                    "eventMetadata": {}}),  # no inferenceTime
        good[2],
    ]
    write_tree(tmp_path, {capture_key(START, "torn"): "\n".join(lines) + "\n"})

    data = read_capture(tmp_path, classes=CLASSES)

    assert len(data.records) == 2
    assert data.lines == 7
    assert [b.line for b in data.bad_lines] == [2, 4, 5, 6, 7]
    reasons = [b.reason for b in data.bad_lines]
    assert "not a JSON line" in reasons[0]
    assert "not probabilities" in reasons[1]
    assert "2 classes" in reasons[2]
    assert "inferenceTime" in reasons[4]
    assert all(b.source.endswith("torn.jsonl") for b in data.bad_lines)


@pytest.mark.parametrize(
    "line",
    [
        '{"captureData": [1, 2], "eventMetadata": {"inferenceTime": "2026-11-21T06:00:00Z"}}',
        '{"captureData": {"endpointOutput": {"data": "[0.5, 0.5]", "encoding": "JSON"}}, "eventMetadata": "x"}',
        "[1, 2]",
    ],
)
def test_json_of_the_wrong_shape_is_a_bad_line_not_a_crash(tmp_path, line):
    good = capture_line([0.9, 0.1], START)
    write_tree(tmp_path, {capture_key(START, "odd"): f"{good}\n{line}\n"})
    data = read_capture(tmp_path, classes=CLASSES)
    assert len(data.records) == 1 and [b.line for b in data.bad_lines] == [2]


def test_fractional_second_inference_times_are_parsed_and_ordered(tmp_path):
    times = ["2026-11-21T06:00:00.900Z", "2026-11-21T06:00:00.1Z", "2026-11-21T06:00:00.123456789Z",
             "2026-11-21T07:00:00+01:00"]
    write_tree(tmp_path, {capture_key(START, "f"): "\n".join(_line_with_output("[0.2, 0.8]", when=t) for t in times)})
    data = read_capture(tmp_path, classes=CLASSES)
    assert not data.bad_lines
    assert [r.inference_time for r in data.records] == [
        parse_time("2026-11-21T06:00:00Z"),  # 07:00+01:00 is 06:00 UTC
        parse_time("2026-11-21T06:00:00.100Z"),
        parse_time("2026-11-21T06:00:00.123456Z"),
        parse_time("2026-11-21T06:00:00.900Z"),
    ]


def test_since_drops_earlier_records_and_counts_them(tmp_path):
    write_tree(tmp_path, capture_files(healthy_probabilities(20, seed=8), per_file=5, spacing_s=60))
    data = read_capture(tmp_path, classes=CLASSES, since=START + timedelta(seconds=60 * 15))
    assert len(data.records) == 5 and data.before_since == 15
    assert data.records[0].inference_time == START + timedelta(seconds=60 * 15)


def test_only_jsonl_files_are_read_and_a_single_file_can_be_given(tmp_path):
    files = capture_files(healthy_probabilities(6, seed=9), per_file=3)
    write_tree(tmp_path, files)
    (tmp_path / "notes.txt").write_text("not capture\n")
    first = tmp_path / next(iter(files))
    assert len(read_capture(tmp_path, classes=CLASSES).records) == 6
    single = read_capture(first, classes=CLASSES)
    assert single.files == 1 and len(single.records) == 3


def test_missing_folder_is_an_input_error(tmp_path):
    with pytest.raises(MonitoringInputError, match="does not exist"):
        read_capture(tmp_path / "nowhere", classes=CLASSES)


# --- S3 -------------------------------------------------------------------------------------


@pytest.fixture
def s3(aws_env):
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="capture-bucket")
        yield client


def test_s3_prefix_reads_every_record_of_every_object(s3):
    probabilities = healthy_probabilities(40, seed=10)
    files = capture_files(probabilities, per_file=6, spacing_s=900)
    for key, text in files.items():
        s3.put_object(Bucket="capture-bucket", Key=f"datacapture/{key}", Body=text.encode())
    # Neither a sibling prefix that shares the name nor a non-JSONL object is capture.
    s3.put_object(Bucket="capture-bucket", Key="datacapture-old/x/y/2026/11/21/06/old.jsonl",
                  Body=(capture_line([0.5, 0.5], START) + "\n").encode())
    s3.put_object(Bucket="capture-bucket", Key="datacapture/README.txt", Body=b"hello")

    data = read_capture("s3://capture-bucket/datacapture", classes=CLASSES, s3_client=s3)

    assert data.files == len(files) == 7
    assert len(data.records) == 40 and not data.bad_lines
    assert [r.probabilities for r in data.records] == [tuple(p) for p in probabilities]
    assert all(r.source.startswith("s3://capture-bucket/datacapture/vehicle-classifier/AllTraffic/")
               for r in data.records)


def test_s3_bad_line_is_counted_with_its_object_and_line(s3):
    body = capture_line([0.9, 0.1], START) + "\n{oops\n" + capture_line([0.1, 0.9], START) + "\n"
    s3.put_object(Bucket="capture-bucket", Key="dc/" + capture_key(START, "p"), Body=body.encode())
    data = read_capture("s3://capture-bucket/dc/", classes=CLASSES, s3_client=s3)
    assert len(data.records) == 2
    assert [(b.source, b.line) for b in data.bad_lines] == [(f"s3://capture-bucket/dc/{capture_key(START, 'p')}", 2)]


def test_s3_missing_bucket_is_an_input_error(s3):
    with pytest.raises(MonitoringInputError, match="cannot read capture from s3://no-such-bucket"):
        read_capture("s3://no-such-bucket/dc", classes=CLASSES, s3_client=s3)
