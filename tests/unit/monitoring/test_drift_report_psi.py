"""PSI and the drift figures: what decides the report's verdict and the CLI's exit code."""

import math

import numpy as np
import pytest

from drift_report_helpers import CLASSES, healthy_probabilities, shifted_probabilities
from monitoring.drift import (
    PSI_PSEUDOCOUNT,
    compute_drift,
    confidence_bins,
    low_confidence_rate,
    psi,
    psi_flag,
    psi_of_counts,
    smoothed_shares,
)


def test_psi_of_identical_distributions_is_zero():
    mix = [0.3, 0.5, 0.2]
    assert psi(mix, mix) == pytest.approx(0.0, abs=1e-12)


def test_psi_matches_a_hand_computed_value():
    # (0.8-0.5)*ln(0.8/0.5) + (0.2-0.5)*ln(0.2/0.5) = 0.3*ln(1.6) + 0.3*ln(2.5) = 0.3*ln(4)
    assert psi([0.5, 0.5], [0.8, 0.2]) == pytest.approx(0.3 * math.log(4), rel=1e-12)
    assert psi([0.5, 0.5], [0.8, 0.2]) == pytest.approx(0.41589, abs=1e-5)


def test_psi_is_symmetric():
    assert psi([0.7, 0.2, 0.1], [0.4, 0.4, 0.2]) == pytest.approx(psi([0.4, 0.4, 0.2], [0.7, 0.2, 0.1]))


def test_counts_are_smoothed_with_half_an_observation_per_bin():
    # Jeffreys: (count + 0.5) / (n + 0.5 * bins).
    assert PSI_PSEUDOCOUNT == 0.5
    assert smoothed_shares([3, 0, 1]).tolist() == pytest.approx([3.5 / 5.5, 0.5 / 5.5, 1.5 / 5.5])
    e, a = smoothed_shares([10, 10, 0]), smoothed_shares([10, 5, 5])
    expected = sum((ai - ei) * math.log(ai / ei) for ei, ai in zip(e, a))
    assert psi_of_counts([10, 10, 0], [10, 5, 5]) == pytest.approx(expected, rel=1e-12)
    assert math.isfinite(expected)
    assert psi_of_counts([10, 10, 0], [10, 10, 0]) == pytest.approx(0.0, abs=1e-12)


def test_a_few_images_missing_from_rare_bins_are_not_drift():
    # The demo's case: 24 in-distribution images leave the baseline's rare low-confidence bins empty.
    # A floor at 1e-4 turned those empty bins into PSI 0.29 ("significant"); smoothing keeps it small.
    baseline, live = [0, 2, 2, 6, 11, 9, 24, 146], [0, 0, 0, 0, 1, 1, 2, 20]
    assert psi_of_counts(baseline, live) < 0.1
    # A real loss of confidence in the same number of images still shows.
    assert psi_of_counts(baseline, [0, 3, 0, 3, 1, 2, 3, 12]) > 0.25


def test_psi_needs_positive_shares_so_callers_smooth_counts_first():
    with pytest.raises(ValueError, match="smoothed_shares"):
        psi([0.5, 0.5, 0.0], [0.5, 0.25, 0.25])


def test_psi_rejects_vectors_over_different_bins():
    with pytest.raises(ValueError):
        psi([0.5, 0.5], [0.2, 0.3, 0.5])
    with pytest.raises(ValueError):
        psi([1.2, -0.2], [0.5, 0.5])


@pytest.mark.parametrize(
    "value, flag",
    [(0.0, "none"), (0.0999, "none"), (0.1, "moderate"), (0.25, "moderate"), (0.2501, "significant"),
     (4.0, "significant")],
)
def test_psi_flag_follows_the_0_1_and_0_25_thresholds(value, flag):
    assert psi_flag(value) == flag


def test_confidence_bins_are_left_closed_and_the_last_bin_holds_certainty():
    bins = confidence_bins(np.array([0.5, 0.59, 0.95, 0.99, 1.0]))
    # edges 0, .5, .6, .7, .8, .9, .95, .99, 1
    assert bins.tolist() == pytest.approx([0, 0.4, 0, 0, 0, 0, 0.2, 0.4])


def test_low_confidence_rate_counts_strictly_below_the_threshold():
    # The pipeline sends an image to review when its confidence is below the threshold, not at it.
    assert low_confidence_rate(np.array([0.92, 0.93, 0.99, 0.5]), 0.93) == pytest.approx(0.5)


def test_same_model_on_fresh_traffic_is_not_flagged():
    # Two independent samples from one healthy model: sampling noise alone must not alert.
    figures = compute_drift(healthy_probabilities(400, seed=1), healthy_probabilities(300, seed=2), CLASSES, 0.93)
    assert figures.psi_class_mix < 0.1
    assert figures.psi_confidence < 0.1
    assert figures.flag == "none"
    assert not figures.drift_detected


def test_identical_traffic_gives_zero_psi_on_both_distributions():
    probabilities = healthy_probabilities(200, seed=5)
    figures = compute_drift(probabilities, probabilities, CLASSES, 0.93)
    assert figures.psi_class_mix == pytest.approx(0.0, abs=1e-12)
    assert figures.psi_confidence == pytest.approx(0.0, abs=1e-12)
    assert figures.baseline_low_confidence_rate == figures.live_low_confidence_rate


def test_one_class_at_low_confidence_is_significant_drift():
    figures = compute_drift(healthy_probabilities(400, seed=1), shifted_probabilities(200, seed=3), CLASSES, 0.93)
    assert figures.live_class_mix == [0.0, 1.0]
    assert figures.live_low_confidence_rate == 1.0
    assert figures.psi_class_mix > 0.25 and figures.psi_confidence > 0.25
    assert figures.flag == "significant"
    assert figures.drift_detected
    assert figures.to_dict()["drift_detected"] is True


def test_drift_is_decided_against_the_callers_psi_threshold():
    # A moderate class-mix shift: 70/30 against a balanced baseline.
    base = [[0.97, 0.03]] * 50 + [[0.03, 0.97]] * 50
    live = [[0.97, 0.03]] * 70 + [[0.03, 0.97]] * 30
    strict = compute_drift(base, live, CLASSES, 0.93, psi_threshold=0.05)
    lenient = compute_drift(base, live, CLASSES, 0.93, psi_threshold=0.25)
    # Smoothed shares: (70.5, 30.5) / 101 against (50.5, 50.5) / 101.
    assert strict.psi_class_mix == pytest.approx(
        (20 / 101) * math.log(70.5 / 50.5) - (20 / 101) * math.log(30.5 / 50.5))
    assert strict.flag_class_mix == "moderate"
    assert strict.drift_detected and not lenient.drift_detected


def test_compute_drift_rejects_outputs_with_the_wrong_number_of_classes():
    with pytest.raises(ValueError, match="live probabilities"):
        compute_drift([[0.9, 0.1]], [[0.8, 0.1, 0.1]], CLASSES, 0.93)
