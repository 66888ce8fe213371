"""OneDrive share links, fetched the way an anonymous visitor's browser fetches them.

Five of the six DSD originals exist only behind ``https://1drv.ms/u/s!...`` share links. The
OneDrive API endpoint that used to serve such links to anyone,
``https://api.onedrive.com/v1.0/shares/u!.../root/content``, has answered anonymous requests with
401 ``unauthenticated`` since mid-2024 (reported publicly in rclone/rclone#7898, June 2024, and
felixrieseberg/onedrive-link#1, October 2024 to May 2025). What still works is what the OneDrive
web page itself does for a visitor who is not signed in, and what download tools do in its place:

1. **token**: ask the "badger" service for a short-lived anonymous token, presenting the
   application id of the OneDrive web page;
2. **redeem**: ask ``my.microsoftpersonalcontent.com`` for the shared item with that token and
   ``Prefer: autoredeem``; the answer names the file and gives a pre-authenticated
   ``@content.downloadUrl``;
3. **content**: download that URL (it may redirect to a content host), with ``Range`` requests
   like any mirror.

This is not a documented API: Microsoft may change it at any time. Nothing here is trusted for
what it serves: every file is checked against its published digest or, for the DSD originals
that have none, against the sha256 pinned the first time (trust on first use), whatever route it
came by. The old anonymous endpoint is still tried when the new route fails.

The token is reused for every share link within a process and replaced when the service answers
401 or when it expires. The service roots can be overridden (tests point them at loopback
servers; a proxy or a future move can too):

``DSD_ZOO_ONEDRIVE_TOKEN_URL``
    the token service (default ``https://api-badgerp.svc.ms/v1.0/token``);
``DSD_ZOO_ONEDRIVE_API``
    the API that redeems shares (default ``https://my.microsoftpersonalcontent.com/_api/v2.0``);
``DSD_ZOO_ONEDRIVE_LEGACY_API``
    the old anonymous API (default ``https://api.onedrive.com/v1.0``).
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import threading
from typing import Any, Optional, Tuple
from urllib.parse import urlsplit

import requests

from . import _dns

__all__ = ["OneDriveError", "is_share_link", "legacy_content_url", "redeem", "share_id"]

# The root of each service, by the environment variable that moves it (see above).
_DEFAULT_ROOTS = {
    "DSD_ZOO_ONEDRIVE_TOKEN_URL": "https://api-badgerp.svc.ms/v1.0/token",
    "DSD_ZOO_ONEDRIVE_API": "https://my.microsoftpersonalcontent.com/_api/v2.0",
    "DSD_ZOO_ONEDRIVE_LEGACY_API": "https://api.onedrive.com/v1.0",
}
# The application id the OneDrive web page presents when it asks for an anonymous visitor's token.
_WEB_APP_ID = "5cbed6ac-a083-4e14-b191-b4ba07653de2"
_SHARE_HOSTS = ("1drv.ms", "onedrive.live.com")
# A token this close to its expiry is replaced before use rather than after a refusal.
_EXPIRY_MARGIN = datetime.timedelta(minutes=5)
_MAX_ANSWER_BYTES = 2**20


class OneDriveError(Exception):
    """A step of the OneDrive route failed; the message names the step. ``transient``: worth retrying."""

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


def is_share_link(url: str) -> bool:
    """Whether ``url`` is a OneDrive share link (``1drv.ms`` or ``onedrive.live.com``)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    return parts.scheme in ("http", "https") and any(host == h or host.endswith("." + h) for h in _SHARE_HOSTS)


def share_id(url: str) -> str:
    """OneDrive's id of a share link: ``u!`` and the unpadded base64url of the link.

    >>> share_id("https://1drv.ms/u/s!AjMsKRa1yPNOaQ")
    'u!aHR0cHM6Ly8xZHJ2Lm1zL3UvcyFBak1zS1JhMXlQTk9hUQ'
    """
    return "u!" + base64.urlsafe_b64encode(url.encode("utf-8")).decode("ascii").rstrip("=")


def legacy_content_url(url: str) -> str:
    """The old anonymous API's URL for the bytes of a share link (refused with 401 since mid-2024).

    >>> legacy_content_url("https://1drv.ms/u/s!AjMsKRa1yPNOaQ")
    'https://api.onedrive.com/v1.0/shares/u!aHR0cHM6Ly8xZHJ2Lm1zL3UvcyFBak1zS1JhMXlQTk9hUQ/root/content'
    """
    if not is_share_link(url):
        raise ValueError(f"not a OneDrive share link: {url!r}")
    return f"{_root('DSD_ZOO_ONEDRIVE_LEGACY_API')}/shares/{share_id(url)}/root/content"


def _root(env: str) -> str:
    return (os.environ.get(env) or _DEFAULT_ROOTS[env]).rstrip("/")


class _Token:
    """The process's anonymous token, shared by every share link and thread (one per token service)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._service: Optional[str] = None
        self._value: Optional[str] = None
        self._expires: Optional[datetime.datetime] = None

    def get(self, session: requests.Session, timeout: Tuple[float, float], *, refused: Optional[str] = None) -> str:
        """A token to use; ``refused``: the token the API just refused, to be replaced (once, for all threads)."""
        service = _root("DSD_ZOO_ONEDRIVE_TOKEN_URL")
        with self._lock:
            now = datetime.datetime.now(datetime.timezone.utc)
            stale = self._expires is not None and self._expires - _EXPIRY_MARGIN <= now
            if self._value is None or stale or service != self._service or refused == self._value:
                self._value, self._expires = _new_token(session, service, timeout)
                self._service = service
            return self._value


_TOKEN = _Token()


def _new_token(
    session: requests.Session, url: str, timeout: Tuple[float, float]
) -> Tuple[str, Optional[datetime.datetime]]:
    response, document = _post(
        session,
        "OneDrive's token service",
        url,
        timeout,
        json={"appId": _WEB_APP_ID},
        headers={"Accept": "application/json", "AppId": "1141147648"},
    )
    if response.status_code != 200:
        raise OneDriveError(
            f"OneDrive refused the anonymous token ({_status(response)} from {url}); the way browsers reach "
            "OneDrive may have changed"
        )
    token = document.get("token") if isinstance(document, dict) else None
    if not isinstance(token, str) or not token:
        raise OneDriveError(f"OneDrive's token service answered without a token ({url})")
    return token, _expiry(document.get("expiryTimeUtc"))


def _expiry(value: Any) -> Optional[datetime.datetime]:
    if not isinstance(value, str):
        return None
    try:
        when = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=datetime.timezone.utc)


def redeem(session: requests.Session, share_url: str, timeout: Tuple[float, float]) -> str:
    """Redeem ``share_url`` as an anonymous visitor (the token, then the item) and return its download URL.

    A token the API refuses (401) is replaced once. Raises :class:`OneDriveError` naming the step
    that failed: the token refused, the share gone (404), the share not open to anyone (403), an
    answer without a download link (e.g. a folder).
    """
    item_url = f"{_root('DSD_ZOO_ONEDRIVE_API')}/shares/{share_id(share_url)}/driveitem"
    refused: Optional[str] = None
    for _ in range(2):
        token = _TOKEN.get(session, timeout, refused=refused)
        response, document = _post(
            session,
            "OneDrive",
            item_url,
            timeout,
            params={"select": "@content.downloadUrl,id,name,size"},
            data=b"",
            headers={"Authorization": f"Badger {token}", "Prefer": "autoredeem", "Accept": "application/json"},
        )
        if response.status_code == 401:
            refused = token
            continue
        if response.status_code == 404:
            raise OneDriveError(
                f"the share no longer exists: OneDrive knows no item for {share_url} (404); its owner "
                "may have removed or moved the file"
            )
        if response.status_code == 403:
            raise OneDriveError(
                f"the share is not open to anonymous visitors: OneDrive denied access to {share_url} (403)"
            )
        if response.status_code != 200:
            raise OneDriveError(f"OneDrive would not redeem the share {share_url} ({_status(response)})")
        content = document.get("@content.downloadUrl") if isinstance(document, dict) else None
        if not isinstance(content, str) or urlsplit(content).scheme not in ("http", "https"):
            raise OneDriveError(f"OneDrive's answer for {share_url} has no download link (is the share a folder?)")
        return content
    raise OneDriveError(
        f"OneDrive refused the anonymous token for {share_url} twice (401 unauthenticated, with a "
        "fresh token); the way browsers reach OneDrive may have changed"
    )


def _post(
    session: requests.Session, what: str, url: str, timeout: Tuple[float, float], **kwargs: Any
) -> Tuple[requests.Response, Any]:
    """POST to ``what``, one of OneDrive's services: its answer (closed) and, for a 200, the JSON document it holds.

    A busy or failing service (429, 5xx) is worth retrying, and so may be no answer (see
    :func:`dsd_zoo._dns.no_answer`).
    """
    try:
        response = session.post(url, timeout=timeout, stream=True, **kwargs)
    except requests.RequestException as exc:
        message, transient = _dns.no_answer(exc, url)
        raise OneDriveError(f"{what} could not be reached: {message}", transient=transient) from exc
    with response:
        if response.status_code == 429 or response.status_code >= 500:
            raise OneDriveError(f"{what} is busy or failing ({_status(response)})", transient=True)
        if response.status_code != 200:
            return response, None
        # The token and item answers are small JSON documents.
        body = response.raw.read(_MAX_ANSWER_BYTES + 1, decode_content=True) if response.raw is not None else b""
    if len(body) > _MAX_ANSWER_BYTES:
        raise OneDriveError(f"{what} answered more than {_MAX_ANSWER_BYTES} bytes, not the JSON document expected")
    try:
        return response, json.loads(body)
    except ValueError as exc:
        raise OneDriveError(f"{what} did not answer with the JSON document expected ({exc})") from exc


def _status(response: requests.Response) -> str:
    return f"HTTP {response.status_code} {response.reason or ''}".rstrip()
