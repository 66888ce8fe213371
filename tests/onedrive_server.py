"""A loopback stand-in for the three OneDrive services a browser uses for an anonymous share link.

:class:`OneDriveServer` answers, on 127.0.0.1, what the real services answer (see
``dsd_zoo/onedrive.py`` and the public reports it cites):

* ``POST /token``: the "badger" token service; a JSON body ``{"appId": ...}`` gets
  ``{"token": ..., "expiryTimeUtc": ...}``;
* ``POST /api/shares/u!<id>/driveitem``: redeeming a share with ``Authorization: Badger <token>``
  and ``Prefer: autoredeem``; 401 for a token it does not accept (unknown or expired), 404 for
  an unknown share, otherwise the item as JSON with a pre-authenticated ``@content.downloadUrl``;
* ``GET /legacy/shares/u!<id>/root/content``: the old anonymous API, which answers 401
  ``unauthenticated`` as the real one has since mid-2024;
* ``GET /download/<token>/<name>``: with ``redirect``, the download link points here and is
  answered with 302 to the content host, its ``files`` (a :class:`~tests.servers.LoopbackServer`:
  Range, ETag, faults) serving ``/c/<token>/<name>``.

:meth:`OneDriveServer.env` gives the ``DSD_ZOO_ONEDRIVE_*`` variables that point dsd-zoo at it.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Iterable
from urllib.parse import unquote, urlsplit

from dsd_zoo.onedrive import share_id

from .servers import Fault, LoopbackService

_ITEM = re.compile(r"^/api/shares/(?P<share>[^/]+)/driveitem$")
_LEGACY = re.compile(r"^/legacy/shares/(?P<share>[^/]+)/root/content$")
_DOWNLOAD = re.compile(r"^/download/(?P<token>[^/]+)/(?P<name>[^/]+)$")


@dataclass
class _Share:
    name: str
    body: bytes
    first_content_faults: tuple[Fault, ...] = ()
    content_paths: list[str] = field(default_factory=list)


class OneDriveServer(LoopbackService):
    """Token service, share API, old API and content host on loopback; use it as a context manager.

    ``token_lives_for``: a token expires (the share API answers 401 for it) once the content
    link made with it was requested that many times, as a short-lived link would.
    ``refuse_tokens``: the token service answers this HTTP status instead of a token.
    """

    def __init__(
        self, *, redirect: bool = False, token_lives_for: int | None = None, refuse_tokens: int | None = None
    ) -> None:
        self.redirect = redirect
        self.token_lives_for = token_lives_for
        self.refuse_tokens = refuse_tokens
        self.calls: list[tuple[str, str, str]] = []  # (method, path, Authorization header)
        self._shares: dict[str, _Share] = {}
        self._tokens: list[str] = []
        self._expired: set[str] = set()
        self._lock = threading.Lock()
        super().__init__(_handler(self))

    def env(self) -> dict[str, str]:
        """The variables that point dsd-zoo's OneDrive route at this server."""
        return {
            "DSD_ZOO_ONEDRIVE_TOKEN_URL": self.base_url + "/token",
            "DSD_ZOO_ONEDRIVE_API": self.base_url + "/api",
            "DSD_ZOO_ONEDRIVE_LEGACY_API": self.base_url + "/legacy",
        }

    def add_share(self, share_url: str, name: str, body: bytes, *, first_content_faults: Iterable[Fault] = ()) -> None:
        """Share ``body`` as ``name`` at ``share_url``; ``first_content_faults`` hit the first download link made."""
        with self._lock:
            self._shares[share_id(share_url)] = _Share(name, bytes(body), tuple(first_content_faults))

    def expire_tokens(self) -> None:
        """Every token issued so far is refused from now on, and so are the download links made with them."""
        with self._lock:
            self._expired.update(self._tokens)
            paths = [path for share in self._shares.values() for path in share.content_paths]
        for path in paths:
            self.files.inject(path, Fault(status=401, repeat=True))

    def count(self, method: str, prefix: str) -> int:
        """How many requests this server (not the content host) got for paths starting with ``prefix``."""
        return sum(1 for m, path, _ in self.calls if m == method and path.startswith(prefix))

    @property
    def tokens_issued(self) -> int:
        return len(self._tokens)

    # -- used by the handler ----------------------------------------------------------------------

    def _issue_token(self) -> str:
        with self._lock:
            token = f"anon-{len(self._tokens) + 1}"
            self._tokens.append(token)
            return token

    def _token_ok(self, token: str) -> bool:
        with self._lock:
            if token not in self._tokens or token in self._expired:
                return False
        if self.token_lives_for is not None:
            used = sum(1 for entry in self.files.log if entry.path.startswith(f"/c/{token}/"))
            if used >= self.token_lives_for:
                with self._lock:
                    self._expired.add(token)
                return False
        return True

    def _content_link(self, share: _Share, token: str) -> str:
        path = f"/c/{token}/{share.name}"
        first = not share.content_paths
        self.files.add(path, share.body, faults=share.first_content_faults if first else ())
        share.content_paths.append(path)
        if self.redirect:
            return f"{self.base_url}/download/{token}/{share.name}"
        return self.files.url(path)


def _handler(owner: OneDriveServer) -> type:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _reply(self, status: int, document: object | None = None, headers: dict[str, str] | None = None) -> None:
            body = b"" if document is None else json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def _path(self) -> str:
            path = unquote(urlsplit(self.path).path)
            owner.calls.append((self.command, path, self.headers.get("Authorization", "")))
            return path

        def do_POST(self) -> None:
            path = self._path()
            length = int(self.headers.get("Content-Length") or 0)
            payload = self.rfile.read(length) if length else b""
            if path == "/token":
                if owner.refuse_tokens is not None:
                    return self._reply(owner.refuse_tokens, {"error": "refused"})
                if json.loads(payload or b"{}").get("appId") is None:
                    return self._reply(400, {"error": "appId missing"})
                return self._reply(200, {"token": owner._issue_token(), "expiryTimeUtc": "2099-01-01T00:00:00Z"})
            match = _ITEM.match(path)
            if match is None:
                return self._reply(404, {"error": {"code": "itemNotFound"}})
            scheme, _, token = self.headers.get("Authorization", "").partition(" ")
            if scheme != "Badger" or not owner._token_ok(token) or self.headers.get("Prefer") != "autoredeem":
                return self._reply(401, {"error": {"code": "unauthenticated"}})
            share = owner._shares.get(match["share"])
            if share is None:
                return self._reply(404, {"error": {"code": "itemNotFound"}})
            return self._reply(
                200,
                {
                    "id": "ABC!123",
                    "name": share.name,
                    "size": len(share.body),
                    "@content.downloadUrl": owner._content_link(share, token),
                },
            )

        def do_GET(self) -> None:
            path = self._path()
            if _LEGACY.match(path):
                return self._reply(401, {"error": {"code": "unauthenticated", "message": "Unauthenticated"}})
            match = _DOWNLOAD.match(path)
            if match is not None:
                return self._reply(302, None, {"Location": owner.files.url(f"/c/{match['token']}/{match['name']}")})
            return self._reply(404, {"error": {"code": "itemNotFound"}})

    return Handler
