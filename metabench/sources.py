"""Data set names: a multi-source name joins data sets with ``+`` (``glyphs+omniglot``), a
source name may select a subset with ``:`` (``metaalbum:BRD``). Plain text, no data loaded:
the plan and the reports read these."""

from __future__ import annotations

from metabench.errors import MetabenchError

SEPARATOR = "+"
SUBSET = ":"  # metaalbum:BRD is the data set BRD of metaalbum's folder of data sets


def registered_name(name: str) -> str:
    """The registered data set of a source name: ``metaalbum`` for ``metaalbum:BRD``."""
    return name.partition(SUBSET)[0]


def subset_of(name: str) -> str:
    """The ``source`` option a source name selects (``BRD`` of ``metaalbum:BRD``; empty
    for a plain name)."""
    return name.partition(SUBSET)[2]


def is_multi_source(name: str) -> bool:
    """True for a name joining several data sets with ``+`` (``glyphs+omniglot``)."""
    return SEPARATOR in name


def source_names(name: str) -> list[str]:
    """The data sets a (possibly multi-source) name stands for, in order."""
    parts = [part.strip() for part in name.split(SEPARATOR)]
    if any(not part for part in parts) or len(set(parts)) != len(parts):
        raise MetabenchError(f"data set '{name}' is not a valid multi-source name; expected "
                             "distinct data sets joined by '+' (e.g. glyphs+omniglot)")
    return parts
