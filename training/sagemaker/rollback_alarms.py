"""The alarms that roll a model update back: made for the new fleet, and checked before the update starts.

During a blue/green update SageMaker watches the alarms it is given and rolls the whole update back when one trips
(https://docs.aws.amazon.com/sagemaker/latest/dg/deployment-guardrails-configuration.html). So each must be able
to judge the new model within the bake:

- the new fleet's own alarms, made here: its invocation errors (the model's 4XX/5XX answers) and its model latency
  (https://docs.aws.amazon.com/sagemaker/latest/dg/monitoring-cloudwatch.html), on the metrics SageMaker reports
  for the new endpoint configuration (the EndpointConfigName dimension), so the old fleet's errors and the drift
  that led to the retrain do not move them;
- an alarm already in ALARM would roll the update back as it starts (that page's warning for alarms that watch both
  fleets): ``check`` refuses to start while one fires;
- an alarm whose window (period x evaluation periods) is longer than the bake cannot see it (a daily alarm and a
  30-minute bake): refused as well.
"""

from __future__ import annotations

import re

from .context import LaunchError

NAMESPACE = "AWS/SageMaker"  # the endpoint's invocation metrics
DEFAULT_MAX_LATENCY_MS = 1000  # the model answers in ~10 ms; classify gives up after 5 s
# (period s, evaluation periods, datapoints to alarm): errors in 2 of 3 minutes, slow in 3 of 5 minutes.
ERRORS_WINDOW = (60, 3, 2)
LATENCY_WINDOW = (60, 5, 3)
MAX_ROLLBACK_ALARMS = 10  # AutoRollbackConfig.Alarms


def fleet_alarm_names(config_name: str) -> list[str]:
    return [f"{config_name}-rollback-errors", f"{config_name}-rollback-latency"]


def _fleet(endpoint_name: str, config_name: str, variant: str) -> list[dict]:
    """The dimensions of one fleet's metrics: the endpoint, its variant, and the fleet's endpoint configuration."""
    return [{"Name": "EndpointName", "Value": endpoint_name}, {"Name": "VariantName", "Value": variant},
            {"Name": "EndpointConfigName", "Value": config_name}]


def _sum_of(metric_id: str, metric: str, dimensions: list[dict], period: int) -> dict:
    return {"Id": metric_id, "ReturnData": False, "MetricStat": {
        "Metric": {"Namespace": NAMESPACE, "MetricName": metric, "Dimensions": dimensions},
        "Period": period, "Stat": "Sum"}}


def put_fleet_alarms(cloudwatch, endpoint_name: str, config_name: str, variant: str,
                     max_latency_ms: int = DEFAULT_MAX_LATENCY_MS) -> list[str]:
    """The new fleet's errors and latency alarms (PutMetricAlarm keeps an existing alarm's state); their names."""
    errors_name, latency_name = fleet_alarm_names(config_name)
    dimensions = _fleet(endpoint_name, config_name, variant)
    period, evaluations, datapoints = ERRORS_WINDOW
    cloudwatch.put_metric_alarm(
        AlarmName=errors_name, ActionsEnabled=False, EvaluationPeriods=evaluations, DatapointsToAlarm=datapoints,
        AlarmDescription=f"{config_name} answers with errors (4XX/5XX) while it takes traffic: rolls the update back",
        Threshold=1, ComparisonOperator="GreaterThanOrEqualToThreshold", TreatMissingData="notBreaching",
        Metrics=[_sum_of("m4", "Invocation4XXErrors", dimensions, period),
                 _sum_of("m5", "Invocation5XXErrors", dimensions, period),
                 {"Id": "errors", "ReturnData": True, "Label": "errors of the new fleet",
                  "Expression": "FILL(m4,0) + FILL(m5,0)"}])
    period, evaluations, datapoints = LATENCY_WINDOW
    cloudwatch.put_metric_alarm(
        AlarmName=latency_name, ActionsEnabled=False, EvaluationPeriods=evaluations, DatapointsToAlarm=datapoints,
        AlarmDescription=f"{config_name} answers slower than {max_latency_ms} ms (p99): rolls the update back",
        Namespace=NAMESPACE, MetricName="ModelLatency", Dimensions=dimensions, ExtendedStatistic="p99",
        Period=period, Threshold=max_latency_ms * 1000,  # ModelLatency is in microseconds
        ComparisonOperator="GreaterThanThreshold", TreatMissingData="notBreaching")
    return [errors_name, latency_name]


def window_seconds(alarm: dict) -> int:
    """How far back an alarm looks: its (longest) period times its evaluation periods."""
    periods = [m["MetricStat"]["Period"] for m in alarm.get("Metrics", []) if "MetricStat" in m]
    return max(periods or [alarm.get("Period", 60)]) * alarm.get("EvaluationPeriods", 1)


def check(cloudwatch, names: list[str], bake_seconds: int, not_made_yet: list[str] = ()) -> None:
    """LaunchError unless every alarm exists (those in ``not_made_yet`` may not, yet), is not in ALARM, and can judge
    a bake of ``bake_seconds``."""
    if len(names) > MAX_ROLLBACK_ALARMS:
        raise LaunchError(f"at most {MAX_ROLLBACK_ALARMS} rollback alarms (SageMaker's limit), got {len(names)} "
                          f"with the new fleet's 2: pass fewer --alarm")
    if not names:
        return
    found = {a["AlarmName"]: a for a in cloudwatch.describe_alarms(AlarmNames=names)["MetricAlarms"]}
    missing = [name for name in names if name not in found and name not in not_made_yet]
    if missing:
        raise LaunchError(f"no CloudWatch alarm named {', '.join(missing)}: a rollback alarm that does not exist "
                          "never rolls back (check --alarm, or deploy this template version for --stack)")
    for name in (name for name in names if name in found):
        alarm = found[name]
        if alarm["StateValue"] == "ALARM":
            reason = " ".join(alarm.get("StateReason", "").split())[:200]
            raise LaunchError(f"rollback alarm {name} is in ALARM ({reason}): it would roll the update back as soon "
                              "as it starts; wait until it is OK, or leave it out with --alarm")
        if window_seconds(alarm) > bake_seconds:
            raise LaunchError(f"rollback alarm {name} judges {window_seconds(alarm)} s of data, longer than the "
                              f"{bake_seconds // 60}-minute bake: it cannot see the new model; raise --bake-minutes "
                              "(at most 60) or leave it out with --alarm")


def delete_fleet_alarms(cloudwatch, endpoint_name: str, report) -> None:
    """The rollback alarms ``put_fleet_alarms`` made for every <endpoint>-v<N> configuration."""
    ours = re.compile(rf"^{re.escape(endpoint_name)}-v\d+-rollback-(errors|latency)$")
    names = [a["AlarmName"] for page in cloudwatch.get_paginator("describe_alarms").paginate(
        AlarmNamePrefix=f"{endpoint_name}-v") for a in page["MetricAlarms"] if ours.match(a["AlarmName"])]
    for start in range(0, len(names), 100):  # DeleteAlarms takes up to 100 names
        cloudwatch.delete_alarms(AlarmNames=names[start:start + 100])
    for name in names:
        report(f"alarm {name}")
