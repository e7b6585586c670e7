"""Through the Ray backend, results stay what an earlier release stored (tests/golden.py):
the comparison of tests/test_backend_ray.py, and (slow) the default comparison."""

from __future__ import annotations

import json

import pytest
from golden import differences, fixture_path, ray_instance, run

pytest.importorskip("ray", reason="Ray is not installed (pip install 'ray[default]')")

pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def ray_started():
    with ray_instance():
        yield


@pytest.mark.parametrize("name", ["ray_test", pytest.param("default_ray", marks=pytest.mark.slow)])
def test_ray_gives_the_stored_results(ray_started, tmp_path, name):
    expected = json.loads(fixture_path(name).read_text())["cells"]
    assert differences(expected, run(name, tmp_path)) == []
