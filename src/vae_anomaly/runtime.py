"""The one place where the compute device and CPU thread count are chosen, and compute is counted."""

from __future__ import annotations

import torch
from torch import nn

from .errors import InputError


def resolve_device(name: str = "auto") -> torch.device:
    """Turn ``auto``/``cpu``/``cuda``/``cuda:N`` into a device; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise InputError(
                f"--device {name} was asked for, but no CUDA GPU is available. Use --device cpu or auto."
            )
        return torch.device(name)
    raise InputError(f"--device must be auto, cpu or cuda. Got {name!r}.")


def has_native_bf16(device: torch.device) -> bool | None:
    """Whether ``device`` runs bfloat16 matrix products natively (a CPU with AVX512-BF16 or AMX,
    a GPU with bf16 tensor cores); None when torch cannot tell. Elsewhere bf16 is emulated and
    can be slower than float32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        probes = [
            getattr(torch.cpu, name, None)
            for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        ]
        if any(probe is None for probe in probes):
            return None
        return any(probe() for probe in probes)
    return None


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op CPU threads (None keeps torch's default); return the count in use."""
    if threads is not None:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def linear_shapes(model: nn.Module) -> list[tuple[int, int]]:
    """``(in_features, out_features)`` of every ``nn.Linear`` in ``model``, in module order."""
    return [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, nn.Linear)]


def forward_flops(model: nn.Module) -> int:
    """Matrix-multiply FLOPs of one image's forward pass: ``2 * in * out`` per Linear layer.

    Only the GEMMs are counted (bias adds, activations and the loss are memory-bound and small);
    this is the arithmetic that bounds the run time from below.
    """
    return sum(2 * a * b for a, b in linear_shapes(model))


def train_step_flops(model: nn.Module) -> int:
    """Matrix-multiply FLOPs of one image's forward + backward pass.

    Backward per Linear layer: the weight gradient (``2 * in * out``) and the input gradient
    (``2 * in * out``), except for the first layer, whose input (the image) needs no gradient.
    For the seed's 784-256-128-64-(16,16) / 16-64-128-256-784 model this is 2,516,992 (~2.5 MFLOP).
    """
    shapes = linear_shapes(model)
    first_in, first_out = shapes[0]
    return 3 * forward_flops(model) - 2 * first_in * first_out


def epoch_flops(model: nn.Module, n_train: int, n_valid: int = 0) -> int:
    """GEMM FLOPs of one training epoch: forward + backward on ``n_train`` images, plus the
    forward-only validation pass on ``n_valid`` images."""
    return n_train * train_step_flops(model) + n_valid * forward_flops(model)
