"""Measure training and scoring speed against the machine's own GEMM throughput; print JSON.

Usage: ``python benchmarks/bench.py [--epochs 7] [--warmup 2] [--steps autograd,analytic,compiled,bf16] [--skip-run]``

Every figure comes from one run on one machine: the fp32 GEMM throughput for the seed model's own
layer shapes (forward and backward, at the thread count in use), the GEMM FLOPs of a training
epoch and of scoring one image (counted from the layer shapes), the median epoch time of the seed
configuration after a warm-up and its ratio to the GEMM bound (for the plain autograd step, the
default hand-written-gradient step, the ``--compile`` step and the ``--precision bf16`` step,
taking turns epoch by epoch; bf16 is compared with the same float32 bound), scoring throughput on 10,000 images
and its ratio to the forward-FLOP bound, and the wall time and peak RSS of a default
``vae-anomaly run`` (a subprocess). The GEMM throughput is measured again between epochs and
around each scoring pass, and every time is compared with the throughput measured next to it: on
a shared machine the speed drifts by tens of percent within a minute. The load average is printed
too.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch
from torch import nn

from vae_anomaly.datasets import load_dataset, seed_split
from vae_anomaly.images import to_model_layout
from vae_anomaly.models import MLPVAE
from vae_anomaly.runtime import (
    epoch_flops,
    forward_flops,
    linear_shapes,
    resolve_device,
    set_threads,
    train_step_flops,
)
from vae_anomaly.scoring import score_images
from vae_anomaly.training import evaluate_loss, make_optimizer, make_train_step, train_epoch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gemm_throughput(
    model: nn.Module, batch: int, device: torch.device, *, backward: bool, seconds: float = 1.5
) -> float:
    """FLOP/s of the model's GEMMs at ``batch`` rows: ``X @ W.T`` per layer, and with ``backward``
    also ``G @ W`` (except the first layer) and ``G.T @ X``, as autograd runs them for Linear."""
    ops = []
    for i, (a, b) in enumerate(linear_shapes(model)):
        x = torch.rand(batch, a, device=device)
        w = torch.rand(b, a, device=device)
        bias = torch.rand(b, device=device)
        g = torch.rand(batch, b, device=device)
        ops.append(lambda x=x, w=w, bias=bias: torch.addmm(bias, x, w.t()))
        if backward:
            if i > 0:
                ops.append(lambda g=g, w=w: g.mm(w))
            ops.append(lambda g=g, x=x: g.t().mm(x))
    flops = batch * (train_step_flops(model) if backward else forward_flops(model))
    for op in ops:  # warm-up
        op()
    rates = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(rates) < 5:
        _sync(device)
        start = time.perf_counter()
        for _ in range(10):
            for op in ops:
                op()
        _sync(device)
        rates.append(10 * flops / (time.perf_counter() - start))
    return statistics.median(rates)


def measure_run(out_dir: str) -> dict:
    """Wall time and peak RSS of ``vae-anomaly run`` with defaults, as a child process."""
    command = [
        sys.executable,
        "-c",
        "from vae_anomaly.cli import main; main()",
        "run",
        "--out",
        out_dir,
        "--no-progress",
    ]
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    # wait4 gives this child's own peak RSS (RUSAGE_CHILDREN would be the largest of every child
    # waited for, inductor's compile workers included).
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise subprocess.CalledProcessError(child.returncode, command)
    peak_kib = usage.ru_maxrss  # KiB on Linux
    with open(os.path.join(out_dir, "metrics.json"), encoding="utf-8") as f:
        timings = json.load(f).get("timings", {})
    return {
        "command": " ".join(["vae-anomaly", *command[3:]]),
        "wall_s": round(wall, 2),
        "train_s": round(timings.get("train_s", float("nan")), 2),
        "peak_rss_mib": round(peak_kib / 1024, 1),
    }


class _AutogradOnly(nn.Module):
    """The seed model without its hand-written gradients, to time the plain autograd step."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.vae = model

    def forward(self, x: torch.Tensor, sample: bool = True):
        return self.vae(x, sample=sample)


def time_training(
    step_kinds: list[str],
    train_x,
    valid_x,
    *,
    epochs: int,
    warmup: int,
    batch_size: int,
    flops: int,
) -> list[dict]:
    """Median epoch time of each training step kind and its ratio to the GEMM bound.

    The kinds take turns, one epoch each (``warmup`` untimed rounds first), so that every kind
    sees the machine in the same state: a shared machine's speed drifts by 10-20% within a
    minute. An epoch is what ``train_vae`` times: ``training.train_epoch`` (gather the shuffled
    images, then every step) and the validation loss. The GEMM throughput is measured before and
    after every epoch, and each epoch is compared with the mean of the two.
    """
    device = train_x.device
    flat_train = train_x.reshape(len(train_x), -1)
    flat_valid = valid_x.reshape(len(valid_x), -1)
    shuffled = torch.empty_like(flat_train)
    runs = {}
    for kind in step_kinds:
        torch.manual_seed(0)
        vae = MLPVAE(train_x.shape[1:]).to(device)
        model = _AutogradOnly(vae) if kind == "autograd" else vae
        optimizer = make_optimizer(model, 1e-3, 0.9, 1e-7)
        step = make_train_step(
            model,
            optimizer,
            kl_weight=0.0,
            compile=kind == "compiled",
            precision="bf16" if kind == "bf16" else "fp32",
        )
        runs[kind] = {"model": model, "step": step, "seconds": [], "ratios": [], "rates": []}
    generator = torch.Generator().manual_seed(0)
    for round_ in range(warmup + epochs):
        for run in runs.values():
            order = torch.randperm(len(flat_train), generator=generator).to(device)
            before = gemm_throughput(run["model"], batch_size, device, backward=True, seconds=0.3)
            _sync(device)
            start = time.perf_counter()
            train_epoch(run["step"], flat_train, order, shuffled, batch_size)
            evaluate_loss(run["model"], flat_valid, batch_size=1024, kl_weight=0.0)
            _sync(device)
            seconds = time.perf_counter() - start
            after = gemm_throughput(run["model"], batch_size, device, backward=True, seconds=0.3)
            run["all_s"] = [*run.get("all_s", []), round(seconds, 4)]
            if round_ >= warmup:
                rate = (before + after) / 2
                run["seconds"].append(seconds)
                run["rates"].append(rate)
                run["ratios"].append(seconds / (flops / rate))
    results = []
    for kind, run in runs.items():
        gemm = statistics.median(run["rates"])
        results.append(
            {
                "step": kind,
                "median_s": round(statistics.median(run["seconds"]), 4),
                "all_s": run["all_s"],
                "gemm_gflops_median": round(gemm / 1e9, 1),
                "gemm_bound_s": round(flops / gemm, 4),
                "ratio_to_bound": round(statistics.median(run["ratios"]), 3),
                "ratios": [round(r, 3) for r in run["ratios"]],
            }
        )
    return results


STEP_KINDS = ("autograd", "analytic", "compiled", "bf16")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=7, help="timed epochs of each step kind")
    parser.add_argument("--warmup", type=int, default=2, help="untimed epochs of each kind first")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument(
        "--steps",
        default=",".join(STEP_KINDS),
        help="training steps to time, comma-separated: autograd (plain loss.backward()), "
        "analytic (the default: MLPVAE.gradient_function), compiled (--compile), "
        "bf16 (--precision bf16)",
    )
    parser.add_argument("--skip-run", action="store_true", help="skip the whole-run measurement")
    args = parser.parse_args()
    unknown = set(args.steps.split(",")) - set(STEP_KINDS)
    if unknown:
        parser.error(f"--steps: unknown step kinds {', '.join(sorted(unknown))}")

    threads = set_threads(args.threads)
    device = resolve_device(args.device)
    load_before = os.getloadavg()[0]

    dataset = load_dataset("fashion-mnist")
    split = seed_split(dataset, (0, 2, 6), (7,), seed=0)
    train_x = torch.from_numpy(to_model_layout(split.normal_train_x)).to(device)
    valid_x = torch.from_numpy(to_model_layout(split.normal_valid_x)).to(device)
    score_x = to_model_layout(dataset.x_train[:10_000])

    torch.manual_seed(0)
    model = MLPVAE(train_x.shape[1:]).to(device)
    batch_size, score_batch = 128, 1024
    flops_epoch = epoch_flops(model, len(train_x), len(valid_x))
    epochs = time_training(
        args.steps.split(","),
        train_x,
        valid_x,
        epochs=args.epochs,
        warmup=args.warmup,
        batch_size=batch_size,
        flops=flops_epoch,
    )

    score_images(model, score_x[:2048])  # warm-up
    score_rates, times = [], []
    for _ in range(3):
        score_rates.append(gemm_throughput(model, score_batch, device, backward=False, seconds=0.5))
        _sync(device)
        start = time.perf_counter()
        score_images(model, score_x, batch_size=score_batch)
        _sync(device)
        times.append(time.perf_counter() - start)
    score_rates.append(gemm_throughput(model, score_batch, device, backward=False, seconds=0.5))
    fractions = [
        len(score_x) / t / ((a + b) / 2 / forward_flops(model))
        for t, a, b in zip(times, score_rates, score_rates[1:], strict=False)
    ]
    score_gemm = statistics.median(score_rates)

    result = {
        "device": str(device),
        "threads": threads,
        "torch": torch.__version__,
        "load_average_1min": {"before": round(load_before, 2)},
        "flops": {
            "train_step_per_image": train_step_flops(model),
            "forward_per_image": forward_flops(model),
            "epoch": flops_epoch,
            "epoch_note": f"{len(train_x)} train images fwd+bwd + {len(valid_x)} validation fwd",
        },
        "epoch": epochs,
        "scoring": {
            "images": len(score_x),
            "batch_size": score_batch,
            "images_per_s": round(len(score_x) / statistics.median(times)),
            "gemm_gflops_median": round(score_gemm / 1e9, 1),
            "forward_bound_images_per_s": round(score_gemm / forward_flops(model)),
            "fraction_of_bound": round(statistics.median(fractions), 3),
        },
    }
    if not args.skip_run:
        with tempfile.TemporaryDirectory() as out_dir:
            result["run"] = measure_run(os.path.join(out_dir, "run"))
    result["load_average_1min"]["after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
