"""Per-image anomaly scores, batched, without gradients; higher = more anomalous."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn


def mae_score(x: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """The seed's score: mean absolute error over all pixels, ``(N, C, H, W)`` x2 -> ``(N,)``."""
    return (x - reconstruction).abs().flatten(1).mean(dim=1)


#: Scores by name (``config.SCORE_NAMES``): functions of the images and their reconstructions.
SCORES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {"mae": mae_score}


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def _batched(
    model: nn.Module,
    x: np.ndarray,
    batch_size: int,
    sample: bool,
    fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    out_shape: tuple[int, ...],
) -> np.ndarray:
    """Apply ``fn(batch, reconstruction, codings_mean)`` batch by batch into a preallocated array."""
    device = _model_device(model)
    model.eval()
    out = np.empty((len(x), *out_shape), dtype=np.float32)
    for start in range(0, len(x), batch_size):
        batch = torch.as_tensor(x[start : start + batch_size]).to(device, non_blocking=True)
        logits, mean, _ = model(batch, sample=sample)
        reconstruction = torch.sigmoid(logits).view_as(batch)
        out[start : start + len(batch)] = fn(batch, reconstruction, mean).cpu().numpy()
    return out


def score_images(
    model: nn.Module,
    x: np.ndarray,
    *,
    score: str = "mae",
    batch_size: int = 1024,
    sample: bool = False,
) -> np.ndarray:
    """Anomaly scores ``(N,)`` float32 of images ``x`` ``(N, C, H, W)`` float32 in [0, 1].

    ``sample=False`` decodes the codings mean (deterministic); ``sample=True`` decodes a random
    sample like the seed's Keras model did at prediction time.
    """
    score_fn = SCORES[score]
    return _batched(model, x, batch_size, sample, lambda b, r, m: score_fn(b, r), ())


def reconstruct_images(
    model: nn.Module, x: np.ndarray, *, batch_size: int = 1024, sample: bool = False
) -> np.ndarray:
    """Reconstructions ``(N, C, H, W)`` float32 in [0, 1] of images ``x`` ``(N, C, H, W)``."""
    return _batched(model, x, batch_size, sample, lambda b, r, m: r, tuple(x.shape[1:]))


def error_maps(
    model: nn.Module, x: np.ndarray, *, batch_size: int = 1024, sample: bool = False
) -> np.ndarray:
    """Per-pixel absolute reconstruction error ``(N, H, W)`` (averaged over channels)."""
    return _batched(
        model, x, batch_size, sample, lambda b, r, m: (b - r).abs().mean(dim=1), tuple(x.shape[2:])
    )


def encode_means(model: nn.Module, x: np.ndarray, *, batch_size: int = 1024) -> np.ndarray:
    """Codings means ``(N, latent_dim)`` of images ``x`` ``(N, C, H, W)``."""
    return _batched(model, x, batch_size, False, lambda b, r, m: m, (model.latent_dim,))


@torch.inference_mode()
def decode_codings(model: nn.Module, z: np.ndarray) -> np.ndarray:
    """Images ``(N, C, H, W)`` decoded from codings ``z`` ``(N, latent_dim)``."""
    model.eval()
    tensor = torch.as_tensor(np.asarray(z, dtype=np.float32)).to(_model_device(model))
    return model.decode(tensor).cpu().numpy()
