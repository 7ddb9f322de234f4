import numpy as np
import pytest

from vae_anomaly.config import THRESHOLD_RULE_NAMES
from vae_anomaly.thresholds import (
    RULES,
    ScoreSets,
    abnormal_valid_mean_minus_std,
    best_valid_accuracy_exact,
    best_valid_accuracy_grid,
    compute_all_thresholds,
    compute_threshold,
    is_anomaly,
    normal_quantile,
    normal_valid_mean_plus_std,
    train_mean_std,
    valid_midpoint,
)


@pytest.mark.parametrize(
    ("fn", "args", "expected"),
    [
        (train_mean_std, ([1, 2, 3, 4],), 2.5 + 2.5 * np.sqrt(1.25)),  # population std
        (abnormal_valid_mean_minus_std, ([2, 4],), 2.0),
        (normal_valid_mean_plus_std, ([0, 2],), 2.0),
        (valid_midpoint, ([0, 2], [4, 8]), 3.0),  # (2 + (6 - 2)) / 2
        (normal_quantile, ([0, 1, 2, 3, 4], 0.25), 3.0),  # 75th percentile, linear
    ],
)
def test_rules_against_hand_computed_values(fn, args, expected):
    assert fn(*args) == pytest.approx(expected)


def test_exact_sweep_takes_lowest_best_cut_and_midpoint():
    normal = [0.1, 0.2, 0.3, 0.6]
    abnormal = [0.5, 0.7, 0.8]
    scores = np.array(normal + abnormal)
    anomaly = np.array([False] * 4 + [True] * 3)
    threshold, accuracy = best_valid_accuracy_exact(scores, anomaly)
    # cuts at 0.4 and 0.65 both give 6/7; the lower one wins, midway between 0.3 and 0.5
    assert threshold == pytest.approx(0.4)
    assert accuracy == pytest.approx(6 / 7)
    assert np.mean(is_anomaly(scores, threshold) == anomaly) == pytest.approx(6 / 7)


def test_exact_sweep_handles_all_one_side_and_ties():
    # all anomalies score lowest: flagging nothing (t above the max) is best = 2/3 correct
    threshold, accuracy = best_valid_accuracy_exact(
        np.array([0.1, 0.5, 0.5]), np.array([True, False, False])
    )
    assert accuracy == pytest.approx(2 / 3)
    assert not is_anomaly(np.array([0.5]), threshold)[0]
    # equal scores cannot be split
    threshold, accuracy = best_valid_accuracy_exact(
        np.array([0.2, 0.2, 0.9]), np.array([False, True, True])
    )
    assert accuracy == pytest.approx(2 / 3)


def test_exact_sweep_is_at_least_as_good_as_the_grid():
    rng = np.random.default_rng(0)
    normal, abnormal = rng.normal(0.05, 0.02, 500), rng.normal(0.11, 0.02, 150)
    grid_t, candidates, accuracies = best_valid_accuracy_grid(normal, abnormal)
    scores = np.concatenate([normal, abnormal])
    anomaly = np.r_[np.zeros(500, bool), np.ones(150, bool)]
    exact_t, exact_acc = best_valid_accuracy_exact(scores, anomaly)
    assert exact_acc >= accuracies.max()
    assert exact_acc == pytest.approx(np.mean(is_anomaly(scores, exact_t) == anomaly))


def test_grid_follows_the_seed():
    normal, abnormal = np.array([0.0, 0.2]), np.array([0.9, 1.1])
    threshold, candidates, accuracies = best_valid_accuracy_grid(normal, abnormal)
    np.testing.assert_allclose(candidates, np.arange(0.1, 1.0, 0.9 / 100))
    # the first grid point above 0.2 separates perfectly: 0.1 + 12 * 0.009
    assert threshold == pytest.approx(0.1 + 12 * 0.009)
    assert accuracies.max() == 1.0


def test_registry_matches_config_names_and_seed_names():
    assert tuple(RULES) == THRESHOLD_RULE_NAMES
    seed_names = [RULES[r].seed_name for r in THRESHOLD_RULE_NAMES[:5]]
    assert seed_names == ["threshold1", "threshold2", "threshold3", "threshold4", "threshold5"]


def test_missing_abnormal_validation_warns_and_falls_back():
    sets = ScoreSets(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 3.0]), np.empty(0))
    with pytest.warns(
        UserWarning, match="no abnormal valid scores; falling back to train_mean_2.5std"
    ):
        t = compute_threshold("best_valid_accuracy", sets)
    assert t.value == pytest.approx(train_mean_std([1, 2, 3, 4]))
    assert "used train_mean_2.5std" in t.fallback
    with pytest.warns(UserWarning):
        all_rules = compute_all_thresholds(sets)
    assert all_rules["normal_valid_mean_plus_std"].fallback is None
    assert all_rules["normal_valid_mean_plus_std"].value == pytest.approx(3.0)


def test_inverted_means_fall_back_for_the_grid():
    sets = ScoreSets(np.array([1.0, 2.0]), np.array([5.0, 6.0]), np.array([0.0, 1.0]))
    with pytest.warns(UserWarning, match="abnormal validation mean is not above"):
        t = compute_threshold("best_valid_accuracy", sets)
    assert t.fallback is not None
