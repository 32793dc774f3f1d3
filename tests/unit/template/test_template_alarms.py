"""Alarms and dashboard: they watch metrics that exist, with the template's settings, and reach people.

CloudWatch matches a metric on namespace, name and the exact set of dimensions: an alarm that is off by
one dimension stays silent forever. So every alarm metric is checked against what the functions emit.
"""

from __future__ import annotations

import json
import re

import pytest

APP_NAMESPACE = "SconesUnlimited/VehicleClassifier"
# Each alarm's threshold parameter (the alarm list in docs/operations.md).
THRESHOLDS = {
    "FailedExecutionsAlarm": "FailedExecutionsThreshold",
    "LowConfidenceRateAlarm": "LowConfidenceRateThreshold",
    "ClassMixShiftAlarm": "ClassMixTolerance",
    "EndpointErrorsAlarm": "EndpointErrorsThreshold",
    "AuditAccuracyAlarm": "AuditAccuracyThreshold",
    "ReviewBacklogAlarm": "ReviewMaxWaitSeconds",
}
# Judged over a day: reviewers decide a few audit images an hour, too few for any shorter window.
DAILY_ALARMS = ("AuditAccuracyAlarm",)
RATE_ALARMS = ("LowConfidenceRateAlarm", "ClassMixShiftAlarm")
OVERRIDES = {
    "AlarmPeriodSeconds": "60", "AlarmEvaluationPeriods": "5", "FailedExecutionsThreshold": "3",
    "LowConfidenceRateThreshold": "0.35", "ExpectedFirstClassShare": "0.7", "ClassMixTolerance": "0.1",
    "MinimumPredictionsForRates": "50", "EndpointErrorsThreshold": "9", "ClassNames": "scooter,bus",
    "ConfidenceThreshold": "0.8", "AuditAccuracyThreshold": "0.8", "ReviewMaxWaitSeconds": "3600",
    "MinimumAuditDecisions": "40",
}


@pytest.fixture(scope="module", params=["defaults", "overrides"])
def deployed(request, load_stack, defaults):
    """(stack, parameter values): once with the template's defaults, once with every alarm setting changed."""
    overrides = OVERRIDES if request.param == "overrides" else {}
    return load_stack(**overrides), {**defaults, **overrides}


def _alarms(stack):
    alarms = stack.of_type("AWS::CloudWatch::Alarm")
    assert alarms, "the template has no alarms"
    return {lid: stack.properties(lid) for lid in alarms}


def _metrics(alarm):
    """(namespace, metric name, dimensions, period, statistic) of every metric an alarm reads."""
    if "Metrics" not in alarm:
        return [(alarm["Namespace"], alarm["MetricName"], {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])},
                 alarm["Period"], alarm["Statistic"])]
    found = []
    for query in alarm["Metrics"]:
        if "MetricStat" in query:
            stat = query["MetricStat"]
            metric = stat["Metric"]
            found.append((metric["Namespace"], metric["MetricName"],
                          {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}, stat["Period"], stat["Stat"]))
    return found


def test_dashboard_is_json_and_shows_every_alarm(deployed):
    stack, _ = deployed
    (dashboard,) = stack.of_type("AWS::CloudWatch::Dashboard")
    body = json.loads(stack.properties(dashboard)["DashboardBody"])
    shown = {arn for w in body["widgets"] if w["type"] == "alarm" for arn in w["properties"]["alarms"]}
    expected = {stack.get_att(lid, "Arn") for lid in stack.of_type("AWS::CloudWatch::Alarm")}
    assert shown == expected


def test_dashboard_graphs_metrics_the_functions_emit(deployed, emitted_metrics):
    stack, params = deployed
    (dashboard,) = stack.of_type("AWS::CloudWatch::Dashboard")
    body = json.loads(stack.properties(dashboard)["DashboardBody"])
    graphed = set()
    for widget in (w for w in body["widgets"] if w["type"] == "metric"):
        namespace = None
        for row in widget["properties"]["metrics"]:
            if row[0] == "...":  # the previous metric again, with other options or a last dimension value
                continue
            namespace = namespace if row[0] == "." else row[0]  # "." repeats the value above
            if namespace == APP_NAMESPACE:
                graphed.add(row[1])
                assert row[1] in emitted_metrics, f"dashboard graphs {row[1]}, which no function emits"
                if row[0] != ".":
                    assert row[row.index("EndpointName") + 1] == "my-endpoint", row
        if any(row[:2] == [APP_NAMESPACE, "Predictions"] for row in widget["properties"]["metrics"]):
            values = {v for row in widget["properties"]["metrics"] for v in row if isinstance(v, str)}
            assert set(params["ClassNames"].split(",")[:2]) <= values, "class-mix graph misses a class"
    assert {"Predictions", "Classified", "LowConfidence"} <= graphed


def test_alarm_thresholds_and_windows_follow_the_parameters(deployed):
    stack, params = deployed
    alarms = _alarms(stack)
    for lid, parameter in THRESHOLDS.items():
        assert float(alarms[lid]["Threshold"]) == float(params[parameter]), lid
    for lid, alarm in alarms.items():
        for namespace, name, _, period, _ in _metrics(alarm):
            expected = 86400 if lid in DAILY_ALARMS else int(params["AlarmPeriodSeconds"])
            assert int(period) == expected, f"{lid}: {namespace} {name}"
    for lid in RATE_ALARMS:
        alarm = alarms[lid]
        assert int(alarm["EvaluationPeriods"]) == int(params["AlarmEvaluationPeriods"]), lid
        (expression,) = [q["Expression"] for q in alarm["Metrics"] if q.get("ReturnData")]
        # Rates over a handful of images are noise: the expression only judges busy periods.
        minimum = re.search(r">=\s*([0-9.]+)", expression)
        assert minimum and float(minimum.group(1)) == float(params["MinimumPredictionsForRates"]), expression
    (accuracy,) = [q["Expression"] for q in alarms["AuditAccuracyAlarm"]["Metrics"] if q.get("ReturnData")]
    minimum = re.search(r">=\s*([0-9.]+)", accuracy)
    assert minimum and float(minimum.group(1)) == float(params["MinimumAuditDecisions"]), accuracy
    (shift,) = [q["Expression"] for q in alarms["ClassMixShiftAlarm"]["Metrics"] if q.get("ReturnData")]
    expected_share = re.search(r"-\s*([0-9.]+)\)\s*,", shift)
    assert expected_share and float(expected_share.group(1)) == float(params["ExpectedFirstClassShare"]), shift


def test_alarm_metrics_are_the_ones_the_functions_emit(deployed, function_sources, emitted_metrics,
                                                       emitted_dimensions, classes_defined):
    stack, params = deployed
    environments = [stack.properties(lid)["Environment"]["Variables"] for lid in stack.of_type("AWS::Lambda::Function")]
    checked = set()
    for lid, alarm in _alarms(stack).items():
        for namespace, name, dimensions, _, _ in _metrics(alarm):
            if namespace != APP_NAMESPACE:
                continue
            checked.add(name)
            assert all(env["POWERTOOLS_METRICS_NAMESPACE"] == namespace for env in environments)
            assert name in emitted_metrics, f"{lid} watches {name}, which no function emits"
            # Powertools adds "service" from POWERTOOLS_SERVICE_NAME; the others come from our code.
            assert all(dimensions["service"] == env["POWERTOOLS_SERVICE_NAME"] for env in environments), lid
            assert set(dimensions) - {"service"} <= emitted_dimensions, f"{lid}: {name} {sorted(dimensions)}"
            assert dimensions["EndpointName"] == "my-endpoint", lid
            if "Label" in dimensions:
                assert dimensions["Label"] in params["ClassNames"].split(","), lid
            if "Reason" in dimensions:
                # classify reports the exception's class name as the reason.
                emitter = [src for src in function_sources.values() if f'name="{name}"' in src]
                assert len(emitter) == 1, name
                assert dimensions["Reason"] in classes_defined(emitter[0]), \
                    f"{lid}: no exception {dimensions['Reason']}"
    assert {"LowConfidence", "Classified", "Predictions", "EndpointErrors", "AuditDecisions",
            "AuditAgreements"} <= checked


def test_the_review_function_publishes_under_the_alarms_namespace_and_dimensions(stack, repo, monkeypatch):
    import importlib

    monkeypatch.syspath_prepend(str(repo / "functions" / "reviews"))
    decisions = importlib.import_module("decisions")
    variables = stack.properties("ReviewsFunction")["Environment"]["Variables"]
    assert decisions.METRICS_NAMESPACE == variables["POWERTOOLS_METRICS_NAMESPACE"] == APP_NAMESPACE
    assert decisions.SERVICE == variables["POWERTOOLS_SERVICE_NAME"]
    assert decisions.EVENT_SOURCE == stack.outputs["ClassifiedEventSource"]["Value"]


def test_aws_metric_alarms_watch_this_stacks_resources(stack, repo):
    variant = re.search(r'^VARIANT_NAME = "([^"]+)"', (repo / "training" / "sagemaker" / "deploy.py").read_text(),
                        flags=re.MULTILINE)
    assert variant, "training/sagemaker/deploy.py no longer names its production variant"
    seen = set()
    for lid, alarm in _alarms(stack).items():
        for namespace, _, dimensions, _, _ in _metrics(alarm):
            seen.add(namespace)
            if namespace == "AWS/States":
                assert dimensions == {"StateMachineArn": stack.ref("ClassifierStateMachine")}, lid
            elif namespace == "AWS/SQS":
                # Each dead-letter queue's alarm watches that queue.
                queue = {"DeadLetterQueueAlarm": "RuleDeadLetterQueue",
                         "RecordDeadLetterQueueAlarm": "RecordDeadLetterQueue",
                         "ReviewBacklogAlarm": "ReviewQueue",
                         "ReviewDeadLetterQueueAlarm": "ReviewDeadLetterQueue"}[lid]
                assert dimensions == {"QueueName": stack.get_att(queue, "QueueName")}, lid
            elif namespace == "AWS/SageMaker":
                # The variant the deploy script creates; another name would never have data.
                assert dimensions == {"EndpointName": "my-endpoint", "VariantName": variant.group(1)}, lid
    assert {"AWS/States", "AWS/SQS", "AWS/SageMaker"} <= seen


def test_every_alarm_notifies_the_alarm_topic(stack):
    topic = stack.ref("AlarmTopic")
    for lid, alarm in _alarms(stack).items():
        assert topic in alarm.get("AlarmActions", []), f"{lid} raises no notification"
        # Missing data (a quiet night) is not an incident.
        assert alarm.get("TreatMissingData") == "notBreaching", lid


def test_no_email_subscription_without_an_address(stack):
    assert stack.of_type("AWS::SNS::Subscription") == {}


def test_alarm_email_subscribes_to_the_topic(load_stack):
    stack = load_stack(AlarmEmail="oncall@example.com")
    subscriptions = stack.of_type("AWS::SNS::Subscription")
    assert len(subscriptions) == 1
    props = stack.properties(next(iter(subscriptions)))
    assert props == {"TopicArn": stack.ref("AlarmTopic"), "Protocol": "email", "Endpoint": "oncall@example.com"}
