"""A run's environment lists every plugin with its version without importing the plugins."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, sys
from metabench.environment import plugin_versions
from metabench.plugins import get_plugin_manager
listed = plugin_versions()
imported = sorted(m for m in sys.modules if m.startswith("metabench_plugins.") or m == "gymnasium")
get_plugin_manager()  # now every plugin is loaded
print(json.dumps({"listed": listed, "imported": imported, "after": plugin_versions()}))
"""


def test_plugin_versions_import_no_plugin_and_list_them_all() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          check=True)
    found = json.loads(done.stdout)
    assert found["imported"] == []
    assert found["listed"] == found["after"]
    assert {"maml", "protonet", "metabench.data.glyphs"} <= set(found["listed"])
