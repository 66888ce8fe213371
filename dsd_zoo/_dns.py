"""Requests that got no answer, and host names that do not resolve: which failures waiting may cure.

A timeout, a reset or a refused connection may pass, so the downloader and the OneDrive client
retry them (:func:`no_answer` says which). A mistyped mirror, a Hub endpoint that does not exist
or a machine with no network answers ``getaddrinfo`` with an error at once; retrying with backoff
only delays the one-line cause. ``huggingface_hub`` retries connection errors, this one included,
for about 20 s, so a Hub endpoint's host is resolved once before the Hub is asked
(:func:`unresolvable_host`).
"""

from __future__ import annotations

import socket
from typing import Optional
from urllib.parse import urlsplit

import requests
import requests.utils

from .errors import first_line

__all__ = ["no_answer", "unresolvable_host"]


def no_answer(exc: requests.RequestException, url: str) -> tuple[str, bool]:
    """Why the request to ``url`` got no answer, in one line, and whether trying again may help.

    A name that does not resolve, a certificate problem or a request that cannot be made does not
    go away by waiting; a timeout or a broken or refused connection may.
    """
    unresolved = _resolution_failure(exc)
    if unresolved is not None:
        return _describe(url, unresolved), False
    worth_retrying = isinstance(exc, (requests.ConnectionError, requests.Timeout))
    return first_line(exc), worth_retrying and not isinstance(exc, requests.exceptions.SSLError)


def _resolution_failure(exc: BaseException) -> Optional[socket.gaierror]:
    """The resolver's error behind ``exc`` (requests, urllib3 and httpx wrap it), if there is one."""
    seen: set[int] = set()
    pending: list[object] = [exc]
    while pending:
        error = pending.pop()
        if not isinstance(error, BaseException) or id(error) in seen:
            continue
        seen.add(id(error))
        if isinstance(error, socket.gaierror):
            return error
        # urllib3 keeps the cause in .reason (MaxRetryError, NameResolutionError) and in args.
        pending.extend([error.__cause__, error.__context__, getattr(error, "reason", None), *error.args])
    return None


def _describe(url: str, error: socket.gaierror) -> str:
    """One line: which name (``url``'s host) did not resolve and what the resolver said."""
    host = urlsplit(url).hostname or url
    return f"the host name {host!r} does not resolve ({error.strerror or error}): check the address, or the network"


def unresolvable_host(url: str) -> Optional[str]:
    """Why ``url``'s host cannot be reached, if the resolver says the name does not resolve; else ``None``.

    Behind a proxy the proxy resolves names, so nothing is asked and ``None`` is returned.
    """
    host = urlsplit(url).hostname
    if not host or requests.utils.get_environ_proxies(url):
        return None
    try:
        socket.getaddrinfo(host, None)
    except socket.gaierror as exc:
        return _describe(url, exc)
    return None
