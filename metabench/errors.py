"""The one exception type a user sees: a clear, one-line message, no traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class MetabenchError(Exception):
    """A mistake a user can act on; the CLI prints it as one line and exits non-zero."""


def unknown_name_error(kind: str, name: str, known: Iterable[str]) -> MetabenchError:
    """Build the error for an unknown name, listing the known ones and the closest match."""
    known = sorted(known)
    listed = ", ".join(known) if known else "(none registered)"
    return MetabenchError(f"unknown {kind} '{name}'{closest_hint(name, known)} known {kind}s: {listed}")


def closest_hint(name: str, known: Iterable[str]) -> str:
    """``; did you mean 'x'?`` for the closest known name, else ``;``."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.5)
    return f"; did you mean '{close[0]}'?" if close else ";"
