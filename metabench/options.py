"""The one definition of a comparison's options: each one's name (the :class:`Config` field,
the TOML key and the keyword of :func:`metabench.compare`), its command-line flags, kind,
help and the commands that take it.

``metabench compare``, ``tune`` and ``reproduce`` build their flags from :data:`OPTIONS`
(:mod:`metabench.cli_common`), the rerun command that reports print is written from it
(:mod:`metabench.rerun`), and a test checks :func:`metabench.compare`'s signature against it.
A new option is one more :class:`Option` here and a :class:`Config` field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from metabench.config import CHECKPOINTS, DEFAULT_BUDGET, Config

COMPARE, TUNE, REPRODUCE = "compare", "tune", "reproduce"
_LIST = "comma-separated"

# Kinds: how a value is read from the command line and written back into a command.
TEXT, INT, FLOAT, LIST, CHOICE, PATH, SWITCH, PAIRS, OPTIONAL = (
    "text", "int", "float", "list", "choice", "path", "switch", "pairs", "optional")


@dataclass(frozen=True)
class Option:
    """One option of a comparison.

    :param name: the :class:`Config` field, TOML key and keyword of ``compare()``.
    :param flags: its command-line spellings; the first is the one rerun commands write.
    :param kind: how the flag reads its value: ``text``, ``int``, ``float``, ``list``
        (comma-separated), ``choice``, ``path`` (a folder), ``switch`` (``--x/--no-x``),
        ``pairs`` (repeatable ``KEY=VALUE``) or ``optional`` (a value, or alone: the latest).
    :param commands: the commands that take the flag.
    :param runtime: where and how cells run, not what they compute (a resumed run may
        change it).
    :param always: written in every rerun command, even at its default (what a reader
        looks for: the algorithms, data, settings and budget).
    :param reproduce_help: the help of ``metabench reproduce``'s flag, when it differs.
    """

    name: str
    flags: tuple[str, ...]
    help: str
    kind: str = TEXT
    commands: frozenset[str] = frozenset({COMPARE, TUNE})
    metavar: str | None = None
    runtime: bool = False
    always: bool = False
    reproduce_help: str | None = None

    @property
    def flag(self) -> str:
        """The flag rerun commands write, e.g. ``--val-episodes``."""
        return self.flags[0]

    @property
    def default(self) -> Any:
        """The value when the option is not given (:class:`Config`'s default)."""
        return Config().to_dict()[self.name]

    @property
    def choices(self) -> tuple[str, ...]:
        """The values a ``choice`` option takes."""
        return CHOICES.get(self.name, ())

    def help_for(self, command: str) -> str:
        """The flag's help in ``command``."""
        return self.reproduce_help if command == REPRODUCE and self.reproduce_help else self.help


CHOICES = {"checkpoint": CHECKPOINTS}
_ALL = frozenset({COMPARE, TUNE, REPRODUCE})
_COMPARE_REPRODUCE = frozenset({COMPARE, REPRODUCE})

OPTIONS: tuple[Option, ...] = (
    # What is trained and validated (compare and tune).
    Option("algorithms", ("--algorithms", "-a"), always=True, kind=LIST,
           help=f"Algorithms, {_LIST} [maml,fomaml,protonet,reptile]."),
    Option("datasets", ("--datasets", "--dataset", "-d"), always=True, kind=LIST,
           help=f"Data sets, {_LIST} [glyphs]."),
    Option("test_dataset", ("--test-dataset",), always=True, commands=_COMPARE_REPRODUCE,
           help="Test on this data set instead (cross-domain: meta-train and validate on "
                "--datasets); a comma-separated list tests on each (a multi-source A+B also "
                "tests on A and B).",
           reproduce_help="Test on another data set (cross-domain; not comparable)."),
    Option("dataset_options", ("--dataset-option",), kind=PAIRS, commands=_ALL,
           metavar="DATASET.NAME=VALUE",
           help="Set a data set option (repeatable), e.g. omniglot.rotations=true.",
           reproduce_help="Change a data set option (not comparable, unless it is the paper's)."),
    Option("variants", ("--variant",), kind=PAIRS, metavar="LABEL=ALGORITHM",
           help="Run ALGORITHM a second time as LABEL (repeatable; list LABEL in "
                "--algorithms, set its hyperparameters with --set LABEL.NAME=VALUE)."),
    Option("ways", ("--ways",), always=True, kind=LIST,
           help=f"Classes per episode, {_LIST}, or any (with --shots any: the Meta-Dataset "
                "sampler, docs/multisource.md) [5]."),
    Option("shots", ("--shots",), always=True, kind=LIST,
           help=f"Support examples per class, {_LIST}, or any [1,5]."),
    Option("sampler_options", ("--sampler-option",), kind=PAIRS, commands=frozenset({COMPARE}),
           metavar="NAME=NUMBER",
           help="An option of the any-way any-shot sampler (repeatable), e.g. max_ways=20 "
                "(docs/multisource.md)."),
    Option("queries", ("--queries",), always=True, kind=INT,
           help="Query examples per class [15]."),
    Option("episodes", ("--episodes",), always=True, kind=INT, commands=_COMPARE_REPRODUCE,
           help="Test episodes per cell [600].",
           reproduce_help="Test episodes per cell [the paper's]."),
    Option("seeds", ("--seeds",), always=True, kind=LIST, commands=_ALL,
           help=f"Seeds, {_LIST} [0]."),
    Option("budget", ("--budget",), always=True, commands=_ALL,
           help=f"Meta-training budget: episodes:N, steps:N or time:30s|5m|1h [{DEFAULT_BUDGET}].",
           reproduce_help="Replace the scaled budget (not comparable)."),
    Option("budgets", ("--setting-budget",), kind=PAIRS, commands=frozenset({COMPARE}),
           metavar="SETTING=BUDGET",
           help="The budget of one setting (repeatable), e.g. 20w=steps:200000 (20w, 5s or "
                "20w5s; TOML: budgets = {20w = \"steps:200000\"}) [--budget]."),
    Option("backbone", ("--backbone",), always=True,
           help="Backbone for every algorithm [conv4; mlp for regression]."),
    Option("hparams", ("--set",), kind=PAIRS, commands=_ALL, metavar="ALGO.NAME=VALUE",
           help="Set a hyperparameter (repeatable), e.g. maml.inner_lr=0.1.",
           reproduce_help="Change a hyperparameter (the verdict then says: not comparable)."),
    Option("val_episodes", ("--val-episodes",), always=True, kind=INT, commands=_ALL,
           help="Validation episodes per evaluation [40].",
           reproduce_help="Validation episodes per evaluation."),
    Option("val_points", ("--val-points",), always=True, kind=INT, commands=_ALL,
           help="Validation evaluations over the budget [4].",
           reproduce_help="Validation evaluations over the budget."),
    Option("checkpoint", ("--checkpoint",), always=True, kind=CHOICE,
           help="Test the best weights on validation, or the last ones [best]."),
    Option("curve_steps", ("--curve-steps",), kind=INT, commands=frozenset({COMPARE}),
           help="Also score the test episodes after each of the first N adaptation steps "
                "(an adaptation curve) [0]."),
    Option("tuned", ("--tuned",), kind=OPTIONAL, commands=frozenset({COMPARE}),
           metavar="[TUNING]",
           help="Use the hyperparameters metabench tune selected: tuning TUNING (id or "
                "DIR/ID), or alone: the latest tuning of these algorithms and settings."),
    Option("confidence", ("--confidence",), kind=FLOAT, commands=frozenset({COMPARE}),
           runtime=True, help="Confidence level of the intervals [0.95]."),
    Option("alpha", ("--alpha",), kind=FLOAT, commands=frozenset({COMPARE}), runtime=True,
           help="Significance level of the paired tests [0.05]."),
    Option("margin", ("--margin",), kind=FLOAT, commands=frozenset({COMPARE}), runtime=True,
           help="Smallest difference reported as significant (accuracy: 0.01 = 1 point) [0]."),
    # Where and how it runs (results folder, data, device, backend): every command.
    Option("data_root", ("--data-root",), kind=PATH, commands=_ALL, runtime=True,
           help="Where data sets live."),
    Option("cache_dir", ("--cache-dir",), kind=PATH, commands=_ALL, runtime=True,
           help="Cache folder of built data sets (METABENCH_CACHE)."),
    Option("download", ("--download/--no-download",), kind=SWITCH, commands=_ALL, runtime=True,
           help="Download missing data sets (checked against pinned SHA-256 digests where "
                "known)."),
    Option("device", ("--device",), always=True, commands=_ALL, runtime=True,
           help="auto, cpu, cuda or cuda:N [auto]."),
    Option("out", ("--out",), commands=_ALL, runtime=True, help="Results folder [results]."),
    Option("backend", ("--backend",), commands=_ALL, runtime=True,
           help="Where cells run: local, ray, or a plugin's [local]."),
    Option("address", ("--address",), commands=_ALL, runtime=True,
           help="Ray: auto, HOST:PORT or ray://HOST:PORT [a local instance]."),
    Option("cpus_per_cell", ("--threads", "--cpus-per-cell"), always=True, kind=INT,
           commands=_ALL, runtime=True,
           help="Torch threads of each cell, the same on every backend so results match "
                "(Ray reserves as many CPUs per cell) [1]."),
    Option("gpus_per_cell", ("--gpus-per-cell",), kind=FLOAT, commands=_ALL, runtime=True,
           help="Ray: GPUs per cell, fractions share one [0]."),
    Option("max_retries", ("--max-retries",), kind=INT, commands=_ALL, runtime=True,
           help="Ray: retries of a cell whose worker died (killed, out of memory) [2]."),
    Option("jobs", ("--jobs",), commands=_ALL, runtime=True, metavar="N|auto",
           help="Local backend: cells run at once, each in a worker process with --threads "
                "torch threads; auto: cores // threads (keep threads x jobs <= cores; Ray "
                "ignores it and fills its CPUs) [1]."),
)
BY_NAME: Mapping[str, Option] = {option.name: option for option in OPTIONS}
#: Fields of a stored :class:`Config` that are not flags of ``compare``: ``plugins`` (the
#: ``metabench --plugin`` modules), ``preset`` and ``scale`` (``metabench reproduce NAME
#: --scale F``) and ``tuning`` (what ``--tuned`` resolved to, recorded with the run).
NOT_FLAGS = ("plugins", "preset", "scale", "tuning")


def options_of(command: str) -> tuple[Option, ...]:
    """The options that ``command`` takes, in the definition's order."""
    return tuple(option for option in OPTIONS if command in option.commands)


def from_flags(command: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The library options of a command's parsed flags (repeatable ones as lists, flags not
    given as ``None``)."""
    options: dict[str, Any] = {}
    for option in options_of(command):
        value = params.get(option.name)
        if option.kind == PAIRS:
            value = list(value or ()) or None
        options[option.name] = value
    return options

