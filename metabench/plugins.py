"""The plugin manager: built-ins, entry points and named modules, loaded lazily and once.

Plugins named on the command line (``--plugin``) or in ``METABENCH_PLUGINS`` are imported at
once. The built-in modules and installed plugins (entry points) are imported when a hook they
may implement is first called (:func:`hook_caller`): a module whose source text does not name
the hook is not imported for it. So ``metabench report`` (reporters, plots) never imports the
algorithm plugins or torch, and :func:`get_plugin_manager` still gives every plugin, loaded.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
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
_pending: list[_Pending] = []  # built-ins and entry points not imported yet


@dataclass
class _Pending:
    """A plugin known by name, imported on first need: ``source`` is its module's text (None
    when it cannot be read without importing, e.g. an entry point naming an object)."""

    name: str
    load: Callable[[], object]
    source: str | None
    module: str | None = None  # the module it is, when it is one
    origin: str = ""  # the module that provides it (an entry point's module, even with attr)

    def may_implement(self, hook: str) -> bool:
        # A star import may bring hook functions the text does not name: import it to see.
        return self.source is None or hook in self.source or "import *" in self.source


def get_plugin_manager() -> pluggy.PluginManager:
    """Return the plugin manager with every plugin loaded: built-ins, entry points, named modules."""
    manager = _base_manager()
    if _pending:
        _load_pending(manager, lambda plugin: True)
    return manager


def hook_caller(hook: str) -> pluggy.HookCaller:
    """The caller of ``hook``, once every plugin that may implement it is loaded."""
    manager = _base_manager()
    if any(plugin.may_implement(hook) for plugin in _pending):
        _load_pending(manager, lambda plugin: plugin.may_implement(hook))
    caller: pluggy.HookCaller = getattr(manager.hook, hook)
    return caller


def _base_manager() -> pluggy.PluginManager:
    """The manager with its hook specs and named modules; built-ins and entry points pending."""
    global _manager
    if _manager is None:
        manager = pluggy.PluginManager("metabench")
        manager.add_hookspecs(hookspecs)
        _pending[:] = [*map(_builtin, BUILTIN_MODULES), *_entry_points()]
        _load_named_modules(manager, _env_plugin_names())
        _manager = manager
    check_hook_names(_manager)
    return _manager


def _load_pending(manager: pluggy.PluginManager, wanted: Callable[[_Pending], bool]) -> None:
    """Import and register the pending plugins ``wanted`` picks, in their order."""
    chosen = [plugin for plugin in _pending if wanted(plugin)]
    _pending[:] = [plugin for plugin in _pending if not wanted(plugin)]
    for plugin in chosen:
        if manager.get_plugin(plugin.name) is None:
            loaded = plugin.load()
            if not manager.is_registered(loaded):  # already named with --plugin
                manager.register(loaded, name=plugin.name)
    check_hook_names(manager)


def plugin_modules() -> dict[str, str]:
    """Every plugin, loaded or still pending, by name: the module that provides it. Nothing
    is imported (a run's environment lists the plugins without loading them all)."""
    manager = _base_manager()
    found = {manager.get_name(plugin) or repr(plugin): _module_of(plugin)
             for plugin in manager.get_plugins()}
    for plugin in _pending:
        found.setdefault(plugin.name, plugin.origin)
    return found


def _module_of(plugin: object) -> str:
    if isinstance(plugin, ModuleType):
        return plugin.__name__
    return type(plugin).__module__


def reset_plugin_manager() -> None:
    """Forget every loaded plugin; the next use loads built-ins and entry points afresh."""
    global _manager
    _manager = None
    _pending.clear()


def load_plugins(module_names: Iterable[str]) -> None:
    """Load plugin modules by dotted name (``--plugin``); loading one twice is a no-op."""
    manager = _base_manager()
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


def _builtin(name: str) -> _Pending:
    """A core module, read from its file (finding it through its package would import that)."""
    path = Path(__file__).parent.joinpath(*name.split(".")[1:]).with_suffix(".py")
    source = path.read_text(encoding="utf-8") if path.is_file() else None
    return _Pending(name, lambda: importlib.import_module(name), source, name, name)


def _entry_points() -> list[_Pending]:
    found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    return [_Pending(entry_point.name, _entry_point_loader(entry_point),
                     None if entry_point.attr else _module_source(entry_point.module),
                     None if entry_point.attr else entry_point.module, entry_point.module)
            for entry_point in found]


def _entry_point_loader(entry_point: importlib.metadata.EntryPoint) -> Callable[[], object]:
    def load() -> object:
        try:
            return entry_point.load()
        except Exception as error:  # an installed plugin that fails to import
            raise MetabenchError(
                f"installed plugin '{entry_point.name}' ({entry_point.value}, entry point group "
                f"'{ENTRY_POINT_GROUP}') failed to load: {type(error).__name__}: {error}"
            ) from None

    return load


def _module_source(name: str) -> str | None:
    """A module's source text, read without importing it (None when that is not possible)."""
    try:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "get_source"):
            return None
        source: str | None = spec.loader.get_source(name)
        return source
    except Exception:  # a parent package that fails to import, no source shipped: load it to see
        return None


def _env_plugin_names() -> list[str]:
    value = os.environ.get(PLUGINS_ENV_VAR, "")
    return [part.strip() for part in value.replace(";", ",").split(",") if part.strip()]


def _load_named_modules(manager: pluggy.PluginManager, names: Iterable[str]) -> None:
    for name in names:
        if any(plugin.module == name for plugin in _pending):  # a built-in or an entry point:
            _load_pending(manager, partial(_is_module, name=name))  # under its own name
        elif manager.get_plugin(name) is None and not _already_registered(manager, name):
            manager.register(_import_plugin_module(name), name=name)


def _is_module(plugin: _Pending, name: str) -> bool:
    return plugin.module == name


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
