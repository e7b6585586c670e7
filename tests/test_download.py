"""download_file and extract_archive: pinned SHA-256, nothing partial ever left behind."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import inspect
import io
import re
import tarfile
import threading
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from metabench.data.download import download_file, extract_archive, sha256_of
from metabench.errors import MetabenchError

CONTENT = bytes(range(256)) * 4096 + b"tail"  # 1 MiB and a bit: more than one chunk


@contextlib.contextmanager
def serve(directory: Path, handler_class=http.server.SimpleHTTPRequestHandler) -> Iterator[str]:
    """``directory`` over HTTP on 127.0.0.1; yields the base URL (ending in /)."""
    quiet = type("Quiet", (handler_class,), {"log_message": lambda *args: None})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(quiet, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A folder holding good.bin and bad.bin (good.bin with one byte changed)."""
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "good.bin").write_bytes(CONTENT)
    corrupted = bytearray(CONTENT)
    corrupted[len(corrupted) // 2] ^= 0x01
    (folder / "bad.bin").write_bytes(bytes(corrupted))
    return folder


GOOD = hashlib.sha256(CONTENT).hexdigest()


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize("scheme", ["http", "file"])
def test_a_file_with_the_pinned_digest_is_renamed_into_place(site, tmp_path, scheme):
    destination = tmp_path / "data" / "file.bin"
    if scheme == "http":
        with serve(site) as base:
            download_file(base + "good.bin", destination, "demo", sha256=GOOD)
    else:
        download_file((site / "good.bin").as_uri(), destination, "demo", sha256=GOOD.upper())
    assert destination.read_bytes() == CONTENT
    assert listing(destination.parent) == ["file.bin"]


@pytest.mark.parametrize("scheme", ["http", "file"])
def test_a_corrupted_file_is_refused_and_nothing_is_kept(site, tmp_path, scheme):
    destination = tmp_path / "data" / "file.bin"
    bad = sha256_of(site / "bad.bin")
    with contextlib.ExitStack() as stack:
        base = stack.enter_context(serve(site)) if scheme == "http" else site.as_uri() + "/"
        with pytest.raises(MetabenchError) as error:
            download_file(base + "bad.bin", destination, "demo", sha256=GOOD)
    message = str(error.value)
    assert message == (f"demo: file.bin from {base}bad.bin has SHA-256 {bad}, expected {GOOD}; "
                       "the file was not kept")
    assert "\n" not in message
    assert listing(destination.parent) == []  # no .part file, no final file


def test_a_refused_download_leaves_an_existing_file_alone(site, tmp_path):
    destination = tmp_path / "file.bin"
    destination.write_bytes(b"the user's own copy")
    with pytest.raises(MetabenchError, match="has SHA-256"):
        download_file((site / "bad.bin").as_uri(), destination, "demo", sha256=GOOD)
    assert destination.read_bytes() == b"the user's own copy"
    assert listing(tmp_path) == ["file.bin", "site"]


class Interrupted(io.RawIOBase):
    """A response that delivers one chunk, then Ctrl-C, checking the .part file exists."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.calls = folder, 0
        self.headers: dict[str, str] = {}

    def read(self, size: int = -1) -> bytes:
        self.calls += 1
        if self.calls == 1:
            return CONTENT[:1000]
        assert [p.suffix for p in self.folder.iterdir()] == [".part"]  # it is streaming
        raise KeyboardInterrupt

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def test_an_interrupted_download_leaves_nothing(tmp_path, monkeypatch):
    destination = tmp_path / "data" / "file.bin"
    response = Interrupted(destination.parent)
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: response)
    with pytest.raises(KeyboardInterrupt):
        download_file("https://example.invalid/file.bin", destination, "demo", sha256=GOOD)
    assert response.calls == 2
    assert listing(destination.parent) == []


class ShortBody(http.server.BaseHTTPRequestHandler):
    """Promises 1 MB, sends 10 bytes and hangs up: a connection dropped mid-transfer."""

    def __init__(self, *args, directory: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(1 << 20))
        self.end_headers()
        self.wfile.write(b"0123456789")
        self.wfile.flush()
        self.close_connection = True


def test_a_dropped_connection_is_one_line_and_leaves_nothing(tmp_path):
    destination = tmp_path / "data" / "file.bin"
    with serve(tmp_path, ShortBody) as base, pytest.raises(MetabenchError) as error:
        download_file(base + "file.bin", destination, "demo", sha256=GOOD)
    message = str(error.value)
    assert message == (f"demo: download of {base}file.bin to {destination} failed: the "
                       "connection closed after 10 of 1,048,576 bytes")
    assert "\n" not in message
    assert listing(destination.parent) == []


def test_a_missing_file_is_one_line_and_leaves_nothing(site, tmp_path):
    destination = tmp_path / "data" / "file.bin"
    with serve(site) as base, pytest.raises(MetabenchError, match=r"failed: HTTP 404 File not found$"):
        download_file(base + "nothing.bin", destination, "demo", sha256=GOOD)
    assert listing(destination.parent) == []


def test_sha256_is_a_required_keyword():
    parameter = inspect.signature(download_file).parameters["sha256"]
    assert parameter.kind is inspect.Parameter.KEYWORD_ONLY
    assert parameter.default is inspect.Parameter.empty
    with pytest.raises(TypeError):
        download_file("file:///x", Path("x"), "demo")
    with pytest.raises(ValueError, match="64 hex digits"):
        download_file("file:///x", Path("x"), "demo", sha256="abc")


# --- archives ---------------------------------------------------------------------------


def make_tgz(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_extract_archive_moves_complete_entries_into_place(tmp_path):
    tgz = make_tgz(tmp_path / "a.tgz", {"top/images/x.jpg": b"x", "attributes.txt": b"a"})
    into = tmp_path / "out"
    moved = extract_archive(tgz, into, "demo")
    assert sorted(p.name for p in moved) == ["attributes.txt", "top"]
    assert (into / "top" / "images" / "x.jpg").read_bytes() == b"x"
    assert listing(into) == ["attributes.txt", "top"]  # the staging folder is gone
    archive = tmp_path / "b.zip"
    with zipfile.ZipFile(archive, "w") as opened:
        opened.writestr("FC100_train.pickle", b"p")
    extract_archive(archive, into, "demo")
    assert listing(into) == ["FC100_train.pickle", "attributes.txt", "top"]


def test_extract_archive_refuses_clashes_and_unsafe_members(tmp_path):
    into = tmp_path / "out"
    (into / "top").mkdir(parents=True)
    tgz = make_tgz(tmp_path / "a.tgz", {"top/x": b"x"})
    with pytest.raises(MetabenchError, match=re.escape(f"demo: {into / 'top'} already exists")):
        extract_archive(tgz, into, "demo")
    assert listing(into) == ["top"] and listing(into / "top") == []
    evil = make_tgz(tmp_path / "evil.tgz", {"ok": b"1", "../escaped": b"2"})
    with pytest.raises(MetabenchError, match="cannot unpack"):
        extract_archive(evil, into, "demo")
    assert listing(into) == ["top"] and not (tmp_path / "escaped").exists()
    (tmp_path / "plain.bin").write_bytes(b"neither")
    with pytest.raises(MetabenchError, match="neither a zip nor a tar"):
        extract_archive(tmp_path / "plain.bin", into, "demo")
    assert listing(into) == ["top"]


def test_big_downloads_show_progress_on_a_terminal(site, tmp_path, monkeypatch):
    import metabench.data.download as download

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(download.sys, "stderr", terminal)
    monkeypatch.setattr(download, "PROGRESS_FROM_BYTES", 1)
    download_file((site / "good.bin").as_uri(), tmp_path / "file.bin", "demo", sha256=GOOD)
    assert terminal.getvalue().endswith("\rdemo: file.bin 100% of 1 MB\n")
    monkeypatch.setattr(download, "PROGRESS_FROM_BYTES", len(CONTENT) + 1)
    terminal.truncate(0)
    terminal.seek(0)
    download_file((site / "good.bin").as_uri(), tmp_path / "file.bin", "demo", sha256=GOOD)
    assert terminal.getvalue() == ""
