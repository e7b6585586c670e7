"""What every benchmark script shares: the context of a measurement, the check that every
figure is a finite number and every timed cell ran, and the one JSON object printed.

A script builds its figures, then ends with ``sys.exit(finish(result, failures, ...))``:
the JSON gets a ``context`` (cpus, torch threads, load average at the start and the end,
versions of python, torch, learn2learn, metabench, the device), and the exit status is 1
when a timed cell failed or a figure is NaN or infinite, with one line per problem on
stderr. The JSON is printed either way, so a failed run still shows what it measured.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import platform
import sys
import time
from collections.abc import Iterable
from typing import Any

_STARTED = {"load_average": [round(x, 2) for x in os.getloadavg()], "perf": time.perf_counter()}


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """``--json`` (one line of JSON) and ``--quick`` (tiny sizes, seconds; the tests run it)."""
    parser.add_argument("--json", action="store_true", help="print one JSON object on one line")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes that run in seconds (the test suite runs this)")


def version(package: str) -> str | None:
    """The installed version of ``package`` (None when it is not installed), without importing it."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def describe_device(device: Any = None) -> str:
    """``cuda: <name>`` for a CUDA device, else ``cpu: <processor>``."""
    name = str(device) if device is not None else "cpu"
    if name.startswith("cuda") and "torch" in sys.modules:
        import torch

        if torch.cuda.is_available():
            return f"cuda: {torch.cuda.get_device_name(torch.device(name))}"
    return f"cpu: {platform.processor() or platform.machine()}"


def context(device: Any = None, **extra: Any) -> dict[str, Any]:
    """What a figure depends on: the machine, its load, the threads, the versions."""
    threads = None
    if "torch" in sys.modules:  # never import torch only to describe the context
        threads = sys.modules["torch"].get_num_threads()
    return {
        "cpus": os.cpu_count(),
        "torch_threads": threads,
        "load_average_start": _STARTED["load_average"],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "wall_s": round(time.perf_counter() - _STARTED["perf"], 2),
        "process_cpu_s": round(time.process_time(), 2),  # this process, since it started
        "device": describe_device(device),
        "python": platform.python_version(),
        "torch": version("torch"),
        "learn2learn": version("learn2learn"),
        "metabench": version("metabench"),
        "platform": platform.platform(),
        **extra,
    }


def nonfinite(value: Any, path: str = "") -> list[str]:
    """The paths of every NaN or infinite number in ``value`` (nested dicts and lists)."""
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, int | float):
        return [] if math.isfinite(value) else [path or "(the result)"]
    if isinstance(value, dict):
        return [p for key, item in value.items()
                for p in nonfinite(item, f"{path}.{key}" if path else str(key))]
    if isinstance(value, list | tuple):
        return [p for i, item in enumerate(value) for p in nonfinite(item, f"{path}[{i}]")]
    return []


def finish(result: dict[str, Any], failures: Iterable[str] = (), *, as_json: bool = True,
           device: Any = None, **extra: Any) -> int:
    """Print ``result`` with its context as JSON; return the exit status: 1 (with one line per
    problem on stderr) when ``failures`` is not empty or a number of ``result`` is not finite."""
    result = {**result, "context": {**context(device, **extra), **result.get("context", {})}}
    problems = [*failures, *(f"{path} is not a finite number" for path in nonfinite(result))]
    result["ok"] = not problems
    if problems:
        result["problems"] = problems
    print(json.dumps(result, default=str) if as_json else json.dumps(result, indent=2, default=str))
    sys.stdout.flush()
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


def positive(figures: dict[str, Any]) -> list[str]:
    """A failure line for each timed figure (seconds or a rate) that is not above zero."""
    return [f"{name} = {value!r} is not a positive number" for name, value in figures.items()
            if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0]
