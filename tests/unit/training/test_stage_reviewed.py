"""Reviewers' labels as training data: staged from the review page's Ground Truth manifest or the results
table, marked, and refused wherever they could score a model."""

from __future__ import annotations

import io
import json

import boto3
import numpy as np
import pytest
from moto import mock_aws
from PIL import Image

from training import evaluate
from training.stage_data import main

LABEL, METADATA = "vehicle-class", "vehicle-class-metadata"


def png(colour, size=(40, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def s3(aws_env):
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket="truth")
        yield client


def line(ref: str, name: str, index: int) -> dict:
    return {"source-ref": ref, LABEL: index, METADATA: {"class-name": name, "human-annotated": "yes",
                                                        "type": "groundtruth/image-classification"}}


def test_a_manifest_stages_the_vehicle_labels_as_marked_training_data(s3, tmp_path, capsys):
    s3.put_object(Bucket="truth", Key="images/a.png", Body=png("red"))
    s3.put_object(Bucket="truth", Key="images/b.jpg", Body=png("blue", (2000, 1000)))
    s3.put_object(Bucket="truth", Key="images/c.png", Body=png("green"))
    lines = [line("s3://truth/images/a.png", "bicycle", 0), line("s3://truth/images/b.jpg", "motorcycle", 1),
             line("s3://truth/images/c.png", "unusable", 2), line("s3://truth/images/gone.png", "bicycle", 0)]
    s3.put_object(Bucket="truth", Key="manifest/2026/12/01/x.jsonl", Body="\n".join(json.dumps(x) for x in lines[:2]))
    s3.put_object(Bucket="truth", Key="manifest/2026/12/02/y.jsonl", Body="\n".join(json.dumps(x) for x in lines[2:]))

    assert main(["--from-manifest", "s3://truth/manifest/", "--out", str(tmp_path / "reviewed")]) == 0

    out = capsys.readouterr().out
    assert "reviewed images: 2 staged, 1 not a vehicle class (unusable), 1 no longer stored" in out
    tree = tmp_path / "reviewed" / "train"
    assert sorted(p.relative_to(tree).parts[0] for p in tree.glob("*/*.png")) == ["bicycle", "motorcycle"]
    assert (tree / ".reviewed").is_file() and not (tmp_path / "reviewed" / "holdout").exists()
    big = next((tree / "motorcycle").glob("*.png"))
    assert max(Image.open(big).size) == 384  # phone-sized photos are scaled down
    assert np.asarray(Image.open(next((tree / "bicycle").glob("*.png")))).shape == (30, 40, 3)


def test_reviewed_labels_never_stage_as_a_test_split(s3, tmp_path, capsys):
    assert main(["--from-manifest", "s3://truth/manifest/", "--split", "test", "--out", str(tmp_path / "x")]) == 2
    assert "training data only" in capsys.readouterr().err


def test_a_local_manifest_file_works_too(s3, tmp_path):
    s3.put_object(Bucket="truth", Key="images/a.png", Body=png("red"))
    manifest = tmp_path / "labels.jsonl"
    manifest.write_text(json.dumps(line("s3://truth/images/a.png", "bicycle", 0)) + "\n")
    assert main(["--from-manifest", str(manifest), "--out", str(tmp_path / "r")]) == 0
    assert len(list((tmp_path / "r" / "train" / "bicycle").glob("*.png"))) == 1


def test_the_results_tables_human_labels_stage_from_the_intake_photos(s3, tmp_path):
    dynamodb = boto3.client("dynamodb")
    dynamodb.create_table(TableName="results", BillingMode="PAY_PER_REQUEST",
                          KeySchema=[{"AttributeName": "bucket", "KeyType": "HASH"},
                                     {"AttributeName": "key", "KeyType": "RANGE"}],
                          AttributeDefinitions=[{"AttributeName": "bucket", "AttributeType": "S"},
                                                {"AttributeName": "key", "AttributeType": "S"}])
    s3.create_bucket(Bucket="intake")
    s3.put_object(Bucket="intake", Key="drivers/a.png", Body=png("red"))
    s3.put_object(Bucket="intake", Key="drivers/b.png", Body=png("blue"))
    for key, human in (("drivers/a.png", "motorcycle"), ("drivers/b.png", None)):
        item = {"bucket": {"S": "intake"}, "key": {"S": key}, "outcome": {"S": "reviewed" if human else "classified"},
                "recorded_at": {"S": "2026-12-01T00:00:00Z"}}
        if human:
            item["human_label"] = {"S": human}
        dynamodb.put_item(TableName="results", Item=item)
    assert main(["--from-table", "results", "--out", str(tmp_path / "r")]) == 0
    assert [p.parent.name for p in (tmp_path / "r" / "train").glob("*/*.png")] == ["motorcycle"]


def test_evaluate_refuses_a_folder_of_reviewed_labels(tmp_path, capsys):
    (tmp_path / "bicycle").mkdir()
    (tmp_path / "bicycle" / "a.png").write_bytes(png("red"))
    (tmp_path / ".reviewed").write_text("")
    assert evaluate.main(["--data-dir", str(tmp_path)]) == 2
    assert "training data only" in capsys.readouterr().err
