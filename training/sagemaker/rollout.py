"""Versioned models and safe updates of the live endpoint: Model Registry, canary, rollback.

- register: the packed model (at an immutable, content-addressed S3 key) becomes a new version in the model
  package group "<endpoint>-models", with the gate's comparison (training.gate) as its model-quality
  metrics. A comparison that accepted it registers it Approved; one that refused it, Rejected; none,
  PendingManualApproval.
- update: the endpoint moves to an Approved version by a blue/green canary (deployment guardrails): a share of
  the capacity first, then all, with automatic rollback when any of the stack's alarms fires during the
  bake. The endpoint's name, and so the SAM stack, stay; the same variant keeps its data capture and instance
  count (RetainAllVariantProperties), and autoscaling stays registered (AWS allows a model change on a scaled
  variant as long as its instance type stays).
- rollback: the endpoint returns, all at once, to the latest Approved version before the live one, which is
  marked Rejected so it is not promoted again by mistake.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from botocore.exceptions import ClientError

from ..s3_uri import s3_join
from .context import LaunchError, region_of
from .deploy import VARIANT_NAME, DeployRequest, _upload_immutable, container_for, model_artifact

CONTENT_TYPES = ["application/x-image", "image/png", "image/jpeg", "image/webp"]
# The stack's alarms that say a model is doing harm (template.yaml outputs); any of them rolls a canary back.
ROLLBACK_ALARM_OUTPUTS = ("EndpointErrorsAlarmName", "LowConfidenceRateAlarmName", "AuditAccuracyAlarmName")


@dataclass
class CanarySettings:
    percent: int = 10  # of the capacity that takes traffic first
    # Long enough for the stack's alarms to judge the canary: the rate alarms need 3 periods of 300 s.
    bake_seconds: int = 1800
    termination_wait_seconds: int = 600  # the old fleet stays this long after the full shift, for a fast rollback
    maximum_seconds: int = 3 * 3600


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
        description = "; ".join(f"{c['criterion']} {c['challenger']:.4f} vs {c['champion']:.4f} "
                                f"({'ok' if c['passed'] else 'worse'})" for c in comparison["checks"])
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


def deployment_config(canary: CanarySettings | None, alarm_names: list[str]) -> dict:
    """Blue/green with canary traffic shifting (or all at once, for a rollback) and automatic rollback."""
    if canary is None:
        routing = {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}
        policy = {"TrafficRoutingConfiguration": routing, "TerminationWaitInSeconds": 0}
    else:
        if not 1 <= canary.percent <= 50:
            raise LaunchError(f"the canary takes 1 to 50 % of the capacity, got {canary.percent}")
        routing = {"Type": "CANARY", "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": canary.percent},
                   "WaitIntervalInSeconds": canary.bake_seconds}
        policy = {"TrafficRoutingConfiguration": routing, "TerminationWaitInSeconds": canary.termination_wait_seconds,
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


def _switch(sm, endpoint_name: str, package: dict, role: str, deployment: dict, log) -> dict:
    """CreateModel and CreateEndpointConfig for ``package`` (the live variant's settings), then UpdateEndpoint."""
    version = package.get("ModelPackageVersion") or package["ModelPackageArn"].rsplit("/", 1)[-1]
    live = sm.describe_endpoint(EndpointName=endpoint_name)
    if live["EndpointStatus"] != "InService":
        raise LaunchError(f"endpoint {endpoint_name} is {live['EndpointStatus']}: wait until it is InService")
    current = sm.describe_endpoint_config(EndpointConfigName=live["EndpointConfigName"])
    variant = next((v for v in current["ProductionVariants"] if v["VariantName"] == VARIANT_NAME), None)
    if variant is None:
        raise LaunchError(f"endpoint {endpoint_name} has no variant {VARIANT_NAME}: deployment guardrails need the "
                          "same variant name in the old and the new configuration")
    if variant.get("ServerlessConfig") and deployment["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["Type"] \
            == "CANARY":
        # A canary shifts a share of instances; a serverless endpoint has none: all at once, then a bake with
        # the same alarms before the old fleet goes.
        policy = deployment["BlueGreenUpdatePolicy"]
        bake = policy["TrafficRoutingConfiguration"]["WaitIntervalInSeconds"]
        policy["TrafficRoutingConfiguration"] = {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}
        policy["TerminationWaitInSeconds"] = max(policy["TerminationWaitInSeconds"], bake)
    name = f"{endpoint_name}-v{version}"
    try:
        sm.describe_model(ModelName=name)
    except ClientError:
        sm.create_model(ModelName=name, ExecutionRoleArn=role,
                        Containers=[{"ModelPackageName": package["ModelPackageArn"]}])
    # The live variant's capacity settings, instances or serverless, with the new model.
    kept = {k: variant[k] for k in ("InstanceType", "InitialInstanceCount", "ServerlessConfig") if k in variant}
    config = {"EndpointConfigName": name,
              "ProductionVariants": [{"VariantName": VARIANT_NAME, "ModelName": name,
                                      "InitialVariantWeight": variant.get("InitialVariantWeight", 1.0), **kept}]}
    if current.get("DataCaptureConfig"):
        config["DataCaptureConfig"] = current["DataCaptureConfig"]
    try:
        sm.describe_endpoint_config(EndpointConfigName=name)
    except ClientError:
        sm.create_endpoint_config(**config)
    request = {"EndpointName": endpoint_name, "EndpointConfigName": name, "RetainAllVariantProperties": True,
               "DeploymentConfig": deployment}
    sm.update_endpoint(**request)
    log(f"updating {endpoint_name}: {live['EndpointConfigName']} -> {name}")
    return {"endpoint_name": endpoint_name, "from_config": live["EndpointConfigName"], "to_config": name,
            "model_package_arn": package["ModelPackageArn"], "update_endpoint_request": request}


def update(endpoint_name: str, package_arn: str, role: str, boto_session, canary: CanarySettings = CanarySettings(),
           alarm_names: list[str] = (), log: Callable[[str], None] = _progress) -> dict:
    sm = boto_session.client("sagemaker")
    return _switch(sm, endpoint_name, _package(sm, package_arn), role, deployment_config(canary, list(alarm_names)), log)


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
    result = _switch(sm, endpoint_name, target, role, deployment_config(None, []), log)
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
