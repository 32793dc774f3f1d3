"""Delete everything `deploy` and `monitor` created for an endpoint, and report each deletion.

Order matters: monitoring schedules first (their job definitions are locked while a schedule
exists), then the scaling policy and target, then the endpoint, its config and its model(s), and the rollback
alarms updates made for its versions.
What teardown does not delete (S3 data, log groups) is listed at the end with the command that
removes it: it stays stored, and billed, until someone does.
"""

from __future__ import annotations

import re
import sys
import time

from botocore.exceptions import ClientError

from .deploy import SCALABLE_DIMENSION, VARIANT_NAME, resource_id
from .rollback_alarms import delete_fleet_alarms

_JOB_DEFINITION_DELETERS = {
    "DataQuality": "delete_data_quality_job_definition",
    "ModelQuality": "delete_model_quality_job_definition",
    "ModelBias": "delete_model_bias_job_definition",
    "ModelExplainability": "delete_model_explainability_job_definition",
}


def _missing(exc: ClientError) -> bool:
    error = exc.response.get("Error", {})
    code, message = error.get("Code", ""), error.get("Message", "").lower()
    if code in ("ResourceNotFound", "ObjectNotFoundException"):
        return True
    # SageMaker reports a missing endpoint, config or model as ValidationException "Could not find ...".
    return code == "ValidationException" and ("could not find" in message or "does not exist" in message)


def _wait_until_gone(describe, poll_seconds: float, attempts: int = 60) -> None:
    for _ in range(attempts):
        try:
            describe()
        except ClientError as exc:
            if _missing(exc):
                return
            raise
        time.sleep(poll_seconds)


def _s3_uris(value) -> list[str]:
    """Every s3:// URI anywhere in a describe_* answer."""
    if isinstance(value, dict):
        return [uri for v in value.values() for uri in _s3_uris(v)]
    if isinstance(value, list):
        return [uri for v in value for uri in _s3_uris(v)]
    return [value] if isinstance(value, str) and value.startswith("s3://") else []


def delete_monitoring(sm, endpoint_name: str, poll_seconds: float, report, kept: list[str]) -> None:
    names = []
    for page in sm.get_paginator("list_monitoring_schedules").paginate(EndpointName=endpoint_name):
        names += [s["MonitoringScheduleName"] for s in page.get("MonitoringScheduleSummaries", [])]
    for name in names:
        config = sm.describe_monitoring_schedule(MonitoringScheduleName=name)["MonitoringScheduleConfig"]
        definition = config.get("MonitoringJobDefinitionName")
        kind = config.get("MonitoringType", "DataQuality")
        if definition and kind == "DataQuality":  # its baseline and reports stay in S3
            kept += _s3_uris(sm.describe_data_quality_job_definition(JobDefinitionName=definition))
        sm.delete_monitoring_schedule(MonitoringScheduleName=name)
        report(f"monitoring schedule {name}")
        deleter = _JOB_DEFINITION_DELETERS.get(kind)
        if definition and deleter:
            _wait_until_gone(lambda name=name: sm.describe_monitoring_schedule(MonitoringScheduleName=name),
                             poll_seconds)
            getattr(sm, deleter)(JobDefinitionName=definition)
            report(f"monitoring job definition {definition}")


def delete_autoscaling(aas, endpoint_name: str, report, variants=(VARIANT_NAME,)) -> None:
    for variant in variants:
        rid = resource_id(endpoint_name, variant)
        policies = aas.describe_scaling_policies(ServiceNamespace="sagemaker", ResourceId=rid,
                                                 ScalableDimension=SCALABLE_DIMENSION)["ScalingPolicies"]
        for policy in policies:
            aas.delete_scaling_policy(PolicyName=policy["PolicyName"], ServiceNamespace="sagemaker",
                                      ResourceId=rid, ScalableDimension=SCALABLE_DIMENSION)
            report(f"scaling policy {policy['PolicyName']}")
        targets = aas.describe_scalable_targets(ServiceNamespace="sagemaker", ResourceIds=[rid],
                                                ScalableDimension=SCALABLE_DIMENSION)["ScalableTargets"]
        if targets:
            aas.deregister_scalable_target(ServiceNamespace="sagemaker", ResourceId=rid,
                                           ScalableDimension=SCALABLE_DIMENSION)
            report(f"scalable target {rid}")


def _delete_versions(sm, endpoint_name: str, report) -> None:
    """The configs and models earlier updates left (training.sagemaker.rollout: <endpoint>, <endpoint>-v<N>);
    the Model Registry group and its versions stay (they are the record of what ran)."""
    version = re.compile(rf"^{re.escape(endpoint_name)}(-v\d+)?$")
    for page in sm.get_paginator("list_endpoint_configs").paginate(NameContains=endpoint_name):
        for config in page["EndpointConfigs"]:
            if version.match(config["EndpointConfigName"]):
                sm.delete_endpoint_config(EndpointConfigName=config["EndpointConfigName"])
                report(f"endpoint config {config['EndpointConfigName']}")
    for page in sm.get_paginator("list_models").paginate(NameContains=endpoint_name):
        for model in page["Models"]:
            if version.match(model["ModelName"]):
                sm.delete_model(ModelName=model["ModelName"])
                report(f"model {model['ModelName']}")


def teardown(endpoint_name: str, boto_session, poll_seconds: float = 10.0, out=None) -> list[str]:
    """Delete the endpoint's schedules, scaling, endpoint, config and models; returns what went."""
    stream = out if out is not None else sys.stdout
    deleted: list[str] = []

    def report(what: str) -> None:
        deleted.append(what)
        print(f"deleted {what}", file=stream)

    sm = boto_session.client("sagemaker")
    aas = boto_session.client("application-autoscaling")
    kept: list[str] = []  # S3 locations that outlive the endpoint
    delete_monitoring(sm, endpoint_name, poll_seconds, report, kept)

    config_name, variants = endpoint_name, [VARIANT_NAME]
    try:
        config_name = sm.describe_endpoint(EndpointName=endpoint_name)["EndpointConfigName"]
        endpoint_exists = True
    except ClientError as exc:
        if not _missing(exc):
            raise
        endpoint_exists = False  # a half-finished deploy: still look for its config and model
    models = []
    try:
        endpoint_config = sm.describe_endpoint_config(EndpointConfigName=config_name)
        production_variants = endpoint_config["ProductionVariants"]
        # SageMaker writes an endpoint's capture below {destination}/{endpoint name}/: only that part is its own.
        kept += [f"{uri.rstrip('/')}/{endpoint_name}" for uri in _s3_uris(endpoint_config.get("DataCaptureConfig", {}))]
        models = [v["ModelName"] for v in production_variants]
        variants = [v["VariantName"] for v in production_variants]
        config_exists = True
    except ClientError as exc:
        if not _missing(exc):
            raise
        config_exists = False
        models = [endpoint_name]

    delete_autoscaling(aas, endpoint_name, report, variants)
    if endpoint_exists:
        sm.delete_endpoint(EndpointName=endpoint_name)
        report(f"endpoint {endpoint_name}")
    if config_exists:
        sm.delete_endpoint_config(EndpointConfigName=config_name)
        report(f"endpoint config {config_name}")
    for model in models:
        try:
            kept += _s3_uris(sm.describe_model(ModelName=model).get("PrimaryContainer", {}))
            sm.delete_model(ModelName=model)
            report(f"model {model}")
        except ClientError as exc:
            if not _missing(exc):
                raise
    _delete_versions(sm, endpoint_name, report)
    delete_fleet_alarms(boto_session.client("cloudwatch"), endpoint_name, report)
    if not deleted:
        print(f"nothing found for endpoint {endpoint_name}", file=stream)
        return deleted
    print("still stored, and billed until you delete it (teardown leaves data in place):", file=stream)
    for uri in dict.fromkeys(kept):
        print(f"  {uri}    aws s3 rm --recursive {uri}", file=stream)
    log_group = f"/aws/sagemaker/Endpoints/{endpoint_name}"
    print(f"  log group {log_group}    aws logs delete-log-group --log-group-name {log_group}", file=stream)
    return deleted
