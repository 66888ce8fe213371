"""Real HTTP servers on 127.0.0.1 for the tests: a file server with fault injection and a Hub mirror.

:class:`LoopbackServer` is a threaded HTTP/1.1 server on an ephemeral loopback port. It serves
byte strings with a strong ``ETag``, ``Accept-Ranges``, ``Range`` (206) and ``If-Range``
answers, and 416 for a range past the end. Each path can be given :class:`Fault` s that apply to
the next request(s): an HTTP error status, a connection reset after N body bytes, a sleep before
the body (to hit the client's read timeout), a flipped bit, a truncated body, or a ``Range``
ignored, or the file replaced after the request. Every request is logged (:class:`LoggedRequest`) with the body bytes actually sent, so
tests can assert e.g. "exactly one full transfer" or "a Range request happened".

It also answers the Hugging Face Hub's resolve endpoint ``/{repo_id}/resolve/{revision}/{filename}``
with the headers ``huggingface_hub.hf_hub_download`` needs (``X-Repo-Commit``, ``X-Linked-Etag``,
``X-Linked-Size``, ``ETag``, ``Content-Length``, ``X-Error-Code`` on 404), optionally redirecting
to a second server acting as the CDN, so the real client can be pointed at it with ``HF_ENDPOINT``.

Usage::

    with LoopbackServer() as server:
        url = server.add("/w.bin", body, faults=[Fault(status=500)])
        ...
        assert server.full_transfers("/w.bin") == 1

Run as a script (``python tests/servers.py FILE [--rate-mib-s N]``) it serves FILE until killed
and prints its URL on the first line of stdout; the download benchmark uses that to keep the
server in another process.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Deque, Iterable, Iterator
from urllib.parse import unquote, urlsplit

import pytest

__all__ = [
    "DEFAULT_COMMIT",
    "DOWNLOAD_ENV",
    "Fault",
    "LAST_MODIFIED_NOW",
    "LoggedRequest",
    "LoopbackServer",
    "LoopbackService",
    "cache_dir",
    "isolate_download_env",
    "server",
]

DEFAULT_COMMIT = "0123456789abcdef0123456789abcdef01234567"
_SEND_CHUNK = 2**20
_RESET_GRACE_S = 0.5
_LAST_MODIFIED = "Mon, 06 Feb 2017 00:00:00 GMT"
# A file modified in the very second of each answer: its date cannot tell two versions apart.
LAST_MODIFIED_NOW = "now"
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+|[^/]+)/resolve/(?P<revision>[^/]+)/(?P<filename>.+)$")


@dataclass(frozen=True)
class Fault:
    """Something going wrong on one request to a path (or on every one, with ``repeat``).

    Only the requests whose method is in ``methods`` consume or see the fault.
    """

    status: int | None = None  # answer this HTTP status (with a short body) instead of the file
    status_headers: dict[str, str] = field(default_factory=dict)  # sent with that status (e.g. Retry-After)
    reset_after: int | None = None  # send this many body bytes, then reset the connection (RST)
    delay_s: float = 0.0  # sleep after the headers, before the first body byte
    flip_bit_at: int | None = None  # flip the lowest bit of the body byte at this offset
    truncate_to: int | None = None  # serve only this many bytes, as if the file were that short
    ignore_range: bool = False  # answer 200 with the whole file even to a Range request
    ignore_if_range: bool = False  # answer a Range request with 206 even when If-Range no longer matches
    then_serve: bytes | None = None  # after this request, serve these bytes (same ETag kind, same Last-Modified)
    unknown_total: bool = False  # a 206's Content-Range says "bytes a-b/*" (the total is not given)
    repeat: bool = False  # apply to every request rather than only the next one
    methods: tuple[str, ...] = ("GET",)


@dataclass
class LoggedRequest:
    """One request the server received, and what it answered."""

    method: str
    path: str
    range: str | None
    if_range: str | None
    status: int = 0
    bytes_sent: int = 0  # body bytes actually written to the socket
    full_body: bool = False  # a 200 whose body was the resource's whole content, all sent


@dataclass
class _Resource:
    body: bytes
    etag: str | None  # None: no ETag header
    accept_ranges: bool = True
    accept_ranges_on_partial: bool = True  # nginx sends Accept-Ranges on 200 answers only
    last_modified: str = _LAST_MODIFIED  # LAST_MODIFIED_NOW: the Date of each answer
    headers: dict[str, str] = field(default_factory=dict)
    faults: Deque[Fault] = field(default_factory=deque)
    redirect: str | None = None  # answer 302 to this URL (the Hub sending a client to its CDN)


class LoopbackServer:
    """A threaded HTTP/1.1 server on 127.0.0.1 with an ephemeral port; use it as a context manager."""

    def __init__(self, rate_bytes_per_s: float | None = None) -> None:
        """``rate_bytes_per_s`` caps each response body's speed, as a network link would."""
        self.rate_bytes_per_s = rate_bytes_per_s
        self._resources: dict[str, _Resource] = {}
        self._hf_repos: dict[str, dict[str, str]] = {}  # repo_id -> {revision: commit}
        self._log: list[LoggedRequest] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._cdn: LoopbackServer | None = None
        self._httpd = _HTTPServer(self)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> "LoopbackServer":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving; sleeping fault handlers wake up and give up."""
        self._stop.set()
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()
        if self._cdn is not None:
            self._cdn.close()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``, with no trailing slash (what ``HF_ENDPOINT`` takes)."""
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def add(
        self,
        path: str,
        body: bytes,
        *,
        etag: str | None = None,
        accept_ranges: bool = True,
        faults: Iterable[Fault] = (),
        headers: dict[str, str] | None = None,
        send_etag: bool = True,
        accept_ranges_on_partial: bool = True,
        last_modified: str = _LAST_MODIFIED,
    ) -> str:
        """Serve ``body`` at ``path`` and return its URL. The default ETag is the quoted sha256 of the body."""
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/', got {path!r}")
        resource = _Resource(
            bytes(body),
            (etag or f'"{hashlib.sha256(body).hexdigest()}"') if send_etag else None,
            accept_ranges,
            accept_ranges_on_partial,
            last_modified,
            dict(headers or {}),
            deque(faults),
        )
        with self._lock:
            self._resources[path] = resource
        return self.url(path)

    def set_body(self, path: str, body: bytes) -> None:
        """Replace what ``path`` serves (a new ETag too, weak if the old one was), as when a mirror's file changes."""
        with self._lock:
            resource = self._resources[path]
            resource.body = bytes(body)
            if resource.etag is not None:
                weak = "W/" if resource.etag.startswith("W/") else ""
                resource.etag = f'{weak}"{hashlib.sha256(body).hexdigest()}"'

    def inject(self, path: str, *faults: Fault) -> None:
        """Queue faults for the next requests to ``path``."""
        with self._lock:
            self._resources[path].faults.extend(faults)

    def add_hf_file(
        self,
        repo_id: str,
        filename: str,
        body: bytes,
        *,
        commit: str = DEFAULT_COMMIT,
        branches: Iterable[str] = ("main",),
        via_cdn: bool = False,
        faults: Iterable[Fault] = (),
    ) -> str:
        """Serve ``body`` as ``filename`` of the Hub repository ``repo_id`` at ``commit`` (and ``branches``).

        Like the Hub for an LFS file, the resolve endpoint sends ``X-Repo-Commit``, the sha256 as
        ``X-Linked-Etag`` and the size as ``X-Linked-Size``. With ``via_cdn`` it answers 302 to a
        second server on another port, named ``localhost`` rather than ``127.0.0.1``: like the Hub's
        CDN it is another host, so ``huggingface_hub`` reads the metadata from the redirect (releases
        up to 2.0 followed a redirect to the same host name on any port) and downloads from the CDN.
        Returns the resolve path at ``commit``.
        """
        sha256 = hashlib.sha256(body).hexdigest()
        hub_headers = {"X-Repo-Commit": commit, "X-Linked-Etag": f'"{sha256}"', "X-Linked-Size": str(len(body))}
        redirect = None
        if via_cdn:
            if self._cdn is None:
                self._cdn = LoopbackServer().__enter__()
            redirect = self._cdn.add(f"/blobs/{sha256}", body).replace("//127.0.0.1:", "//localhost:", 1)
        with self._lock:
            revisions = self._hf_repos.setdefault(repo_id, {})
            revisions[commit] = commit
            revisions.update({branch: commit for branch in branches})
        path = ""
        for revision in (commit, *branches):
            path = f"/{repo_id}/resolve/{revision}/{filename}"
            self.add(path, body, etag=f'"{sha256}"', headers=hub_headers, faults=faults)
            with self._lock:
                self._resources[path].redirect = redirect
        return f"/{repo_id}/resolve/{commit}/{filename}"

    @property
    def cdn(self) -> "LoopbackServer | None":
        """The server that plays the Hub's CDN, once a file was added ``via_cdn``."""
        return self._cdn

    @property
    def log(self) -> list[LoggedRequest]:
        """Every request so far, oldest first."""
        with self._lock:
            return list(self._log)

    def requests_for(self, path: str, method: str | None = None) -> list[LoggedRequest]:
        return [entry for entry in self.log if entry.path == path and (method is None or entry.method == method)]

    def full_transfers(self, path: str) -> int:
        """How many times the whole body of ``path`` was sent in one 200 answer."""
        return sum(entry.full_body for entry in self.requests_for(path))

    def bytes_sent(self, path: str) -> int:
        """Body bytes sent for ``path`` over all requests."""
        return sum(entry.bytes_sent for entry in self.requests_for(path))

    # -- used by the request handler ------------------------------------------------------------

    def _take(self, path: str, method: str) -> tuple[_Resource | None, Fault | None, str]:
        """The resource at ``path`` and its next fault (consumed), or the Hub's 404 reason if absent."""
        with self._lock:
            resource = self._resources.get(path)
            fault = None
            if resource is not None and resource.faults and method in resource.faults[0].methods:
                fault = resource.faults[0]
                if not fault.repeat:
                    resource.faults.popleft()
            return resource, fault, self._missing_reason(path) if resource is None else ""

    def _missing_reason(self, path: str) -> str:
        match = _RESOLVE.match(path)
        if match is None:
            return ""
        revisions = self._hf_repos.get(match["repo"])
        if revisions is None:
            return "RepoNotFound"
        return "EntryNotFound" if match["revision"] in revisions else "RevisionNotFound"

    def _record(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._log.append(entry)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a handler sleeping in a delay fault must not hold up close()
    allow_reuse_address = True

    def __init__(self, owner: LoopbackServer) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10  # idle keep-alive connections end on their own
    server: _HTTPServer

    _date: str | None = None

    def log_message(self, format: str, *args: object) -> None:  # keep the test output clean
        pass

    def date_time_string(self, timestamp: float | None = None) -> str:
        # The Date header send_response adds, the same as this answer's Last-Modified when that is "now".
        if timestamp is None and self._date is not None:
            return self._date
        return super().date_time_string(timestamp)

    def do_GET(self) -> None:
        self._answer(head=False)

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def _answer(self, head: bool) -> None:
        self._date = None  # a keep-alive connection's earlier answer had its own
        owner = self.server.owner
        path = unquote(urlsplit(self.path).path)
        entry = LoggedRequest(self.command, path, self.headers.get("Range"), self.headers.get("If-Range"))
        owner._record(entry)
        resource, fault, missing = owner._take(path, self.command)
        if resource is None:
            extra = {"X-Error-Code": missing} if missing else {}
            return self._short(entry, 404, b"not found", extra, head)
        fault = fault or Fault()
        if fault.status is not None:
            return self._short(entry, fault.status, b"injected fault", dict(fault.status_headers), head)
        if resource.redirect is not None:
            return self._short(entry, 302, b"", {**resource.headers, "Location": resource.redirect}, head)

        body = resource.body
        if fault.truncate_to is not None:
            body = body[: fault.truncate_to]
        if fault.flip_bit_at is not None:
            flipped = bytearray(body)
            flipped[fault.flip_bit_at] ^= 1
            body = bytes(flipped)

        status, start, end = 200, 0, len(body)
        self._date = self.date_time_string()  # one Date for the whole answer, Last-Modified included
        modified = self._date if resource.last_modified == LAST_MODIFIED_NOW else resource.last_modified
        wanted = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        same_file = if_range is None or if_range in (resource.etag, modified) or fault.ignore_if_range
        if wanted and resource.accept_ranges and not fault.ignore_range and same_file:
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", wanted.strip())
            if match is None or int(match[1]) >= len(body):
                return self._short(entry, 416, b"", {"Content-Range": f"bytes */{len(body)}"}, head)
            start = int(match[1])
            end = min(len(body), int(match[2]) + 1) if match[2] else len(body)
            status = 206

        self.send_response(status)
        if "Content-Type" not in resource.headers:
            self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start))
        if resource.etag is not None:
            self.send_header("ETag", resource.etag)
        self.send_header("Last-Modified", modified)
        if resource.accept_ranges and (status == 200 or resource.accept_ranges_on_partial):
            self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{'*' if fault.unknown_total else len(body)}")
        for name, value in resource.headers.items():
            self.send_header(name, value)
        self.end_headers()
        entry.status = status
        if head:
            return
        if fault.delay_s and owner._stop.wait(fault.delay_s):
            self.close_connection = True
            return
        if fault.then_serve is not None:  # before the body: the next request must see the new file
            owner.set_body(path, fault.then_serve)
        self._send_body(entry, memoryview(body)[start:end], fault.reset_after)
        intact = fault.truncate_to is None and fault.flip_bit_at is None
        entry.full_body = intact and status == 200 and entry.bytes_sent == len(resource.body)

    def _send_body(self, entry: LoggedRequest, body: memoryview, reset_after: int | None) -> None:
        limit = len(body) if reset_after is None else min(reset_after, len(body))
        rate = self.server.owner.rate_bytes_per_s
        start = time.monotonic()
        try:
            for offset in range(0, limit, _SEND_CHUNK):
                chunk = body[offset : min(offset + _SEND_CHUNK, limit)]
                self.wfile.write(chunk)
                entry.bytes_sent += len(chunk)
                if rate:  # sleep until the link would have carried what was sent so far
                    time.sleep(max(0.0, start + entry.bytes_sent / rate - time.monotonic()))
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (e.g. its read timeout)
            self.close_connection = True
            return
        if reset_after is not None:
            # Linux drops received-but-unread data when a RST arrives; give the client a moment to
            # read what was sent so that the test sees a reset *after* N bytes, as intended.
            self.server.owner._stop.wait(_RESET_GRACE_S)
            # SO_LINGER 0 makes close() send RST instead of FIN: a reset, not a clean end.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True

    def _short(self, entry: LoggedRequest, status: int, body: bytes, headers: dict[str, str], head: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        entry.status = status
        if not head:
            self.wfile.write(body)
            entry.bytes_sent = len(body)


class LoopbackService:
    """A service with its own request handler on 127.0.0.1, beside a :class:`LoopbackServer` for the files it hands out.

    The stand-ins for the Hub's upload API and for OneDrive build on it; the handler reaches the
    service as ``self.server.service``. Use it as a context manager.
    """

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.files = LoopbackServer()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.httpd.service = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.files.__enter__()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.files.close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    """A running :class:`LoopbackServer` (import this fixture into a test module to use it)."""
    with LoopbackServer() as server:
        yield server


@pytest.fixture
def cache_dir(monkeypatch, tmp_path: Path) -> Path:
    """The cache directory of an isolated downloader environment (see :func:`isolate_download_env`)."""
    return isolate_download_env(monkeypatch, tmp_path)


# Every variable that changes what dsd_zoo.download does; tests start from none of them set.
DOWNLOAD_ENV = (
    "DSD_ZOO_CACHE",
    "DSD_ZOO_OFFLINE",
    "DSD_ZOO_TRUST_UNVERIFIED",
    "DSD_ZOO_TIMEOUT",
    "DSD_ZOO_RETRIES",
    "DSD_ZOO_RETRY_BACKOFF",
    "HF_ENDPOINT",
    "HF_HOME",
    "HF_HUB_CACHE",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
)


def isolate_download_env(monkeypatch, tmp_path: Path, *, timeout: str = "2,0.5", retries: int = 3) -> Path:
    """Give dsd_zoo.download a fresh cache under ``tmp_path`` and short timeouts; returns the cache dir.

    The retry backoff is 10 ms so that fault tests take milliseconds, not seconds.
    """
    for name in DOWNLOAD_ENV:
        monkeypatch.delenv(name, raising=False)
    cache_dir = tmp_path / "cache"
    monkeypatch.setenv("DSD_ZOO_CACHE", str(cache_dir))
    monkeypatch.setenv("DSD_ZOO_TIMEOUT", timeout)
    monkeypatch.setenv("DSD_ZOO_RETRIES", str(retries))
    monkeypatch.setenv("DSD_ZOO_RETRY_BACKOFF", "0.01")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    return cache_dir


def _serve_file_until_killed(path: Path, rate_bytes_per_s: float | None) -> None:
    with LoopbackServer(rate_bytes_per_s) as server:
        print(server.add("/" + path.name, path.read_bytes()), flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Serve FILE on 127.0.0.1 until killed; print its URL first.")
    parser.add_argument("file", type=Path)
    parser.add_argument("--rate-mib-s", type=float, default=None, help="cap the body speed (MiB/s)")
    args = parser.parse_args()
    _serve_file_until_killed(args.file, args.rate_mib_s * 2**20 if args.rate_mib_s else None)
