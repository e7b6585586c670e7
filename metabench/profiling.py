"""Phase profiling: time per step and peak memory per phase, on CPU or CUDA.

On CUDA, times come from CUDA events (resolved with one synchronisation at the end of a phase)
and memory from ``torch.cuda.max_memory_allocated``, reset at every phase start. On CPU, times
come from ``time.perf_counter`` and memory is the peak resident set size of the process, sampled
by a daemon thread during the phase (``ru_maxrss`` cannot be reset).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import platform
import resource
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from metabench.errors import MetabenchError
from metabench.stats import SampleStats

MB = float(2**20)
TRAIN_PHASE = "train"
EVAL_PHASE = "test"
STATM_PATH = "/proc/self/statm"
SAMPLE_INTERVAL_S = 0.01


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """Turn "auto", "cpu", "cuda" or "cuda:N" into a usable torch.device."""
    text = str(spec).strip().lower()
    if text == "auto":
        return _default_cuda() if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise MetabenchError(f"unknown device '{spec}'; expected auto, cpu, cuda or cuda:N")
    return device if device.type == "cpu" else _checked_cuda(spec, device)


def _default_cuda() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device())


def _checked_cuda(spec: object, device: torch.device) -> torch.device:
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise MetabenchError(f"device '{spec}' requested but CUDA is not available; available: cpu")
    if device.index is None:
        return _default_cuda()
    if device.index >= count:
        raise MetabenchError(
            f"device '{spec}' does not exist; available: cpu, cuda:0 to cuda:{count - 1}"
        )
    return device


def device_name(device: torch.device) -> str:
    """The card's name for CUDA, the CPU model otherwise."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_name()


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo, else platform.processor(), else the machine type."""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as lines:
        for line in lines:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def lifetime_peak_rss_bytes() -> int:
    """The process's peak RSS since it started (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


class RssSampler:
    """Samples the resident set size in a daemon thread and keeps the maximum."""

    def __init__(self, interval_s: float = SAMPLE_INTERVAL_S, path: str = STATM_PATH) -> None:
        self.interval_s = interval_s
        self.path = path
        self.start_bytes = 0
        self.peak_bytes = 0
        self._fd: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Open /proc/self/statm, take a first sample and start the sampling thread."""
        try:
            self._fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            self._fd = None  # no /proc: stop() falls back to the lifetime peak
        self.start_bytes = self.peak_bytes = self._read() if self._fd is not None else 0
        if self._fd is not None:
            self._thread = threading.Thread(target=self._run, name="metabench-rss", daemon=True)
            self._thread.start()

    def stop(self) -> int:
        """Take a last sample, stop the thread and return the peak in bytes."""
        if self._fd is None:
            self.peak_bytes = lifetime_peak_rss_bytes()
            return self.peak_bytes
        self._sample()
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        os.close(self._fd)
        self._fd = None
        return self.peak_bytes

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def _sample(self) -> None:
        self.peak_bytes = max(self.peak_bytes, self._read())

    def _read(self) -> int:
        # statm: size resident shared ... in pages; one pread of a tiny file is cheap.
        assert self._fd is not None
        resident_pages = int(os.pread(self._fd, 128, 0).split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE")


@dataclass
class PhaseRecord:
    """Everything measured in one named phase, summed over the times it was entered."""

    name: str
    wall_s: float = 0.0
    peak_memory_mb: float = math.nan
    start_memory_mb: float = math.nan
    entries: int = 0
    steps: list[float] = field(default_factory=list)

    @property
    def step_stats(self) -> SampleStats:
        """Statistics of the step times in seconds."""
        return SampleStats(self.steps)

    def add_entry(self, wall_s: float, start_mb: float, peak_mb: float) -> None:
        """Fold in one more pass through the phase."""
        self.wall_s += wall_s
        self.peak_memory_mb = _nanmax(self.peak_memory_mb, peak_mb)
        if self.entries == 0:
            self.start_memory_mb = start_mb
        self.entries += 1


def _nanmax(a: float, b: float) -> float:
    return b if math.isnan(a) else max(a, b)


class _CpuMeter:
    """perf_counter times and sampled peak RSS."""

    def __init__(self) -> None:
        self._sampler: RssSampler | None = None
        self._t0 = 0.0

    def start_phase(self) -> None:
        self._sampler = RssSampler()
        self._sampler.start()
        self._t0 = time.perf_counter()

    def end_phase(self) -> tuple[float, float, float]:
        wall = time.perf_counter() - self._t0
        assert self._sampler is not None, "end_phase() without start_phase()"
        peak = self._sampler.stop()
        return wall, self._sampler.start_bytes / MB, peak / MB

    def start_step(self) -> float:
        return time.perf_counter()

    def end_step(self, token: float) -> float:
        return time.perf_counter() - token

    def resolve(self, pending: list[Any]) -> list[float]:
        return list(pending)


class _CudaMeter:
    """CUDA event times and max_memory_allocated, reset per phase."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._start: torch.cuda.Event | None = None
        self._start_bytes = 0

    def _event(self) -> torch.cuda.Event:
        event = torch.cuda.Event(enable_timing=True)
        event.record(torch.cuda.current_stream(self.device))
        return event

    def start_phase(self) -> None:
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        self._start_bytes = torch.cuda.memory_allocated(self.device)
        self._start = self._event()

    def end_phase(self) -> tuple[float, float, float]:
        end = self._event()
        torch.cuda.synchronize(self.device)
        peak = torch.cuda.max_memory_allocated(self.device)
        assert self._start is not None, "end_phase() without start_phase()"
        return self._start.elapsed_time(end) / 1000.0, self._start_bytes / MB, peak / MB

    def start_step(self) -> torch.cuda.Event:
        return self._event()

    def end_step(self, token: torch.cuda.Event) -> tuple[torch.cuda.Event, torch.cuda.Event]:
        return token, self._event()  # resolved at phase end: no synchronisation per step

    def resolve(self, pending: list[Any]) -> list[float]:
        return [p if isinstance(p, float) else p[0].elapsed_time(p[1]) / 1000.0 for p in pending]


class PhaseProfiler:
    """Wall time, step times and peak memory of named phases on one device.

    Phases run one at a time (not nested); entering a phase again adds to its record, so
    training can be interleaved with validation phases.
    """

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = resolve_device(device)
        self.phases: dict[str, PhaseRecord] = {}
        # Step tokens are the meter's own (a float or a CUDA event): typed Any across both.
        self._meter: Any = _CudaMeter(self.device) if self.device.type == "cuda" else _CpuMeter()
        self._current: str | None = None
        self._pending: list[Any] = []
        self._counts: list[int] = []  # episodes per pending step (a batched prediction: several)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[PhaseRecord]:
        """Measure the enclosed block as (a further pass through) the phase ``name``."""
        if self._current is not None:
            raise RuntimeError(f"phase '{name}' started inside phase '{self._current}'")
        record = self.phases.setdefault(name, PhaseRecord(name))
        self._current, self._pending, self._counts = name, [], []
        self._meter.start_phase()
        try:
            yield record
        finally:
            wall, start_mb, peak_mb = self._meter.end_phase()
            record.add_entry(wall, start_mb, peak_mb)
            times = self._meter.resolve(self._pending)
            record.steps.extend(t / n for t, n in zip(times, self._counts, strict=True) for _ in range(n))
            self._current, self._pending, self._counts = None, [], []

    @contextlib.contextmanager
    def step(self, count: int = 1) -> Iterator[None]:
        """Time the enclosed block as one step of the current phase, or as ``count`` steps of
        equal length (episodes predicted together: one step is one episode)."""
        self._require_phase("step()")
        token = self._meter.start_step()
        try:
            yield
        finally:
            self._pending.append(self._meter.end_step(token))
            self._counts.append(count)

    def record(self, seconds: float, phase: str | None = None) -> None:
        """Add a step time measured elsewhere, to ``phase`` or to the current phase."""
        if phase is None:
            self._require_phase("record()")
            self._pending.append(float(seconds))
            self._counts.append(1)
        else:
            self.phases.setdefault(phase, PhaseRecord(phase)).steps.append(float(seconds))

    def _require_phase(self, what: str) -> None:
        if self._current is None:
            raise RuntimeError(f"{what} called outside a phase; wrap it in profiler.phase(name)")

    def profile(self, train: str = TRAIN_PHASE, evaluate: str = EVAL_PHASE) -> Profile:
        """Summarise the training and evaluation phases (one step = one test episode)."""
        train_record = self.phases.get(train, PhaseRecord(train))
        eval_record = self.phases.get(evaluate, PhaseRecord(evaluate))
        train_steps, eval_steps = train_record.step_stats, eval_record.step_stats
        return Profile(
            train_step_median_s=train_steps.median,
            train_step_iqr_s=train_steps.iqr,
            train_steps=train_steps.n,
            train_time_s=train_record.wall_s if train_record.entries else math.nan,
            adapt_median_s=eval_steps.median,
            adapt_iqr_s=eval_steps.iqr,
            eval_episodes_per_s=_rate(eval_steps.n, eval_record.wall_s),
            peak_memory_train_mb=train_record.peak_memory_mb,
            peak_memory_eval_mb=eval_record.peak_memory_mb,
            device=str(self.device),
            device_name=device_name(self.device),
        )


def _rate(count: int, seconds: float) -> float:
    return count / seconds if count and seconds > 0 else math.nan


@dataclass(frozen=True)
class Profile:
    """Speed and memory of one cell; NaN where a phase was not measured."""

    train_step_median_s: float
    train_step_iqr_s: float
    train_steps: int
    train_time_s: float
    adapt_median_s: float
    adapt_iqr_s: float
    eval_episodes_per_s: float
    peak_memory_train_mb: float
    peak_memory_eval_mb: float
    device: str
    device_name: str

    def as_dict(self) -> dict[str, float | int | str | None]:
        """Plain values for JSON: NaN becomes None."""
        return {key: _none_if_nan(value) for key, value in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        """Inverse of :meth:`as_dict` (None becomes NaN for the float fields)."""
        values: dict[str, Any] = {f.name: data.get(f.name) for f in dataclasses.fields(cls)}
        for name, value in values.items():
            if value is None and name not in ("device", "device_name", "train_steps"):
                values[name] = math.nan
        return cls(**values)


def _none_if_nan(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value
