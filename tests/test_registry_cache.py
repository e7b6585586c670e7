"""The registry calls each kind's hook once per set of plugins: lookups reuse the entries until a
plugin is registered or unregistered; plugins load when a hook they may implement is called."""

from __future__ import annotations

import metabench
from metabench import hookspecs, plugins, registry
from metabench.plugins import get_plugin_manager, hook_caller


class CountingReporter:
    """Registers one reporter and counts how often its hook runs."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls = 0

    @metabench.hookimpl
    def register_reporters(self, register: metabench.RegisterReporter) -> None:
        self.calls += 1
        register(self.name, lambda frame, path: None, description="counted")


def test_a_kind_is_collected_once_until_the_plugins_change():
    counter = CountingReporter("counted")
    get_plugin_manager().register(counter, name="counter")
    for _ in range(3):
        assert "counted" in registry.get_reporters()
        registry.get("reporter", "counted")
    assert counter.calls == 1

    other = CountingReporter("other")
    get_plugin_manager().register(other, name="other")
    assert {"counted", "other"} <= set(registry.get_reporters())
    assert (counter.calls, other.calls) == (2, 1)

    get_plugin_manager().unregister(other)
    assert "other" not in registry.get_reporters()
    assert counter.calls == 3


def test_a_returned_listing_does_not_change_the_cache():
    listing = registry.get_reporters()
    listing.clear()
    assert registry.get_reporters()


def test_each_kind_names_a_hook_spec():
    for kind, hook in registry.KINDS.items():
        assert hasattr(getattr(hookspecs, hook), "metabench_spec"), kind


def test_a_hook_call_loads_only_the_plugins_whose_source_names_it():
    """Built-in modules and entry points are pending until a hook they name is called;
    get_plugin_manager() then loads every one."""
    implementing = {impl.plugin_name for impl in hook_caller("register_plots").get_hookimpls()}
    assert "metabench.reports.plots" in implementing
    loaded = {name for name, _ in plugins._manager.list_name_plugin()}  # type: ignore[union-attr]
    assert "metabench.reports.plots" in loaded
    assert "metabench.data.glyphs" not in loaded and "protonet" not in loaded
    loaded = {name for name, _ in get_plugin_manager().list_name_plugin()}
    assert {"metabench.data.glyphs", "protonet"} <= loaded


def test_an_installed_plugin_named_with_plugin_keeps_its_entry_point_name():
    """``--plugin metabench_plugins.maml`` names a module that is also an entry point: it is
    registered once, under the entry point's name, as before loading became lazy."""
    plugins.load_plugins(["metabench_plugins.maml"])
    assert registry.get("algorithm", "maml").plugin == "maml"
    names = [name for name, _ in get_plugin_manager().list_name_plugin()]
    assert "maml" in names and "metabench_plugins.maml" not in names
