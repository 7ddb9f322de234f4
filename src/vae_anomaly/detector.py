"""VAEAnomalyDetector: fit / calibrate / score_samples / predict / error_maps / save / load."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__
from .config import THRESHOLD_RULE_NAMES, RunConfig
from .errors import InputError, ModelFileError, NotFittedError
from .files import atomic_open, write_bytes_atomic
from .images import to_model_layout
from .metrics import score_statistics
from .models import build_model, count_parameters
from .runtime import resolve_device, set_threads
from .scoring import decode_codings, encode_means, error_maps, reconstruct_images, score_images
from .thresholds import (
    FALLBACK_RULE,
    RULES,
    ScoreSets,
    Threshold,
    compute_all_thresholds,
    compute_threshold,
)
from .training import History, train_vae

#: Version of the saved-model layout; a file of another version is refused.
FORMAT_VERSION = 1
#: Fewer normal training images than this make ``fit`` warn.
MIN_ADVISED_TRAIN_IMAGES = 20
#: Rules that need only normal images (usable right after ``fit``).
NORMAL_ONLY_RULES = ("train_mean_2.5std", "normal_quantile")
_MODEL_FILE = "model.safetensors"
_METADATA_FILE = "detector.json"
_METADATA_KEY = "vae_anomaly"


class VAEAnomalyDetector:
    """An image anomaly detector: a VAE trained on normal images scores each image by its
    reconstruction error; images scoring at or above ``threshold_`` are anomalies.

    Args:
        model: model name (``"mlp_vae"``: the seed's fully connected VAE).
        hidden: encoder layer widths (the decoder mirrors them).
        latent_dim: size of the codings.
        epochs, batch_size, learning_rate, rho, epsilon: RMSprop training, Keras's defaults.
        kl_weight: weight of the KL term (0: the seed; 1/784: Geron's book).
        score: score name (``"mae"``: mean absolute reconstruction error).
        sample: score from a sampled coding (random) instead of the codings mean (deterministic).
        threshold_rule: rule applied by ``fit`` (``"train_mean_2.5std"`` or ``"normal_quantile"``);
            ``calibrate`` can apply any rule with labelled data.
        target_fpr: false-positive rate aimed at by ``normal_quantile``.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        threads: CPU threads for torch (None: torch's default).
        compile: compile the training step with ``torch.compile`` (faster epochs after several
            seconds of compilation; results equal to float tolerance, not to the bit).
        precision: ``"fp32"``, or ``"bf16"`` to train the layers in bfloat16 (float32 weights and
            loss; faster on CPUs with AVX512-BF16/AMX and on recent GPUs). Scoring is float32.
        score_batch_size: images per scoring batch.
        seed: seeds the weights and the batch order (a CPU run is repeatable).
        progress: show a progress bar while training.

    Fitted attributes (set by ``fit``): ``model_``, ``image_shape_`` ``(C, H, W)``, ``history_``,
    ``normal_train_scores_``, ``normal_valid_scores_``, ``threshold_``, ``threshold_rule_``,
    ``thresholds_`` (every rule, after ``calibrate``), ``fit_seconds_``, ``training_summary_``.

    ``data_info_`` (a dict, empty by default) describes the training data for the saved metadata:
    the CLI's ``train`` fills in the dataset, its class names, the normal/abnormal classes, the
    split and the preprocessing (resize, grayscale); ``load`` restores it.
    """

    def __init__(
        self,
        *,
        model: str = "mlp_vae",
        hidden: tuple[int, ...] = (256, 128, 64),
        latent_dim: int = 16,
        epochs: int = 100,
        batch_size: int = 128,
        learning_rate: float = 1e-3,
        rho: float = 0.9,
        epsilon: float = 1e-7,
        kl_weight: float = 0.0,
        score: str = "mae",
        sample: bool = False,
        threshold_rule: str = "train_mean_2.5std",
        target_fpr: float = 0.05,
        device: str = "auto",
        threads: int | None = None,
        compile: bool = False,
        precision: str = "fp32",
        score_batch_size: int = 1024,
        seed: int = 0,
        progress: bool = False,
    ) -> None:
        self.model = model
        self.hidden = tuple(hidden)
        self.latent_dim = latent_dim
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.rho = rho
        self.epsilon = epsilon
        self.kl_weight = kl_weight
        self.score = score
        self.sample = sample
        self.threshold_rule = threshold_rule
        self.target_fpr = target_fpr
        self.device = device
        self.threads = threads
        self.compile = compile
        self.precision = precision
        self.score_batch_size = score_batch_size
        self.seed = seed
        self.progress = progress

    # -- parameters -------------------------------------------------------------------------------

    def get_params(self) -> dict[str, Any]:
        """The constructor's arguments (like scikit-learn's ``get_params``)."""
        return {name: getattr(self, name) for name in _PARAM_NAMES}

    @classmethod
    def from_config(cls, config: RunConfig, **overrides: Any) -> VAEAnomalyDetector:
        """A detector with the settings of a run config."""
        params = dict(
            model=config.model.name,
            hidden=tuple(config.model.hidden),
            latent_dim=config.model.latent_dim,
            epochs=config.train.epochs,
            batch_size=config.train.batch_size,
            learning_rate=config.train.learning_rate,
            rho=config.train.rho,
            epsilon=config.train.epsilon,
            kl_weight=config.train.kl_weight,
            score=config.score.score,
            sample=config.score.sample,
            target_fpr=config.threshold.target_fpr,
            device=config.train.device,
            threads=config.train.threads,
            compile=config.train.compile,
            precision=config.train.precision,
            score_batch_size=config.score.batch_size,
            seed=config.seed,
        )
        params.update(overrides)
        return cls(**params)

    def _validate_params(self) -> None:
        config = RunConfig()
        config.seed = self.seed
        config.model = dataclasses.replace(
            config.model, name=self.model, hidden=list(self.hidden), latent_dim=self.latent_dim
        )
        config.train = dataclasses.replace(
            config.train,
            epochs=self.epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            rho=self.rho,
            epsilon=self.epsilon,
            kl_weight=self.kl_weight,
            device=self.device,
            threads=self.threads,
            compile=self.compile,
            precision=self.precision,
        )
        config.score = dataclasses.replace(
            config.score, score=self.score, sample=self.sample, batch_size=self.score_batch_size
        )
        config.threshold = dataclasses.replace(config.threshold, target_fpr=self.target_fpr)
        config.validate()
        if self.threshold_rule not in NORMAL_ONLY_RULES:
            raise InputError(
                f"threshold_rule must be one of {', '.join(NORMAL_ONLY_RULES)} for fit (rules that need "
                f"labelled anomalies are applied by calibrate). Got {self.threshold_rule!r}."
            )

    # -- fitting ----------------------------------------------------------------------------------

    def fit(
        self, X: np.ndarray, y: None = None, *, validation_data: np.ndarray | None = None
    ) -> VAEAnomalyDetector:
        """Train on normal images and set a threshold from normal scores only.

        Args:
            X: normal images ``(N, H, W)`` or ``(N, H, W, C)``, uint8 or float in [0, 1].
            y: ignored (scikit-learn's signature).
            validation_data: normal validation images (same layout); the weights of the epoch with
                the lowest validation loss are kept, and their scores feed ``normal_quantile``.

        Returns:
            self.
        """
        self._validate_params()
        x = to_model_layout(X, name="X")
        if len(x) < MIN_ADVISED_TRAIN_IMAGES:
            warnings.warn(
                f"fit got only {len(x)} normal image(s); the model and a threshold from so few "
                f"scores are unreliable (use at least {MIN_ADVISED_TRAIN_IMAGES}, ideally hundreds).",
                stacklevel=2,
            )
        x_valid = None
        if validation_data is not None and len(validation_data) > 0:
            x_valid = to_model_layout(validation_data, name="validation_data")
            if x_valid.shape[1:] != x.shape[1:]:
                raise InputError(
                    f"validation_data images have shape {_hwc(x_valid.shape[1:])} but X has {_hwc(x.shape[1:])}."
                )
        start = time.perf_counter()
        set_threads(self.threads)
        device = resolve_device(self.device)
        fork_devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(self.seed)
            model = build_model(self.model, x.shape[1:], self.hidden, self.latent_dim).to(device)
            generator = torch.Generator().manual_seed(self.seed)
            train_x = torch.from_numpy(x).to(device)
            valid_x = torch.from_numpy(x_valid).to(device) if x_valid is not None else None
            self.history_ = train_vae(
                model,
                train_x,
                valid_x,
                epochs=self.epochs,
                batch_size=self.batch_size,
                learning_rate=self.learning_rate,
                rho=self.rho,
                epsilon=self.epsilon,
                kl_weight=self.kl_weight,
                generator=generator,
                compile=self.compile,
                precision=self.precision,
                progress=self.progress,
            )
        self.model_ = model
        self.image_shape_ = tuple(int(s) for s in x.shape[1:])
        self.train_seconds_ = time.perf_counter() - start
        self.normal_train_scores_ = self._score_layout(x)
        self.normal_valid_scores_ = (
            self._score_layout(x_valid) if x_valid is not None else np.empty(0, np.float32)
        )
        self.training_summary_ = {
            "n_train": int(len(x)),
            "n_valid": int(0 if x_valid is None else len(x_valid)),
            "image_shape": list(self.image_shape_),
            "n_parameters": count_parameters(model),
            "best_epoch": self.history_.best_epoch,
        }
        normal_valid = (
            self.normal_valid_scores_
            if len(self.normal_valid_scores_)
            else self.normal_train_scores_
        )
        sets = ScoreSets(self.normal_train_scores_, normal_valid, np.empty(0, np.float32))
        self._set_threshold(
            compute_threshold(self.threshold_rule, sets, target_fpr=self.target_fpr)
        )
        # threshold1 is kept too: saved with the model, it lets a loaded detector calibrate.
        self.thresholds_ = {
            FALLBACK_RULE: compute_threshold(FALLBACK_RULE, sets),
            self.threshold_rule: self.threshold_info_,
        }
        self.data_info_ = {}
        self.fit_seconds_ = time.perf_counter() - start
        return self

    def calibrate(
        self, X: np.ndarray, is_anomaly: np.ndarray, *, rule: str = "best_valid_accuracy"
    ) -> VAEAnomalyDetector:
        """Set ``threshold_`` from labelled validation images with any threshold rule.

        Every rule's threshold is computed and kept in ``thresholds_``; ``rule`` picks ``threshold_``.
        A rule whose data are missing (no anomalies in ``X``) warns and falls back to
        ``train_mean_2.5std``.

        Args:
            X: validation images ``(N, H, W)`` or ``(N, H, W, C)``.
            is_anomaly: ``(N,)`` bool or 0/1, 1 = anomaly.
            rule: a name from ``config.THRESHOLD_RULE_NAMES``.
        """
        self._check_fitted()
        if rule not in THRESHOLD_RULE_NAMES:
            raise InputError(
                f"rule must be one of {', '.join(THRESHOLD_RULE_NAMES)}. Got {rule!r}."
            )
        labels = np.asarray(is_anomaly)
        if labels.ndim != 1 or len(labels) != len(X):
            raise InputError(f"is_anomaly must have shape ({len(X)},) like X. Got {labels.shape}.")
        if not np.isin(labels, (0, 1)).all():
            raise InputError("is_anomaly must hold only 0/1 or False/True.")
        labels = labels.astype(bool)
        train_threshold = None
        if len(self.normal_train_scores_) == 0:  # loaded: the scores are gone, threshold1 is not
            if FALLBACK_RULE not in self.thresholds_:
                raise InputError(
                    f"this detector was saved without its {FALLBACK_RULE} threshold, which calibrate "
                    "needs; retrain it with this version of vae-anomaly."
                )
            train_threshold = self.thresholds_[FALLBACK_RULE].value
        scores = self.score_samples(X)
        self.normal_valid_scores_ = scores[~labels]
        sets = ScoreSets(self.normal_train_scores_, scores[~labels], scores[labels])
        self.thresholds_ = compute_all_thresholds(
            sets, target_fpr=self.target_fpr, train_threshold=train_threshold
        )
        self._set_threshold(self.thresholds_[rule])
        return self

    def set_threshold(self, value: float, rule: str = "manual") -> VAEAnomalyDetector:
        """Set ``threshold_`` by hand (``rule`` names where it came from)."""
        self._check_fitted()
        if not math.isfinite(value):
            raise InputError(f"threshold must be a finite number. Got {value!r}.")
        self._set_threshold(Threshold(rule, None, float(value), "set by hand"))
        return self

    def _set_threshold(self, threshold: Threshold) -> None:
        self.threshold_info_ = threshold
        self.threshold_ = threshold.value
        self.threshold_rule_ = threshold.rule

    # -- inference --------------------------------------------------------------------------------

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError(
                "This VAEAnomalyDetector instance is not fitted yet. Call 'fit' with appropriate "
                "arguments before using this estimator, or load a saved one."
            )

    def _layout(self, X: np.ndarray) -> np.ndarray:
        self._check_fitted()
        x = to_model_layout(X, name="X")
        if x.shape[1:] != self.image_shape_:
            raise InputError(
                f"X has images of shape {_hwc(x.shape[1:])} but the detector was fitted on "
                f"{_hwc(self.image_shape_)} (H, W, C); resize or convert them first (CLI: --resize, --grayscale)."
            )
        return x

    def _score_layout(self, x: np.ndarray) -> np.ndarray:
        return score_images(
            self.model_, x, score=self.score, batch_size=self.score_batch_size, sample=self.sample
        )

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        """Anomaly scores ``(N,)`` float32 of images ``(N, H, W)`` or ``(N, H, W, C)``; higher = more anomalous."""
        return self._score_layout(self._layout(X))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """``(N,)`` int: 1 = anomaly (score >= ``threshold_``), 0 = normal."""
        return (self.score_samples(X) >= self.threshold_).astype(np.int64)

    def error_maps(self, X: np.ndarray) -> np.ndarray:
        """Per-pixel absolute reconstruction error ``(N, H, W)`` (mean over channels)."""
        return error_maps(
            self.model_, self._layout(X), batch_size=self.score_batch_size, sample=self.sample
        )

    def reconstruct(self, X: np.ndarray) -> np.ndarray:
        """Reconstructions in the model layout ``(N, C, H, W)``, float32 in [0, 1]."""
        return reconstruct_images(
            self.model_, self._layout(X), batch_size=self.score_batch_size, sample=self.sample
        )

    def encode(self, X: np.ndarray) -> np.ndarray:
        """Codings means ``(N, latent_dim)``."""
        return encode_means(self.model_, self._layout(X), batch_size=self.score_batch_size)

    def decode(self, z: np.ndarray) -> np.ndarray:
        """Images ``(N, C, H, W)`` decoded from codings ``(N, latent_dim)``."""
        self._check_fitted()
        return decode_codings(self.model_, z)

    # -- saving -----------------------------------------------------------------------------------

    def metadata(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """The JSON-readable description saved beside the weights."""
        self._check_fitted()
        return {
            "format": "vae-anomaly-detector",
            "format_version": FORMAT_VERSION,
            "package_version": __version__,
            "params": {
                k: list(v) if isinstance(v, tuple) else v
                for k, v in self.get_params().items()
                # a value older versions were trained with is left out, so that they read the file
                if _PARAM_DEFAULTS_FOR_OLDER_FILES.get(k, object()) != v
            },
            "image_shape": list(self.image_shape_),
            "channels": self.image_shape_[0],
            "preprocessing": "uint8 / 255 -> float32 in [0, 1]; layout (N, C, H, W)",
            "threshold": {
                "value": self.threshold_,
                "rule": self.threshold_rule_,
                "fallback": self.threshold_info_.fallback,
            },
            "thresholds": {name: t.value for name, t in self.thresholds_.items()},
            "normal_train_scores": _stats(self.normal_train_scores_),
            "normal_valid_scores": _stats(self.normal_valid_scores_),
            "history": self.history_.to_dict(),
            "training": self.training_summary_,
            "data": getattr(self, "data_info_", {}),
            "seed": self.seed,
            **(extra or {}),
        }

    def save(
        self,
        path: str | Path,
        *,
        extra_metadata: dict[str, Any] | None = None,
        overwrite: bool = True,
    ) -> Path:
        """Save weights and metadata: a directory (``model.safetensors`` + ``detector.json``), or one
        ``.safetensors`` file when ``path`` ends with that suffix. No pickle: loading runs no code.

        The metadata hold a SHA-256 of the weights and of themselves, so an altered file is refused.
        """
        from safetensors.torch import save as st_save

        meta = self.metadata(extra_metadata)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.model_.state_dict().items()}
        meta["weights_sha256"] = _weights_digest(tensors)
        meta["metadata_sha256"] = _metadata_digest(meta)
        path = Path(path)
        if path.suffix == ".safetensors":
            if path.exists() and not overwrite:
                raise InputError(f"{path} already exists; pass --force to overwrite it.")
            write_bytes_atomic(path, st_save(tensors, metadata={_METADATA_KEY: json.dumps(meta)}))
            return path
        if path.exists() and not path.is_dir():
            raise InputError(
                f"{path} exists and is not a directory; give a directory or a .safetensors file."
            )
        if (path / _MODEL_FILE).exists() and not overwrite:
            raise InputError(f"{path} already holds a model; pass --force to overwrite it.")
        path.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(
            path / _MODEL_FILE,
            st_save(tensors, metadata={_METADATA_KEY: json.dumps({"see": _METADATA_FILE})}),
        )
        with atomic_open(path / _METADATA_FILE, "w", encoding="utf-8") as handle:
            json.dump(meta, handle, indent=2)
            handle.write("\n")
        return path

    @classmethod
    def load(cls, path: str | Path, *, device: str = "auto") -> VAEAnomalyDetector:
        """Load a detector saved by :meth:`save`; a file of another format version, a truncated file
        or altered metadata/weights raise :class:`ModelFileError` naming the file."""
        from safetensors import SafetensorError
        from safetensors.torch import load as st_load

        path = Path(path)
        if path.is_dir():
            weights_path, meta_path = path / _MODEL_FILE, path / _METADATA_FILE
            for required in (weights_path, meta_path):
                if not required.exists():
                    raise ModelFileError(
                        f"{path} is not a saved vae-anomaly model: {required.name} is missing."
                    )
        elif path.exists():
            weights_path, meta_path = path, None
        else:
            raise ModelFileError(f"model {path} does not exist.")
        data = weights_path.read_bytes()
        try:
            tensors = st_load(data)
            header_meta = _safetensors_metadata(data)
        except (SafetensorError, ValueError, json.JSONDecodeError) as exc:
            raise ModelFileError(
                f"{weights_path} is not a readable safetensors file (truncated or corrupt): {exc}"
            ) from None
        if meta_path is not None:
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise ModelFileError(f"{meta_path} is not valid JSON: {exc}") from None
        else:
            try:
                meta = json.loads(header_meta[_METADATA_KEY])
            except (KeyError, TypeError, json.JSONDecodeError):
                raise ModelFileError(
                    f"{weights_path} holds no vae-anomaly metadata; it was not saved by vae-anomaly."
                ) from None
        source = meta_path or weights_path
        _check_metadata(meta, source)
        if meta["metadata_sha256"] != _metadata_digest(meta):
            raise ModelFileError(
                f"{source}: the metadata were altered after saving (checksum mismatch); refusing to load."
            )
        if meta["weights_sha256"] != _weights_digest(tensors):
            raise ModelFileError(
                f"{weights_path}: the weights were altered after saving (checksum mismatch); refusing to load."
            )
        params = {**_PARAM_DEFAULTS_FOR_OLDER_FILES, **meta["params"]}
        params["hidden"] = tuple(params["hidden"])
        params["device"] = device
        det = cls(**params)
        torch_device = resolve_device(device)
        model = build_model(det.model, meta["image_shape"], det.hidden, det.latent_dim)
        try:
            model.load_state_dict(tensors)
        except RuntimeError as exc:
            raise ModelFileError(
                f"{weights_path}: weights do not fit the model in the metadata: {exc}"
            ) from None
        det.model_ = model.to(torch_device).eval()
        det.image_shape_ = tuple(meta["image_shape"])
        det.history_ = History.from_dict(meta["history"])
        det.training_summary_ = meta["training"]
        det.normal_train_scores_ = np.empty(
            0, np.float32
        )  # the arrays are not saved, only their statistics
        det.normal_valid_scores_ = np.empty(0, np.float32)
        det.data_info_ = meta.get("data") or {}
        det.saved_metadata_ = meta
        info = meta["threshold"]
        det.thresholds_ = {
            name: _loaded_threshold(name, value) for name, value in meta["thresholds"].items()
        }
        det._set_threshold(_loaded_threshold(info["rule"], info["value"], info.get("fallback")))
        return det


_PARAM_NAMES = (
    "model", "hidden", "latent_dim", "epochs", "batch_size", "learning_rate", "rho", "epsilon", "kl_weight",
    "score", "sample", "threshold_rule", "target_fpr", "device", "threads", "compile", "precision", "score_batch_size", "seed", "progress",
)  # fmt: skip
# Parameters added after the first model format, with the value that older files were trained with.
_PARAM_DEFAULTS_FOR_OLDER_FILES = {"precision": "fp32"}


def _hwc(shape: tuple[int, ...]) -> tuple[int, ...]:
    """(C, H, W) -> (H, W, C), the layout users pass images in."""
    c, h, w = shape
    return (h, w, c)


def _loaded_threshold(rule: str, value: float, fallback: str | None = None) -> Threshold:
    """A saved threshold, with its rule's seed name and description when the rule is known."""
    spec = RULES.get(rule)
    return Threshold(
        rule,
        spec.seed_name if spec else None,
        float(value),
        spec.description if spec else "loaded",
        fallback,
    )


def _stats(scores: np.ndarray) -> dict[str, Any]:
    return score_statistics(scores)


def _weights_digest(tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def _metadata_digest(meta: dict[str, Any]) -> str:
    body = {k: v for k, v in meta.items() if k != "metadata_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, allow_nan=True).encode()).hexdigest()


def _safetensors_metadata(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file's JSON header."""
    if len(data) < 8:
        raise ValueError("file shorter than the 8-byte header length")
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_len])
    return header.get("__metadata__", {}) or {}


def _check_metadata(meta: Any, source: Path) -> None:
    """Refuse metadata of another format or version, or with missing or mistyped fields."""
    if not isinstance(meta, dict) or meta.get("format") != "vae-anomaly-detector":
        raise ModelFileError(
            f"{source} is not a vae-anomaly model (no 'format': 'vae-anomaly-detector')."
        )
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelFileError(
            f"{source} has model format version {version!r}; this vae-anomaly {__version__} reads version "
            f"{FORMAT_VERSION}. Retrain, or use the vae-anomaly version that saved it ({meta.get('package_version')})."
        )
    expected = {
        "params": dict, "image_shape": list, "threshold": dict, "thresholds": dict, "history": dict,
        "training": dict, "weights_sha256": str, "metadata_sha256": str,
    }  # fmt: skip
    for key, kind in expected.items():
        if not isinstance(meta.get(key), kind):
            raise ModelFileError(
                f"{source}: metadata field '{key}' is missing or not a {kind.__name__}."
            )
    missing = [
        name
        for name in _PARAM_NAMES
        if name not in meta["params"] and name not in _PARAM_DEFAULTS_FOR_OLDER_FILES
    ]
    if missing:
        raise ModelFileError(f"{source}: metadata 'params' lack {', '.join(missing)}.")
    shape = meta["image_shape"]
    if len(shape) != 3 or not all(isinstance(s, int) and s > 0 for s in shape):
        raise ModelFileError(
            f"{source}: metadata 'image_shape' must be 3 positive integers (C, H, W). Got {shape!r}."
        )
    if not isinstance(meta["threshold"].get("value"), int | float):
        raise ModelFileError(f"{source}: metadata 'threshold.value' must be a number.")
