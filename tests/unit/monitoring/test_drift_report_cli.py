"""`python -m monitoring` end to end: capture folder (or S3, results table) in; report, JSON, charts
and the exit code a scheduler alerts on out."""

import json
import math
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from drift_report_helpers import (
    START,
    capture_files,
    capture_key,
    capture_line,
    healthy_probabilities,
    shifted_probabilities,
    write_tree,
)
from monitoring import build_report
from monitoring.__main__ import main

TIME_CHARTS = {"confidence_over_time", "class_mix_over_time", "low_confidence_rate_over_time"}


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def shares(probabilities, n_classes=2):
    predicted = np.argmax(np.asarray(probabilities), axis=1)
    return [float(np.mean(predicted == k)) for k in range(n_classes)]


def smoothed(probabilities, n_classes=2):
    """Class shares as the report estimates them: half an observation added to every class."""
    predicted = np.argmax(np.asarray(probabilities), axis=1)
    return [(float(np.sum(predicted == k)) + 0.5) / (len(predicted) + 0.5 * n_classes) for k in range(n_classes)]


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
    # The class-mix PSI is the formula over the two smoothed mixes computed here from the raw inputs.
    smoothed_base, smoothed_live = smoothed(base), smoothed(probabilities)
    assert drift["psi_class_mix"] == pytest.approx(
        sum((y - x) * math.log(y / x) for x, y in zip(smoothed_base, smoothed_live)))
    assert sum(drift["live_confidence_bins"]) == pytest.approx(1.0)
    assert drift["threshold"] == 0.93  # the baseline's threshold_default
    live_conf = np.max(probabilities, axis=1)
    assert drift["live_low_confidence_rate"] == pytest.approx(float(np.mean(live_conf < 0.93)))
    assert drift["psi_max"] < 0.1
    assert doc["verdict"] == {"flag": "none", "drift_detected": False, "psi_max": drift["psi_max"],
                              "psi_threshold": 0.25, "live_n": 300, "min_predictions": 20, "exit_code": 0}
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


def test_too_few_predictions_give_not_enough_data_and_exit_4_even_when_shifted(capsys, tmp_path, baseline_path):
    capture = write_tree(tmp_path / "c", capture_files(shifted_probabilities(10, seed=4)))
    code, stdout, _ = run(capsys, "--capture", capture, "--baseline", baseline_path, "--out", tmp_path / "o")
    doc = json.loads((tmp_path / "o" / "drift.json").read_text())
    assert code == 4
    assert doc["verdict"]["flag"] == "not_enough_data" and doc["verdict"]["exit_code"] == 4
    assert doc["verdict"]["drift_detected"] is False and doc["verdict"]["live_n"] == 10
    assert doc["drift"]["flag"] == "significant"  # the figures are still there, just not a verdict
    assert "Not enough data for a drift verdict: 10 live predictions, fewer than the 20 needed" in stdout
    html = (tmp_path / "o" / "report.html").read_text()
    assert "Not enough data" in html and "Significant drift" not in html


def test_min_predictions_option_moves_the_bar(capsys, tmp_path, baseline_path):
    capture = write_tree(tmp_path / "c", capture_files(shifted_probabilities(10, seed=4)))
    code, _, _ = run(capsys, "--capture", capture, "--baseline", baseline_path, "--out", tmp_path / "o",
                     "--min-predictions", "10")
    assert code == 3
    code, _, err = run(capsys, "--capture", capture, "--baseline", baseline_path, "--out", tmp_path / "o",
                       "--min-predictions", "0")
    assert code == 2 and "at least 1" in err


def test_the_minimum_is_the_one_the_alarms_use():
    from samtranslator.yaml_helper import yaml_parse

    from monitoring.build import MIN_PREDICTIONS

    template = yaml_parse((Path(__file__).resolve().parents[3] / "template.yaml").read_text())
    assert MIN_PREDICTIONS == int(template["Parameters"]["MinimumPredictionsForRates"]["Default"])


def test_time_charts_with_one_bucket_span_the_data_and_draw_each_mean_among_its_points(
        tmp_path, baseline_path, monkeypatch):
    from matplotlib.dates import num2date

    from monitoring import charts

    figures = {}
    save = charts._save
    monkeypatch.setattr(charts, "_save", lambda fig, out, name: figures.setdefault(name, fig) and save(fig, out, name))
    # All 30 predictions within one minute, at :44 to :51 seconds: the demo's case.
    start = datetime(2026, 11, 21, 10, 15, 44)
    probabilities = healthy_probabilities(30, seed=5)
    files = {capture_key(start, "a.jsonl"): "".join(
        capture_line(p, start + timedelta(seconds=i / 4)) + "\n" for i, p in enumerate(probabilities))}
    result = build_report(write_tree(tmp_path / "c", files), baseline=baseline_path, out=tmp_path / "o")

    [bucket] = result.document["series"]["capture"]
    assert bucket["start"] == "2026-11-21T10:15:00Z"
    mean_at = datetime.fromisoformat(bucket["at"].replace("Z", "+00:00")).replace(tzinfo=None)
    assert start <= mean_at <= start + timedelta(seconds=8)  # among its points, not the bucket's middle (:30)
    for name in ("confidence_over_time.png", "class_mix_over_time.png", "low_confidence_rate_over_time.png"):
        left, right = (num2date(x).replace(tzinfo=None) for x in figures[name].axes[0].get_xlim())
        assert right - left < timedelta(minutes=2), name  # one minute of data, not years of axis
        assert left <= start and right >= start + timedelta(seconds=8), name
