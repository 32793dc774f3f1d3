"""`python -m client` against a running twin, as a user drives it from another terminal."""

from __future__ import annotations

import json
import shutil

import pytest

from client.__main__ import main
from twin_helpers import sample

pytestmark = pytest.mark.slow


def test_submit_a_folder_and_a_file_prints_each_outcome(twin, tmp_path, capsys):
    folder = tmp_path / "shift"
    (folder / "bicycle").mkdir(parents=True)
    shutil.copy(sample("bicycle", 1), folder / "bicycle" / "a.png")
    shutil.copy(sample("motorcycle", 1), folder / "b.png")
    (folder / "notes.txt").write_text("not a photo, not picked from a folder")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"plain text")

    code = main(["submit", str(folder), str(broken), "--port", str(twin.settings.port), "--prefix", "client"])

    out = capsys.readouterr().out
    assert code == 0
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("client/")}
    assert set(rows) == {"client/shift/bicycle/a.png", "client/shift/b.png", "client/broken.png"}
    assert rows["client/shift/bicycle/a.png"][1:3] == ["classified", "bicycle"]
    assert rows["client/shift/b.png"][1:3] == ["classified", "motorcycle"]
    assert rows["client/broken.png"][1] == "failed" and "UnsupportedImageTypeError" in rows["client/broken.png"]
    assert "3 photos: 2 classified, 1 failed" in out


def test_resubmitting_a_key_waits_for_the_new_uploads_record(twin, tmp_path, capsys):
    photo = tmp_path / "same.png"
    shutil.copy(sample("bicycle", 2), photo)
    port = str(twin.settings.port)
    assert main(["submit", str(photo), "--port", port, "--prefix", "again"]) == 0
    capsys.readouterr()
    shutil.copy(sample("motorcycle", 2), photo)  # same key, new photo
    assert main(["submit", str(photo), "--port", port, "--prefix", "again"]) == 0
    [row] = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("again/")]
    assert row[1:3] == ["classified", "motorcycle"]

    assert main(["results", "--port", port, "--json"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["label"] for r in records if r["key"] == "again/same.png"] == ["motorcycle"]


def test_a_missing_path_is_one_line(twin, tmp_path, capsys):
    assert main(["submit", str(tmp_path / "nope.jpg"), "--port", str(twin.settings.port)]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'nope.jpg'}: no such file or folder\n"


def test_redrive_replays_both_dead_letter_queues_and_deletes_what_it_started(twin, capsys):
    s3, sqs, bucket = twin.client("s3"), twin.client("sqs"), twin.outputs["IntakeBucketName"]
    # Keys ending in "/", which the rule leaves out: only the re-drive starts these two.
    for key, label in (("redrive/undelivered/", "bicycle"), ("redrive/unwritten/", "motorcycle")):
        s3.put_object(Bucket=bucket, Key=key, Body=sample(label, 3).read_bytes())
    event = {"version": "0", "id": "e-1", "detail-type": "Object Created", "source": "aws.s3",
             "account": "123456789012", "time": "2026-12-01T10:00:00Z", "region": "us-east-1",
             "resources": [f"arn:aws:s3:::{bucket}"],
             "detail": {"bucket": {"name": bucket}, "object": {"key": "redrive/undelivered/", "size": 1}}}
    sqs.send_message(QueueUrl=twin.outputs["RuleDeadLetterQueueUrl"], MessageBody=json.dumps(event))
    sqs.send_message(QueueUrl=twin.outputs["RecordDeadLetterQueueUrl"], MessageBody=json.dumps(
        {"execution_arn": "arn:old", "execution_input": {"s3_bucket": bucket, "s3_key": "redrive/unwritten/"},
         "error": {"Error": "DynamoDB.ThrottlingException", "Cause": "rate exceeded"}}))

    assert main(["redrive", "--port", str(twin.settings.port)]) == 0
    assert "1 undelivered uploads, 1 unwritten outcomes" in capsys.readouterr().out
    records = twin.wait_for_results({"redrive/undelivered/", "redrive/unwritten/"}, 60)
    assert records["redrive/undelivered/"]["label"] == "bicycle"
    assert records["redrive/unwritten/"]["label"] == "motorcycle"
    for queue in ("RuleDeadLetterQueueUrl", "RecordDeadLetterQueueUrl"):
        attributes = sqs.get_queue_attributes(QueueUrl=twin.outputs[queue], AttributeNames=["All"])["Attributes"]
        assert attributes["ApproximateNumberOfMessages"] == attributes["ApproximateNumberOfMessagesNotVisible"] == "0"
