"""A run's workspace: the data sets its cells train and test on (built from the run's
options, multi-source names and held-out test sets resolved), and SIGTERM read as an
interruption. The comparison's session, the tuning and the Ray workers share it."""

from __future__ import annotations

import inspect
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from metabench import registry
from metabench.config import Config
from metabench.data import Dataset
from metabench.data import build_dataset as build_registered_dataset
from metabench.data.base import ClassificationDataset
from metabench.errors import MetabenchError
from metabench.multisource import MultiSource, make_sampler
from metabench.plan import Plan, test_datasets
from metabench.sources import is_multi_source, registered_name, source_names, subset_of


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM (a scheduler stopping the job) like Ctrl-C while the block runs.

    Only in the main thread (signal handlers can be set nowhere else); the previous handler
    is restored afterwards.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def build_datasets(plan: Plan) -> tuple[dict[str, Dataset], dict[str, Dataset]]:
    """Build the plan's data sets, and the data sets cells are tested on where that is
    another one (``test_dataset``, keyed by the cell's ``domains``); check every spec fits
    their evaluation splits."""
    datasets: dict[str, Dataset] = {}
    tests: dict[str, Dataset] = {}
    for name in plan.task_types:
        datasets[name] = build_dataset(name, plan.config)
    for cell in plan.cells:
        if cell.tested_on != cell.dataset and cell.domains not in tests:
            tests[cell.domains] = test_dataset_for(datasets[cell.dataset], cell.tested_on,
                                                   plan.config)
    groups = {(cell.dataset, cell.domains, cell.spec): cell for cell in plan.cells}
    for (name, domains, spec), cell in groups.items():
        make_sampler(datasets[name], "validation", spec, cell.seed)
        make_sampler(tests.get(domains, datasets[name]), "test", spec, cell.seed)
    return datasets, tests


def cell_datasets(name: str, config: Config, test_name: str | None = None
                  ) -> tuple[Dataset, Dataset | None]:
    """The data set ``name`` and, when its cell tests on another one (``test_name``, default
    the first ``--test-dataset``), that data set at ``name``'s input shape (resized through
    its ``image_size`` option where it has one)."""
    dataset = build_dataset(name, config)
    if test_name is None:
        test_name = next(iter(test_datasets(config)), None)
    if not test_name or test_name == name:
        return dataset, None
    return dataset, test_dataset_for(dataset, test_name, config)


def test_dataset_for(trained: Dataset, name: str, config: Config) -> Dataset:
    """The data set ``name`` as a test set of ``trained``: a source of a multi-source data set
    is that source; another is built at ``trained``'s input shape."""
    if isinstance(trained, MultiSource) and name in source_names(trained.name):
        return trained.member(name)
    return _test_dataset(name, trained, config)


def _test_dataset(name: str, trained: Dataset, config: Config) -> Dataset:
    test = build_dataset(name, config)
    _check_same_spaces(name, trained, test)
    wanted, shape = tuple(trained.input_shape), tuple(test.input_shape)
    if shape == wanted:
        return test
    resizable = (len(wanted) == 3 and len(shape) == 3 and wanted[0] == shape[0]
                 and wanted[1] == wanted[2] and _accepts(registered_name(name), "image_size"))
    if not resizable:
        raise MetabenchError(
            f"test data set '{name}' has input shape {_shape(shape)} but '{trained.name}' "
            f"trains on {_shape(wanted)}; expected the same shape ('{name}' cannot be resized "
            "to it)"
        )
    return build_dataset(name, config, image_size=wanted[1])


def _spaces(dataset: Dataset) -> str | None:
    """An rl data set's observation and action spaces as text (None for other kinds)."""
    env = getattr(dataset, "env", None)
    if env is None:
        return None
    return (f"observations of {env.observation_dim}, actions of {env.action_dim} within "
            f"+-{env.action_bound:g}")


def _check_same_spaces(name: str, trained: Dataset, test: Dataset) -> None:
    """A policy meta-trained on one environment is tested on another only when both have
    the same observation and action spaces."""
    wanted, spaces = _spaces(trained), _spaces(test)
    if wanted != spaces:
        raise MetabenchError(
            f"test data set '{name}' has {spaces or 'no observation and action spaces'} but "
            f"'{trained.name}' trains on {wanted or 'no observation and action spaces'}; "
            "expected the same spaces"
        )


def _accepts(dataset: str, option: str) -> bool:
    try:
        parameters = inspect.signature(registry.get("dataset", dataset).factory).parameters
    except (TypeError, ValueError):
        return False
    return option in parameters


def _classification(dataset: Dataset) -> ClassificationDataset:
    if not isinstance(dataset, ClassificationDataset):
        raise MetabenchError(f"data set '{dataset.name}' is not a classification data set; "
                             "a multi-source data set needs classification sources")
    return dataset


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def build_dataset(name: str, config: Config, **overrides: Any) -> Dataset:
    """Construct a registered data set with the run's data options (``dataset_options``
    of ``name``, then ``overrides``); a multi-source name builds its sources, each at the
    first one's input shape."""
    if is_multi_source(name):
        first, *rest = source_names(name)
        sources = [build_dataset(first, config, **overrides)]
        sources += [_test_dataset(other, sources[0], config) for other in rest]
        return MultiSource([_classification(source) for source in sources])
    if subset_of(name):  # metaalbum:BRD: the data set BRD of metaalbum's folder
        dataset = build_dataset(registered_name(name), config, source=subset_of(name),
                                **overrides)
        dataset.name = name
        return dataset
    options = {**config.dataset_options.get(name, {}), **overrides}
    # A data set's own data_root (--dataset-option NAME.data_root=...) wins over --data-root:
    # a multi-source run reads each source from its folder.
    standard: dict[str, Any] = {"data_root": config.data_root, "download": config.download,
                "cache_dir": config.cache_dir}
    standard.update({k: options.pop(k) for k in list(options) if k in standard})
    return build_registered_dataset(name, **standard, **options)
