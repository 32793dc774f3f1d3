"""Model Registry, canary update and rollback against moto's SageMaker (UpdateEndpoint, which moto lacks, is
answered by a stand-in that switches the endpoint's configuration as a finished deployment would), with the
gate's real comparisons of real models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from botocore.awsrequest import AWSResponse

from test_sagemaker_launch import (BUCKET, REGION, VENDORED, aws, deploy_args,  # noqa: F401 - aws is a fixture
                                   write_tiny_model)
from training import gate
from training.sagemaker.cli import main

REPO = Path(__file__).resolve().parents[3]
SHIPPED = REPO / "training" / "model"
SAMPLES = REPO / "local" / "sample_images"
ENDPOINT = "scones-ep"
ALARMS = ["scones-EndpointErrorsAlarm-1", "scones-LowConfidenceRateAlarm-2", "scones-AuditAccuracyAlarm-3"]


class FinishedUpdates:
    """UpdateEndpoint as a deployment that completed: the endpoint now runs the new configuration."""

    def __init__(self, session):
        self.requests: list[dict] = []
        session.events.register("before-call.sagemaker.UpdateEndpoint", self._answer)

    def _answer(self, params, **_):
        body = json.loads(params["body"])
        self.requests.append(body)
        from moto.sagemaker.models import sagemaker_backends

        endpoint = sagemaker_backends["123456789012"][REGION].endpoints[body["EndpointName"]]
        endpoint.endpoint_config_name = body["EndpointConfigName"]
        arn = f"arn:aws:sagemaker:{REGION}:123456789012:endpoint/{body['EndpointName']}"
        return AWSResponse("https://sagemaker.local", 200, {}, None), {"EndpointArn": arn}


def comparison(tmp_path: Path, challenger: Path, name: str) -> Path:
    out = tmp_path / f"{name}.json"
    gate.main(["--champion", str(SHIPPED), "--challenger", str(challenger), "--split-from", str(SAMPLES),
               "--val-fraction", "1", "--out", str(out)])
    return out


def register(tmp_path, model_dir: Path, gate_json: Path | None, capsys) -> dict:
    args = ["register", "--endpoint-name", ENDPOINT, "--model-dir", str(model_dir),
            "--artifact-uri", f"s3://{BUCKET}/scones", "--vendored", str(VENDORED)]
    capsys.readouterr()
    assert main(args + (["--gate-result", str(gate_json)] if gate_json else [])) == 0
    out = capsys.readouterr().out
    return json.loads(out[out.index("{"):out.rindex("}") + 1])


@pytest.fixture
def live(aws, tmp_path, capsys):  # noqa: F811 - the aws fixture
    updates = FinishedUpdates(aws.session)
    assert main(deploy_args(SHIPPED, ENDPOINT, "--no-autoscaling"), boto_session=aws.session) == 0
    capsys.readouterr()
    aws.updates = updates
    return aws


def run(aws, *args: str) -> int:
    return main(list(args), boto_session=aws.session)


def test_gate_verdicts_set_the_registry_status_and_only_approved_versions_deploy(live, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("boto3.Session", lambda *a, **k: live.session)
    weak = write_tiny_model(tmp_path / "weak")
    refused = register(tmp_path, weak, comparison(tmp_path, weak, "weak"), capsys)
    pending = register(tmp_path, SHIPPED, None, capsys)
    assert refused["status"] == "Rejected" and pending["status"] == "PendingManualApproval"
    sm = live.session.client("sagemaker")
    package = sm.describe_model_package(ModelPackageName=refused["model_package_arn"])
    stats = package["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"]
    bucket, key = stats[5:].split("/", 1)
    stored = json.loads(live.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert stored["accepted"] is False and stored["checks"][0]["criterion"] == "accuracy"
    assert "accuracy" in package["ModelPackageDescription"] and "worse" in package["ModelPackageDescription"]

    for arn in (refused["model_package_arn"], pending["model_package_arn"]):
        assert run(live, "update", "--endpoint-name", ENDPOINT, "--model-package", arn, *sum(
            (["--alarm", a] for a in ALARMS), [])) == 2
        assert "not Approved" in capsys.readouterr().err
    assert live.updates.requests == []


def test_canary_update_then_rollback_to_the_previous_approved_version(live, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("boto3.Session", lambda *a, **k: live.session)
    first = register(tmp_path, SHIPPED, comparison(tmp_path, SHIPPED, "same"), capsys)
    better = shutil.copytree(SHIPPED, tmp_path / "candidate")
    second = register(tmp_path, better, comparison(tmp_path, better, "candidate"), capsys)
    assert first["status"] == second["status"] == "Approved"
    alarm_args = sum((["--alarm", a] for a in ALARMS), [])

    assert run(live, "update", "--endpoint-name", ENDPOINT, "--model-package", first["model_package_arn"],
               *alarm_args) == 0
    assert run(live, "update", "--endpoint-name", ENDPOINT, "--model-package", second["model_package_arn"],
               *alarm_args, "--canary-percent", "20", "--bake-minutes", "45") == 0
    request = live.updates.requests[-1]
    assert request["EndpointName"] == ENDPOINT and request["RetainAllVariantProperties"] is True
    policy = request["DeploymentConfig"]["BlueGreenUpdatePolicy"]
    assert policy["TrafficRoutingConfiguration"] == {
        "Type": "CANARY", "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 20}, "WaitIntervalInSeconds": 2700}
    assert request["DeploymentConfig"]["AutoRollbackConfiguration"] == {"Alarms": [{"AlarmName": a} for a in ALARMS]}
    sm = live.session.client("sagemaker")
    config = sm.describe_endpoint_config(EndpointConfigName=request["EndpointConfigName"])
    original = sm.describe_endpoint_config(EndpointConfigName=ENDPOINT)
    # Same variant (guardrails need it), same instances, the same data capture; the model comes from the registry.
    assert config["ProductionVariants"][0]["VariantName"] == original["ProductionVariants"][0]["VariantName"]
    assert config["ProductionVariants"][0]["InstanceType"] == original["ProductionVariants"][0]["InstanceType"]
    assert config["DataCaptureConfig"] == original["DataCaptureConfig"]
    model = sm.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
    assert model["Containers"][0]["ModelPackageName"] == second["model_package_arn"]

    assert run(live, "rollback", "--endpoint-name", ENDPOINT) == 0
    back = live.updates.requests[-1]
    assert back["DeploymentConfig"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["Type"] == "ALL_AT_ONCE"
    live_config = sm.describe_endpoint_config(EndpointConfigName=back["EndpointConfigName"])
    live_model = sm.describe_model(ModelName=live_config["ProductionVariants"][0]["ModelName"])
    assert live_model["Containers"][0]["ModelPackageName"] == first["model_package_arn"]
    rejected = sm.describe_model_package(ModelPackageName=second["model_package_arn"])
    assert rejected["ModelApprovalStatus"] == "Rejected"  # not promoted again by mistake

    # Nothing earlier than the first approved version: a clear refusal, no update.
    before = len(live.updates.requests)
    assert run(live, "rollback", "--endpoint-name", ENDPOINT) == 2
    assert "no Approved version" in capsys.readouterr().err and len(live.updates.requests) == before


def test_teardown_removes_every_version_it_deployed_and_keeps_the_registry(live, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("boto3.Session", lambda *a, **k: live.session)
    version = register(tmp_path, SHIPPED, comparison(tmp_path, SHIPPED, "same"), capsys)
    assert run(live, "update", "--endpoint-name", ENDPOINT, "--model-package", version["model_package_arn"],
               "--alarm", ALARMS[0]) == 0
    capsys.readouterr()
    assert run(live, "teardown", "--endpoint-name", ENDPOINT) == 0
    sm = live.session.client("sagemaker")
    assert [m["ModelName"] for m in sm.list_models()["Models"]] == []
    assert [c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]] == []
    group = sm.list_model_packages(ModelPackageGroupName=f"{ENDPOINT}-models")["ModelPackageSummaryList"]
    assert [p["ModelPackageArn"] for p in group] == [version["model_package_arn"]]


def test_serverless_endpoint_has_no_capture_or_instances_and_updates_all_at_once_with_a_bake(aws, tmp_path, capsys,  # noqa: F811
                                                                                               monkeypatch):
    monkeypatch.setattr("boto3.Session", lambda *a, **k: aws.session)
    updates = FinishedUpdates(aws.session)
    assert run(aws, *deploy_args(SHIPPED, ENDPOINT, "--serverless-memory-mb", "2048")) == 2
    assert "serverless endpoints do not support data capture" in capsys.readouterr().err
    assert run(aws, *deploy_args(SHIPPED, ENDPOINT, "--serverless-memory-mb", "1500", "--no-capture")) == 2
    assert "1024 to 6144 MB" in capsys.readouterr().err

    assert run(aws, *deploy_args(SHIPPED, ENDPOINT, "--serverless-memory-mb", "2048", "--no-capture")) == 0
    sm = aws.session.client("sagemaker")
    [variant] = sm.describe_endpoint_config(EndpointConfigName=ENDPOINT)["ProductionVariants"]
    assert variant["ServerlessConfig"] == {"MemorySizeInMB": 2048, "MaxConcurrency": 10}
    assert "InstanceType" not in variant
    assert "RegisterScalableTarget" not in aws.rec.names()  # it scales by itself

    version = register(tmp_path, SHIPPED, comparison(tmp_path, SHIPPED, "same"), capsys)
    assert run(aws, "update", "--endpoint-name", ENDPOINT, "--model-package", version["model_package_arn"],
               "--alarm", ALARMS[0], "--bake-minutes", "40") == 0
    policy = updates.requests[-1]["DeploymentConfig"]["BlueGreenUpdatePolicy"]
    assert policy["TrafficRoutingConfiguration"]["Type"] == "ALL_AT_ONCE" and policy["TerminationWaitInSeconds"] == 2400
    [new] = sm.describe_endpoint_config(EndpointConfigName=updates.requests[-1]["EndpointConfigName"])["ProductionVariants"]
    assert new["ServerlessConfig"] == variant["ServerlessConfig"]


def test_a_serverless_endpoint_can_keep_instances_warm_against_cold_starts(aws, capsys):  # noqa: F811
    """Provisioned concurrency: the remedy for a cold start longer than the classify function's read timeout."""
    assert run(aws, *deploy_args(SHIPPED, ENDPOINT, "--serverless-provisioned-concurrency", "1")) == 2
    assert "add --serverless-memory-mb" in capsys.readouterr().err
    serverless = ("--serverless-memory-mb", "2048", "--no-capture")
    assert run(aws, *deploy_args(SHIPPED, ENDPOINT, *serverless, "--serverless-provisioned-concurrency", "11")) == 2
    assert "provisioned concurrency is 1 to the max concurrency (10), got 11" in capsys.readouterr().err
    assert run(aws, *deploy_args(SHIPPED, ENDPOINT, *serverless, "--serverless-provisioned-concurrency", "2")) == 0
    sm = aws.session.client("sagemaker")
    [variant] = sm.describe_endpoint_config(EndpointConfigName=ENDPOINT)["ProductionVariants"]
    assert variant["ServerlessConfig"] == {"MemorySizeInMB": 2048, "MaxConcurrency": 10, "ProvisionedConcurrency": 2}


def test_promote_gates_against_the_live_model_and_only_an_accepted_candidate_goes_on(live, tmp_path, capsys,
                                                                                      monkeypatch):
    monkeypatch.setattr("boto3.Session", lambda *a, **k: live.session)
    common = ["promote", "--endpoint-name", ENDPOINT, "--artifact-uri", f"s3://{BUCKET}/scones",
              "--vendored", str(VENDORED), "--split-from", str(SAMPLES), "--val-fraction", "1", "--alarm", ALARMS[0]]
    weak = write_tiny_model(tmp_path / "weak")
    assert run(live, *common, "--challenger", str(weak)) == gate.EXIT_REFUSED
    captured = capsys.readouterr()
    assert "REFUSED" in captured.out and "registered Rejected; the endpoint is unchanged" in captured.err
    assert live.updates.requests == []

    same = shutil.copytree(SHIPPED, tmp_path / "same")  # the live model, downloaded, is the champion
    assert run(live, *common, "--challenger", str(same)) == 0
    assert "ACCEPTED" in capsys.readouterr().out
    [request] = live.updates.requests
    assert request["DeploymentConfig"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["Type"] == "CANARY"
    sm = live.session.client("sagemaker")
    packages = sm.list_model_packages(ModelPackageGroupName=f"{ENDPOINT}-models")["ModelPackageSummaryList"]
    assert sorted(p["ModelApprovalStatus"] for p in packages) == ["Approved", "Rejected"]
