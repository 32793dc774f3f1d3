"""Model Registry, canary update and rollback against moto's SageMaker (UpdateEndpoint, which moto lacks, is
answered by a stand-in that switches the endpoint's configuration as a finished deployment would), with the
gate's real comparisons of real models."""

from __future__ import annotations

import json
import math
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
ALARMS = ["scones-EndpointErrorsAlarm-1"]  # the stack's, as --stack finds it (here made by the fixture)


def within_documented_bounds(request: dict, instance_count: int) -> list[str]:
    """What the SageMaker API reference says an UpdateEndpoint's DeploymentConfig may not be (empty: valid).
    TrafficRoutingConfig: WaitIntervalInSeconds 0..3600; a canary at most 50 % of the variant's instance count.
    BlueGreenUpdatePolicy: TerminationWaitInSeconds 0..3600; MaximumExecutionTimeoutInSeconds 600..28800 and
    larger than the waits. AutoRollbackConfig: 1 to 10 alarms."""
    config = request["DeploymentConfig"]
    policy = config["BlueGreenUpdatePolicy"]
    routing = policy["TrafficRoutingConfiguration"]
    wrong = []
    if not 0 <= routing["WaitIntervalInSeconds"] <= 3600:
        wrong.append("WaitIntervalInSeconds")
    if not 0 <= policy.get("TerminationWaitInSeconds", 0) <= 3600:
        wrong.append("TerminationWaitInSeconds")
    timeout = policy.get("MaximumExecutionTimeoutInSeconds")
    if timeout is not None and not (600 <= timeout <= 28800 and timeout > routing["WaitIntervalInSeconds"]
                                    + policy.get("TerminationWaitInSeconds", 0)):
        wrong.append("MaximumExecutionTimeoutInSeconds")
    if routing["Type"] == "CANARY":
        size = routing["CanarySize"]
        instances = (size["Value"] if size["Type"] == "INSTANCE_COUNT"
                     else math.ceil(instance_count * size["Value"] / 100))
        if instances > instance_count / 2:
            wrong.append("CanarySize")
    if not 1 <= len(config.get("AutoRollbackConfiguration", {}).get("Alarms", [])) <= 10:
        wrong.append("AutoRollbackConfiguration")
    return wrong


def stack_alarm(session, name: str, period: int = 300, evaluation_periods: int = 1) -> str:
    """An alarm like the stack's EndpointErrorsAlarm (classify's errors for the endpoint)."""
    session.client("cloudwatch").put_metric_alarm(
        AlarmName=name, Namespace="SconesUnlimited/VehicleClassifier", MetricName="EndpointErrors",
        Dimensions=[{"Name": "EndpointName", "Value": ENDPOINT}], Statistic="Sum", Period=period,
        EvaluationPeriods=evaluation_periods, Threshold=5, ComparisonOperator="GreaterThanOrEqualToThreshold")
    return name


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


def deployed(aws, capsys, *extra: str):  # noqa: F811 - the aws fixture
    aws.updates = FinishedUpdates(aws.session)
    assert main(deploy_args(SHIPPED, ENDPOINT, "--no-autoscaling", *extra), boto_session=aws.session) == 0
    capsys.readouterr()
    for name in ALARMS:
        stack_alarm(aws.session, name)
    return aws


@pytest.fixture
def live(aws, capsys):  # noqa: F811 - the aws fixture: deploy's default, one instance
    return deployed(aws, capsys)


@pytest.fixture
def live_pair(aws, capsys):  # noqa: F811 - two instances: room for a canary
    return deployed(aws, capsys, "--initial-instance-count", "2")


def run(account, *args: str) -> int:
    return main(list(args), boto_session=account.session)


def live_alarms(account) -> list[str]:
    return [a["AlarmName"] for a in account.session.client("cloudwatch").describe_alarms()["MetricAlarms"]]


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
    assert stored["accepted"] is False and stored["checks"][0]["criterion"] == "accuracy vs champion"
    description = package["ModelPackageDescription"]
    assert "accuracy vs champion" in description and "missed" in description

    for arn in (refused["model_package_arn"], pending["model_package_arn"]):
        assert run(live, "update", "--endpoint-name", ENDPOINT, "--model-package", arn, *sum(
            (["--alarm", a] for a in ALARMS), [])) == 2
        assert "not Approved" in capsys.readouterr().err
    assert live.updates.requests == []


def test_on_one_instance_the_default_update_is_all_at_once_with_a_bake(live, tmp_path, capsys, monkeypatch):
    """deploy makes one instance; a canary of it would be the whole variant, which the API refuses. The default
    update shifts all at once, then bakes with the rollback alarms; an explicit canary is refused, with the fix."""
    monkeypatch.setattr("boto3.Session", lambda *a, **k: live.session)
    version = register(tmp_path, SHIPPED, comparison(tmp_path, SHIPPED, "same"), capsys)
    update = ["update", "--endpoint-name", ENDPOINT, "--model-package", version["model_package_arn"],
              "--alarm", ALARMS[0]]

    assert run(live, *update, "--canary-percent", "10") == 2
    assert "a 10 % canary of 1 instance(s) is 1 instance(s), more than the half" in capsys.readouterr().err
    assert live.updates.requests == []

    assert run(live, *update) == 0
    (request,) = live.updates.requests
    policy = request["DeploymentConfig"]["BlueGreenUpdatePolicy"]
    assert policy["TrafficRoutingConfiguration"] == {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 1800}
    assert within_documented_bounds(request, instance_count=1) == []


def test_update_refuses_waits_the_api_refuses_in_one_line(live, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("boto3.Session", lambda *a, **k: live.session)
    version = register(tmp_path, SHIPPED, comparison(tmp_path, SHIPPED, "same"), capsys)
    update = ["update", "--endpoint-name", ENDPOINT, "--model-package", version["model_package_arn"],
              "--alarm", ALARMS[0]]
    for flag, value, message in (("--bake-minutes", "61", "--bake-minutes is 0 to 60"),
                                 ("--bake-minutes", "-1", "--bake-minutes is 0 to 60"),
                                 ("--termination-wait-minutes", "90", "--termination-wait-minutes is 0 to 60"),
                                 ("--canary-percent", "51", "--canary-percent is 1 to 50")):
        assert run(live, *update, flag, value) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {message}") and err.count("\n") == 1, err
    assert live.updates.requests == []


def test_canary_update_then_rollback_to_the_previous_approved_version(live_pair, tmp_path, capsys, monkeypatch):
    live = live_pair
    monkeypatch.setattr("boto3.Session", lambda *a, **k: live.session)
    first = register(tmp_path, SHIPPED, comparison(tmp_path, SHIPPED, "same"), capsys)
    better = shutil.copytree(SHIPPED, tmp_path / "candidate")
    second = register(tmp_path, better, comparison(tmp_path, better, "candidate"), capsys)
    assert first["status"] == second["status"] == "Approved"
    alarm_args = sum((["--alarm", a] for a in ALARMS), [])

    assert run(live, "update", "--endpoint-name", ENDPOINT, "--model-package", first["model_package_arn"],
               *alarm_args) == 0
    default = live.updates.requests[-1]["DeploymentConfig"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert default == {"Type": "CANARY", "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10},
                       "WaitIntervalInSeconds": 1800}  # two instances: room for a canary
    assert run(live, "update", "--endpoint-name", ENDPOINT, "--model-package", second["model_package_arn"],
               *alarm_args, "--canary-percent", "50", "--bake-minutes", "45") == 0
    request = live.updates.requests[-1]
    assert request["EndpointName"] == ENDPOINT and request["RetainAllVariantProperties"] is True
    policy = request["DeploymentConfig"]["BlueGreenUpdatePolicy"]
    assert policy["TrafficRoutingConfiguration"] == {
        "Type": "CANARY", "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 50}, "WaitIntervalInSeconds": 2700}
    fleet = [f"{request['EndpointConfigName']}-rollback-errors", f"{request['EndpointConfigName']}-rollback-latency"]
    assert request["DeploymentConfig"]["AutoRollbackConfiguration"] == {
        "Alarms": [{"AlarmName": a} for a in ALARMS + fleet]}
    assert all(within_documented_bounds(r, instance_count=2) == [] for r in live.updates.requests)
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


def test_the_new_fleet_is_judged_by_its_own_alarms_and_no_firing_or_blind_alarm_starts_an_update(
        live, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("boto3.Session", lambda *a, **k: live.session)
    version = register(tmp_path, SHIPPED, comparison(tmp_path, SHIPPED, "same"), capsys)
    update = ["update", "--endpoint-name", ENDPOINT, "--model-package", version["model_package_arn"]]
    cloudwatch = live.session.client("cloudwatch")

    # The stack's alarm firing (the endpoint already fails): it would roll the update back at once.
    cloudwatch.set_alarm_state(AlarmName=ALARMS[0], StateValue="ALARM", StateReason="5 endpoint errors")
    assert run(live, *update, "--alarm", ALARMS[0]) == 2
    assert f"rollback alarm {ALARMS[0]} is in ALARM (5 endpoint errors)" in capsys.readouterr().err
    # A daily alarm cannot see a 30-minute bake; an alarm that does not exist never rolls anything back.
    daily = stack_alarm(live.session, "scones-AuditAccuracyAlarm-3", period=86400)
    assert run(live, *update, "--alarm", daily) == 2
    assert "judges 86400 s of data, longer than the 30-minute bake" in capsys.readouterr().err
    assert run(live, *update, "--alarm", "no-such-alarm") == 2
    assert "no CloudWatch alarm named no-such-alarm" in capsys.readouterr().err
    assert live.updates.requests == []

    # The new fleet's alarms alone: its own errors and latency, on the new configuration's metrics.
    assert run(live, *update) == 0
    (request,) = live.updates.requests
    new_config = request["EndpointConfigName"]
    names = [a["AlarmName"] for a in request["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"]]
    alarms = {a["AlarmName"]: a for a in cloudwatch.describe_alarms(AlarmNames=names)["MetricAlarms"]}
    errors, latency = alarms[f"{new_config}-rollback-errors"], alarms[f"{new_config}-rollback-latency"]
    fleet = [{"Name": "EndpointName", "Value": ENDPOINT}, {"Name": "VariantName", "Value": "AllTraffic"},
             {"Name": "EndpointConfigName", "Value": new_config}]
    judged = {m["MetricStat"]["Metric"]["MetricName"]: m["MetricStat"]["Metric"]["Dimensions"]
              for m in errors["Metrics"] if "MetricStat" in m}
    assert judged == {"Invocation4XXErrors": fleet, "Invocation5XXErrors": fleet}
    assert (latency["MetricName"], latency["Dimensions"], latency["Threshold"]) == ("ModelLatency", fleet, 1_000_000)
    # Their windows fit the bake, and a re-run keeps their state: a fleet alarm that fired refuses a retry too.
    cloudwatch.set_alarm_state(AlarmName=latency["AlarmName"], StateValue="ALARM", StateReason="p99 above 1 s")
    assert run(live, *update) == 2
    assert f"rollback alarm {latency['AlarmName']} is in ALARM" in capsys.readouterr().err


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
    # the new fleets' rollback alarms go with the endpoint; the stack's stay
    left = [a["AlarmName"] for a in live.session.client("cloudwatch").describe_alarms()["MetricAlarms"]]
    assert left == ALARMS
    group = sm.list_model_packages(ModelPackageGroupName=f"{ENDPOINT}-models")["ModelPackageSummaryList"]
    assert [p["ModelPackageArn"] for p in group] == [version["model_package_arn"]]


def test_serverless_endpoint_has_no_capture_or_instances_and_no_guardrails(aws, tmp_path, capsys,  # noqa: F811
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
    # Guardrails are for real-time and asynchronous endpoints: no DeploymentConfig is sent, and the command says
    # what the update is instead of promising a bake.
    (request,) = updates.requests
    assert "DeploymentConfig" not in request
    captured = capsys.readouterr()
    assert "switches all traffic at once, with no bake and no automatic rollback" in captured.err
    assert json.loads(captured.out[captured.out.index("{"):])["guardrails"] is None
    config = sm.describe_endpoint_config(EndpointConfigName=updates.requests[-1]["EndpointConfigName"])
    [new] = config["ProductionVariants"]
    assert new["ServerlessConfig"] == variant["ServerlessConfig"]
    assert live_alarms(aws) == []  # no rollback alarms made for a deployment that has none


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
    [request] = live.updates.requests  # one instance: all at once, then the bake
    assert request["DeploymentConfig"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["Type"] == "ALL_AT_ONCE"
    assert within_documented_bounds(request, instance_count=1) == []
    sm = live.session.client("sagemaker")
    packages = sm.list_model_packages(ModelPackageGroupName=f"{ENDPOINT}-models")["ModelPackageSummaryList"]
    assert sorted(p["ModelApprovalStatus"] for p in packages) == ["Approved", "Rejected"]


STACK_TEMPLATE = {
    "Parameters": {"ConfidenceThreshold": {"Type": "Number", "Default": 0.93},
                   "EndpointName": {"Type": "String"}},
    "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
    "Outputs": {"EndpointErrorsAlarmName": {"Value": ALARMS[0]}},
}


def test_promote_with_stack_sets_its_confidence_threshold_to_the_models(live, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("boto3.Session", lambda *a, **k: live.session)
    cfn = live.session.client("cloudformation")
    cfn.create_stack(StackName="scones", TemplateBody=json.dumps(STACK_TEMPLATE),
                     Parameters=[{"ParameterKey": "EndpointName", "ParameterValue": ENDPOINT}])
    challenger = shutil.copytree(SHIPPED, tmp_path / "challenger")
    meta = json.loads((challenger / "metadata.json").read_text())
    (challenger / "metadata.json").write_text(json.dumps(meta | {"threshold": {"value": 0.9125}}))
    assert run(live, "promote", "--endpoint-name", ENDPOINT, "--artifact-uri", f"s3://{BUCKET}/scones",
               "--vendored", str(VENDORED), "--split-from", str(SAMPLES), "--val-fraction", "1",
               "--stack", "scones", "--challenger", str(challenger)) == 0
    parameters = {p["ParameterKey"]: p["ParameterValue"]
                  for p in cfn.describe_stacks(StackName="scones")["Stacks"][0]["Parameters"]}
    assert parameters == {"ConfidenceThreshold": "0.9125", "EndpointName": ENDPOINT}  # the others kept
    assert '"changed": true' in capsys.readouterr().out
