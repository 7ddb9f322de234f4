"""One readable training loop -> History; the best-validation weights are restored at the end."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from .models import vae_loss


@dataclass
class History:
    """Per-epoch losses and times of one training run (epochs count from 1)."""

    train_loss: list[float] = field(default_factory=list)  # mean loss over the epoch's batches
    valid_loss: list[float] = field(
        default_factory=list
    )  # loss on the validation images (deterministic)
    epoch_seconds: list[float] = field(default_factory=list)  # wall time of each epoch
    best_epoch: int = 0  # the epoch whose weights were kept (1-based)

    def to_dict(self) -> dict:
        """Plain values for JSON."""
        return {
            "train_loss": self.train_loss,
            "valid_loss": self.valid_loss,
            "epoch_seconds": self.epoch_seconds,
            "best_epoch": self.best_epoch,
        }

    @classmethod
    def from_dict(cls, values: dict) -> History:
        """Inverse of :meth:`to_dict`."""
        return cls(
            train_loss=[float(v) for v in values.get("train_loss", [])],
            valid_loss=[float(v) for v in values.get("valid_loss", [])],
            epoch_seconds=[float(v) for v in values.get("epoch_seconds", [])],
            best_epoch=int(values.get("best_epoch", 0)),
        )


def make_optimizer(
    model: nn.Module, learning_rate: float, rho: float, epsilon: float
) -> torch.optim.Optimizer:
    """RMSprop with Keras's semantics: ``alpha`` is Keras's ``rho``, ``eps`` added outside the sqrt."""
    return torch.optim.RMSprop(
        model.parameters(), lr=learning_rate, alpha=rho, eps=epsilon, foreach=True
    )


@torch.no_grad()
def evaluate_loss(model: nn.Module, x: torch.Tensor, *, batch_size: int, kl_weight: float) -> float:
    """Mean loss over ``x`` ``(N, C, H, W)``, decoding the codings mean (no sampling noise)."""
    was_training = model.training
    model.eval()
    total = torch.zeros((), device=x.device)
    for start in range(0, len(x), batch_size):
        batch = x[start : start + batch_size]
        logits, mean, log_var = model(batch, sample=False)
        total += vae_loss(batch, logits, mean, log_var, kl_weight) * len(batch)
    model.train(was_training)
    return float(total) / len(x)


def train_vae(
    model: nn.Module,
    train_x: torch.Tensor,
    valid_x: torch.Tensor | None = None,
    *,
    epochs: int = 100,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    rho: float = 0.9,
    epsilon: float = 1e-7,
    kl_weight: float = 0.0,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> History:
    """Train ``model`` on ``train_x`` and keep the weights of the best validation epoch.

    The data stay on the model's device as one tensor; each epoch draws one permutation and slices
    batches from it, so there is no per-sample Python work. Without ``valid_x`` the last epoch's
    weights are kept and ``valid_loss`` is empty.

    Args:
        model: a VAE whose ``forward(x)`` returns ``(logits, mean, log_var)``; already on its device.
        train_x: training images ``(N, C, H, W)`` float32 in [0, 1], on the model's device.
        valid_x: validation images ``(M, C, H, W)`` or None.
        generator: CPU generator for the shuffling (the caller seeds it and torch's global RNG).
        progress: show a tqdm bar with epoch, loss and validation loss.
    """
    from tqdm.auto import tqdm

    optimizer = make_optimizer(model, learning_rate, rho, epsilon)
    history = History()
    best_loss, best_state = float("inf"), None
    n = len(train_x)
    bar = tqdm(
        range(1, epochs + 1), desc="training", unit="epoch", disable=not progress, leave=False
    )
    model.train()
    for epoch in bar:
        start = time.perf_counter()
        order = torch.randperm(n, generator=generator).to(train_x.device)
        total = torch.zeros((), device=train_x.device)
        for first in range(0, n, batch_size):
            batch = train_x[order[first : first + batch_size]]
            logits, mean, log_var = model(batch)
            loss = vae_loss(batch, logits, mean, log_var, kl_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach() * len(batch)
        history.train_loss.append(float(total) / n)
        if valid_x is not None:
            history.valid_loss.append(
                evaluate_loss(model, valid_x, batch_size=1024, kl_weight=kl_weight)
            )
            current = history.valid_loss[-1]
        else:
            current = -epoch  # no validation: the last epoch is the best
        if current < best_loss:
            best_loss, history.best_epoch = current, epoch
            best_state = copy.deepcopy(model.state_dict())
        history.epoch_seconds.append(time.perf_counter() - start)
        postfix = {"loss": f"{history.train_loss[-1]:.4f}"}
        if history.valid_loss:
            postfix["val_loss"] = f"{history.valid_loss[-1]:.4f}"
        bar.set_postfix(postfix)
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return history
