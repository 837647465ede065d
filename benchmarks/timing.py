"""Timing a repeated call on CPU or CUDA, shared by the benchmarks."""

from __future__ import annotations

import time

import torch


def step_times(fn, device: torch.device, warmup: int, steps: int) -> list[float]:
    """Seconds of each of ``steps`` calls of ``fn`` after ``warmup`` untimed ones; on CUDA the
    device is synchronised around each call, so a time is the work's, not its launch's."""
    times = []
    for index in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if index >= warmup:
            times.append(time.perf_counter() - start)
    return times
