"""`python -m monitoring` end to end: capture folder (or S3, results table) in; report, JSON, charts
and the exit code a scheduler alerts on out."""

import json
import math
from datetime import datetime, timedelta

import boto3
import numpy as np
import pytest
from moto import mock_aws
from PIL import Image

from drift_report_helpers import (
    START,
    baseline_doc,
    capture_files,
    capture_key,
    capture_line,
    healthy_probabilities,
    shifted_probabilities,
    write_tree,
)
from monitoring import build_report
from monitoring.__main__ import main
from monitoring.errors import MonitoringInputError

TIME_CHARTS = {"confidence_over_time", "class_mix_over_time", "low_confidence_rate_over_time"}


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def shares(probabilities, n_classes=2):
    predicted = np.argmax(np.asarray(probabilities), axis=1)
    return [float(np.mean(predicted == k)) for k in range(n_classes)]


def assert_pngs(out, names):
    for name in names:
        with Image.open(out / name) as image:
            assert image.format == "PNG" and image.width > 100 and image.height > 100
            image.verify()


@pytest.fixture
def healthy_capture(tmp_path):
    probabilities = healthy_probabilities(300, seed=2)
    return write_tree(tmp_path / "capture", capture_files(probabilities)), probabilities


@pytest.fixture
def shifted_capture(tmp_path):
    probabilities = shifted_probabilities(300, seed=3)
    return write_tree(tmp_path / "shifted", capture_files(probabilities)), probabilities


def test_in_distribution_traffic_exits_0_with_report_json_and_charts(capsys, tmp_path, baseline_path,
                                                                       healthy_capture):
    capture, probabilities = healthy_capture
    out = tmp_path / "out"

    code, stdout, _ = run(capsys, "--capture", capture, "--baseline", baseline_path, "--out", out)

    assert code == 0
    doc = json.loads((out / "drift.json").read_text())
    assert doc["capture"]["files"] == 30
    assert doc["capture"]["lines"] == doc["capture"]["records"] == 300
    assert doc["capture"]["bad_lines"] == 0
    assert doc["capture"]["first"] == "2026-11-21T06:00:00Z"
    assert doc["capture"]["last"] == (START + timedelta(seconds=299 * 45)).isoformat().replace("+00:00", "Z")

    drift = doc["drift"]
    base = json.loads(baseline_path.read_text())["probabilities"]
    assert drift["baseline_n"] == 400 and drift["live_n"] == 300
    assert drift["live_class_mix"] == pytest.approx(shares(probabilities))
    assert drift["baseline_class_mix"] == pytest.approx(shares(base))
    # The class-mix PSI is the formula over the two mixes computed here from the raw inputs.
    b, l = shares(base), shares(probabilities)
    assert drift["psi_class_mix"] == pytest.approx(sum((y - x) * math.log(y / x) for x, y in zip(b, l)))
    assert sum(drift["live_confidence_bins"]) == pytest.approx(1.0)
    assert drift["threshold"] == 0.93  # the baseline's threshold_default
    live_conf = np.max(probabilities, axis=1)
    assert drift["live_low_confidence_rate"] == pytest.approx(float(np.mean(live_conf < 0.93)))
    assert drift["psi_max"] < 0.1
    assert doc["verdict"] == {"flag": "none", "drift_detected": False, "psi_max": drift["psi_max"],
                              "psi_threshold": 0.25, "exit_code": 0}
    assert doc["results"] is None
    assert sum(b["n"] for b in doc["series"]["capture"]) == 300

    assert set(doc["charts"]) == TIME_CHARTS | {"baseline_vs_live"}
    assert_pngs(out, doc["charts"].values())
    html = (out / "report.html").read_text()
    assert "No drift" in html
    for name in doc["charts"].values():
        assert f'src="{name}"' in html
    assert "No drift: largest PSI" in stdout and str(out / "report.html") in stdout


def test_one_class_at_low_confidence_exits_3(capsys, tmp_path, baseline_path, shifted_capture):
    capture, _ = shifted_capture
    out = tmp_path / "out"

    code, stdout, _ = run(capsys, "--capture", capture, "--baseline", baseline_path, "--out", out)

    assert code == 3
    doc = json.loads((out / "drift.json").read_text())
    assert doc["verdict"]["flag"] == "significant" and doc["verdict"]["drift_detected"] is True
    assert doc["verdict"]["exit_code"] == 3
    assert doc["drift"]["live_class_mix"] == [0.0, 1.0]
    assert doc["drift"]["live_low_confidence_rate"] == 1.0
    assert doc["drift"]["psi_class_mix"] > 0.25 and doc["drift"]["psi_confidence"] > 0.25
    assert "Significant drift" in (out / "report.html").read_text()
    assert "Significant drift" in stdout and "beyond the alert threshold 0.25" in stdout
    assert_pngs(out, doc["charts"].values())


def test_psi_threshold_option_sets_when_the_cli_alerts(capsys, tmp_path, baseline_path, shifted_capture):
    capture, _ = shifted_capture
    code, _, _ = run(capsys, "--capture", capture, "--baseline", baseline_path, "--out", tmp_path / "o",
                     "--psi-threshold", "100")
    doc = json.loads((tmp_path / "o" / "drift.json").read_text())
    # The flag still reads the shift as significant; only the alert threshold moved.
    assert code == 0 and doc["verdict"]["flag"] == "significant" and doc["verdict"]["psi_threshold"] == 100


def test_threshold_option_overrides_the_baselines_review_threshold(capsys, tmp_path, baseline_path,
                                                                     shifted_capture):
    capture, probabilities = shifted_capture
    run(capsys, "--capture", capture, "--baseline", baseline_path, "--out", tmp_path / "o", "--threshold", "0.6")
    drift = json.loads((tmp_path / "o" / "drift.json").read_text())["drift"]
    assert drift["threshold"] == 0.6
    assert drift["live_low_confidence_rate"] == pytest.approx(float(np.mean(np.max(probabilities, axis=1) < 0.6)))
    assert 0 < drift["live_low_confidence_rate"] < 1


def test_since_limits_the_report_to_recent_traffic(capsys, tmp_path, baseline_path, healthy_capture):
    capture, _ = healthy_capture
    since = START + timedelta(seconds=45 * 200)
    code, _, _ = run(capsys, "--capture", capture, "--baseline", baseline_path, "--out", tmp_path / "o",
                     "--since", since.isoformat())
    doc = json.loads((tmp_path / "o" / "drift.json").read_text())
    assert code == 0
    assert doc["capture"]["records"] == 100 and doc["capture"]["before_since"] == 200
    assert doc["since"] == "2026-11-21T08:30:00Z" and doc["capture"]["first"] == doc["since"]


def test_bad_capture_lines_are_reported_not_fatal(capsys, tmp_path, baseline_path, healthy_capture):
    capture, _ = healthy_capture
    torn = capture_line([0.9, 0.1], START)[:40]
    (capture / capture_key(START, "torn")).write_text(f"{torn}\n{capture_line([0.9, 0.1], START)}\n")

    code, stdout, _ = run(capsys, "--capture", capture, "--baseline", baseline_path, "--out", tmp_path / "o")

    doc = json.loads((tmp_path / "o" / "drift.json").read_text())
    assert code == 0
    assert doc["capture"]["records"] == 301 and doc["capture"]["bad_lines"] == 1
    [example] = doc["capture"]["bad_line_examples"]
    assert example["source"].endswith("torn.jsonl") and example["line"] == 1
    assert any("1 capture lines could not be used" in w for w in doc["warnings"])
    assert "Bad capture lines" in (tmp_path / "o" / "report.html").read_text()
    assert "1 bad lines" in stdout


def test_few_predictions_carry_a_warning(capsys, tmp_path, baseline_path):
    capture = write_tree(tmp_path / "c", capture_files(healthy_probabilities(10, seed=4)))
    _, stdout, _ = run(capsys, "--capture", capture, "--baseline", baseline_path, "--out", tmp_path / "o")
    doc = json.loads((tmp_path / "o" / "drift.json").read_text())
    assert doc["capture"]["records"] == 10
    assert any(w.startswith("Only 10 live predictions") for w in doc["warnings"])
    assert "warning: Only 10 live predictions" in stdout


# --- exit code 2: usage and input errors -----------------------------------------------------


def test_empty_capture_folder_exits_2_with_a_clear_message(capsys, tmp_path, baseline_path):
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "--capture", tmp_path / "empty", "--baseline", baseline_path, "--out", tmp_path / "o")
    assert code == 2
    assert err.startswith("error: no capture records found in") and "0 .jsonl files" in err
    assert not (tmp_path / "o" / "report.html").exists()


def test_capture_with_only_bad_lines_exits_2_naming_the_problem(capsys, tmp_path, baseline_path):
    write_tree(tmp_path / "c", {capture_key(START, "x"): "{not json\n"})
    code, _, err = run(capsys, "--capture", tmp_path / "c", "--baseline", baseline_path, "--out", tmp_path / "o")
    assert code == 2 and "1 bad" in err and "first problem: not a JSON line" in err


def test_missing_baseline_exits_2(capsys, tmp_path, healthy_capture):
    capture, _ = healthy_capture
    code, _, err = run(capsys, "--capture", capture, "--baseline", tmp_path / "nope.json", "--out", tmp_path / "o")
    assert code == 2 and "baseline not found" in err and "nope.json" in err


def test_invalid_baseline_exits_2_naming_the_field(capsys, tmp_path, healthy_capture):
    capture, _ = healthy_capture
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"classes": ["bicycle", "motorcycle"], "probabilities": [[0.5, 0.3, 0.2]]}))
    code, _, err = run(capsys, "--capture", capture, "--baseline", bad, "--out", tmp_path / "o")
    assert code == 2 and "probabilities[0]" in err


@pytest.mark.parametrize("since", ["yesterday", "2026-13-01"])
def test_bad_since_exits_2(capsys, tmp_path, baseline_path, healthy_capture, since):
    capture, _ = healthy_capture
    code, _, err = run(capsys, "--capture", capture, "--baseline", baseline_path, "--out", tmp_path / "o",
                       "--since", since)
    assert code == 2 and f"--since is not an ISO-8601 time: '{since}'" in err


def test_since_after_all_traffic_exits_2(capsys, tmp_path, baseline_path, healthy_capture):
    capture, _ = healthy_capture
    code, _, err = run(capsys, "--capture", capture, "--baseline", baseline_path, "--out", tmp_path / "o",
                       "--since", "2027-01-01T00:00:00Z")
    assert code == 2 and "300 before --since" in err


@pytest.mark.parametrize("option, value", [("--threshold", "1.5"), ("--threshold", "0"), ("--psi-threshold", "-1")])
def test_out_of_range_thresholds_exit_2(capsys, tmp_path, baseline_path, healthy_capture, option, value):
    capture, _ = healthy_capture
    code, _, err = run(capsys, "--capture", capture, "--baseline", baseline_path, "--out", tmp_path / "o",
                       option, value)
    assert code == 2 and "threshold" in err


def test_out_that_is_a_file_exits_2(capsys, tmp_path, baseline_path, healthy_capture):
    capture, _ = healthy_capture
    (tmp_path / "taken").write_text("")
    code, _, err = run(capsys, "--capture", capture, "--baseline", baseline_path, "--out", tmp_path / "taken")
    assert code == 2 and "cannot create the output folder" in err


def test_missing_capture_option_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2
    assert "--capture" in capsys.readouterr().err


# --- AWS inputs (moto) ----------------------------------------------------------------------


def test_s3_capture_and_results_table_end_to_end(capsys, tmp_path, baseline_path, aws_env):
    probabilities = healthy_probabilities(120, seed=6)
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="capture-bucket")
        for key, text in capture_files(probabilities).items():
            s3.put_object(Bucket="capture-bucket", Key=f"datacapture/{key}", Body=text.encode())
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        dynamodb.create_table(
            TableName="results",
            KeySchema=[{"AttributeName": "bucket", "KeyType": "HASH"}, {"AttributeName": "key", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "bucket", "AttributeType": "S"},
                                  {"AttributeName": "key", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        for i, p in enumerate(probabilities):
            uploaded = START + timedelta(seconds=45 * i)
            outcome = "classified" if max(p) >= 0.93 else "needs_review"
            dynamodb.put_item(TableName="results", Item={
                "bucket": {"S": "intake"}, "key": {"S": f"{i}.png"}, "outcome": {"S": outcome},
                "label": {"S": "bicycle"}, "confidence": {"N": str(max(p))},
                "uploaded_at": {"S": uploaded.isoformat()},
                "recorded_at": {"S": (uploaded + timedelta(seconds=3)).isoformat()},
            })

        # No clients passed: the CLI makes its own, as it would against AWS.
        code, stdout, _ = run(capsys, "--capture", "s3://capture-bucket/datacapture", "--results-table", "results",
                              "--baseline", baseline_path, "--out", tmp_path / "o")

    out = tmp_path / "o"
    doc = json.loads((out / "drift.json").read_text())
    assert code == 0
    assert doc["capture"]["location"] == "s3://capture-bucket/datacapture" and doc["capture"]["records"] == 120
    reviewed = sum(max(p) < 0.93 for p in probabilities)
    assert doc["results"]["outcomes"] == {"classified": 120 - reviewed, "needs_review": reviewed, "failed": 0}
    assert doc["results"]["latency_seconds"]["p50"] == pytest.approx(3.0)
    assert set(doc["charts"]) == TIME_CHARTS | {"baseline_vs_live", "outcomes_over_time", "latency_over_time"}
    assert_pngs(out, doc["charts"].values())
    assert "Pipeline results (table <code>results</code>)" in (out / "report.html").read_text()
    assert f"results: {120 - reviewed} classified, {reviewed} needs_review, 0 failed" in stdout


def test_missing_results_table_exits_2(capsys, tmp_path, baseline_path, healthy_capture, aws_env):
    capture, _ = healthy_capture
    with mock_aws():
        code, _, err = run(capsys, "--capture", capture, "--results-table", "nope", "--baseline", baseline_path,
                           "--out", tmp_path / "o")
    assert code == 2 and "results table not found: nope" in err


# --- Python API (used by the local twin) ----------------------------------------------------


def test_build_report_accepts_a_naive_since_as_utc(tmp_path, baseline_path, healthy_capture):
    capture, _ = healthy_capture
    # 2026-11-21 08:30 without a zone: UTC, like every time SageMaker and the functions write.
    result = build_report(capture, baseline=baseline_path, out=tmp_path / "o", since=datetime(2026, 11, 21, 8, 30))
    assert result.document["capture"]["records"] == 100
    assert result.document["since"] == "2026-11-21T08:30:00Z"
    assert result.exit_code == 0 and result.report_path.is_file() and result.json_path.is_file()


def test_build_report_defaults_the_review_threshold_without_threshold_default(tmp_path, healthy_capture):
    capture, _ = healthy_capture
    baseline = tmp_path / "b.json"
    baseline.write_text(json.dumps(baseline_doc(healthy_probabilities(100, seed=1), threshold=None)))
    result = build_report(capture, baseline=baseline, out=tmp_path / "o")
    assert result.document["drift"]["threshold"] == 0.93


def test_build_report_raises_input_errors_for_the_caller(tmp_path, baseline_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(MonitoringInputError, match="no capture records"):
        build_report(tmp_path / "empty", baseline=baseline_path, out=tmp_path / "o")
