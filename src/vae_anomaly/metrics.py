"""Metrics through ``sklearn.metrics``: the seed's table (positive = normal) and anomaly-positive ones."""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm


def classification_metrics(true_anomaly: np.ndarray, predicted_anomaly: np.ndarray) -> dict:
    """Confusion matrix and rates of a set of predictions.

    The seed's convention is kept for its table: label T = normal is the positive class, and the
    confusion matrix has rows = label (F, T) and columns = prediction (F, T), i.e.
    ``[[abnormal flagged, abnormal passed], [normal flagged, normal passed]]``.
    ``precision``, ``recall`` and ``f1`` use that convention (as the seed printed them);
    ``*_anomaly`` use anomaly as the positive class (the usual one in anomaly detection).

    Args:
        true_anomaly: ``(N,)`` bool, True = anomaly.
        predicted_anomaly: ``(N,)`` bool, True = flagged.
    """
    true_normal = ~np.asarray(true_anomaly, dtype=bool)
    pred_normal = ~np.asarray(predicted_anomaly, dtype=bool)
    kwargs = {"zero_division": 0.0}
    return {
        "confusion_matrix": skm.confusion_matrix(
            true_normal, pred_normal, labels=[False, True]
        ).tolist(),
        "accuracy": float(skm.accuracy_score(true_normal, pred_normal)),
        "precision": float(skm.precision_score(true_normal, pred_normal, **kwargs)),
        "recall": float(skm.recall_score(true_normal, pred_normal, **kwargs)),
        "f1": float(skm.f1_score(true_normal, pred_normal, **kwargs)),
        "precision_anomaly": float(skm.precision_score(~true_normal, ~pred_normal, **kwargs)),
        "recall_anomaly": float(skm.recall_score(~true_normal, ~pred_normal, **kwargs)),
        "f1_anomaly": float(skm.f1_score(~true_normal, ~pred_normal, **kwargs)),
    }


def ranking_metrics(true_anomaly: np.ndarray, scores: np.ndarray) -> dict:
    """Threshold-free AUROC and average precision (anomaly = positive, higher score = more anomalous).

    Both are None when only one class is present.
    """
    true_anomaly = np.asarray(true_anomaly, dtype=bool)
    if true_anomaly.all() or not true_anomaly.any():
        return {"auroc": None, "average_precision": None}
    return {
        "auroc": float(skm.roc_auc_score(true_anomaly, scores)),
        "average_precision": float(skm.average_precision_score(true_anomaly, scores)),
    }


def score_statistics(scores: np.ndarray) -> dict:
    """Count, mean, std (population, like the seed), min, median and max of a score array."""
    s = np.asarray(scores, dtype=np.float64)
    if len(s) == 0:
        return {"count": 0, "mean": None, "std": None, "min": None, "median": None, "max": None}
    return {
        "count": int(len(s)),
        "mean": float(s.mean()),
        "std": float(s.std()),
        "min": float(s.min()),
        "median": float(np.median(s)),
        "max": float(s.max()),
    }
