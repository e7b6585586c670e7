"""metabench.profiling: devices, phase timing and peak memory (CPU for real, CUDA when present)."""

from __future__ import annotations

import contextlib
import json
import math
import mmap
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from metabench.errors import MetabenchError
from metabench.profiling import (
    PhaseProfiler,
    Profile,
    RssSampler,
    cpu_name,
    device_name,
    resolve_device,
)

BIG_FLOATS = 50_000_000  # 200 MB of float32
BIG_BYTES = 4 * BIG_FLOATS
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


def test_resolve_device_cpu_and_auto():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_resolve_device_auto_without_cuda_is_cpu(monkeypatch):
    _no_cuda(monkeypatch)
    assert resolve_device("auto") == torch.device("cpu")


@pytest.mark.parametrize("spec", ["cuda", "cuda:1"])
def test_resolve_device_cuda_without_cuda_is_one_line_error(monkeypatch, spec):
    _no_cuda(monkeypatch)
    with pytest.raises(MetabenchError, match=f"device '{spec}' requested but CUDA is not "
                                             "available; available: cpu"):
        resolve_device(spec)


def test_resolve_device_missing_index_and_unknown_names(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(MetabenchError, match="'cuda:2' does not exist; available: cpu, cuda:0 to "
                                             "cuda:1"):
        resolve_device("cuda:2")
    for spec in ("gpu", "meta", "cuda:x"):
        with pytest.raises(MetabenchError, match=f"unknown device '{spec}'; expected auto, cpu"):
            resolve_device(spec)


def test_cpu_device_name_is_a_model_name():
    name = device_name(torch.device("cpu"))
    assert name == cpu_name() and name.strip() and "\n" not in name


@contextlib.contextmanager
def fresh_resident_pages(nbytes: int) -> Iterator[None]:
    """Map and touch ``nbytes`` of new anonymous memory, unmapped on exit.

    An mmap bypasses malloc and torch's allocator, whose caches may hand back memory that an
    earlier test freed but that is still resident (then RSS would not move at all).
    """
    buffer = mmap.mmap(-1, nbytes)
    view = np.frombuffer(buffer, dtype=np.uint8)
    view[:] = 1  # touch every page so it becomes resident
    try:
        yield
    finally:
        del view
        buffer.close()


def test_big_allocation_shows_a_higher_peak_than_an_idle_phase():
    profiler = PhaseProfiler("cpu")
    with profiler.phase("idle"):
        time.sleep(0.02)
    with profiler.phase("allocate"), fresh_resident_pages(BIG_BYTES):
        time.sleep(0.02)
    idle, allocate = profiler.phases["idle"], profiler.phases["allocate"]
    assert allocate.peak_memory_mb >= idle.peak_memory_mb + 150
    assert allocate.peak_memory_mb >= allocate.start_memory_mb + 150
    assert idle.peak_memory_mb >= idle.start_memory_mb > 0


TORCH_PHASE_SCRIPT = f"""
import json, time, torch
from metabench.profiling import PhaseProfiler
profiler = PhaseProfiler("cpu")
with profiler.phase("idle"):
    time.sleep(0.02)
with profiler.phase("allocate"):
    big = torch.ones({BIG_BYTES // 4})
del big
print(json.dumps({{name: record.peak_memory_mb for name, record in profiler.phases.items()}}))
"""


def test_a_torch_tensor_in_a_phase_raises_its_peak():
    """In a fresh process, so the allocator has no freed memory to reuse."""
    done = subprocess.run([sys.executable, "-c", TORCH_PHASE_SCRIPT], capture_output=True,
                          text=True, timeout=120, check=True)
    peaks = json.loads(done.stdout.strip().splitlines()[-1])
    assert peaks["allocate"] >= peaks["idle"] + 150


def test_sampler_thread_catches_a_transient_peak():
    """The pages are unmapped before the sampler stops, so only its thread can see them."""
    sampler = RssSampler(interval_s=0.005)
    sampler.start()
    time.sleep(0.02)
    with fresh_resident_pages(BIG_BYTES):
        time.sleep(0.2)
    time.sleep(0.02)
    end_bytes = sampler._read()
    peak = sampler.stop()
    assert peak >= end_bytes + 150 * 2**20


def test_sampler_falls_back_to_lifetime_peak_without_proc():
    sampler = RssSampler(path="/nonexistent/statm")
    sampler.start()
    assert sampler.stop() > 0


def test_step_times_from_known_sleeps_are_ordered():
    profiler = PhaseProfiler("cpu")
    for name, sleep in (("short", 0.002), ("long", 0.02)):
        with profiler.phase(name):
            for _ in range(5):
                with profiler.step():
                    time.sleep(sleep)
    short, long = profiler.phases["short"], profiler.phases["long"]
    assert len(short.steps) == len(long.steps) == 5
    assert min(short.steps) >= 0.002 and min(long.steps) >= 0.02
    assert short.step_stats.median < long.step_stats.median
    assert long.wall_s >= sum(long.steps)


def test_recorded_steps_give_exact_statistics_and_profile():
    profiler = PhaseProfiler("cpu")
    with profiler.phase("train"):
        for seconds in (0.1, 0.2, 0.3, 0.4, 0.5):
            profiler.record(seconds)
    with profiler.phase("test"):
        for _ in range(4):
            with profiler.step():
                time.sleep(0.001)
    profile = profiler.profile()
    assert profile.train_steps == 5
    assert profile.train_step_median_s == pytest.approx(0.3)
    assert profile.train_step_iqr_s == pytest.approx(0.2)
    assert profile.adapt_median_s >= 0.001
    test_phase = profiler.phases["test"]
    assert profile.eval_episodes_per_s == pytest.approx(4 / test_phase.wall_s)
    assert profile.train_time_s == profiler.phases["train"].wall_s
    assert profile.peak_memory_eval_mb == test_phase.peak_memory_mb > 0
    assert profile.device == "cpu" and profile.device_name == cpu_name()


def test_profile_as_dict_is_strict_json_and_round_trips():
    profiler = PhaseProfiler("cpu")
    with profiler.phase("train"):
        profiler.record(0.25)
    profile = profiler.profile()  # no test phase: its fields are NaN
    data = profile.as_dict()
    assert data["adapt_median_s"] is None and data["eval_episodes_per_s"] is None
    assert data["train_step_median_s"] == 0.25 and data["train_steps"] == 1
    text = json.dumps(data, allow_nan=False)
    back = Profile.from_dict(json.loads(text))
    assert back.as_dict() == data
    assert math.isnan(back.peak_memory_eval_mb)


def test_reentered_phase_accumulates_and_record_into_named_phase():
    profiler = PhaseProfiler("cpu")
    for _ in range(3):
        with profiler.phase("train"), profiler.step():
            time.sleep(0.001)
        with profiler.phase("validation"):
            pass
    profiler.record(0.5, phase="train")
    train = profiler.phases["train"]
    assert train.entries == 3 and len(train.steps) == 4 and train.steps[-1] == 0.5
    assert train.wall_s >= 0.003


def test_misuse_and_exceptions_inside_a_phase():
    profiler = PhaseProfiler("cpu")
    with pytest.raises(RuntimeError, match="outside a phase"), profiler.step():
        pass
    with pytest.raises(RuntimeError, match="outside a phase"):
        profiler.record(1.0)
    nested = pytest.raises(RuntimeError, match="inside phase 'outer'")
    with profiler.phase("outer"), nested, profiler.phase("inner"):
        pass
    threads = threading.active_count()
    with pytest.raises(ValueError, match="boom"), profiler.phase("failing"), profiler.step():
        raise ValueError("boom")
    assert threading.active_count() == threads  # the sampler thread was stopped
    assert profiler.phases["failing"].entries == 1 and len(profiler.phases["failing"].steps) == 1
    with profiler.phase("after"):  # the profiler is usable again
        pass


@pytest.mark.cuda
@needs_cuda
def test_cuda_peak_memory_is_reset_per_phase():
    profiler = PhaseProfiler("cuda")
    with profiler.phase("allocate"):
        big = torch.ones(BIG_FLOATS, device=profiler.device)
        del big
    with profiler.phase("idle"):
        torch.cuda.synchronize()
    allocate, idle = profiler.phases["allocate"], profiler.phases["idle"]
    assert allocate.peak_memory_mb >= idle.peak_memory_mb + 150  # reset, or idle would match
    assert profiler.device.type == "cuda" and profiler.device.index is not None


@pytest.mark.cuda
@needs_cuda
def test_cuda_event_step_times_are_ordered():
    profiler = PhaseProfiler("cuda")
    small = torch.randn(64, 64, device=profiler.device)
    large = torch.randn(2048, 2048, device=profiler.device)
    for name, matrix in (("small", small), ("large", large)):
        with profiler.phase(name):
            for _ in range(5):
                with profiler.step():
                    for _ in range(10):
                        matrix = matrix @ matrix / matrix.shape[0] ** 0.5
    small_steps, large_steps = profiler.phases["small"].steps, profiler.phases["large"].steps
    assert len(small_steps) == len(large_steps) == 5
    assert all(s > 0 for s in small_steps + large_steps)
    assert profiler.phases["small"].step_stats.median < profiler.phases["large"].step_stats.median
    assert profiler.phases["large"].wall_s >= sum(large_steps) * 0.99
    profile = profiler.profile(train="large", evaluate="small")
    assert profile.device_name == torch.cuda.get_device_name(profiler.device)
