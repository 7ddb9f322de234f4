"""Measure training and scoring speed against the machine's own GEMM throughput; print JSON.

Usage: ``python benchmarks/bench.py [--epochs 5] [--warmup 2] [--compile] [--skip-run]``

Every figure comes from one run on one machine: the fp32 GEMM throughput for the seed model's own
layer shapes (forward and backward, at the thread count in use), the GEMM FLOPs of a training
epoch and of scoring one image (counted from the layer shapes), the median epoch time of the seed
configuration after a warm-up and its ratio to the GEMM bound, scoring throughput on 10,000 images
and its ratio to the forward-FLOP bound, and the wall time and peak RSS of a default
``vae-anomaly run`` (a subprocess). The load average is printed too: other processes on the same
cores slow everything down, the GEMMs included.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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
from vae_anomaly.training import train_vae


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
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    with open(os.path.join(out_dir, "metrics.json"), encoding="utf-8") as f:
        timings = json.load(f).get("timings", {})
    return {
        "command": " ".join(["vae-anomaly", *command[3:]]),
        "wall_s": round(wall, 2),
        "train_s": round(timings.get("train_s", float("nan")), 2),
        "peak_rss_mib": round(peak_kib / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs after the warm-up")
    parser.add_argument("--warmup", type=int, default=2, help="untimed epochs first")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--compile", action="store_true", help="time the torch.compile'd step")
    parser.add_argument("--skip-run", action="store_true", help="skip the whole-run measurement")
    args = parser.parse_args()

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
    train_gemm = gemm_throughput(model, batch_size, device, backward=True)
    score_gemm = gemm_throughput(model, score_batch, device, backward=False)
    flops_epoch = epoch_flops(model, len(train_x), len(valid_x))

    history = train_vae(
        model,
        train_x,
        valid_x,
        epochs=args.warmup + args.epochs,
        batch_size=batch_size,
        generator=torch.Generator().manual_seed(0),
        compile=args.compile,
    )
    epoch_s = statistics.median(history.epoch_seconds[args.warmup :])
    epoch_bound_s = flops_epoch / train_gemm

    score_images(model, score_x[:2048])  # warm-up
    times = []
    for _ in range(3):
        _sync(device)
        start = time.perf_counter()
        score_images(model, score_x, batch_size=score_batch)
        _sync(device)
        times.append(time.perf_counter() - start)
    images_per_s = len(score_x) / statistics.median(times)
    score_bound = score_gemm / forward_flops(model)

    result = {
        "device": str(device),
        "threads": threads,
        "torch": torch.__version__,
        "load_average_1min": {"before": round(load_before, 2)},
        "gemm_gflops": {
            "train_step_batch128": round(train_gemm / 1e9, 1),
            "forward_batch1024": round(score_gemm / 1e9, 1),
        },
        "flops": {
            "train_step_per_image": train_step_flops(model),
            "forward_per_image": forward_flops(model),
            "epoch": flops_epoch,
            "epoch_note": f"{len(train_x)} train images fwd+bwd + {len(valid_x)} validation fwd",
        },
        "epoch": {
            "compiled": args.compile,
            "median_s": round(epoch_s, 4),
            "all_s": [round(s, 4) for s in history.epoch_seconds],
            "gemm_bound_s": round(epoch_bound_s, 4),
            "ratio_to_bound": round(epoch_s / epoch_bound_s, 3),
        },
        "scoring": {
            "images": len(score_x),
            "images_per_s": round(images_per_s),
            "forward_bound_images_per_s": round(score_bound),
            "fraction_of_bound": round(images_per_s / score_bound, 3),
        },
    }
    if not args.skip_run:
        with tempfile.TemporaryDirectory() as out_dir:
            result["run"] = measure_run(os.path.join(out_dir, "run"))
    result["load_average_1min"]["after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
