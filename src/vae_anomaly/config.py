"""Every default once: dataclasses for data, model, training, scoring and thresholds; presets; TOML.

The CLI flags and ``--config run.toml`` both map onto :class:`RunConfig`; unknown keys and invalid
values are errors that name the key and the rule.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: Names of the scores a detector can compute (higher = more anomalous).
SCORE_NAMES = ("mae",)
#: Names of the models a detector can build.
MODEL_NAMES = ("mlp_vae",)
#: Names of the threshold rules (the functions are in ``thresholds.py``); the seed's five first.
THRESHOLD_RULE_NAMES = (
    "train_mean_2.5std",  # the seed's threshold1
    "abnormal_valid_mean_minus_std",  # threshold2
    "normal_valid_mean_plus_std",  # threshold3
    "valid_midpoint",  # threshold4
    "best_valid_accuracy",  # threshold5: the seed's 100-step grid (the seed's choice)
    "best_valid_accuracy_exact",  # the best validation accuracy over every cut point
    "normal_quantile",  # the (1 - target_fpr) quantile of normal validation scores
)
#: Names of the devices accepted by ``--device``.
DEVICE_NAMES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16")  # the training step's matrix products: float32 or bfloat16


@dataclass
class DataConfig:
    """Which images, which classes are normal, and how they are split."""

    dataset: str = (
        "fashion-mnist"  # a known name (fashion-mnist, mnist), a folder, an .npz or IDX dir
    )
    data_dir: str | None = (
        None  # where the known dataset's IDX files are (else searched, then downloaded)
    )
    normal: list[str] = field(
        default_factory=lambda: ["0", "2", "6"]
    )  # T-shirt/top, Pullover, Shirt
    abnormal: list[str] = field(default_factory=lambda: ["7"])  # Sneaker
    valid_fraction: float = 0.1  # the seed's 90/10 train/validation split of the training images
    test_fraction: float = 0.2  # held out as test when a custom dataset has no test part
    download: bool = True  # download a known dataset when it is not found on disk


@dataclass
class ModelConfig:
    """The VAE's architecture (sizes of the image come from the data, not from here)."""

    name: str = "mlp_vae"  # the seed's fully connected VAE
    hidden: list[int] = field(
        default_factory=lambda: [256, 128, 64]
    )  # encoder widths; decoder mirrors
    latent_dim: int = 16  # the seed's codings_size


@dataclass
class TrainConfig:
    """The optimisation: the seed's RMSprop with Keras's defaults, batch 128, 100 epochs."""

    epochs: int = 100  # the seed's epochs
    batch_size: int = 128  # the seed's batch size
    learning_rate: float = 1e-3  # Keras RMSprop default
    rho: float = 0.9  # Keras RMSprop default (PyTorch's alpha defaults to 0.99)
    epsilon: float = 1e-7  # Keras RMSprop default (PyTorch's eps defaults to 1e-8)
    kl_weight: float = 0.0  # the seed trains without the KL term; Geron's book uses 1/784
    device: str = "auto"  # auto (cuda if present, else cpu), cpu or cuda
    threads: int | None = None  # CPU threads for torch (None: torch's default, one per core)
    compile: bool = False  # torch.compile the training step: faster epochs, seconds of start-up
    precision: str = "fp32"  # bf16: layers in bfloat16 (float32 weights), faster on new CPUs


@dataclass
class ScoreConfig:
    """How each image is scored."""

    score: str = "mae"  # per-image mean absolute reconstruction error, as in the seed
    sample: bool = (
        False  # False: decode the codings mean (deterministic); True: sample z like Keras
    )
    batch_size: int = 1024  # images per scoring batch (memory bound, not a result setting)


@dataclass
class ThresholdConfig:
    """Which threshold rule flags anomalies in the run's report and predictions."""

    rule: str = "best_valid_accuracy"  # the seed's threshold5
    target_fpr: float = 0.05  # for the normal_quantile rule: the false-positive rate aimed at


@dataclass
class RunConfig:
    """A whole run: the seed experiment and its settings."""

    seed: int = 0  # feeds the split, the weights and the batches
    name: str | None = None  # run folder name (default: a timestamp)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    threshold: ThresholdConfig = field(default_factory=ThresholdConfig)

    def to_dict(self) -> dict[str, Any]:
        """The config as plain values (for JSON/TOML)."""
        return dataclasses.asdict(self)

    def validate(self) -> RunConfig:
        """Raise :class:`InputError` naming the first invalid value; return self."""
        validate_config(self)
        return self


#: Presets: named partial configs applied over the defaults (the seed's settings first).
PRESETS: dict[str, dict[str, Any]] = {
    "seed": {},  # the notebook exactly: BCE only, KL weight 0
    "geron": {"train": {"kl_weight": 1 / 784}},  # Geron's book: BCE + mean(KL) / 784
}


def config_from_dict(
    values: dict[str, Any], base: RunConfig | None = None, *, source: str = "config"
) -> RunConfig:
    """Apply nested ``values`` over ``base`` (default: the defaults); unknown keys are errors."""
    config = copy.deepcopy(base) if base is not None else RunConfig()
    sections = {"data", "model", "train", "score", "threshold"}
    for key, value in values.items():
        if key in sections:
            if not isinstance(value, dict):
                raise InputError(f"{source}: [{key}] must be a table of settings. Got {value!r}.")
            section = getattr(config, key)
            known = {f.name for f in dataclasses.fields(section)}
            for sub_key, sub_value in value.items():
                if sub_key not in known:
                    raise InputError(
                        f"{source}: unknown key '{key}.{sub_key}'. Known keys in [{key}]: {', '.join(sorted(known))}."
                    )
                setattr(section, sub_key, sub_value)
        elif key in {f.name for f in dataclasses.fields(RunConfig)}:
            setattr(config, key, value)
        else:
            known = sorted({f.name for f in dataclasses.fields(RunConfig)})
            homes = [s for s in sorted(sections) if key in _field_names(getattr(config, s))]
            hint = f" Did you mean '{key}' in [{homes[0]}]?" if homes else ""
            raise InputError(
                f"{source}: unknown key '{key}'. Known keys: {', '.join(known)}.{hint}"
            )
    return config


def _field_names(section: Any) -> set[str]:
    return {f.name for f in dataclasses.fields(section)}


def load_config(path: str | Path, base: RunConfig | None = None) -> RunConfig:
    """Read a TOML config file over ``base``; a missing file, bad TOML or unknown key is an error."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"config file {path} does not exist.") from None
    except OSError as exc:
        raise InputError(f"config file {path} cannot be read: {exc.strerror}.") from None
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"config file {path} is not valid TOML: {exc}.") from None
    preset = values.pop("preset", None)
    if preset is not None:
        base = apply_preset(base or RunConfig(), preset, source=str(path))
    config = config_from_dict(values, base, source=str(path))
    try:
        return validate_config(config)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None


def apply_preset(config: RunConfig, preset: str, *, source: str = "--preset") -> RunConfig:
    """Apply the named preset over ``config``."""
    if preset not in PRESETS:
        raise InputError(
            f"{source}: unknown preset '{preset}'. Known presets: {', '.join(PRESETS)}."
        )
    return config_from_dict(PRESETS[preset], config, source=f"preset {preset}")


def config_to_toml(config: RunConfig) -> str:
    """The config as TOML text that :func:`load_config` reads back to an equal config."""
    lines: list[str] = []
    values = config.to_dict()
    for key, value in values.items():
        if not isinstance(value, dict) and value is not None:
            lines.append(f"{key} = {_toml_value(value)}")
    for key, value in values.items():
        if isinstance(value, dict):
            lines.append("")
            lines.append(f"[{key}]")
            for sub_key, sub_value in value.items():
                if sub_value is None:
                    lines.append(f"# {sub_key} is not set (default)")
                else:
                    lines.append(f"{sub_key} = {_toml_value(sub_value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise InputError(message)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def validate_config(config: RunConfig) -> RunConfig:
    """Check every value's type and range; raise :class:`InputError` naming the first bad one."""
    t, d, m, s, th = config.train, config.data, config.model, config.score, config.threshold
    _check(
        _is_int(config.seed) and config.seed >= 0,
        f"seed must be an integer >= 0. Got {config.seed!r}.",
    )
    _check(
        config.name is None
        or (
            isinstance(config.name, str)
            and config.name.strip() not in ("", ".", "..")
            and not any(sep in config.name for sep in "/\\")
        ),
        f"name (--name) must be a folder name (no '/'). Got {config.name!r}.",
    )
    _check(
        isinstance(d.dataset, str) and d.dataset != "",
        f"data.dataset must be a name or path. Got {d.dataset!r}.",
    )
    _check(
        d.data_dir is None or (isinstance(d.data_dir, str) and d.data_dir != ""),
        f"data.data_dir (--data-dir) must be a folder path. Got {d.data_dir!r}.",
    )
    _check(
        isinstance(d.download, bool),
        f"data.download (--download) must be true or false. Got {d.download!r}.",
    )
    for option in ("normal", "abnormal"):
        classes = getattr(d, option)
        _check(
            isinstance(classes, list | tuple)
            and len(classes) > 0
            and all(isinstance(c, str) or _is_int(c) for c in classes),
            f"data.{option} must be a non-empty list of class names or indices. Got {classes!r}.",
        )
    _check(
        _is_number(d.valid_fraction) and 0 < d.valid_fraction < 1,
        f"data.valid_fraction must be in (0, 1). Got {d.valid_fraction!r}.",
    )
    _check(
        _is_number(d.test_fraction) and 0 < d.test_fraction < 1,
        f"data.test_fraction must be in (0, 1). Got {d.test_fraction!r}.",
    )
    _check(
        m.name in MODEL_NAMES,
        f"model.name must be one of {', '.join(MODEL_NAMES)}. Got {m.name!r}.",
    )
    _check(
        isinstance(m.hidden, list | tuple)
        and len(m.hidden) > 0
        and all(_is_int(h) and h > 0 for h in m.hidden),
        f"model.hidden must be a non-empty list of positive integers. Got {m.hidden!r}.",
    )
    _check(
        _is_int(m.latent_dim) and m.latent_dim > 0,
        f"model.latent_dim must be an integer > 0. Got {m.latent_dim!r}.",
    )
    _check(
        _is_int(t.epochs) and t.epochs > 0,
        f"train.epochs (--epochs) must be an integer > 0. Got {t.epochs!r}.",
    )
    _check(
        _is_int(t.batch_size) and t.batch_size > 0,
        f"train.batch_size (--batch-size) must be an integer > 0. Got {t.batch_size!r}.",
    )
    _check(
        _is_number(t.learning_rate) and t.learning_rate > 0,
        f"train.learning_rate must be > 0. Got {t.learning_rate!r}.",
    )
    _check(_is_number(t.rho) and 0 <= t.rho < 1, f"train.rho must be in [0, 1). Got {t.rho!r}.")
    _check(
        _is_number(t.epsilon) and t.epsilon > 0, f"train.epsilon must be > 0. Got {t.epsilon!r}."
    )
    _check(
        _is_number(t.kl_weight) and t.kl_weight >= 0,
        f"train.kl_weight (--kl-weight) must be >= 0. Got {t.kl_weight!r}.",
    )
    _check(
        t.device in DEVICE_NAMES,
        f"train.device (--device) must be one of {', '.join(DEVICE_NAMES)}. Got {t.device!r}.",
    )
    _check(
        t.threads is None or (_is_int(t.threads) and t.threads > 0),
        f"train.threads (--threads) must be an integer > 0. Got {t.threads!r}.",
    )
    _check(
        isinstance(t.compile, bool),
        f"train.compile (--compile) must be true or false. Got {t.compile!r}.",
    )
    _check(
        t.precision in PRECISIONS,
        f"train.precision (--precision) must be one of {', '.join(PRECISIONS)}. Got {t.precision!r}.",
    )
    _check(
        not (t.compile and t.precision != "fp32"),
        f"train.compile (--compile) works with train.precision fp32 only. Got {t.precision!r}.",
    )
    _check(
        s.score in SCORE_NAMES,
        f"score.score must be one of {', '.join(SCORE_NAMES)}. Got {s.score!r}.",
    )
    _check(isinstance(s.sample, bool), f"score.sample must be true or false. Got {s.sample!r}.")
    _check(
        _is_int(s.batch_size) and s.batch_size > 0,
        f"score.batch_size must be an integer > 0. Got {s.batch_size!r}.",
    )
    _check(
        th.rule in THRESHOLD_RULE_NAMES,
        f"threshold.rule (--threshold-rule) must be one of {', '.join(THRESHOLD_RULE_NAMES)}. Got {th.rule!r}.",
    )
    _check(
        _is_number(th.target_fpr) and 0 < th.target_fpr < 1,
        f"threshold.target_fpr must be in (0, 1). Got {th.target_fpr!r}.",
    )
    return config
