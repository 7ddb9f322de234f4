"""The one place where the compute device and CPU thread count are chosen."""

from __future__ import annotations

import torch

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


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op CPU threads (None keeps torch's default); return the count in use."""
    if threads is not None:
        torch.set_num_threads(threads)
    return torch.get_num_threads()
