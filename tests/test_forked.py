"""metabench.forked: calls shared with a forked child give the serial results, in order, and
a failure raises here as it would serially."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from metabench import forked

needs_fork = pytest.mark.skipif(
    not sys.platform.startswith("linux") or len(os.sched_getaffinity(0)) < 2,
    reason="sharing with a forked child needs Linux and two or more CPUs")


@pytest.fixture
def fork_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """This test process has loaded torch, which makes forking unsafe for torch work; the
    functions forked here do none, so allow it."""
    monkeypatch.setattr(forked, "fork_is_safe", lambda: True)


def slow_pid(item: int) -> tuple[int, int]:
    time.sleep(0.05)
    return item * item, os.getpid()


@needs_fork
def test_results_in_order_and_both_processes_work(fork_allowed: None) -> None:
    results = forked.map_shared(slow_pid, list(range(12)))
    assert [value for value, _ in results] == [i * i for i in range(12)]
    pids = {pid for _, pid in results}
    assert os.getpid() in pids and len(pids) == 2


@needs_fork
def test_an_item_the_child_fails_is_redone_here(fork_allowed: None) -> None:
    parent = os.getpid()

    def fails_in_child(item: int) -> int:
        time.sleep(0.02)
        if os.getpid() != parent:
            raise RuntimeError("child only")
        return item + 1

    assert forked.map_shared(fails_in_child, list(range(8))) == list(range(1, 9))


@needs_fork
def test_a_child_that_dies_is_covered(fork_allowed: None) -> None:
    parent = os.getpid()

    def dies_in_child(item: int) -> int:
        time.sleep(0.02)
        if os.getpid() != parent:
            os._exit(3)
        return -item

    assert forked.map_shared(dies_in_child, list(range(6))) == [0, -1, -2, -3, -4, -5]


@needs_fork
def test_a_failing_item_raises_here(fork_allowed: None) -> None:
    def bad(item: int) -> int:
        time.sleep(0.02)
        if item == 3:
            raise ValueError("item 3 is bad")
        return item

    with pytest.raises(ValueError, match="item 3 is bad"):
        forked.map_shared(bad, list(range(6)))


def test_serial_when_forking_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METABENCH_FORK", "0")
    assert not forked.fork_is_safe()
    assert {pid for _, pid in forked.map_shared(slow_pid, [1, 2, 3])} == {os.getpid()}


def test_not_safe_with_torch_or_another_thread() -> None:
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert not forked.fork_is_safe()
    finally:
        stop.set()
        thread.join()
    probe = "import torch, metabench.forked as f; print(f.fork_is_safe())"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


@needs_fork
def test_report_is_the_same_drawn_in_two_processes(tmp_path: Path) -> None:
    """The report command forks (no torch there); its HTML equals the serial one byte for
    byte, figures included."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    try:
        from reports import build_store
    finally:
        sys.path.pop(0)
    build_store(tmp_path, per_cell=20)
    outputs = {}
    for fork in ("1", "0"):
        target = tmp_path / f"fork{fork}.html"
        subprocess.run([sys.executable, "-m", "metabench", "report", str(tmp_path), "-o",
                        str(target)], check=True, capture_output=True,
                       env={**os.environ, "METABENCH_FORK": fork})
        outputs[fork] = target.read_bytes()
    assert outputs["1"] == outputs["0"]
    assert outputs["1"].count(b"data:image/png;base64,") >= 4


@needs_fork
def test_plots_are_the_same_drawn_in_two_processes(tmp_path: Path) -> None:
    """The plot command shares its kinds with a forked child; every PNG and SVG file equals
    the serial one byte for byte."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    try:
        from reports import build_store
    finally:
        sys.path.pop(0)
    build_store(tmp_path, per_cell=20)
    for fork in ("1", "0"):
        subprocess.run([sys.executable, "-m", "metabench", "plot", str(tmp_path), "-o",
                        str(tmp_path / f"fork{fork}")], check=True, capture_output=True,
                       env={**os.environ, "METABENCH_FORK": fork})
    files = sorted(path.name for path in (tmp_path / "fork1").iterdir())
    assert files == sorted(path.name for path in (tmp_path / "fork0").iterdir())
    assert {name.rsplit(".", 1)[1] for name in files} == {"png", "svg"} and len(files) >= 8
    for name in files:
        assert (tmp_path / "fork1" / name).read_bytes() == (tmp_path / "fork0" / name).read_bytes(), name
