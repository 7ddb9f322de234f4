"""The seed's five threshold rules and others, as pure functions of score arrays.

Convention: an image is flagged as an anomaly when ``score >= threshold`` (the seed: normal when
``score < threshold``). Standard deviations are population ones (``np.std``), as in the seed.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .config import THRESHOLD_RULE_NAMES


def is_anomaly(scores: np.ndarray, threshold: float) -> np.ndarray:
    """Flag ``scores >= threshold`` as anomalies: ``(N,)`` bool."""
    return np.asarray(scores) >= threshold


def train_mean_std(normal_train_scores: np.ndarray, k: float = 2.5) -> float:
    """threshold1: mean + ``k`` std of the normal training scores."""
    s = np.asarray(normal_train_scores, dtype=np.float64)
    return float(s.mean() + k * s.std())


def abnormal_valid_mean_minus_std(abnormal_valid_scores: np.ndarray) -> float:
    """threshold2: mean - std of the abnormal validation scores."""
    s = np.asarray(abnormal_valid_scores, dtype=np.float64)
    return float(s.mean() - s.std())


def normal_valid_mean_plus_std(normal_valid_scores: np.ndarray) -> float:
    """threshold3: mean + std of the normal validation scores."""
    s = np.asarray(normal_valid_scores, dtype=np.float64)
    return float(s.mean() + s.std())


def valid_midpoint(normal_valid_scores: np.ndarray, abnormal_valid_scores: np.ndarray) -> float:
    """threshold4: the average of threshold2 and threshold3."""
    return (
        abnormal_valid_mean_minus_std(abnormal_valid_scores)
        + normal_valid_mean_plus_std(normal_valid_scores)
    ) / 2


def accuracy_at(scores: np.ndarray, anomaly: np.ndarray, threshold: float) -> float:
    """Accuracy of flagging ``scores >= threshold`` against the true ``anomaly`` flags."""
    return float(np.mean(is_anomaly(scores, threshold) == np.asarray(anomaly, dtype=bool)))


def best_valid_accuracy_grid(
    normal_valid_scores: np.ndarray, abnormal_valid_scores: np.ndarray, steps: int = 100
) -> tuple[float, np.ndarray, np.ndarray]:
    """threshold5, the seed's way: the best validation accuracy over a grid of ``steps`` candidates.

    The grid is the seed's ``np.arange(normal_mean, abnormal_mean, (abnormal_mean - normal_mean) / steps)``;
    ties go to the first (lowest) candidate, like ``np.argmax``.

    Returns:
        ``(threshold, candidates, accuracies)``.
    """
    normal = np.asarray(normal_valid_scores, dtype=np.float64)
    abnormal = np.asarray(abnormal_valid_scores, dtype=np.float64)
    low, high = normal.mean(), abnormal.mean()
    if not high > low:
        raise ValueError("the abnormal validation mean is not above the normal one")
    candidates = np.arange(low, high, (high - low) / steps)
    scores = np.concatenate([normal, abnormal])
    anomaly = np.concatenate([np.zeros(len(normal), bool), np.ones(len(abnormal), bool)])
    accuracies = (scores[None, :] >= candidates[:, None]) == anomaly[None, :]
    accuracies = accuracies.mean(axis=1)
    return float(candidates[np.argmax(accuracies)]), candidates, accuracies


def best_valid_accuracy_exact(scores: np.ndarray, anomaly: np.ndarray) -> tuple[float, float]:
    """The threshold with the best accuracy over every cut point of the validation scores.

    Every distinct way of splitting the sorted scores is tried; the returned threshold lies midway
    between the two scores on either side of the best cut (ties: the lowest cut).

    Returns:
        ``(threshold, accuracy)``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    anomaly = np.asarray(anomaly, dtype=bool)
    order = np.argsort(scores, kind="stable")
    sorted_scores, sorted_anomaly = scores[order], anomaly[order]
    distinct = (
        np.flatnonzero(np.diff(sorted_scores) > 0) + 1
    )  # cut positions between distinct scores
    cuts = np.concatenate([[0], distinct, [len(scores)]])  # cut at i: images [i:] are flagged
    normal_below = np.concatenate([[0], np.cumsum(~sorted_anomaly)])[cuts]
    anomaly_above = sorted_anomaly.sum() - np.concatenate([[0], np.cumsum(sorted_anomaly)])[cuts]
    accuracies = (normal_below + anomaly_above) / len(scores)
    best = int(np.argmax(accuracies))
    cut = cuts[best]
    if cut == 0:
        threshold = sorted_scores[0]
    elif cut == len(scores):
        threshold = np.nextafter(sorted_scores[-1], np.inf)
    else:
        threshold = (sorted_scores[cut - 1] + sorted_scores[cut]) / 2
    return float(threshold), float(accuracies[best])


def normal_quantile(normal_scores: np.ndarray, target_fpr: float = 0.05) -> float:
    """The ``1 - target_fpr`` quantile of normal scores: about ``target_fpr`` of normals get flagged."""
    return float(np.quantile(np.asarray(normal_scores, dtype=np.float64), 1 - target_fpr))


@dataclass(frozen=True)
class ScoreSets:
    """The score arrays the rules read: normal train, normal validation, abnormal validation."""

    normal_train: np.ndarray
    normal_valid: np.ndarray
    abnormal_valid: np.ndarray


@dataclass(frozen=True)
class Threshold:
    """One rule's threshold, with the name the seed gave it and the fallback used, if any."""

    rule: str
    seed_name: str | None  # "threshold1".."threshold5", or None for rules the seed did not have
    value: float
    description: str
    fallback: str | None = (
        None  # why this is another rule's value (e.g. no abnormal validation images)
    )


@dataclass(frozen=True)
class _Rule:
    seed_name: str | None
    description: str
    needs: tuple[str, ...]  # which score sets must be non-empty
    compute: Callable[[ScoreSets, float], float]


def _grid(sets: ScoreSets, _: float) -> float:
    return best_valid_accuracy_grid(sets.normal_valid, sets.abnormal_valid)[0]


def _exact(sets: ScoreSets, _: float) -> float:
    scores = np.concatenate([sets.normal_valid, sets.abnormal_valid])
    anomaly = np.concatenate(
        [np.zeros(len(sets.normal_valid), bool), np.ones(len(sets.abnormal_valid), bool)]
    )
    return best_valid_accuracy_exact(scores, anomaly)[0]


RULES: dict[str, _Rule] = {
    "train_mean_2.5std": _Rule(
        "threshold1", "mean + 2.5 std of the normal training scores", ("normal_train",),
        lambda s, _: train_mean_std(s.normal_train),
    ),
    "abnormal_valid_mean_minus_std": _Rule(
        "threshold2", "mean - std of the abnormal validation scores", ("abnormal_valid",),
        lambda s, _: abnormal_valid_mean_minus_std(s.abnormal_valid),
    ),
    "normal_valid_mean_plus_std": _Rule(
        "threshold3", "mean + std of the normal validation scores", ("normal_valid",),
        lambda s, _: normal_valid_mean_plus_std(s.normal_valid),
    ),
    "valid_midpoint": _Rule(
        "threshold4", "(threshold2 + threshold3) / 2", ("normal_valid", "abnormal_valid"),
        lambda s, _: valid_midpoint(s.normal_valid, s.abnormal_valid),
    ),
    "best_valid_accuracy": _Rule(
        "threshold5", "best validation accuracy over the seed's 100-step grid between the class means",
        ("normal_valid", "abnormal_valid"), _grid,
    ),
    "best_valid_accuracy_exact": _Rule(
        None, "best validation accuracy over every cut point", ("normal_valid", "abnormal_valid"), _exact,
    ),
    "normal_quantile": _Rule(
        None, "(1 - target FPR) quantile of the normal validation scores", ("normal_valid",),
        lambda s, fpr: normal_quantile(s.normal_valid, fpr),
    ),
}  # fmt: skip
assert tuple(RULES) == THRESHOLD_RULE_NAMES

FALLBACK_RULE = "train_mean_2.5std"


def compute_threshold(
    rule: str,
    sets: ScoreSets,
    *,
    target_fpr: float = 0.05,
    train_threshold: float | None = None,
) -> Threshold:
    """The threshold of ``rule``; when its data are missing it warns and falls back to threshold1.

    ``train_threshold`` is threshold1's value when the normal training scores themselves are gone
    (a loaded detector keeps the value, not the scores); it is used for that rule and the fallback.
    """
    spec = RULES[rule]
    if rule == FALLBACK_RULE and train_threshold is not None:
        return Threshold(rule, spec.seed_name, float(train_threshold), spec.description)
    missing = [name for name in spec.needs if len(getattr(sets, name)) == 0]
    reason = None
    if missing:
        reason = f"no {' and no '.join(m.replace('_', ' ') for m in missing)} scores"
    elif rule in ("best_valid_accuracy",) and not np.mean(sets.abnormal_valid) > np.mean(
        sets.normal_valid
    ):
        reason = "the abnormal validation mean is not above the normal one"
    if reason is None:
        return Threshold(rule, spec.seed_name, spec.compute(sets, target_fpr), spec.description)
    if rule == FALLBACK_RULE:
        raise ValueError("no normal training scores to compute any threshold from")
    warnings.warn(
        f"threshold rule {rule}: {reason}; falling back to {FALLBACK_RULE}.", stacklevel=2
    )
    value = (
        float(train_threshold)
        if train_threshold is not None
        else RULES[FALLBACK_RULE].compute(sets, target_fpr)
    )
    return Threshold(
        rule, spec.seed_name, value, spec.description, fallback=f"{reason}: used {FALLBACK_RULE}"
    )


def compute_all_thresholds(
    sets: ScoreSets, *, target_fpr: float = 0.05, train_threshold: float | None = None
) -> dict[str, Threshold]:
    """Every rule's threshold, in the order of ``config.THRESHOLD_RULE_NAMES`` (``train_threshold``:
    see :func:`compute_threshold`)."""
    return {
        rule: compute_threshold(rule, sets, target_fpr=target_fpr, train_threshold=train_threshold)
        for rule in RULES
    }
