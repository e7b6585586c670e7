"""A configuration's hyperparameters and data set options read as the types that their
algorithm and data set declare, once, when the options are read (before anything is
trained or written): ``--set maml.inner_lr=.1`` and ``inner_lr = 0.1`` in a TOML file give
the same value, and so the same fingerprint; a value of the wrong type fails in one line.

Names that do not resolve are left as they are: :func:`metabench.plan.build_plan` reports
them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from metabench import registry
from metabench.config import Config, make_config
from metabench.data import option_defaults, option_value
from metabench.errors import MetabenchError
from metabench.hparams import typed_overrides
from metabench.plugins import load_plugins
from metabench.sources import registered_name

if TYPE_CHECKING:
    from metabench.store import RunRecord, Store


def typed_config(config: Config) -> Config:
    """``config`` with its hyperparameters and data set options typed (loads its plugins)."""
    load_plugins(config.plugins)
    hparams = {key: _typed_hparams(config, key, table) for key, table in config.hparams.items()}
    options = {name: _typed_options(name, table)
               for name, table in config.dataset_options.items()}
    return dataclasses.replace(config, hparams=hparams, dataset_options=options)


def _typed_hparams(config: Config, key: str, table: Mapping[str, Any]) -> dict[str, Any]:
    """The table ``maml`` or ``maml@20w`` read against the defaults of its algorithm (a
    variant's algorithm for a variant label)."""
    label = key.partition("@")[0]
    entry = _entry("algorithm", config.variants.get(label, label))
    if entry is None:
        return dict(table)
    return typed_overrides(label, entry.defaults, table)


def _typed_options(name: str, table: Mapping[str, Any]) -> dict[str, Any]:
    """A data set's options read against the defaults of its factory's parameters."""
    if _entry("dataset", registered_name(name)) is None:
        return dict(table)
    defaults = option_defaults(registered_name(name))
    return {key: option_value(name, key, value, defaults[key]) if key in defaults else value
            for key, value in table.items()}


def _entry(kind: str, name: str) -> registry.Entry | None:
    try:
        return registry.get(kind, name)
    except MetabenchError:
        return None


def latest_same_run(store: Store, config: Config) -> RunRecord | None:
    """The newest run of ``store`` with ``config`` (typed): by its stored fingerprint, or by
    its stored configuration typed now (a run stored before values were typed, with
    ``--set maml.inner_lr=.1`` kept as text or a budget of ``time:5m``, keeps resuming)."""
    key = config.fingerprint()
    found = store.latest_run(key)
    if found is not None:
        return found
    for record in reversed(store.runs()):
        with suppress(MetabenchError):  # a run whose plugins are not here is not this one
            if typed_config(make_config(record.config)).fingerprint() == key:
                return record
    return None
