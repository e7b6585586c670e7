"""The tuned values: the trials of a stored tuning read back (per study, the best trial), and
``compare --tuned`` resolved against them. A reader of the store; the comparison's session
uses it without importing the tuning's runner (:mod:`metabench.tuning`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from metabench.config import LATEST, Config
from metabench.errors import MetabenchError
from metabench.metrics import metric_named
from metabench.plan import build_plan, study_setting
from metabench.plugins import load_plugins
from metabench.store import Store, store_path
from metabench.trials import TrialSummary

# --- reading trials back ----------------------------------------------------------------------

def summaries(trials: pd.DataFrame) -> dict[str, list[TrialSummary]]:
    """Per study, its stored trials with their seeds combined, in trial order: failed if a
    seed failed, pruned if one was pruned; the score and the curve are means over seeds."""
    found: dict[str, list[TrialSummary]] = {}
    if trials.empty:
        return found
    for (study, number), rows in trials.groupby(["study", "number"], sort=True):
        statuses = set(rows["status"])
        status = "failed" if "failed" in statuses else "pruned" if "pruned" in statuses \
            else "complete"
        metric = metric_named(str(rows["metric"].iloc[0]))
        score = None
        if status == "complete":
            score = metric.score(float(np.mean(rows["value"].astype(float))))
        key = f"val_{metric.name}"
        points: dict[int, list[float]] = {}
        for curve in rows["curve"]:
            for index, point in enumerate(curve):
                points.setdefault(index, []).append(float(point[key]))
        found.setdefault(str(study), []).append(TrialSummary(
            int(str(number)), rows["params"].iloc[0], status, score,
            {index: float(np.mean(values)) for index, values in points.items()}))
    return found


def best_frame(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per study: algorithm, setting, the best trial (highest mean validation score;
    the lower number on a tie), its value and hyperparameters, trial 0's value, and the
    count of complete, pruned and failed trials."""
    rows = []
    for study, found in summaries(trials).items():
        first = trials[trials["study"] == study].iloc[0]
        metric = metric_named(str(first["metric"]))
        complete = [trial for trial in found if trial.score is not None]
        best = max(complete, key=lambda t: (t.score, -t.number)) if complete else None
        start = next((t for t in found if t.number == 0 and t.score is not None), None)
        rows.append({
            "study": study, "algorithm": first["algorithm"],
            "setting": study[len(str(first["algorithm"])) + 1:],
            "best_trial": best.number if best else None,
            "best_value": metric.score(best.score) if best and best.score is not None else None,
            "start_value": metric.score(start.score) if start and start.score is not None else None,
            "params": dict(best.params) if best else {}, "metric": metric.name,
            "complete": len(complete), "pruned": sum(t.status == "pruned" for t in found),
            "failed": sum(t.status == "failed" for t in found),
        })
    return pd.DataFrame(rows)


# --- compare --tuned --------------------------------------------------------------------------

def resolve_tuned(config: Config) -> Config:
    """``config`` with ``tuning`` filled from the tuning ``config.tuned`` names (``latest``:
    the newest tuning in the results store covering every algorithm and setting of the
    comparison): the selected hyperparameters per algorithm and setting, and how they were
    found. Unchanged without ``--tuned`` or when already resolved (a resumed run)."""
    if not config.tuned or config.tuning:
        return config
    location, wanted = _tuning_target(config)
    load_plugins(config.plugins)
    plan = build_plan(config)
    needed = {(cell.algorithm, study_setting(cell.dataset, cell.spec))
              for cell in plan.cells if not plan.skip_reason(cell)}
    with Store.open_existing(location) as store:
        records = [store.tuning(wanted)] if wanted != LATEST else list(reversed(store.tunings()))
        for record in records:
            best = best_frame(store.trials_frame(record.id))
            found = {(str(row["algorithm"]), str(row["setting"])): dict(row)
                     for row in best.to_dict("records") if row["best_trial"] is not None}
            missing = sorted(needed - set(found))
            if not missing:
                return replace(config, tuning=_tuning_record(record, found, needed, store.path))
            if wanted != LATEST:
                label, setting = missing[0]
                raise MetabenchError(f"--tuned {record.id}: the tuning has no finished trial of "
                                     f"{label} on {setting}; tune it (metabench tune) or drop "
                                     "--tuned")
    label, setting = sorted(needed)[0]
    raise MetabenchError(f"--tuned: no tuning in {store_path(location)} covers every algorithm "
                         f"and setting of this comparison (e.g. {label} on {setting}); run "
                         "metabench tune with the same algorithms and settings first")


def _tuning_target(config: Config) -> tuple[Path, str]:
    tuned = str(config.tuned)
    if tuned != LATEST and ("/" in tuned or "\\" in tuned):
        path = Path(tuned)
        return path.parent, path.name
    return Path(config.out), tuned


def _tuning_record(record: Any, found: Mapping[tuple[str, str], Mapping[Any, Any]],
                   needed: set[tuple[str, str]], path: Path) -> dict[str, Any]:
    selected: dict[str, dict[str, Any]] = {}
    values: dict[str, dict[str, Any]] = {}
    for label, setting in sorted(needed):
        row = found[(label, setting)]
        selected.setdefault(label, {})[setting] = row["params"]
        values.setdefault(label, {})[setting] = {"trial": row["best_trial"],
                                                 "validation": row["best_value"]}
    settings = record.settings
    return {"id": record.id, "store": str(path), "trials": settings.get("trials"),
            "trial_budget": settings.get("trial_budget"), "seed": settings.get("seed"),
            "selected": selected, "validation": values}
