"""Registries: what plugins registered through the ``register_*`` hooks, keyed by name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from metabench.errors import MetabenchError, unknown_name_error
from metabench.plugins import get_plugin_manager

KINDS = {
    "algorithm": "register_algorithms",
    "dataset": "register_datasets",
    "backbone": "register_backbones",
    "reporter": "register_reporters",
}


@dataclass(frozen=True)
class Entry:
    """One registered thing: its name, the object that builds it, and the plugin that gave it."""

    kind: str
    name: str
    factory: Callable[..., Any]
    plugin: str
    description: str = ""
    task_types: frozenset[str] = frozenset()
    defaults: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (no factory)."""
        return {
            "name": self.name,
            "plugin": self.plugin,
            "description": self.description,
            "task_types": sorted(self.task_types),
        }


def collect(kind: str) -> dict[str, Entry]:
    """Call every implementation of the kind's hook and return the entries by name."""
    manager = get_plugin_manager()
    hook = getattr(manager.hook, KINDS[kind])
    entries: dict[str, Entry] = {}
    for impl in reversed(hook.get_hookimpls()):  # registration order
        impl.function(register=_registrar(kind, impl.plugin_name, entries))
    return dict(sorted(entries.items()))


def get(kind: str, name: str) -> Entry:
    """The entry registered under ``name``, or an error listing the known names."""
    entries = collect(kind)
    if name not in entries:
        raise unknown_name_error(kind.replace("_", " "), name, entries)
    return entries[name]


def get_algorithms() -> dict[str, Entry]:
    """Every registered algorithm."""
    return collect("algorithm")


def get_datasets() -> dict[str, Entry]:
    """Every registered data set."""
    return collect("dataset")


def get_backbones() -> dict[str, Entry]:
    """Every registered backbone."""
    return collect("backbone")


def get_reporters() -> dict[str, Entry]:
    """Every registered reporter (output format)."""
    return collect("reporter")


def _registrar(kind: str, plugin: str, entries: dict[str, Entry]) -> Callable[..., None]:
    def register(
        name: str,
        factory: Callable[..., Any],
        *,
        task_types: set[str] | frozenset[str] | None = None,
        defaults: Any = None,
        description: str = "",
        **extra: Any,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise MetabenchError(f"plugin '{plugin}' registered a {kind} with an invalid name {name!r}")
        if name in entries:
            raise MetabenchError(
                f"{kind} '{name}' is registered twice: by plugin '{entries[name].plugin}' "
                f"and by plugin '{plugin}'; rename one of them"
            )
        entries[name] = Entry(
            kind=kind,
            name=name,
            factory=factory,
            plugin=plugin,
            description=description or _first_doc_line(factory),
            task_types=frozenset(task_types or ()),
            defaults=defaults,
            extra=extra,
        )

    return register


def _first_doc_line(obj: object) -> str:
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else ""
