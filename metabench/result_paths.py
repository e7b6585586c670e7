"""The one path grammar of every command that reads results (leaderboard, report, plot,
export) and of :func:`metabench.load_results`: a results folder, a store file
(``metabench.sqlite``, or any ``*.sqlite``/``*.db``), or ``DIR/RUN`` (one run of ``DIR``'s
store, where ``DIR`` is a results folder or a store file)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from metabench.errors import MetabenchError
from metabench.store import STORE_NAME, Store, store_path

#: What a results path may be, for error messages.
EXPECTED = f"expected a results folder, a store file ({STORE_NAME}) or DIR/RUN (a run id of DIR's store)"


@dataclass(frozen=True)
class ResultsPath:
    """A resolved results path: ``location`` (a results folder or a store file, as given) and
    the run it names (``DIR/RUN``), or None for every run of the store."""

    location: Path
    run: str | None = None

    @property
    def store(self) -> Path:
        """The store file."""
        return store_path(self.location)

    @property
    def folder(self) -> Path:
        """The results folder (the store file's folder)."""
        return self.store.parent


def resolve_results_path(raw: str | Path, run: str | None = None) -> ResultsPath:
    """``raw`` resolved, or a one-line :class:`MetabenchError` naming it and what was expected.

    ``run`` is a run id given apart from the path (``--run``): it must name a run of the store
    and agree with the one a ``DIR/RUN`` names.
    """
    path = Path(raw).expanduser()
    if store_path(path).is_file():
        resolved = ResultsPath(path)
    elif path.name and store_path(path.parent).is_file():
        resolved = ResultsPath(path.parent, path.name)
        _check_run(resolved.location, path.name, f"no metabench results at {raw}")
    else:
        raise MetabenchError(f"no metabench results at {raw}: {_what_is_there(path)}; {EXPECTED}")
    if run is None or run == resolved.run:
        return resolved
    if resolved.run is not None:
        raise MetabenchError(f"--run {run} disagrees with {raw}, which names run {resolved.run}; "
                             "give the run once")
    _check_run(resolved.location, run, f"--run {run}")
    return ResultsPath(resolved.location, run)


def resolve_results_paths(paths: Sequence[str | Path]) -> list[ResultsPath]:
    """Each of ``paths`` resolved (none: the folder ``results``)."""
    return [resolve_results_path(raw) for raw in paths or ["results"]]


def _check_run(location: Path, run: str, context: str) -> None:
    with Store.open_existing(location) as store:
        known = [record.id for record in store.runs()]
    if run not in known:
        latest = ", ".join(known[-5:]) or "none"
        raise MetabenchError(f"{context}: no run '{run}' in {store_path(location)} (latest runs: "
                             f"{latest})")


def _what_is_there(path: Path) -> str:
    if path.is_dir():
        return f"the folder has no {STORE_NAME}"
    if path.is_file():
        return "the file is not a store (*.sqlite, *.sqlite3 or *.db)"
    return "it does not exist"
