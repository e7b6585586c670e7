"""The wall clock as stored text: one format for every timestamp (runs, cells, leases)."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> str:
    """The current UTC time as ISO 8601 text."""
    return datetime.now(UTC).isoformat(timespec="seconds")
