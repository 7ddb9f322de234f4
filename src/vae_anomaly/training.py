"""One readable training loop -> History; the best-validation weights are restored at the end."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from .config import PRECISIONS
from .errors import CompileError
from .models import vae_loss
from .runtime import has_native_bf16


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


class FlatRMSprop:
    """RMSprop over parameters that live in one flat buffer, with Keras's semantics.

    Keras (TF's ``ApplyRMSProp`` kernel, and Keras 3) adds epsilon *inside* the square root:
    ``v = rho v + (1 - rho) g^2``; ``p -= lr g / sqrt(v + eps)``. ``torch.optim.RMSprop`` adds it
    outside (``sqrt(v) + eps``), which with Keras's ``eps = 1e-7`` gives parameters with tiny
    gradients steps up to ~3000x larger (``sqrt(1e-7) = 3.2e-4`` vs ``1e-7`` as the floor of the
    denominator), so it is not used. ``torch.optim.RMSprop(foreach=True)`` would also run five
    element-wise kernels per parameter tensor (18 in the seed model); here every parameter and
    gradient is a view into one flat tensor, so a step is five kernels on one tensor with a
    preallocated temporary. (Multiplying by ``(v + eps) ** -0.5`` would be faster on a CPU,
    where ``sqrt_`` goes through MKL's vector library, but it changes the last bit of the update,
    and over 12,700 steps last-bit changes grow into a different trained model.)

    Call :meth:`release` after training: it gives each parameter its own storage again (the flat
    views would otherwise be saved as shared memory).
    """

    def __init__(self, model: nn.Module, learning_rate: float, rho: float, epsilon: float) -> None:
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.learning_rate, self.rho, self.epsilon = learning_rate, rho, epsilon
        with torch.no_grad():
            self.flat = torch.cat([p.detach().reshape(-1) for p in self.params])
        self.grad = torch.zeros_like(self.flat)
        self.square_avg = torch.zeros_like(self.flat)
        self._denominator = torch.empty_like(self.flat)
        self._offsets, offset = {}, 0  # where each trainable parameter starts in the buffers
        for p in self.params:
            self._offsets[p] = offset
            offset += p.numel()
        for p in self.params:
            p.data = self._view(self.flat, p)
            p.grad = self._view(self.grad, p)  # backward accumulates into it

    def _view(self, buffer: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        start = self._offsets[p]
        return buffer[start : start + p.numel()].view(p.shape)

    def views(self, buffer: torch.Tensor, model: nn.Module) -> list[torch.Tensor | None]:
        """One view into ``buffer`` (a flat tensor laid out like :attr:`flat`, of any dtype) per
        tensor of ``model.parameters()``, shaped like it; None for a frozen parameter (not in
        the buffer)."""
        return [self._view(buffer, p) if p in self._offsets else None for p in model.parameters()]

    def zero_grad(self) -> None:
        """Zero the flat gradient (backward then adds each gradient into its view: 0 + g = g)."""
        self.grad.zero_()

    @torch.no_grad()
    def step(self, grad: torch.Tensor | None = None) -> None:
        """One RMSprop update of every parameter, from ``grad`` (flat, in parameter order) or
        from the gradients that backward accumulated."""
        grad = self.grad if grad is None else grad
        self.square_avg.mul_(self.rho).addcmul_(grad, grad, value=1 - self.rho)
        torch.add(self.square_avg, self.epsilon, out=self._denominator).sqrt_()
        self.flat.addcdiv_(grad, self._denominator, value=-self.learning_rate)

    def fused_step(self, grad: torch.Tensor) -> None:
        """:meth:`step` from ``grad``, written for ``torch.compile`` (which fuses it into one loop):
        no preallocated temporary to store into."""
        self.square_avg.mul_(self.rho).addcmul_(grad, grad, value=1 - self.rho)
        denominator = torch.sqrt(self.square_avg + self.epsilon)
        self.flat.addcdiv_(grad, denominator, value=-self.learning_rate)

    def release(self) -> None:
        """Give each parameter its own storage and drop the gradients."""
        for p in self.params:
            p.data = p.data.clone()
            p.grad = None


def make_optimizer(
    model: nn.Module, learning_rate: float, rho: float, epsilon: float
) -> FlatRMSprop:
    """RMSprop with Keras's semantics (``rho``; ``eps`` inside the sqrt) on a flat buffer."""
    return FlatRMSprop(model, learning_rate, rho, epsilon)


def make_train_step(
    model: nn.Module,
    optimizer: FlatRMSprop,
    *,
    kl_weight: float,
    compile: bool = False,
    precision: str = "fp32",
) -> Callable[[torch.Tensor], torch.Tensor]:
    """One optimisation step on a batch ``(B, ...)`` -> the batch's loss (a detached 0-d tensor).

    A model with a ``loss_and_gradients(x, noise, kl_weight, out)`` method (the MLP VAE) gets its
    gradients from its ``gradient_function``, without the autograd engine, written straight into
    the optimizer's flat gradient buffer (no concatenation); any other model goes through
    autograd. The sampling noise is drawn from torch's global RNG either way, so a seed gives the
    same run. The loss stays on the device (no ``.item()``), so a GPU never waits for the host.

    With ``compile=True`` the gradient computation and the optimizer update are compiled by
    ``torch.compile`` for full batches (the first epoch pays several seconds of compilation,
    less when inductor's cache has the graphs; the results match to float tolerance, not to the
    bit); a last, smaller batch runs eagerly instead of compiling a second graph.

    With ``precision="bf16"`` the layers run in bfloat16 (mixed precision): the weights stay
    float32 in the optimizer, a bfloat16 copy of them is made before every step (one cast kernel
    over the flat buffer), the matrix products, activations and their derivatives run in
    bfloat16, and the gradients are cast into the float32 buffer for the update; the loss and its
    gradient at the logits stay float32. On CPUs with AVX512-BF16 or AMX (and on GPUs with bf16
    tensor cores) a bfloat16 GEMM runs several times faster than a float32 one; the results are
    those of a different rounding, not float32's (the README compares them).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if compile and precision != "fp32":
        raise ValueError(f"compile works with precision fp32 only; got precision={precision!r}")
    mixed = precision == "bf16"
    if not hasattr(model, "loss_and_gradients"):
        if compile:
            raise ValueError(f"compile needs a model with loss_and_gradients; got {type(model)}")

        def autograd_step(batch: torch.Tensor) -> torch.Tensor:
            with torch.autocast(batch.device.type, dtype=torch.bfloat16, enabled=mixed):
                logits, mean, log_var = model(batch)
            loss = vae_loss(batch, logits.float(), mean.float(), log_var.float(), kl_weight)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            return loss.detach()

        return autograd_step

    latent_dim = model.latent_dim
    if mixed:
        weights16 = torch.empty_like(optimizer.flat, dtype=torch.bfloat16)
        grad16 = torch.empty_like(weights16)
        # A frozen parameter is cast once; it has no gradient.
        params16 = [
            view if view is not None else p.detach().to(torch.bfloat16)
            for view, p in zip(optimizer.views(weights16, model), model.parameters(), strict=True)
        ]
        gradients16 = model.gradient_function(out=optimizer.views(grad16, model), params=params16)

        def eager_step(batch: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
            weights16.copy_(optimizer.flat)
            loss, _ = gradients16(batch, noise, kl_weight)
            optimizer.grad.copy_(grad16)
            optimizer.step()
            return loss

    else:
        # Gradients go into the optimizer's views, in parameter order (None for a frozen one).
        gradients_into_optimizer = model.gradient_function(
            out=optimizer.views(optimizer.grad, model)
        )

        def eager_step(batch: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
            loss, _ = gradients_into_optimizer(batch, noise, kl_weight)
            optimizer.step()
            return loss

    compiled_size = None
    if compile:  # compiled graphs return a new flat gradient instead of writing into views
        gradients = model.gradient_function()
        trainable = [p.requires_grad for p in model.parameters()]

        def flat_gradient(batch: torch.Tensor, noise: torch.Tensor):
            loss, grads = gradients(batch, noise, kl_weight)
            flat = [g.reshape(-1) for g, keep in zip(grads, trainable, strict=True) if keep]
            return loss, torch.cat(flat)

        def update(grad: torch.Tensor) -> None:
            optimizer.fused_step(grad)

        flat_gradient = torch.compile(flat_gradient, dynamic=False)
        update = torch.compile(update, dynamic=False)

    def step(batch: torch.Tensor) -> torch.Tensor:
        nonlocal compiled_size
        noise = torch.randn(len(batch), latent_dim, dtype=batch.dtype, device=batch.device)
        if compile and compiled_size == len(batch):
            loss, grad = flat_gradient(batch, noise)
            update(grad)
        elif compile and compiled_size is None:  # the first call compiles
            try:
                loss, grad = flat_gradient(batch, noise)
                update(grad)
            except Exception as exc:  # inductor needs a C++ compiler and the Python headers
                first_line = (str(exc).strip().splitlines() or [""])[0][:200]
                raise CompileError(
                    "--compile: torch.compile could not build the training step "
                    f"({type(exc).__name__}: {first_line}); run without --compile."
                ) from exc
            compiled_size = len(batch)
        else:
            loss = eager_step(batch, noise)
        return loss

    return step


def train_epoch(
    step: Callable[[torch.Tensor], torch.Tensor],
    flat_train: torch.Tensor,
    order: torch.Tensor,
    shuffled: torch.Tensor,
    batch_size: int,
) -> float:
    """One pass over ``flat_train`` ``(N, D)`` in ``order``: the images are gathered once into
    ``shuffled`` (preallocated, like ``flat_train``), then ``step`` runs on contiguous slices of it
    (no per-batch indexing or copying); returns the mean loss over the images."""
    torch.index_select(flat_train, 0, order, out=shuffled)
    total = torch.zeros((), device=flat_train.device)
    for first in range(0, len(flat_train), batch_size):
        batch = shuffled[first : first + batch_size]
        total.add_(step(batch), alpha=len(batch))
    return float(total) / len(flat_train)


@torch.no_grad()
def evaluate_loss(model: nn.Module, x: torch.Tensor, *, batch_size: int, kl_weight: float) -> float:
    """Mean loss over ``x`` ``(N, C, H, W)`` or ``(N, C*H*W)``, decoding the codings mean."""
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
    compile: bool = False,
    precision: str = "fp32",
    progress: bool = False,
    on_epoch_end: Callable[[int, History], None] | None = None,
) -> History:
    """Train ``model`` on ``train_x`` and keep the weights of the best validation epoch.

    The data stay on the model's device as one flat tensor. Each epoch draws one permutation (on
    the CPU generator, moved once to the device) and gathers the shuffled images into one
    preallocated buffer; batches are then contiguous slices of it, so the inner loop does no
    indexing, copying or host-device synchronisation. Without ``valid_x`` the last epoch's
    weights are kept and ``valid_loss`` is empty.

    Args:
        model: a VAE whose ``forward(x)`` returns ``(logits, mean, log_var)``; already on its device.
        train_x: training images ``(N, C, H, W)`` float32 in [0, 1], on the model's device.
        valid_x: validation images ``(M, C, H, W)`` or None.
        generator: CPU generator for the shuffling (the caller seeds it and torch's global RNG).
        compile: compile the training step with ``torch.compile`` (see :func:`make_train_step`).
        precision: ``"fp32"`` or ``"bf16"`` (layers in bfloat16; see :func:`make_train_step`).
        progress: show a tqdm bar with epoch, loss and validation loss.
        on_epoch_end: called as ``on_epoch_end(epoch, history)`` after each epoch (outside the
            epoch's timing), e.g. to log or to measure something between epochs.
    """
    from tqdm.auto import tqdm

    if precision == "bf16" and has_native_bf16(train_x.device) is False:
        warnings.warn(
            f"precision bf16: this {train_x.device.type.upper()} has no native bfloat16 matrix "
            "products (AVX512-BF16 or AMX on a CPU, bf16 tensor cores on a GPU); they are emulated "
            "and may be slower than fp32.",
            stacklevel=2,
        )
    optimizer = make_optimizer(model, learning_rate, rho, epsilon)
    step = make_train_step(
        model, optimizer, kl_weight=kl_weight, compile=compile, precision=precision
    )
    history = History()
    device = train_x.device
    n = len(train_x)
    # The model flattens its input, so flat images give the same numbers without a view per batch.
    flat_train = train_x.reshape(n, -1)
    flat_valid = valid_x.reshape(len(valid_x), -1) if valid_x is not None else None
    shuffled = torch.empty_like(flat_train)
    # Best weights are copied into tensors allocated once (no deepcopy per improvement).
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    best_loss = float("inf")
    bar = tqdm(
        range(1, epochs + 1),
        desc="training",
        unit="epoch",
        disable=None if progress else True,
        leave=False,
    )
    model.train()
    for epoch in bar:
        start = time.perf_counter()
        order = torch.randperm(n, generator=generator).to(device, non_blocking=True)
        history.train_loss.append(train_epoch(step, flat_train, order, shuffled, batch_size))
        if flat_valid is not None:
            history.valid_loss.append(
                evaluate_loss(model, flat_valid, batch_size=1024, kl_weight=kl_weight)
            )
            current = history.valid_loss[-1]
        else:
            current = -epoch  # no validation: the last epoch is the best
        if current < best_loss:
            best_loss, history.best_epoch = current, epoch
            with torch.no_grad():
                for name, value in model.state_dict().items():
                    best_state[name].copy_(value)
        history.epoch_seconds.append(time.perf_counter() - start)
        postfix = {"loss": f"{history.train_loss[-1]:.4f}"}
        if history.valid_loss:
            postfix["val_loss"] = f"{history.valid_loss[-1]:.4f}"
        bar.set_postfix(postfix)
        if on_epoch_end is not None:
            on_epoch_end(epoch, history)
    optimizer.release()
    if history.best_epoch == 0:  # every validation loss was NaN: nothing to restore
        history.best_epoch = epochs
        warnings.warn(
            "the validation loss was NaN in every epoch (diverged training?); keeping the last "
            "epoch's weights.",
            stacklevel=2,
        )
    else:
        model.load_state_dict(best_state)
    model.eval()
    return history
