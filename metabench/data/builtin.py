"""Registers the built-in data sets through the same hook any plugin uses."""

from __future__ import annotations

from metabench.data.sinusoid import Sinusoid
from metabench.hookspecs import hookimpl


@hookimpl
def register_datasets(register) -> None:
    register("sinusoid", Sinusoid, task_types={"regression"},
             description="sine regression, A~U[0.1,5], phase~U[0,pi], x~U[-5,5] (Finn et al. 2017)")
