"""docs/plugins.md documents every hook, and each of its examples runs."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

from metabench import hookspecs, registry
from metabench.plugins import get_plugin_manager

DOC = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
HOOKS = sorted(name for name, value in vars(hookspecs).items() if hasattr(value, "metabench_spec"))


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_section_with_an_example(hook):
    text = DOC.read_text()
    match = re.search(rf"^## {hook}\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
    assert match, f"docs/plugins.md has no '## {hook}' section"
    section = match.group(1)
    assert f"def {hook}(" in section, f"the '{hook}' section has no runnable example"


@pytest.mark.parametrize("index", range(len(python_blocks(DOC.read_text()))))
def test_doc_examples_run(index):
    source = python_blocks(DOC.read_text())[index]
    module = types.ModuleType(f"doc_example_{index}")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, f"docs/plugins.md[{index}]", "exec"), module.__dict__)
    manager = get_plugin_manager()
    manager.register(module, name=module.__name__)
    try:
        for kind in registry.KINDS:
            registry.collect(kind)
    finally:
        manager.unregister(module)
        del sys.modules[module.__name__]
