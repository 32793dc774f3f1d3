"""training.sagemaker.cli offline: moto serves SageMaker, S3 and Application Auto Scaling; the
requests are observed through botocore event hooks. Model Monitor schedules, which moto does not
implement, are answered by a small in-memory stand-in registered on the same hooks."""

from __future__ import annotations

import base64
import copy
import csv
import io
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path
from types import SimpleNamespace

import boto3
import numpy as np
import onnx
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError
from moto import mock_aws
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from training import stage_data
from training.sagemaker import handler
from training.inference import Classifier
from training.sagemaker.cli import main
from training.sagemaker.monitor_record import features, preprocess_handler

REPO = Path(__file__).resolve().parents[3]
ROLE = "arn:aws:iam::123456789012:role/scones-sagemaker"
BUCKET = "scones-bucket"
REGION = "us-east-1"


# --------------------------------------------------------------------------- fixtures


class Recorder:
    """Every SageMaker / Application Auto Scaling request, as the API parameters sent."""

    def __init__(self, session):
        self.calls: list[tuple[str, dict]] = []
        session.events.register("before-parameter-build.*.*", self._record)

    def _record(self, params, model, **_):
        if model.service_model.service_name in ("sagemaker", "application-autoscaling"):
            self.calls.append((model.name, copy.deepcopy(params)))

    def one(self, operation: str) -> dict:
        found = [p for name, p in self.calls if name == operation]
        assert len(found) == 1, f"{operation}: {len(found)} calls"
        return found[0]

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def all_calls(self, operation: str) -> list[dict]:
        return [p for name, p in self.calls if name == operation]


class FakeMonitoringSchedules:
    """Create/List/Describe/DeleteMonitoringSchedule, which moto lacks, kept in a dict."""

    def __init__(self, session):
        self.schedules: dict[str, dict] = {}
        self._definition_endpoints: dict[str, str] = {}  # as AWS knows it from the job definition
        session.events.register("before-call.sagemaker.*", self._answer)
        session.events.register("before-parameter-build.sagemaker.CreateDataQualityJobDefinition", self._definition)

    def _definition(self, params, **_):
        endpoint = params["DataQualityJobInput"].get("EndpointInput", {}).get("EndpointName")
        self._definition_endpoints[params["JobDefinitionName"]] = endpoint

    @staticmethod
    def _reply(status: int, parsed: dict):
        parsed.setdefault("ResponseMetadata", {"HTTPStatusCode": status})
        return AWSResponse("https://sagemaker.local", status, {}, None), parsed

    def _answer(self, model, params, **_):
        op = model.name
        if op not in ("CreateMonitoringSchedule", "ListMonitoringSchedules",
                      "DescribeMonitoringSchedule", "DeleteMonitoringSchedule"):
            return None
        body = json.loads(params["body"] or b"{}")
        if op == "CreateMonitoringSchedule":
            name = body["MonitoringScheduleName"]
            self.schedules[name] = body
            arn = f"arn:aws:sagemaker:{REGION}:123:monitoring-schedule/{name}"
            return self._reply(200, {"MonitoringScheduleArn": arn})
        if op == "ListMonitoringSchedules":
            summaries = [
                {"MonitoringScheduleName": name, "MonitoringScheduleArn": f"arn:{name}",
                 "CreationTime": 0, "LastModifiedTime": 0, "MonitoringScheduleStatus": "Scheduled",
                 "EndpointName": body.get("EndpointName")}
                for name, sched in self.schedules.items()
                if self._endpoint_of(sched) == body.get("EndpointName")
            ]
            return self._reply(200, {"MonitoringScheduleSummaries": summaries})
        name = body["MonitoringScheduleName"]
        if name not in self.schedules:
            return self._reply(400, {"Error": {"Code": "ResourceNotFound", "Message": f"{name} not found"}})
        if op == "DeleteMonitoringSchedule":
            del self.schedules[name]
            return self._reply(200, {})
        return self._reply(200, {
            "MonitoringScheduleName": name, "MonitoringScheduleArn": f"arn:{name}",
            "MonitoringScheduleStatus": "Scheduled", "CreationTime": 0, "LastModifiedTime": 0,
            "MonitoringScheduleConfig": self.schedules[name]["MonitoringScheduleConfig"]})

    def _endpoint_of(self, schedule: dict) -> str | None:
        return self._definition_endpoints.get(schedule["MonitoringScheduleConfig"]["MonitoringJobDefinitionName"])


@pytest.fixture()
def aws(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("SAGEMAKER_VALIDATE_ROLE", "false")
    monkeypatch.setenv("SAGEMAKER_ROLE_ARN", ROLE)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        session = boto3.Session(region_name=REGION)
        recorder = Recorder(session)
        schedules = FakeMonitoringSchedules(session)
        session.client("s3").create_bucket(Bucket=BUCKET)
        yield SimpleNamespace(session=session, rec=recorder, schedules=schedules, s3=session.client("s3"))


def write_tiny_model(model_dir: Path, classes=("bicycle", "motorcycle")) -> Path:
    """A real (if trivial) ONNX classifier: mean colour -> softmax, in the shipped metadata format."""
    model_dir.mkdir(parents=True, exist_ok=True)
    weights = np.zeros((3, len(classes)), dtype=np.float32)
    weights[0, 0], weights[2, 1] = 4.0, 4.0  # red -> bicycle, blue -> motorcycle
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["image", "axes"], ["mean"], keepdims=0),
         helper.make_node("MatMul", ["mean", "w"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)],
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 32, 32])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", len(classes)])],
        [numpy_helper.from_array(weights, "w"), numpy_helper.from_array(np.array([2, 3], dtype=np.int64), "axes")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    onnx.save(model, model_dir / "model.onnx")
    (model_dir / "metadata.json").write_text(json.dumps(
        {"model_file": "model.onnx", "classes": list(classes), "input": {"size": 32}, "threshold": {"value": 0.6}}))
    return model_dir


def png(color) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), color).save(buf, format="PNG")
    return buf.getvalue()


def put_lst(s3, key: str, rows: int) -> None:
    body = "".join(f"{i}\t{i % 2}\t{'bicycle' if i % 2 == 0 else 'motorcycle'}/img_{i}.png\n" for i in range(rows))
    s3.put_object(Bucket=BUCKET, Key=key, Body=body.encode())


# What `--vendored` ships in code/lib (pip would fetch onnxruntime for the container's Python 3.12 instead).
VENDORED = Path(__file__).resolve().parent / "vendored-sample"


def deploy_args(model_dir: Path, endpoint: str, *extra: str) -> list[str]:
    return ["deploy", "--model-dir", str(model_dir), "--artifact-uri", f"s3://{BUCKET}/scones",
            "--endpoint-name", endpoint, "--vendored", str(VENDORED), *extra]


# --------------------------------------------------------------------------- train


def test_builtin_training_job_request(aws, capsys):
    put_lst(aws.s3, "scones/data/train_lst/train.lst", 8)
    put_lst(aws.s3, "scones/data/validation_lst/validation.lst", 2)
    assert main(["train", "--algorithm", "builtin", "--data-uri", f"s3://{BUCKET}/scones/data",
                 "--output-uri", f"s3://{BUCKET}/scones", "--epochs", "5",
                 "--hyperparameter", "learning_rate=0.01"], boto_session=aws.session) == 0
    req = aws.rec.one("CreateTrainingJob")
    assert req["TrainingJobName"].startswith("scones-builtin-")
    assert req["AlgorithmSpecification"]["TrainingImage"] == (
        "811284229777.dkr.ecr.us-east-1.amazonaws.com/image-classification:1")
    hps = req["HyperParameters"]
    shown = (hps["image_shape"], hps["num_classes"], hps["num_training_samples"], hps["epochs"])
    assert shown == ("3,32,32", "2", "8", "5")
    assert hps["learning_rate"] == "0.01"  # explicit override wins
    # The algorithm documents early_stopping as True or False (capitalised).
    assert (hps["early_stopping"], hps["early_stopping_patience"]) == ("True", "5")
    channels = {c["ChannelName"]: c for c in req["InputDataConfig"]}
    assert sorted(channels) == ["train", "train_lst", "validation", "validation_lst"]
    for name, channel in channels.items():
        assert channel["DataSource"]["S3DataSource"]["S3Uri"] == f"s3://{BUCKET}/scones/data/{name}/"
        assert channel["ContentType"] == "application/x-image"
    assert req["OutputDataConfig"]["S3OutputPath"] == f"s3://{BUCKET}/scones/models"
    assert req["ResourceConfig"]["InstanceType"] == "ml.g4dn.xlarge"
    assert req["RoleArn"] == ROLE
    out = capsys.readouterr().out
    assert req["TrainingJobName"] in out
    assert f"s3://{BUCKET}/scones/models/{req['TrainingJobName']}/output/model.tar.gz" in out
    assert aws.session.client("sagemaker").describe_training_job(
        TrainingJobName=req["TrainingJobName"])["TrainingJobName"] == req["TrainingJobName"]


def test_builtin_training_image_follows_the_region(aws, monkeypatch):
    session = boto3.Session(region_name="eu-west-1")
    rec = Recorder(session)
    s3 = session.client("s3", region_name="eu-west-1")
    s3.create_bucket(Bucket="eu-bikes", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    for key, rows in [("d/train_lst/train.lst", 4), ("d/validation_lst/validation.lst", 2)]:
        s3.put_object(Bucket="eu-bikes", Key=key, Body=b"0\t0\tbicycle/a.png\n" * rows)
    assert main(["train", "--algorithm", "builtin", "--data-uri", "s3://eu-bikes/d", "--output-uri",
                 "s3://eu-bikes/o", "--instance-type", "ml.p3.2xlarge"], boto_session=session) == 0
    req = rec.one("CreateTrainingJob")
    assert req["AlgorithmSpecification"]["TrainingImage"].endswith(
        ".dkr.ecr.eu-west-1.amazonaws.com/image-classification:1")
    assert req["HyperParameters"]["num_classes"] == "1"
    assert req["ResourceConfig"]["InstanceType"] == "ml.p3.2xlarge"


def test_builtin_training_refuses_data_that_was_not_uploaded(aws, capsys):
    assert main(["train", "--algorithm", "builtin", "--data-uri", f"s3://{BUCKET}/nothing",
                 "--output-uri", f"s3://{BUCKET}/scones"], boto_session=aws.session) == 2
    assert "stage and upload first" in capsys.readouterr().err
    assert "CreateTrainingJob" not in aws.rec.names()


def test_pytorch_training_job_runs_train_py_on_the_cpu_image(aws):
    assert main(["train", "--algorithm", "pytorch", "--data-uri", f"s3://{BUCKET}/scones/data",
                 "--output-uri", f"s3://{BUCKET}/scones", "--epochs", "12"], boto_session=aws.session) == 0
    req = aws.rec.one("CreateTrainingJob")
    assert req["TrainingJobName"].startswith("scones-pytorch-")
    assert req["AlgorithmSpecification"]["TrainingImage"] == (
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.6-cpu-py312")
    assert req["ResourceConfig"]["InstanceType"] == "ml.m5.xlarge"
    assert req["HyperParameters"]["epochs"] == "12"
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in req["InputDataConfig"]}
    assert channels["train"] == f"s3://{BUCKET}/scones/data/train/"
    assert channels["validation"] == f"s3://{BUCKET}/scones/data/validation/"
    # The SDK uploaded training/ as the code channel: train.py and its modules, not the shipped model.
    code_bucket, _, code_prefix = channels["code"][5:].partition("/")
    keys = [o["Key"] for o in aws.s3.list_objects_v2(Bucket=code_bucket, Prefix=code_prefix)["Contents"]]
    names = {k[len(code_prefix):].lstrip("/") for k in keys}
    assert {"train.py", "model_def.py", "preprocess.py", "export.py", "inference.py", "evaluate.py"} <= names
    # Not the shipped model, and not training/sagemaker/: on the job's sys.path it would shadow the SageMaker SDK.
    assert not [n for n in names if n.startswith(("model/", "sagemaker/")) or "__pycache__" in n]


def test_reviewers_labels_are_a_channel_of_their_own(aws):
    assert main(["train", "--algorithm", "pytorch", "--data-uri", f"s3://{BUCKET}/scones/data",
                 "--output-uri", f"s3://{BUCKET}/scones", "--reviewed-uri", f"s3://{BUCKET}/scones/reviewed/train"],
                boto_session=aws.session) == 0
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"]
                for c in aws.rec.one("CreateTrainingJob")["InputDataConfig"]}
    # train.py reads it as SM_CHANNEL_REVIEWED (--reviewed-dir), never as validation.
    assert channels["reviewed"] == f"s3://{BUCKET}/scones/reviewed/train/"
    assert channels["validation"] == f"s3://{BUCKET}/scones/data/validation/"


def test_unknown_role_is_a_clear_error(aws, capsys, monkeypatch):
    monkeypatch.delenv("SAGEMAKER_ROLE_ARN")
    assert main(["train", "--algorithm", "pytorch", "--data-uri", f"s3://{BUCKET}/d",
                 "--output-uri", f"s3://{BUCKET}/o"], boto_session=aws.session) == 2
    assert "SAGEMAKER_ROLE_ARN" in capsys.readouterr().err
    assert main(["train", "--algorithm", "pytorch", "--role", "admin", "--data-uri", f"s3://{BUCKET}/d",
                 "--output-uri", f"s3://{BUCKET}/o"], boto_session=aws.session) == 2
    assert "is not an IAM role ARN" in capsys.readouterr().err


# --------------------------------------------------------------------------- deploy


def _tar_members(s3, uri: str) -> dict[str, bytes]:
    bucket, _, key = uri[5:].partition("/")
    data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def test_deploy_creates_endpoint_with_data_capture_and_autoscaling(aws, tmp_path, capsys):
    model_dir = write_tiny_model(tmp_path / "model")
    assert main(deploy_args(model_dir, "scones-test-ep", "--max-capacity", "4", "--target-invocations", "300",
                            "--scale-in-cooldown", "600", "--scale-out-cooldown", "30"),
                boto_session=aws.session) == 0

    model = aws.rec.one("CreateModel")
    container = model["PrimaryContainer"]
    assert container["Image"] == "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.6-cpu-py312"
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "training.sagemaker.handler"
    assert re.fullmatch(rf"s3://{BUCKET}/scones/models/scones-test-ep/[0-9a-f]{{20}}/model.tar.gz",
                        container["ModelDataUrl"])
    assert model["ExecutionRoleArn"] == ROLE
    members = _tar_members(aws.s3, container["ModelDataUrl"])
    assert members["model.onnx"] == (model_dir / "model.onnx").read_bytes()
    assert {"metadata.json", "code/training/__init__.py", "code/training/sagemaker/handler.py",
            "code/training/inference.py", "code/training/preprocess.py"} <= set(members)
    assert not [m for m in members if m.endswith(("train.py", "model_def.py", "cli.py"))]
    # The dependencies travel in the artifact: no requirements.txt, so no pip when an instance starts.
    assert "code/requirements.txt" not in members
    vendored = (VENDORED / "vendored_sample" / "__init__.py").read_bytes()
    assert members["code/lib/vendored_sample/__init__.py"] == vendored

    config = aws.rec.one("CreateEndpointConfig")
    variant = config["ProductionVariants"][0]
    assert (variant["VariantName"], variant["ModelName"], variant["InstanceType"], variant["InitialInstanceCount"]) == (
        "AllTraffic", "scones-test-ep", "ml.m5.large", 1)
    capture = config["DataCaptureConfig"]
    assert capture["EnableCapture"] is True and capture["InitialSamplingPercentage"] == 100
    assert capture["DestinationS3Uri"] == f"s3://{BUCKET}/scones/datacapture"
    assert sorted(o["CaptureMode"] for o in capture["CaptureOptions"]) == ["Input", "Output"]
    assert capture["CaptureContentTypeHeader"] == {"JsonContentTypes": ["application/json"]}
    assert aws.rec.one("CreateEndpoint")["EndpointConfigName"] == "scones-test-ep"

    aas = aws.session.client("application-autoscaling")
    target = aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"][0]
    assert target["ResourceId"] == "endpoint/scones-test-ep/variant/AllTraffic"
    assert target["ScalableDimension"] == "sagemaker:variant:DesiredInstanceCount"
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, 4)
    policy = aas.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"][0]
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert policy["PolicyType"] == "TargetTrackingScaling"
    assert tracking["PredefinedMetricSpecification"]["PredefinedMetricType"] == "SageMakerVariantInvocationsPerInstance"
    assert (tracking["TargetValue"], tracking["ScaleInCooldown"], tracking["ScaleOutCooldown"]) == (300.0, 600, 30)

    out = capsys.readouterr().out
    assert "sam deploy --parameter-overrides EndpointName=scones-test-ep" in out


def test_deploy_capture_settings_come_from_flags(aws, tmp_path):
    model_dir = write_tiny_model(tmp_path / "model")
    assert main(deploy_args(model_dir, "ep-two", "--capture-percent", "25", "--capture-uri", f"s3://{BUCKET}/cap",
                            "--capture-json-types", "application/json,text/json", "--no-autoscaling"),
                boto_session=aws.session) == 0
    capture = aws.rec.one("CreateEndpointConfig")["DataCaptureConfig"]
    assert (capture["InitialSamplingPercentage"], capture["DestinationS3Uri"]) == (25, f"s3://{BUCKET}/cap")
    assert capture["CaptureContentTypeHeader"]["JsonContentTypes"] == ["application/json", "text/json"]
    assert "RegisterScalableTarget" not in aws.rec.names()


def test_deploy_builtin_model_uses_the_algorithm_image_as_is(aws):
    uri = f"s3://{BUCKET}/scones/models/job-1/output/model.tar.gz"
    assert main(["deploy", "--algorithm", "builtin", "--model-data", uri, "--artifact-uri", f"s3://{BUCKET}/scones",
                 "--endpoint-name", "builtin-ep", "--no-autoscaling"], boto_session=aws.session) == 0
    container = aws.rec.one("CreateModel")["PrimaryContainer"]
    assert container == {"Image": "811284229777.dkr.ecr.us-east-1.amazonaws.com/image-classification:1",
                         "ModelDataUrl": uri}


def test_deploy_repacks_a_training_job_artifact_with_the_serving_code(aws, tmp_path):
    model_dir = write_tiny_model(tmp_path / "model")
    trained = tmp_path / "model.tar.gz"
    with tarfile.open(trained, "w:gz") as tar:
        for name in ("model.onnx", "metadata.json"):
            tar.add(model_dir / name, arcname=name)
    aws.s3.upload_file(str(trained), BUCKET, "scones/models/job-2/output/model.tar.gz")
    assert main(["deploy", "--model-data", f"s3://{BUCKET}/scones/models/job-2/output/model.tar.gz",
                 "--artifact-uri", f"s3://{BUCKET}/scones", "--endpoint-name", "repacked", "--no-autoscaling"],
                boto_session=aws.session) == 0
    members = _tar_members(aws.s3, aws.rec.one("CreateModel")["PrimaryContainer"]["ModelDataUrl"])
    assert {"model.onnx", "metadata.json", "code/training/sagemaker/handler.py"} <= set(members)


def test_deploying_again_under_a_live_name_refuses_before_touching_the_live_artifact(aws, tmp_path, capsys):
    model_dir = write_tiny_model(tmp_path / "model")
    assert main(deploy_args(model_dir, "live-ep", "--no-autoscaling"), boto_session=aws.session) == 0
    live_url = aws.rec.one("CreateModel")["PrimaryContainer"]["ModelDataUrl"]
    bucket, key = live_url[len("s3://"):].split("/", 1)
    live_bytes = aws.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    objects_before = aws.s3.list_objects_v2(Bucket=BUCKET)["KeyCount"]
    capsys.readouterr()

    (model_dir / "metadata.json").write_text((model_dir / "metadata.json").read_text().replace("}", ', "v": 2}', 1))
    assert main(deploy_args(model_dir, "live-ep", "--no-autoscaling"), boto_session=aws.session) == 2

    err = capsys.readouterr().err
    assert "a SageMaker model named 'live-ep' exists already" in err and err.count("\n") == 1
    assert aws.s3.get_object(Bucket=bucket, Key=key)["Body"].read() == live_bytes
    assert aws.s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] == objects_before  # nothing uploaded
    assert aws.rec.names().count("CreateModel") == 1


def test_deploy_refuses_bad_input_before_creating_anything(aws, tmp_path, capsys):
    model_dir = write_tiny_model(tmp_path / "model")
    assert main(deploy_args(model_dir, "Upper_Case"), boto_session=aws.session) == 2
    assert "lower-case" in capsys.readouterr().err
    (model_dir / "model.onnx").write_bytes(b"not onnx")
    assert main(deploy_args(model_dir, "ok-name"), boto_session=aws.session) == 2
    assert "is not a servable model" in capsys.readouterr().err
    assert not [n for n in aws.rec.names() if n.startswith("Create")]


# --------------------------------------------------------------------------- the container handler


def test_packaged_handler_runs_on_its_own_and_answers_like_the_classifier(aws, tmp_path):
    model_dir = write_tiny_model(tmp_path / "model")
    assert main(deploy_args(model_dir, "handler-ep", "--no-autoscaling"), boto_session=aws.session) == 0
    members = _tar_members(aws.s3, aws.rec.one("CreateModel")["PrimaryContainer"]["ModelDataUrl"])
    unpacked = tmp_path / "opt-ml-model"
    for name, data in members.items():
        (unpacked / name).parent.mkdir(parents=True, exist_ok=True)
        (unpacked / name).write_bytes(data)
    (tmp_path / "red.png").write_bytes(png((255, 0, 0)))
    script = (
        "import sys, training.sagemaker.handler as h\n"
        "assert h.__file__.startswith(sys.argv[1]), h.__file__\n"
        "model = h.model_fn(sys.argv[1])\n"
        "body = open(sys.argv[2], 'rb').read()\n"
        "print(h.output_fn(h.predict_fn(h.input_fn(body, 'image/png'), model), 'application/json')[0])\n"
    )
    # Only code/ on the path, as in the container: the package must be self-contained.
    env = {**os.environ, "PYTHONPATH": str(unpacked / "code")}
    done = subprocess.run([sys.executable, "-c", script, str(unpacked), str(tmp_path / "red.png")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    expected = Classifier.load(model_dir).predict(png((255, 0, 0)))
    assert json.loads(done.stdout) == pytest.approx(expected)
    assert expected[0] > 0.9  # red -> bicycle in the tiny model


@pytest.mark.parametrize("body, content_type, accept, status", [
    (png((0, 0, 255)), "text/plain", "application/json", 415),
    (b"", "image/png", "application/json", 400),
    (b"definitely not an image", "image/jpeg", "application/json", 400),
    (png((0, 0, 255)), "image/png", "text/csv", 406),
])
def test_handler_answers_bad_requests_with_http_status_codes(tmp_path, body, content_type, accept, status):
    model = handler.model_fn(str(write_tiny_model(tmp_path / "model")))
    with pytest.raises(handler.RequestError) as err:
        data = handler.input_fn(body, content_type)
        handler.output_fn(handler.predict_fn(data, model), accept)
    assert err.value.status_code == status


def test_handler_accepts_content_type_parameters_and_any_accept(tmp_path):
    model = handler.model_fn(str(write_tiny_model(tmp_path / "model")))
    data = handler.input_fn(png((0, 0, 255)), "image/png; charset=binary")
    text, content_type = handler.output_fn(handler.predict_fn(data, model), "*/*")
    assert content_type == "application/json"
    assert json.loads(text)[1] > 0.9  # blue -> motorcycle


# --------------------------------------------------------------------------- monitor


def _staged(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    examples = [stage_data.Example("train", name, label, i, f"{name}_{i}.png",
                                   rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
                for label, name in enumerate(["bicycle", "motorcycle"]) for i in range(10)]
    out = tmp_path / "staged"
    stage_data.stage(examples, out, progress=io.StringIO())
    return out


def _put_baseline_results(s3, endpoint: str) -> None:
    """What the baselining processing job writes when it finishes (moto runs no containers)."""
    for name in ("statistics.json", "constraints.json"):
        s3.put_object(Bucket=BUCKET, Key=f"scones/monitoring/{endpoint}/baseline/{name}", Body=b"{}")


def test_monitor_runs_a_baseline_on_validation_outputs_then_an_hourly_schedule(aws, tmp_path):
    model_dir = write_tiny_model(tmp_path / "model")
    staged = _staged(tmp_path)
    _put_baseline_results(aws.s3, "mon-ep")
    assert main(["monitor", "--endpoint-name", "mon-ep", "--s3-uri", f"s3://{BUCKET}/scones",
                 "--model-dir", str(model_dir), "--staged", str(staged)], boto_session=aws.session) == 0

    job = aws.rec.one("CreateProcessingJob")
    assert job["AppSpecification"]["ImageUri"] == (
        "156813124566.dkr.ecr.us-east-1.amazonaws.com/sagemaker-model-monitor-analyzer")
    assert job["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"] == (
        f"s3://{BUCKET}/scones/monitoring/mon-ep/baseline")
    assert json.loads(job["Environment"]["dataset_format"]) == {"csv": {"header": True,
                                                                        "output_columns_position": "START"}}
    dataset_uri = job["ProcessingInputs"][0]["S3Input"]["S3Uri"]
    bucket, _, prefix = dataset_uri[5:].partition("/")
    key = aws.s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"][0]["Key"]
    text = aws.s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    # The job pairs the preprocessor's features, sorted by name, with these columns by position.
    assert text.splitlines()[0].split(",") == ["confidence", "prob_bicycle", "prob_motorcycle"]
    rows = list(csv.DictReader(io.StringIO(text)))
    validation = stage_data.read_lst(staged / "holdout" / "validation.lst")
    assert len(rows) == len(validation) == 4
    clf = Classifier.load(model_dir)
    first = clf.predict((staged / "train" / validation[0].relative_path).read_bytes())
    assert float(rows[0]["prob_bicycle"]) == pytest.approx(first[0])
    assert float(rows[0]["confidence"]) == pytest.approx(max(first))

    definition = aws.rec.one("CreateDataQualityJobDefinition")
    assert definition["DataQualityJobInput"]["EndpointInput"]["EndpointName"] == "mon-ep"
    app = definition["DataQualityAppSpecification"]
    assert app["Environment"]["SCONES_CLASSES"] == "bicycle,motorcycle"
    assert app["RecordPreprocessorSourceUri"].startswith("s3://")
    baseline = definition["DataQualityBaselineConfig"]
    assert baseline["StatisticsResource"]["S3Uri"] == f"s3://{BUCKET}/scones/monitoring/mon-ep/baseline/statistics.json"
    assert baseline["ConstraintsResource"]["S3Uri"] == f"s3://{BUCKET}/scones/monitoring/mon-ep/baseline/constraints.json"
    assert definition["DataQualityJobOutputConfig"]["MonitoringOutputs"][0]["S3Output"]["S3Uri"] == (
        f"s3://{BUCKET}/scones/monitoring/mon-ep/reports")

    schedule = aws.rec.one("CreateMonitoringSchedule")
    assert schedule["MonitoringScheduleName"] == "mon-ep-data-quality"
    config = schedule["MonitoringScheduleConfig"]
    assert config["ScheduleConfig"]["ScheduleExpression"] == "cron(0 * ? * * *)"
    assert config["MonitoringJobDefinitionName"] == definition["JobDefinitionName"]
    assert config["MonitoringType"] == "DataQuality"


def test_monitor_says_model_monitor_is_closed_to_new_customers_and_where_to_go(aws, tmp_path, capsys):
    """It keeps working for accounts that have Model Monitor; everyone is told, and a refusal points to the drift
    report over the endpoint's data capture, in one line."""
    help_text = subprocess.run([sys.executable, "-m", "training", "sagemaker", "monitor", "--help"], cwd=REPO,
                               capture_output=True, text=True, check=True).stdout
    assert "no longer open to new customers" in " ".join(help_text.split())
    assert "python -m monitoring" in " ".join(help_text.split())

    model_dir = write_tiny_model(tmp_path / "model")
    args = ["monitor", "--endpoint-name", "closed-ep", "--s3-uri", f"s3://{BUCKET}/scones", "--model-dir",
            str(model_dir), "--staged", str(_staged(tmp_path)), "--no-wait"]
    assert main(args, boto_session=aws.session) == 0  # an account that has it: the baseline job starts
    assert "no longer open to new customers" in capsys.readouterr().err

    def refuse(**_):  # as AWS answers an account the service is not open to
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "not authorized"}},
                          "CreateProcessingJob")

    aws.session.events.register("before-call.sagemaker.CreateProcessingJob", refuse)
    assert main(args, boto_session=aws.session) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("error: AWS refused: An error occurred (AccessDeniedException)")
    assert "python -m monitoring --capture" in err[-1]


def test_monitor_without_waiting_starts_only_the_baseline(aws, tmp_path, capsys):
    model_dir = write_tiny_model(tmp_path / "model")
    assert main(["monitor", "--endpoint-name", "later-ep", "--s3-uri", f"s3://{BUCKET}/scones", "--model-dir",
                 str(model_dir), "--staged", str(_staged(tmp_path)), "--no-wait"], boto_session=aws.session) == 0
    assert "CreateProcessingJob" in aws.rec.names()
    assert "CreateMonitoringSchedule" not in aws.rec.names()
    assert "--skip-baseline" in capsys.readouterr().err


def test_record_preprocessor_gives_the_baseline_columns(monkeypatch):
    monkeypatch.setenv("SCONES_CLASSES", "bicycle,motorcycle")

    def record(data, encoding):
        return SimpleNamespace(endpoint_output=SimpleNamespace(data=data, encoding=encoding))

    expected = features([0.25, 0.75], ["bicycle", "motorcycle"])
    assert expected == {"prob_bicycle": 0.25, "prob_motorcycle": 0.75, "confidence": 0.75}
    # Model Monitor sorts the preprocessor's keys and pairs them with the baseline's columns by position.
    assert list(expected) == sorted(expected) == ["confidence", "prob_bicycle", "prob_motorcycle"]
    assert preprocess_handler(record("[0.25, 0.75]", "JSON")) == expected
    assert preprocess_handler(record(base64.b64encode(b"[0.25, 0.75]").decode(), "BASE64")) == expected
    with pytest.raises(ValueError):
        preprocess_handler(record("[0.1, 0.2, 0.7]", "JSON"))


# --------------------------------------------------------------------------- teardown


def test_teardown_deletes_everything_deploy_and_monitor_created(aws, tmp_path, capsys):
    model_dir = write_tiny_model(tmp_path / "model")
    assert main(deploy_args(model_dir, "gone-ep"), boto_session=aws.session) == 0
    _put_baseline_results(aws.s3, "gone-ep")
    assert main(["monitor", "--endpoint-name", "gone-ep", "--s3-uri", f"s3://{BUCKET}/scones", "--model-dir",
                 str(model_dir), "--staged", str(_staged(tmp_path))], boto_session=aws.session) == 0
    capsys.readouterr()

    assert main(["teardown", "--endpoint-name", "gone-ep"], boto_session=aws.session) == 0
    out = capsys.readouterr().out
    sm = aws.session.client("sagemaker")
    aas = aws.session.client("application-autoscaling")
    assert aws.schedules.schedules == {}
    assert sm.list_data_quality_job_definitions()["JobDefinitionSummaries"] == []
    assert aas.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"] == []
    assert aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == []
    assert sm.list_endpoints()["Endpoints"] == []
    assert sm.list_endpoint_configs()["EndpointConfigs"] == []
    assert sm.list_models()["Models"] == []
    for line in ["deleted monitoring schedule gone-ep-data-quality",
                 "deleted scaling policy gone-ep-invocations-per-instance",
                 "deleted scalable target endpoint/gone-ep/variant/AllTraffic", "deleted endpoint gone-ep",
                 "deleted endpoint config gone-ep", "deleted model gone-ep"]:
        assert line in out
    assert "deleted monitoring job definition" in out
    # What it leaves stored (and billed) is listed, with the command that removes it.
    kept = out.split("still stored, and billed until you delete it", 1)[1]
    model_data = aws.rec.all_calls("CreateModel")[0]["PrimaryContainer"]["ModelDataUrl"]
    # The capture destination may be shared: only this endpoint's part of it is listed.
    assert f"s3://{BUCKET}/scones/datacapture " not in kept
    for uri in (model_data, f"s3://{BUCKET}/scones/datacapture/gone-ep", f"s3://{BUCKET}/scones/monitoring/gone-ep/reports",
                f"s3://{BUCKET}/scones/monitoring/gone-ep/baseline/statistics.json"):
        assert f"  {uri}    aws s3 rm --recursive {uri}" in kept
    assert "aws logs delete-log-group --log-group-name /aws/sagemaker/Endpoints/gone-ep" in kept

    assert main(["teardown", "--endpoint-name", "gone-ep"], boto_session=aws.session) == 0
    assert "nothing found for endpoint gone-ep" in capsys.readouterr().out


def test_cli_imports_no_sagemaker_sdk_until_a_command_runs():
    probe = ("import sys, training.sagemaker.cli as m\n"
             "try:\n    m.main(['--help'])\nexcept SystemExit:\n    pass\n"
             "print(sorted(n for n in sys.modules if n == 'sagemaker' or n.startswith('sagemaker.')))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_a_failed_job_while_waiting_is_one_line_with_the_reason(aws, capsys):
    def failed(parsed, **_):  # SageMaker's answer once the job has failed
        parsed.update(TrainingJobStatus="Failed", SecondaryStatus="Failed",
                      FailureReason="AlgorithmError: ExecuteUserScriptError: train.py exited with 1")

    aws.session.events.register("after-call.sagemaker.DescribeTrainingJob", failed)
    code = main(["train", "--algorithm", "pytorch", "--data-uri", f"s3://{BUCKET}/scones/data",
                 "--output-uri", f"s3://{BUCKET}/scones", "--wait"], boto_session=aws.session)
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: SageMaker: ") and err.count("\n") == 1 and "Traceback" not in err
    assert "AlgorithmError: ExecuteUserScriptError: train.py exited with 1" in err
