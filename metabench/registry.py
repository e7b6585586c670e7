"""Registries: what plugins registered through the ``register_*`` hooks, keyed by name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from metabench.errors import MetabenchError, closest_hint, unknown_name_error
from metabench.plugin_types import REGISTER_TYPES, register_keywords
from metabench.plugins import hook_caller
from metabench.preset_types import Preset

# Each kind's hook, from the one list of kinds (plugin_types.REGISTER_TYPES): register_<kind>s.
KINDS = {kind: f"register_{kind}s" for kind in REGISTER_TYPES}


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
    options: dict[str, Any] = field(default_factory=dict)  # the kind's own keywords (suffix)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (no factory)."""
        return {
            "name": self.name,
            "plugin": self.plugin,
            "description": self.description,
            "task_types": sorted(self.task_types),
        }


# Each kind's entries, kept until the set of plugins implementing its hook changes (a plugin
# registered or unregistered gives other hook implementations, so another key).
_cache: dict[str, tuple[tuple[object, ...], dict[str, Entry]]] = {}


def collect(kind: str) -> dict[str, Entry]:
    """Every entry of the kind by name: its hook is called once per set of plugins."""
    implementations = hook_caller(KINDS[kind]).get_hookimpls()
    key = tuple((impl.plugin, impl.function) for impl in implementations)
    cached = _cache.get(kind)
    if cached is None or cached[0] != key:
        cached = _cache[kind] = (key, _call(kind, implementations))
    return dict(cached[1])


def _call(kind: str, implementations: list[Any]) -> dict[str, Entry]:
    entries: dict[str, Entry] = {}
    for impl in reversed(implementations):  # registration order
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


def get_plots() -> dict[str, Entry]:
    """Every registered plot kind."""
    return collect("plot")


def _registrar(kind: str, plugin: str, entries: dict[str, Entry]) -> Callable[..., None]:
    known = register_keywords(kind)

    def register(name: str, factory: Callable[..., Any], **keywords: Any) -> None:
        _check_name(kind, plugin, name, entries)
        _check_keywords(kind, plugin, name, keywords, known)
        task_types = keywords.pop("task_types", None)
        defaults = keywords.pop("defaults", None)
        description = keywords.pop("description", "")
        entries[name] = Entry(
            kind=kind,
            name=name,
            factory=factory,
            plugin=plugin,
            description=description or _describe(factory),
            task_types=frozenset(task_types or ()),
            defaults=defaults,
            options=keywords,
        )

    return register


def _check_name(kind: str, plugin: str, name: object, entries: dict[str, Entry]) -> None:
    if not isinstance(name, str) or not name:
        raise MetabenchError(f"plugin '{plugin}' registered a {kind} with an invalid name {name!r}")
    if name in entries:
        raise MetabenchError(
            f"{kind} '{name}' is registered twice: by plugin '{entries[name].plugin}' "
            f"and by plugin '{plugin}'; rename one of them"
        )


def _check_keywords(kind: str, plugin: str, name: str, keywords: dict[str, Any],
                    known: tuple[str, ...]) -> None:
    """A misspelt keyword would be dropped silently (task_type= claiming every task type)."""
    for keyword in keywords:
        if keyword not in known:
            raise MetabenchError(
                f"plugin '{plugin}' registered {kind} '{name}' with unknown keyword "
                f"'{keyword}'{closest_hint(keyword, known)} known keywords: {', '.join(known)}"
            )


def _describe(obj: object) -> str:
    """A preset's title, or the first line of a factory's docstring."""
    title = getattr(obj, "title", None)
    return title if isinstance(title, str) and not isinstance(obj, type) else _first_doc_line(obj)


def _first_doc_line(obj: object) -> str:
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else ""


def get_preset(name: str) -> Preset:
    """The preset registered under ``name``, or an error listing the known ones."""
    preset = get("preset", name).factory
    if not isinstance(preset, Preset):
        raise MetabenchError(f"preset '{name}' was registered with a {type(preset).__name__}; "
                             "expected a metabench.Preset")
    return preset


def all_presets() -> dict[str, Preset]:
    """Every registered preset by name."""
    return {name: get_preset(name) for name in collect("preset")}
