"""Ray fails fast (issue 23), on a real local Ray: an address where nothing answers, a request
no node can hold, a head that never answers and SIGTERM while connecting each end with one
line; and the default command gives the same per-episode results locally and on Ray."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from test_hardening import MICRO, TESTS, cli, one_line_error

pytest.importorskip("ray", reason="Ray is not installed (pip install 'ray[default]')")

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]


def test_an_address_where_nothing_answers_is_one_line(tmp_path):
    result = cli("compare", "--backend", "ray", "--address", "127.0.0.1:1", *MICRO,
                 "--out", str(tmp_path), timeout=60)
    one_line_error(result, "127.0.0.1:1", "nothing answers")
    assert not (tmp_path / "metabench.sqlite").exists()


@pytest.mark.parametrize(("flag", "value", "resource"), [("--threads", "1000", "CPU"),
                                                         ("--gpus-per-cell", "64", "GPU")])
def test_a_request_no_node_can_hold_is_one_line(flag, value, resource, tmp_path):
    result = cli("compare", "--backend", "ray", flag, value, *MICRO, "--out", str(tmp_path),
                 timeout=120)
    one_line_error(result, value, f"more {resource}s per cell than any Ray node has",
                   "the largest has")
    assert not (tmp_path / "metabench.sqlite").exists()


class _SilentHead:
    """A TCP server that accepts connections and never answers (a head that is not Ray)."""

    def __init__(self) -> None:
        self.server = socket.socket()
        self.server.bind(("0.0.0.0", 0))  # Ray dials this machine's address, not 127.0.0.1
        self.server.listen(64)
        self.accepted: list[socket.socket] = []
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.accepted.append(self.server.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        self.server.close()
        for connection in self.accepted:
            connection.close()


@pytest.fixture
def silent_head():
    head = _SilentHead()
    yield head
    head.close()


def _start(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(TESTS), os.environ.get("PYTHONPATH", "")]), **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "metabench", "--plugin", "hardening_plugin",
                             *args], env=environment, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_sigterm_while_connecting_exits_at_once(silent_head, tmp_path):
    process = _start(["compare", "--backend", "ray", "--address", f"127.0.0.1:{silent_head.port}",
                      *MICRO, "--out", str(tmp_path)])
    try:
        deadline = time.monotonic() + 120
        while len(silent_head.accepted) < 2:  # the probe, then Ray itself
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "Ray never tried to connect"
            time.sleep(0.1)
        time.sleep(1.0)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=5)
    finally:
        process.kill()
    assert process.returncode == 143, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines == [f"error: interrupted (SIGTERM) while connecting to Ray at "
                     f"127.0.0.1:{silent_head.port}"], stderr
    assert not (tmp_path / "metabench.sqlite").exists()


def test_a_head_that_never_answers_is_one_line(silent_head, tmp_path):
    process = _start(["compare", "--backend", "ray", "--address", f"127.0.0.1:{silent_head.port}",
                      *MICRO, "--out", str(tmp_path)], env={"METABENCH_RAY_CONNECT_TIMEOUT": "3"})
    try:
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 2
    assert [line for line in stderr.splitlines() if line.strip()] == [
        f"error: cannot connect to Ray at 127.0.0.1:{silent_head.port}: no answer within 3 s "
        "(is the head alive?)"], stderr


def _episodes(out: Path) -> pd.DataFrame:
    import metabench

    columns = ["algorithm", "seed", "episode", "accuracy", "loss"]
    return metabench.load_results(out)[columns].sort_values(columns[:3]).reset_index(drop=True)


@pytest.mark.timeout(1200)
def test_the_default_command_gives_the_same_episodes_locally_and_on_ray(tmp_path):
    """No thread setting anywhere: the default (one torch thread per cell) holds on both."""
    env: dict[str, str | None] = {"OMP_NUM_THREADS": None, "MKL_NUM_THREADS": None}
    command = ["compare", "-a", "protonet,fomaml", "--datasets", "glyphs", "--shots", "1",
               "--episodes", "10", "--budget", "episodes:20", "--seeds", "0", "--val-episodes",
               "4", "--val-points", "2", "--no-progress", "--no-report"]
    local = cli(*command, "--out", str(tmp_path / "local"), env=env, timeout=580)
    remote = cli(*command, "--backend", "ray", "--out", str(tmp_path / "ray"), env=env,
                 timeout=580)
    assert local.returncode == 0 and remote.returncode == 0, local.stderr + remote.stderr
    pd.testing.assert_frame_equal(_episodes(tmp_path / "ray"), _episodes(tmp_path / "local"))
