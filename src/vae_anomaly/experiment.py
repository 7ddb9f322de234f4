"""The seed's whole run: data -> detector -> scores -> thresholds -> metrics (the report writes it)."""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import __version__
from .config import RunConfig
from .datasets import Dataset, SeedSplit, check_classes, load_dataset, parse_classes, seed_split
from .detector import NORMAL_ONLY_RULES, VAEAnomalyDetector
from .metrics import classification_metrics, ranking_metrics, score_statistics
from .models import build_model, model_summary
from .thresholds import best_valid_accuracy_grid, is_anomaly

log = logging.getLogger(__name__)

#: Format version of metrics.json.
METRICS_FORMAT_VERSION = 1


@dataclass
class ExperimentResult:
    """Everything a run produced, in memory; ``report.write_run`` turns it into the run folder."""

    config: RunConfig
    dataset: Dataset
    split: SeedSplit
    detector: VAEAnomalyDetector
    scores: dict[str, np.ndarray]  # normal_train, valid, test (aligned with the split's arrays)
    metrics: dict[str, Any]  # the content of metrics.json
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def selected_rule(self) -> str:
        return self.config.threshold.rule

    @property
    def threshold(self) -> float:
        return self.detector.threshold_


def prepare_data(config: RunConfig, *, progress: bool = False) -> tuple[Dataset, SeedSplit]:
    """Load the dataset of ``config`` and make the seed's selection and split."""
    data = config.data
    dataset = load_dataset(
        data.dataset,
        data_dir=data.data_dir,
        test_fraction=data.test_fraction,
        seed=config.seed,
        download=data.download,
        progress=progress,
    )
    normal = parse_classes(data.normal, dataset.class_names, option="--normal")
    abnormal = parse_classes(data.abnormal, dataset.class_names, option="--abnormal")
    check_classes(normal, abnormal, class_names=dataset.class_names)
    split = seed_split(
        dataset, normal, abnormal, valid_fraction=data.valid_fraction, seed=config.seed
    )
    return dataset, split


def split_text(split: SeedSplit) -> str:
    """The split's sizes in one line, e.g. for ``--verbose``."""
    n = split.summary()
    return (
        f"{n['normal_train']} normal training images; validation {n['valid']} "
        f"({n['valid_normal']} normal, {n['valid_abnormal']} abnormal); test {n['test']} "
        f"({n['test_normal']} normal, {n['test_abnormal']} abnormal)"
    )


def run_experiment(
    config: RunConfig,
    *,
    progress: bool = False,
    announce: Callable[[str], None] | None = None,
) -> ExperimentResult:
    """Reproduce the seed experiment with ``config``: train on normal images, score validation and
    test images, compute every threshold rule, and measure each on the test set.

    ``announce`` receives the model summary once the data (and so the image shape) are known,
    before training starts.
    """
    config.validate()
    timings: dict[str, float] = {}
    start = time.perf_counter()
    dataset, split = prepare_data(config, progress=progress)
    timings["load_data_s"] = time.perf_counter() - start
    log.info("data: %s from %s; %s", dataset.name, dataset.source, split_text(split))
    if announce is not None:
        m = config.model
        announce(model_summary(build_model(m.name, dataset.image_shape, m.hidden, m.latent_dim)))

    detector = VAEAnomalyDetector.from_config(config, progress=progress)
    detector.fit(split.normal_train_x, validation_data=split.normal_valid_x)
    detector.data_info_ = describe_data(config, dataset, split)
    timings["train_s"] = detector.train_seconds_

    t = time.perf_counter()
    scores = {
        "normal_train": detector.normal_train_scores_,
        "valid": detector.score_samples(split.valid_x),
        "test": detector.score_samples(split.test_x),
    }
    detector.calibrate(split.valid_x, split.valid_is_anomaly, rule=config.threshold.rule)
    timings["score_s"] = time.perf_counter() - t
    metrics = build_metrics(config, dataset, split, detector, scores)
    timings["total_s"] = time.perf_counter() - start
    metrics["timings"] = timings
    return ExperimentResult(config, dataset, split, detector, scores, metrics, timings)


def build_metrics(
    config: RunConfig,
    dataset: Dataset,
    split: SeedSplit,
    detector: VAEAnomalyDetector,
    scores: dict[str, np.ndarray],
) -> dict[str, Any]:
    """The content of metrics.json: thresholds with their test metrics, score statistics, AUROC/AP."""
    valid, test = scores["valid"], scores["test"]
    valid_anomaly, test_anomaly = split.valid_is_anomaly, split.test_is_anomaly
    thresholds = {}
    for rule, threshold in detector.thresholds_.items():
        thresholds[rule] = {
            "seed_name": threshold.seed_name,
            "description": threshold.description,
            "value": threshold.value,
            "fallback": threshold.fallback,
            "valid": classification_metrics(valid_anomaly, is_anomaly(valid, threshold.value)),
            "test": classification_metrics(test_anomaly, is_anomaly(test, threshold.value)),
        }
    sweep = None
    normal_valid, abnormal_valid = valid[~valid_anomaly], valid[valid_anomaly]
    if len(abnormal_valid) and len(normal_valid) and abnormal_valid.mean() > normal_valid.mean():
        _, candidates, accuracies = best_valid_accuracy_grid(normal_valid, abnormal_valid)
        sweep = {"candidates": candidates.tolist(), "accuracies": accuracies.tolist()}
    history = detector.history_
    data = describe_data(config, dataset, split)
    return {
        "format_version": METRICS_FORMAT_VERSION,
        "package_version": __version__,
        "versions": _versions(),
        "seed": config.seed,
        "device": str(next(detector.model_.parameters()).device),
        "dataset": {
            "name": data.pop("dataset"),
            **data,
            "image_shape": list(detector.image_shape_),
        },
        "model": {"name": config.model.name, **detector.training_summary_},
        "score": {
            "name": config.score.score,
            "sampled": config.score.sample,
            "note": "decoded from a random sample of the codings (like the seed's Keras model)"
            if config.score.sample
            else "decoded from the codings mean (deterministic)",
        },
        "training": {
            "epochs": len(history.train_loss),
            "best_epoch": history.best_epoch,
            "final_train_loss": history.train_loss[-1],
            "best_valid_loss": min(history.valid_loss) if history.valid_loss else None,
            "median_epoch_s": float(np.median(history.epoch_seconds)),
        },
        "selected_threshold": config.threshold.rule,
        "thresholds": thresholds,
        "ranking": {
            "valid": ranking_metrics(valid_anomaly, valid),
            "test": ranking_metrics(test_anomaly, test),
        },
        "score_statistics": {
            "normal_train": score_statistics(scores["normal_train"]),
            "valid": score_statistics(valid),
            "normal_valid": score_statistics(normal_valid),
            "abnormal_valid": score_statistics(abnormal_valid),
            "test": score_statistics(test),
            "normal_test": score_statistics(test[~test_anomaly]),
            "abnormal_test": score_statistics(test[test_anomaly]),
        },
        "threshold_sweep": sweep,
        "conventions": {
            "score": "higher = more anomalous; an image is an anomaly when score >= threshold",
            "confusion_matrix": "rows = label (F = abnormal, T = normal), columns = prediction (F, T), as the seed",
            "precision_recall_f1": "positive = normal (T), as the seed printed them; *_anomaly: positive = anomaly",
            "auroc_ap": "positive = anomaly, ranked by score",
        },
    }


def _versions() -> dict[str, str]:
    import sklearn
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "platform": platform.platform(),
    }


def train_detector(
    config: RunConfig,
    *,
    normal_given: bool = True,
    abnormal_given: bool = True,
    rule_given: bool = True,
    target_fpr_given: bool = False,
    size: tuple[int, int] | None = None,
    grayscale: bool = False,
    progress: bool = False,
) -> tuple[VAEAnomalyDetector, Dataset, SeedSplit]:
    """Train a detector on the normal classes of ``config``'s dataset (the ``train`` command).

    Classes the user did not give take these defaults: without abnormal classes the threshold
    comes from a normal-only rule (``train_mean_2.5std``, or ``normal_quantile`` when a target FPR
    was given); without normal classes every class that has training images and is not abnormal
    is normal (so in a ``train/``, ``test/`` layout, the classes under ``train/``). With abnormal
    classes the threshold is calibrated on the validation split with ``config.threshold.rule``.
    Images are resized to ``size`` (H, W) and/or converted to grayscale when asked.

    Returns:
        ``(detector, dataset, split)``; the detector's ``data_info_`` describes the data.
    """
    from .errors import InputError
    from .images import conform_images

    dataset = load_dataset(
        config.data.dataset,
        data_dir=config.data.data_dir,
        test_fraction=config.data.test_fraction,
        seed=config.seed,
        download=config.data.download,
        progress=progress,
    )
    names = dataset.class_names
    abnormal_ids = (
        parse_classes(config.data.abnormal, names, option="--abnormal") if abnormal_given else ()
    )
    if normal_given:
        normal_ids = parse_classes(config.data.normal, names, option="--normal")
    else:  # every other class that has training images is normal (train/ holds normal classes)
        in_train = set(np.unique(dataset.y_train).tolist())
        normal_ids = tuple(i for i in range(len(names)) if i in in_train and i not in abnormal_ids)
        if not normal_ids:
            raise InputError(
                "`--abnormal` names every class that has training images; no class is left as normal."
            )
    if abnormal_ids:
        rule = config.threshold.rule
    elif rule_given:
        rule = config.threshold.rule
        if rule not in NORMAL_ONLY_RULES:
            raise InputError(
                f"--threshold-rule {rule} needs abnormal images; pass --abnormal CLASSES, or use "
                f"{' or '.join(NORMAL_ONLY_RULES)}."
            )
    else:
        rule = "normal_quantile" if target_fpr_given else "train_mean_2.5std"
    split = seed_split(
        dataset,
        normal_ids,
        abnormal_ids,
        valid_fraction=config.data.valid_fraction,
        seed=config.seed,
        allow_no_abnormal=True,
    )
    log.info("data: %s from %s; %s", dataset.name, dataset.source, split_text(split))
    channels = 1 if grayscale else dataset.image_shape[0]
    height, width = size or dataset.image_shape[1:]

    def prepare(images, part: str):
        if len(images) == 0:
            return images
        return conform_images(
            images,
            image_shape=(channels, height, width),
            resize=size is not None,
            grayscale=grayscale,
            source=f"{dataset.name} {part}",
        )

    fit_rule = rule if rule in NORMAL_ONLY_RULES else "train_mean_2.5std"
    detector = VAEAnomalyDetector.from_config(config, threshold_rule=fit_rule, progress=progress)
    detector.fit(
        prepare(split.normal_train_x, "training images"),
        validation_data=prepare(split.normal_valid_x, "validation images"),
    )
    if abnormal_ids:
        detector.calibrate(
            prepare(split.valid_x, "validation images"), split.valid_is_anomaly, rule=rule
        )
    detector.data_info_ = {
        **describe_data(config, dataset, split),
        "preprocessing": {
            "original_image_shape": list(dataset.image_shape),
            "resize": list(size) if size else None,
            "grayscale": grayscale,
        },
    }
    return detector, dataset, split


def describe_data(config: RunConfig, dataset: Dataset, split: SeedSplit) -> dict[str, Any]:
    """The dataset, its classes and the split (with its fractions, so that ``evaluate`` splits the
    same way): what a saved detector records of its data (``data_info_``) and metrics.json shows."""
    names = dataset.class_names
    return {
        "dataset": dataset.name,
        "source": dataset.source,
        "class_names": list(names),
        "normal": [int(c) for c in split.normal],
        "normal_names": [names[c] for c in split.normal],
        "abnormal": [int(c) for c in split.abnormal],
        "abnormal_names": [names[c] for c in split.abnormal],
        "valid_fraction": config.data.valid_fraction,
        "test_fraction": config.data.test_fraction,
        "split": split.summary(),
    }


def evaluate_saved_model(
    model_path: str,
    data: str,
    *,
    normal: list[str] | None = None,
    abnormal: list[str] | None = None,
    data_dir: str | None = None,
    resize: bool = False,
    grayscale: bool = False,
    device: str = "auto",
    download: bool = True,
    progress: bool = False,
) -> ExperimentResult:
    """Score the validation and test parts of labelled data with a saved detector, at its saved
    thresholds: the metrics of a run, without training.

    The data are split as ``train`` split them (the model's seed and fractions). The classes come
    from ``normal``/``abnormal``, else from the model's metadata (``train`` and ``run`` save them).

    Raises:
        InputError: No abnormal classes known, or images that do not fit the model (without
            ``resize``/``grayscale``).
        ModelFileError: The model file is not a readable vae-anomaly model.
    """
    from .errors import InputError
    from .images import conform_images

    start = time.perf_counter()
    detector = VAEAnomalyDetector.load(model_path, device=device)
    meta = detector.saved_metadata_
    info = detector.data_info_ or meta.get("dataset") or {}  # older runs saved only "dataset"
    config = RunConfig()
    config.seed = detector.seed
    config.data.valid_fraction = info.get("valid_fraction", config.data.valid_fraction)
    config.data.test_fraction = info.get("test_fraction", config.data.test_fraction)
    config.model.name = detector.model
    config.score.score, config.score.sample = detector.score, detector.sample
    config.threshold.rule = detector.threshold_rule_
    dataset = load_dataset(
        data,
        data_dir=data_dir,
        test_fraction=config.data.test_fraction,
        seed=config.seed,
        download=download,
        progress=progress,
    )
    normal_spec = normal if normal is not None else info.get("normal_names")
    abnormal_spec = abnormal if abnormal is not None else info.get("abnormal_names")
    if not normal_spec:
        raise InputError(f"{model_path} does not record its normal classes; pass --normal.")
    if not abnormal_spec:
        raise InputError(
            f"{model_path} was trained without abnormal classes; pass --abnormal CLASSES to "
            "say which images of the data are anomalies."
        )
    split = seed_split(
        dataset,
        normal_spec,
        abnormal_spec,
        valid_fraction=config.data.valid_fraction,
        seed=config.seed,
    )

    def scores_of(images: np.ndarray, part: str) -> np.ndarray:
        if len(images) == 0:
            return np.empty(0, np.float32)
        fitted = conform_images(
            images,
            image_shape=detector.image_shape_,
            resize=resize,
            grayscale=grayscale,
            source=f"{dataset.name} {part} images",
        )
        return detector.score_samples(fitted)

    scores = {
        "normal_train": scores_of(split.normal_train_x, "training"),
        "valid": scores_of(split.valid_x, "validation"),
        "test": scores_of(split.test_x, "test"),
    }
    metrics = build_metrics(config, dataset, split, detector, scores)
    timings = {"total_s": time.perf_counter() - start}
    metrics["timings"] = timings
    metrics["model_path"] = str(model_path)
    return ExperimentResult(config, dataset, split, detector, scores, metrics, timings)
