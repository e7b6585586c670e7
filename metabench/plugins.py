"""The plugin manager: built-ins, entry points and named modules, loaded lazily and once."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
from collections.abc import Iterable
from types import ModuleType

import pluggy

from metabench import hookspecs
from metabench.errors import MetabenchError, closest_hint

ENTRY_POINT_GROUP = "metabench"
PLUGINS_ENV_VAR = "METABENCH_PLUGINS"

# Parts of the core that register things through the same hooks as any plugin.
BUILTIN_MODULES = (
    "metabench.data.builtin",
    "metabench.data.synthetic",
    "metabench.data.glyphs",
    "metabench.data.zoo",
    "metabench.rl.datasets",
    "metabench.rl.mujoco_datasets",
    "metabench.backbones",
    "metabench.reports.reporters",
    "metabench.reports.plots",
    "metabench.reports.html",
    "metabench.backends.local",
    "metabench.backends.ray",
)

_manager: pluggy.PluginManager | None = None


def get_plugin_manager() -> pluggy.PluginManager:
    """Return the plugin manager, loading built-ins, entry points and env-named modules once."""
    global _manager
    if _manager is None:
        manager = pluggy.PluginManager("metabench")
        manager.add_hookspecs(hookspecs)
        _load_builtins(manager)
        _load_entry_points(manager)
        _load_named_modules(manager, _env_plugin_names())
        _manager = manager
    check_hook_names(_manager)
    return _manager


def reset_plugin_manager() -> None:
    """Forget every loaded plugin; the next use loads built-ins and entry points afresh."""
    global _manager
    _manager = None


def load_plugins(module_names: Iterable[str]) -> None:
    """Load plugin modules by dotted name (``--plugin``); loading one twice is a no-op."""
    manager = get_plugin_manager()
    _load_named_modules(manager, module_names)
    check_hook_names(manager)


def check_hook_names(manager: pluggy.PluginManager) -> None:
    """Fail with a clear message when a plugin implements a hook that does not exist.

    The offending plugin is unregistered first, so the manager stays usable.
    """
    try:
        manager.check_pending()
    except pluggy.PluginValidationError as error:
        name = manager.get_name(error.plugin) or repr(error.plugin)
        manager.unregister(error.plugin)
        match = re.search(r"unknown hook '([^']+)'", str(error))
        hook = match.group(1) if match else "?"
        raise MetabenchError(
            f"plugin '{name}' implements unknown hook '{hook}'{closest_hint(hook, _hook_names())} "
            f"known hooks: {', '.join(sorted(_hook_names()))}"
        ) from None


def _hook_names() -> list[str]:
    return [name for name, value in vars(hookspecs).items() if hasattr(value, "metabench_spec")]


def _load_builtins(manager: pluggy.PluginManager) -> None:
    for name in BUILTIN_MODULES:
        manager.register(importlib.import_module(name), name=name)


def _load_entry_points(manager: pluggy.PluginManager) -> None:
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if manager.get_plugin(entry_point.name) is not None:
            continue
        try:
            plugin = entry_point.load()
        except Exception as error:  # an installed plugin that fails to import
            raise MetabenchError(
                f"installed plugin '{entry_point.name}' ({entry_point.value}, entry point group "
                f"'{ENTRY_POINT_GROUP}') failed to load: {type(error).__name__}: {error}"
            ) from None
        manager.register(plugin, name=entry_point.name)


def _env_plugin_names() -> list[str]:
    value = os.environ.get(PLUGINS_ENV_VAR, "")
    return [part.strip() for part in value.replace(";", ",").split(",") if part.strip()]


def _load_named_modules(manager: pluggy.PluginManager, names: Iterable[str]) -> None:
    for name in names:
        if manager.get_plugin(name) is None and not _already_registered(manager, name):
            manager.register(_import_plugin_module(name), name=name)


def _already_registered(manager: pluggy.PluginManager, module_name: str) -> bool:
    return any(
        isinstance(plugin, ModuleType) and plugin.__name__ == module_name
        for plugin in manager.get_plugins()
    )


def _import_plugin_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except Exception as error:
        raise MetabenchError(
            f"could not import plugin module '{name}': {type(error).__name__}: {error}"
        ) from None
