"""vae-anomaly: anomaly detection on images with variational autoencoders.

The public API is imported lazily so that ``import vae_anomaly`` (and ``vae-anomaly --help``) does
not pay for importing torch.
"""

from typing import TYPE_CHECKING

__version__ = "0.1.0"

from .errors import (
    DatasetNotFoundError,
    InputError,
    ModelFileError,
    NotFittedError,
    VAEAnomalyError,
)

if TYPE_CHECKING:
    from .detector import VAEAnomalyDetector

__all__ = [
    "DatasetNotFoundError",
    "InputError",
    "ModelFileError",
    "NotFittedError",
    "VAEAnomalyDetector",
    "VAEAnomalyError",
    "__version__",
]


def __getattr__(name: str):
    if name == "VAEAnomalyDetector":
        from .detector import VAEAnomalyDetector

        return VAEAnomalyDetector
    raise AttributeError(f"module 'vae_anomaly' has no attribute {name!r}")
