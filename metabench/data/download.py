"""Fetching data set files, only when a user asks for it (``--download``).

Every download is checked against a SHA-256 pinned in the code before it is used:
``download_file`` hashes the bytes as they arrive into a temporary ``<name>.<random>.part``
file next to the destination and renames that file into place only when the digest matches.
A failed, refused or interrupted download (an error, a wrong digest, Ctrl-C) deletes the
``.part`` file, so a later run never reads half a file. Archives are unpacked the same way
(``extract_archive``): into a temporary folder first, moved into place once complete.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from metabench.errors import MetabenchError

TIMEOUT_S = 60.0
CHUNK = 1 << 20
PROGRESS_FROM_BYTES = 64 << 20  # progress on stderr (a terminal only) for files this big
_SHA256 = re.compile(r"[0-9a-f]{64}")


def download_file(url: str, destination: Path, dataset: str, *, sha256: str) -> Path:
    """Fetch ``url`` to ``destination`` and keep it only if its SHA-256 is ``sha256``.

    The bytes go to a temporary ``.part`` file in the destination folder, are hashed while
    they stream, and the file is renamed to ``destination`` only when the digest matches.
    Any failure (network, disk, a wrong digest, KeyboardInterrupt) deletes the ``.part``
    file; errors are one-line ``MetabenchError`` messages naming the data set, the file and,
    for a wrong digest, both digests.
    """
    expected = sha256.strip().lower()
    if not _SHA256.fullmatch(expected):
        raise ValueError(f"sha256 must be 64 hex digits, got {sha256!r}")
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(
            prefix=destination.name + ".", suffix=".part", dir=destination.parent
        )
    except OSError as error:
        raise MetabenchError(
            f"{dataset}: cannot write to {destination.parent}: {error.strerror or error}"
        ) from None
    part = Path(temporary)
    try:
        with os.fdopen(handle, "wb") as file, urllib.request.urlopen(url, timeout=TIMEOUT_S) as r:
            total = _content_length(r)
            got, size = _copy_and_hash(r, file, _progress(total, dataset, destination.name))
        if total and size != total:
            raise OSError(f"the connection closed after {size:,} of {total:,} bytes")
        if got != expected:
            raise MetabenchError(
                f"{dataset}: {destination.name} from {url} has SHA-256 {got}, expected "
                f"{expected}; the file was not kept"
            )
        os.replace(part, destination)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as error:
        raise MetabenchError(
            f"{dataset}: download of {url} to {destination} failed: {_reason(error)}"
        ) from None
    finally:  # also on KeyboardInterrupt; after the rename there is nothing left to delete
        part.unlink(missing_ok=True)
    return destination


def extract_archive(archive: Path, into: Path, dataset: str) -> list[Path]:
    """Unpack a zip or tar ``archive`` so that its top-level entries land in ``into``.

    The archive is unpacked into a temporary (hidden) folder in ``into`` first and its entries
    are moved into place only once all of it is out, so an interrupted or failed unpack
    leaves no half-filled folder where a later run would read it. Tar members that would
    land outside the folder (absolute paths, ``..``, links out) are refused (the ``data``
    filter); zip member names are made safe by ``zipfile``. An entry that already exists
    in ``into`` is an error: nothing of the user's is overwritten. Returns the moved entries.
    """
    try:
        into.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{archive.name}.", suffix=".part", dir=into))
    except OSError as error:
        raise MetabenchError(f"{dataset}: cannot write to {into}: {error.strerror or error}") from None
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as opened:
                opened.extractall(stage)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tar:
                tar.extractall(stage, filter="data")
        else:
            raise MetabenchError(f"{dataset}: {archive} is neither a zip nor a tar archive")
        entries = sorted(stage.iterdir())
        clashes = [into / entry.name for entry in entries if (into / entry.name).exists()]
        if clashes:
            raise MetabenchError(
                f"{dataset}: {clashes[0]} already exists; move it away to unpack {archive.name} "
                f"into {into}"
            )
        for entry in entries:
            os.replace(entry, into / entry.name)
        return [into / entry.name for entry in entries]
    except (OSError, zipfile.BadZipFile, tarfile.TarError, EOFError) as error:
        raise MetabenchError(f"{dataset}: cannot unpack {archive} into {into}: {error}") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _copy_and_hash(source, target, progress) -> tuple[str, int]:
    digest = hashlib.sha256()
    done = 0
    while chunk := source.read(CHUNK):
        target.write(chunk)
        digest.update(chunk)
        done += len(chunk)
        if progress is not None:
            progress(done)
    if progress is not None:
        sys.stderr.write("\n")
    return digest.hexdigest(), done


def _content_length(response) -> int:
    """The size the server announced, or 0 when it did not say."""
    try:
        return max(0, int(response.headers.get("Content-Length") or 0))
    except (AttributeError, ValueError):
        return 0


def _progress(total: int, dataset: str, name: str):
    """A callback printing percent done on a terminal's stderr, for big files only."""
    if total < PROGRESS_FROM_BYTES or not sys.stderr.isatty():
        return None
    shown = [-1]

    def show(done: int) -> None:
        percent = min(100, done * 100 // total)
        if percent != shown[0]:
            shown[0] = percent
            sys.stderr.write(f"\r{dataset}: {name} {percent}% of {total / 1e6:,.0f} MB")
            sys.stderr.flush()

    return show


def _reason(error: Exception) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    return str(error) or type(error).__name__
