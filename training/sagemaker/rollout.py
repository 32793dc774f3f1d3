"""Versioned models and safe updates of the live endpoint: Model Registry, canary, rollback.

- register: the packed model (at an immutable, content-addressed S3 key) becomes a new version in the model
  package group "<endpoint>-models", with the gate's comparison (training.gate) as its model-quality
  metrics. A comparison that accepted it registers it Approved; one that refused it, Rejected; none,
  PendingManualApproval.
- update: the endpoint moves to an Approved version by a blue/green deployment with guardrails: a canary share of
  the capacity first when the variant has the instances for one, else all at once, then a bake, with automatic
  rollback when an alarm that judges the new fleet fires (rollback_alarms). The endpoint's name, and so the SAM
  stack, stay; the same variant keeps its data capture and instance count (RetainAllVariantProperties), and
  autoscaling stays registered (AWS allows a model change on a scaled variant as long as its instance type
  stays). A serverless endpoint has no guardrails: its update switches all at once, and says so.
- rollback: the endpoint returns, all at once, to the latest Approved version before the live one, which is
  marked Rejected so it is not promoted again by mistake.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from botocore.exceptions import ClientError

from ..s3_uri import s3_join
from . import rollback_alarms
from .context import LaunchError, region_of
from .deploy import VARIANT_NAME, DeployRequest, _upload_immutable, container_for, model_artifact

CONTENT_TYPES = ["application/x-image", "image/png", "image/jpeg", "image/webp"]
# The stack's alarm that rolls an update back besides the new fleet's own (template.yaml output): classify's view
# of the endpoint, which alone sees a model that answers 200 with the wrong shape (InvalidPredictionError). The
# low-confidence rate (drift: why one retrains, so likely firing) and the daily audit accuracy cannot judge a bake.
ROLLBACK_ALARM_OUTPUTS = ("EndpointErrorsAlarmName",)
# The API's bounds. TrafficRoutingConfig: WaitIntervalInSeconds 0..3600, a canary at most 50 % of the variant's
# instance count (https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_TrafficRoutingConfig.html);
# BlueGreenUpdatePolicy: TerminationWaitInSeconds 0..3600, MaximumExecutionTimeoutInSeconds 600..28800 and longer
# than the waits (https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_BlueGreenUpdatePolicy.html).
MAX_WAIT_SECONDS = 3600
EXECUTION_TIMEOUT_SECONDS = (600, 28800)
MAX_CANARY_PERCENT = 50
DEFAULT_CANARY_PERCENT = 10
# Guardrails apply to real-time and asynchronous endpoints only, not serverless ones.
GUARDRAILS_PAGE = "https://docs.aws.amazon.com/sagemaker/latest/dg/deployment-guardrails.html"


@dataclass
class CanarySettings:
    # of the capacity that takes traffic first; None: DEFAULT_CANARY_PERCENT when the variant has the instances
    # for a canary (2 or more), else all at once
    percent: int | None = None
    # Long enough for the rollback alarms to judge the new fleet (their longest window is 5 minutes).
    bake_seconds: int = 1800
    termination_wait_seconds: int = 600  # the old fleet stays this long after the full shift, for a fast rollback
    maximum_seconds: int = 3 * 3600
    max_latency_ms: int = rollback_alarms.DEFAULT_MAX_LATENCY_MS  # the new fleet's p99 above this rolls back

    def check(self) -> None:
        """LaunchError, one line, for a value the API refuses."""
        if not 0 <= self.bake_seconds <= MAX_WAIT_SECONDS:
            raise LaunchError(f"--bake-minutes is 0 to {MAX_WAIT_SECONDS // 60} (the API's WaitIntervalInSeconds is "
                              f"at most {MAX_WAIT_SECONDS} s), got {self.bake_seconds / 60:g}")
        if not 0 <= self.termination_wait_seconds <= MAX_WAIT_SECONDS:
            raise LaunchError(f"--termination-wait-minutes is 0 to {MAX_WAIT_SECONDS // 60} (the API's "
                              f"TerminationWaitInSeconds is at most {MAX_WAIT_SECONDS} s), "
                              f"got {self.termination_wait_seconds / 60:g}")
        if self.percent is not None and not 1 <= self.percent <= MAX_CANARY_PERCENT:
            raise LaunchError(f"--canary-percent is 1 to {MAX_CANARY_PERCENT} (a canary is at most half the variant), "
                              f"got {self.percent}")
        low, high = EXECUTION_TIMEOUT_SECONDS
        if not low <= self.maximum_seconds <= high or self.maximum_seconds <= self.bake_seconds + \
                self.termination_wait_seconds:
            raise LaunchError(f"the deployment's time limit is {low} to {high} s and longer than the bake and the "
                              f"termination wait, got {self.maximum_seconds}")
        if self.max_latency_ms < 1:
            raise LaunchError(f"--max-latency-ms must be positive, got {self.max_latency_ms}")


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def group_name(endpoint_name: str) -> str:
    return f"{endpoint_name}-models"


def _ensure_group(sm, group: str, endpoint_name: str) -> None:
    try:
        sm.describe_model_package_group(ModelPackageGroupName=group)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("ValidationException", "ResourceNotFound"):
            raise
        sm.create_model_package_group(ModelPackageGroupName=group,
                                      ModelPackageGroupDescription=f"Vehicle classifier versions for {endpoint_name}")


def register(req: DeployRequest, boto_session, gate_result: Path | None = None,
             log: Callable[[str], None] = _progress) -> dict:
    """A new model package version for ``req.endpoint_name``'s group; returns its ARN and status."""
    sm = boto_session.client("sagemaker")
    group = group_name(req.endpoint_name)
    _ensure_group(sm, group, req.endpoint_name)
    model_data_url = model_artifact(req, req.endpoint_name, boto_session)
    container = container_for(req, region_of(boto_session), model_data_url)
    status, metrics, description = "PendingManualApproval", {}, "not compared with the live model"
    if gate_result is not None:
        comparison = json.loads(Path(gate_result).read_text())
        status = "Approved" if comparison["accepted"] else "Rejected"
        def fmt(v):
            return "-" if v is None else f"{v:.4f}"
        description = "; ".join(f"{c['criterion']} {fmt(c['challenger'])} vs {fmt(c['champion'])} "
                                f"({'ok' if c['passed'] else 'missed'})" for c in comparison["checks"])
        metrics_uri = _upload_immutable(boto_session, Path(gate_result), s3_join(req.artifact_uri, "gate"))
        metrics = {"ModelQuality": {"Statistics": {"ContentType": "application/json", "S3Uri": metrics_uri}}}
    answer = sm.create_model_package(
        ModelPackageGroupName=group, ModelPackageDescription=f"gate: {description}"[:1000],
        InferenceSpecification={"Containers": [container], "SupportedContentTypes": CONTENT_TYPES,
                                "SupportedResponseMIMETypes": ["application/json"],
                                "SupportedRealtimeInferenceInstanceTypes": [req.instance_type]},
        ModelApprovalStatus=status, **({"ModelMetrics": metrics} if metrics else {}))
    log(f"registered {answer['ModelPackageArn']} ({status})")
    return {"model_package_arn": answer["ModelPackageArn"], "status": status, "model_data": model_data_url}


def traffic_routing(canary: CanarySettings, instance_count: int) -> dict:
    """CANARY when the variant can hold one, else ALL_AT_ONCE; either way the bake is the wait before the rest."""
    percent = canary.percent
    if percent is None and instance_count >= 2:
        percent = DEFAULT_CANARY_PERCENT
    if percent is None:
        return {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": canary.bake_seconds}
    canary_instances = max(1, math.ceil(instance_count * percent / 100))  # a canary is at least one instance
    if canary_instances * 2 > instance_count:
        raise LaunchError(f"a {percent} % canary of {instance_count} instance(s) is {canary_instances} instance(s), "
                          "more than the half of the variant the API allows: leave out --canary-percent (all at "
                          "once, then the bake) or give the variant at least 2 instances")
    return {"Type": "CANARY", "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": percent},
            "WaitIntervalInSeconds": canary.bake_seconds}


def deployment_config(canary: CanarySettings | None, alarm_names: list[str], instance_count: int = 1) -> dict:
    """Blue/green with a bake and automatic rollback (or all at once without either, for a rollback)."""
    if canary is None:
        routing = {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}
        policy = {"TrafficRoutingConfiguration": routing, "TerminationWaitInSeconds": 0}
    else:
        canary.check()
        policy = {"TrafficRoutingConfiguration": traffic_routing(canary, instance_count),
                  "TerminationWaitInSeconds": canary.termination_wait_seconds,
                  "MaximumExecutionTimeoutInSeconds": canary.maximum_seconds}
    config: dict = {"BlueGreenUpdatePolicy": policy}
    if alarm_names:
        config["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": name} for name in alarm_names]}
    return config


def _package(sm, arn: str) -> dict:
    described = sm.describe_model_package(ModelPackageName=arn)
    if described.get("ModelApprovalStatus") != "Approved":
        raise LaunchError(f"{arn} is {described.get('ModelApprovalStatus')}, not Approved: only a version the gate "
                          "accepted (or a person approved) reaches the endpoint")
    return described


@dataclass
class LiveVariant:
    endpoint: dict  # DescribeEndpoint
    config: dict  # DescribeEndpointConfig of the live configuration
    variant: dict  # its VARIANT_NAME production variant

    @property
    def serverless(self) -> bool:
        return bool(self.variant.get("ServerlessConfig"))

    @property
    def instance_count(self) -> int:
        """The instances the variant runs now (autoscaling may have changed it), which the new fleet keeps."""
        current = next((v.get("CurrentInstanceCount") for v in self.endpoint.get("ProductionVariants", [])
                        if v.get("VariantName") == VARIANT_NAME), None)
        return int(current or self.variant.get("InitialInstanceCount") or 1)


def _live(sm, endpoint_name: str) -> LiveVariant:
    live = sm.describe_endpoint(EndpointName=endpoint_name)
    if live["EndpointStatus"] != "InService":
        raise LaunchError(f"endpoint {endpoint_name} is {live['EndpointStatus']}: wait until it is InService")
    current = sm.describe_endpoint_config(EndpointConfigName=live["EndpointConfigName"])
    variant = next((v for v in current["ProductionVariants"] if v["VariantName"] == VARIANT_NAME), None)
    if variant is None:
        raise LaunchError(f"endpoint {endpoint_name} has no variant {VARIANT_NAME}: deployment guardrails need the "
                          "same variant name in the old and the new configuration")
    return LiveVariant(live, current, variant)


def version_config_name(endpoint_name: str, package: dict) -> str:
    version = package.get("ModelPackageVersion") or package["ModelPackageArn"].rsplit("/", 1)[-1]
    return f"{endpoint_name}-v{version}"


def _switch(sm, endpoint_name: str, package: dict, role: str, live: LiveVariant, deployment: dict | None,
            log) -> dict:
    """CreateModel and CreateEndpointConfig for ``package`` (the live variant's settings), then UpdateEndpoint
    (with ``deployment`` as its DeploymentConfig; None: none, SageMaker's default)."""
    name = version_config_name(endpoint_name, package)
    try:
        sm.describe_model(ModelName=name)
    except ClientError:
        sm.create_model(ModelName=name, ExecutionRoleArn=role,
                        Containers=[{"ModelPackageName": package["ModelPackageArn"]}])
    # The live variant's capacity settings, instances or serverless, with the new model.
    kept = {k: live.variant[k] for k in ("InstanceType", "InitialInstanceCount", "ServerlessConfig")
            if k in live.variant}
    config = {"EndpointConfigName": name,
              "ProductionVariants": [{"VariantName": VARIANT_NAME, "ModelName": name,
                                      "InitialVariantWeight": live.variant.get("InitialVariantWeight", 1.0), **kept}]}
    if live.config.get("DataCaptureConfig"):
        config["DataCaptureConfig"] = live.config["DataCaptureConfig"]
    try:
        sm.describe_endpoint_config(EndpointConfigName=name)
    except ClientError:
        sm.create_endpoint_config(**config)
    request = {"EndpointName": endpoint_name, "EndpointConfigName": name, "RetainAllVariantProperties": True}
    if deployment is not None:
        request["DeploymentConfig"] = deployment
    sm.update_endpoint(**request)
    log(f"updating {endpoint_name}: {live.endpoint['EndpointConfigName']} -> {name}")
    return {"endpoint_name": endpoint_name, "from_config": live.endpoint["EndpointConfigName"], "to_config": name,
            "model_package_arn": package["ModelPackageArn"], "update_endpoint_request": request}


def update(endpoint_name: str, package_arn: str, role: str, boto_session, canary: CanarySettings | None = None,
           alarm_names: list[str] = (), log: Callable[[str], None] = _progress) -> dict:
    if canary is None:  # a fresh default per call: CanarySettings is mutable
        canary = CanarySettings()
    canary.check()
    sm, cloudwatch = boto_session.client("sagemaker"), boto_session.client("cloudwatch")
    package = _package(sm, package_arn)
    live = _live(sm, endpoint_name)
    if live.serverless:
        log(f"{endpoint_name} is a serverless endpoint: deployment guardrails apply to real-time and asynchronous "
            f"endpoints only ({GUARDRAILS_PAGE}), so this update switches all traffic at once, with no bake and no "
            f"automatic rollback; watch the stack's alarms and run `rollback` if the new model misbehaves")
        result = _switch(sm, endpoint_name, package, role, live, None, log)
        return {**result, "guardrails": None}
    # Refused before anything is made: a canary the fleet cannot hold, an alarm firing (the new fleet's too, from an
    # earlier attempt at this version) or blind to the bake.
    routing = traffic_routing(canary, live.instance_count)
    config_name = version_config_name(endpoint_name, package)
    fleet = rollback_alarms.fleet_alarm_names(config_name)
    rollback_alarms.check(cloudwatch, list(alarm_names) + fleet, canary.bake_seconds, not_made_yet=fleet)
    fleet = rollback_alarms.put_fleet_alarms(cloudwatch, endpoint_name, config_name, VARIANT_NAME,
                                             canary.max_latency_ms)
    alarms = list(alarm_names) + fleet
    rollback_alarms.check(cloudwatch, fleet, canary.bake_seconds)  # as made: their windows fit the bake
    log(f"{routing['Type'].lower().replace('_', ' ')} on {live.instance_count} instance(s), then a "
        f"{canary.bake_seconds // 60}-minute bake watched by {', '.join(alarms)}")
    result = _switch(sm, endpoint_name, package, role, live,
                     deployment_config(canary, alarms, live.instance_count), log)
    return {**result, "guardrails": {"traffic": routing["Type"], "rollback_alarms": alarms}}


def live_container(sm, endpoint_name: str) -> dict:
    """The container definition of the model the endpoint serves (its variant's model's first container)."""
    live = sm.describe_endpoint(EndpointName=endpoint_name)
    config = sm.describe_endpoint_config(EndpointConfigName=live["EndpointConfigName"])
    model = sm.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
    return (model.get("Containers") or [model.get("PrimaryContainer") or {}])[0]


def live_package(sm, endpoint_name: str) -> str | None:
    return live_container(sm, endpoint_name).get("ModelPackageName")


def live_model_dir(boto_session, endpoint_name: str, dest: Path) -> Path:
    """The live model (model.onnx, metadata.json), unpacked from the artifact the endpoint serves: the champion."""
    import tarfile

    from ..s3_uri import parse_s3_uri

    sm = boto_session.client("sagemaker")
    container = live_container(sm, endpoint_name)
    if container.get("ModelPackageName"):
        package = sm.describe_model_package(ModelPackageName=container["ModelPackageName"])
        container = package["InferenceSpecification"]["Containers"][0]
    if "ModelDataUrl" not in container:
        raise LaunchError(f"cannot tell which artifact endpoint {endpoint_name} serves")
    bucket, key = parse_s3_uri(container["ModelDataUrl"])
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / "model.tar.gz"
    boto_session.client("s3").download_file(bucket, key, str(archive))
    with tarfile.open(archive) as tar:  # the model files only; the serving code stays packed
        members = [m for m in tar.getmembers() if m.isfile() and not m.name.startswith("code/")]
        tar.extractall(dest, members=members, filter="data")
    return dest


def rollback(endpoint_name: str, role: str, boto_session, log: Callable[[str], None] = _progress) -> dict:
    sm = boto_session.client("sagemaker")
    current = live_package(sm, endpoint_name)
    approved = sm.list_model_packages(ModelPackageGroupName=group_name(endpoint_name), ModelApprovalStatus="Approved",
                                      SortBy="CreationTime", SortOrder="Descending")["ModelPackageSummaryList"]
    current_version = next((p["ModelPackageVersion"] for p in approved if p["ModelPackageArn"] == current), None)
    earlier = [p for p in approved if p["ModelPackageArn"] != current
               and (current_version is None or p.get("ModelPackageVersion", 0) < current_version)]
    if not earlier:
        raise LaunchError(f"no Approved version of {group_name(endpoint_name)} before the live one to roll back to")
    target = sm.describe_model_package(ModelPackageName=earlier[0]["ModelPackageArn"])
    live = _live(sm, endpoint_name)
    result = _switch(sm, endpoint_name, target, role, live, None if live.serverless else deployment_config(None, []),
                     log)
    if current:
        sm.update_model_package(ModelPackageArn=current, ModelApprovalStatus="Rejected",
                                ApprovalDescription=f"rolled back from {endpoint_name}")
        result["rejected"] = current
    return result


def stack_alarm_names(boto_session, stack_name: str) -> list[str]:
    """The rollback alarms' names from the SAM stack's outputs."""
    described = boto_session.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    missing = [k for k in ROLLBACK_ALARM_OUTPUTS if k not in outputs]
    if missing:
        raise LaunchError(f"stack {stack_name} has no output {', '.join(missing)}: deploy this template version")
    return [outputs[k] for k in ROLLBACK_ALARM_OUTPUTS]


THRESHOLD_PARAMETER = "ConfidenceThreshold"


def set_stack_threshold(boto_session, stack_name: str, value: float) -> dict:
    """Set the SAM stack's ConfidenceThreshold to a model's threshold (its metadata.json), every other
    parameter and the template unchanged: the workflow then thresholds the live model with its own value."""
    cfn = boto_session.client("cloudformation")
    described = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
    current = {p["ParameterKey"]: p.get("ParameterValue") for p in described.get("Parameters", [])}
    if THRESHOLD_PARAMETER not in current:
        raise LaunchError(f"stack {stack_name} has no parameter {THRESHOLD_PARAMETER}: deploy this template version")
    text = f"{value:g}"
    if current[THRESHOLD_PARAMETER] is not None and float(current[THRESHOLD_PARAMETER]) == float(text):
        return {"stack": stack_name, "parameter": THRESHOLD_PARAMETER, "value": text, "changed": False}
    parameters = [{"ParameterKey": k, "UsePreviousValue": True} for k in current if k != THRESHOLD_PARAMETER]
    parameters.append({"ParameterKey": THRESHOLD_PARAMETER, "ParameterValue": text})
    cfn.update_stack(StackName=stack_name, UsePreviousTemplate=True, Parameters=parameters,
                     Capabilities=described.get("Capabilities") or ["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"])
    cfn.get_waiter("stack_update_complete").wait(StackName=stack_name, WaiterConfig={"Delay": 10, "MaxAttempts": 180})
    return {"stack": stack_name, "parameter": THRESHOLD_PARAMETER, "value": text,
            "previous": current[THRESHOLD_PARAMETER], "changed": True}
