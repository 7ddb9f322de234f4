import numpy as np
import pytest

from vae_anomaly.metrics import classification_metrics, ranking_metrics, score_statistics


def test_hand_worked_confusion_matrix_in_the_seed_convention():
    true_anomaly = np.array([1, 1, 1, 0, 0, 0, 0, 0], bool)
    predicted = np.array([1, 1, 0, 1, 0, 0, 0, 0], bool)
    m = classification_metrics(true_anomaly, predicted)
    # rows = label (F = abnormal, T = normal), columns = predicted (F, T)
    assert m["confusion_matrix"] == [[2, 1], [1, 4]]
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["precision"] == pytest.approx(4 / 5)  # positive = normal
    assert m["recall"] == pytest.approx(4 / 5)
    assert m["f1"] == pytest.approx(4 / 5)
    assert m["precision_anomaly"] == pytest.approx(2 / 3)
    assert m["recall_anomaly"] == pytest.approx(2 / 3)
    assert m["f1_anomaly"] == pytest.approx(2 / 3)


def test_seed_published_matrix_gives_seed_published_rates():
    # the seed's threshold5 test result: [[895, 105], [215, 2785]]
    true_anomaly = np.r_[np.ones(1000, bool), np.zeros(3000, bool)]
    predicted = np.r_[
        np.ones(895, bool), np.zeros(105, bool), np.ones(215, bool), np.zeros(2785, bool)
    ]
    m = classification_metrics(true_anomaly, predicted)
    assert m["confusion_matrix"] == [[895, 105], [215, 2785]]
    assert m["accuracy"] == pytest.approx(0.92)
    assert m["precision"] == pytest.approx(0.96367, abs=5e-6)
    assert m["recall"] == pytest.approx(0.92833, abs=5e-6)


def test_ranking_metrics():
    m = ranking_metrics(np.array([0, 0, 1, 1], bool), np.array([0.1, 0.4, 0.35, 0.8]))
    assert m["auroc"] == pytest.approx(0.75)  # 3 of 4 pairs ordered
    assert m["average_precision"] == pytest.approx((1 + 2 / 3) / 2)
    assert ranking_metrics(np.array([0, 0], bool), np.array([0.1, 0.2])) == {
        "auroc": None,
        "average_precision": None,
    }


def test_score_statistics():
    s = score_statistics(np.array([1.0, 2.0, 3.0, 4.0]))
    assert s == {
        "count": 4,
        "mean": 2.5,
        "std": pytest.approx(np.sqrt(1.25)),
        "min": 1.0,
        "median": 2.5,
        "max": 4.0,
    }
    assert score_statistics(np.empty(0))["mean"] is None
