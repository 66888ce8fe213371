"""OneDrive share links through the route a browser takes (token, redeem, content), against loopback servers.

The servers (tests/onedrive_server.py) speak the three steps and the old anonymous API, which
answers 401 as the real one has since mid-2024. dsd-zoo reaches them through its documented
``DSD_ZOO_ONEDRIVE_*`` overrides; its HTTP client is the real one.
"""

from __future__ import annotations

import hashlib
import os

import pytest

from dsd_zoo import cache
from dsd_zoo.digests import Digest
from dsd_zoo.download import fetch, fetch_url_bytes
from dsd_zoo.errors import DownloadError
from dsd_zoo.records import FileRecord
from dsd_zoo.onedrive import is_share_link, legacy_content_url, share_id

from .onedrive_server import OneDriveServer
from .servers import Fault

BODY = os.urandom(3 * 2**20)
SHA256 = hashlib.sha256(BODY).hexdigest()
SHARE = "https://1drv.ms/u/s!AjMsKRa1yPNOaQ"
OTHER_SHARE = "https://1drv.ms/u/s!AkOtherShareLink"


def _record(url: str = SHARE, digest: Digest | None = Digest("sha256", SHA256), file: str = "w.t7") -> FileRecord:
    return FileRecord(file, digest, len(BODY), urls=(url,))


@pytest.fixture
def onedrive(cache_dir, monkeypatch, request):
    options = getattr(request, "param", {})
    with OneDriveServer(**options) as server:
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
        yield server


def test_share_ids_and_the_old_endpoint(monkeypatch):
    # The example of Microsoft's "Encoding sharing URLs" (OneDrive API docs, shares endpoint).
    share = "https://onedrive.live.com/redir?resid=1231244193912!12&authKey=1201919!12921!1"
    token = "u!aHR0cHM6Ly9vbmVkcml2ZS5saXZlLmNvbS9yZWRpcj9yZXNpZD0xMjMxMjQ0MTkzOTEyITEyJmF1dGhLZXk9MTIwMTkxOSExMjkyMSEx"
    assert share_id(share) == token
    monkeypatch.delenv("DSD_ZOO_ONEDRIVE_LEGACY_API", raising=False)
    assert legacy_content_url(share) == f"https://api.onedrive.com/v1.0/shares/{token}/root/content"
    assert "=" not in share_id(SHARE) and "+" not in share_id(SHARE) and "/" not in share_id(SHARE)
    for other in ("https://example.com/1drv.ms/x", "https://1drv.ms.example.com/x", "ftp://1drv.ms/x"):
        assert not is_share_link(other)
        with pytest.raises(ValueError, match="OneDrive"):
            legacy_content_url(other)


def test_a_share_is_fetched_as_a_browser_does(onedrive, cache_dir):
    onedrive.add_share(SHARE, "resnet50_dsd.t7", BODY)
    path = fetch(_record(), progress=False)
    assert path.read_bytes() == BODY and cache.read_stamp(path).source == SHARE
    assert onedrive.count("POST", "/token") == 1 and onedrive.count("POST", "/api/shares/") == 1
    (redeem,) = [auth for method, path, auth in onedrive.calls if path.startswith("/api/shares/")]
    assert redeem == "Badger anon-1"  # the token went with the redeem request
    assert onedrive.count("GET", "/legacy/") == 0  # the old endpoint is only a fallback
    assert onedrive.files.full_transfers("/c/anon-1/resnet50_dsd.t7") == 1


def test_an_unverified_share_is_pinned_on_first_use(onedrive, cache_dir):
    onedrive.add_share(SHARE, "resnet50_dsd.t7", BODY)
    with pytest.warns(UserWarning, match="trusting the copy"):
        path = fetch(_record(digest=None), progress=False, trust_unverified=True)
    stamp = cache.read_stamp(path)
    assert stamp.pinned and stamp.sha256 == SHA256


def test_the_token_is_reused_within_a_process(onedrive, cache_dir):
    onedrive.add_share(SHARE, "a.t7", BODY)
    onedrive.add_share(OTHER_SHARE, "b.t7", BODY)
    fetch(_record(), progress=False)
    fetch(_record(OTHER_SHARE, file="other.t7"), progress=False)
    assert onedrive.tokens_issued == 1 and onedrive.count("POST", "/api/shares/") == 2


def test_an_expired_token_is_replaced(onedrive, cache_dir):
    onedrive.add_share(SHARE, "a.t7", BODY)
    onedrive.add_share(OTHER_SHARE, "b.t7", BODY)
    fetch(_record(), progress=False)
    onedrive.expire_tokens()
    assert fetch(_record(OTHER_SHARE, file="other.t7"), progress=False).read_bytes() == BODY
    # The share API refused anon-1 (401); one fresh token, one more redeem, and the file came.
    assert onedrive.tokens_issued == 2
    assert [auth for method, path, auth in onedrive.calls if path.startswith("/api/shares/")] == [
        "Badger anon-1",
        "Badger anon-1",
        "Badger anon-2",
    ]


@pytest.mark.parametrize("onedrive", [{"redirect": True}], indirect=True)
def test_a_download_link_that_redirects_to_the_content_host(onedrive, cache_dir):
    onedrive.add_share(SHARE, "a.t7", BODY)
    assert fetch(_record(), progress=False).read_bytes() == BODY
    assert onedrive.count("GET", "/download/anon-1/a.t7") == 1
    assert onedrive.files.full_transfers("/c/anon-1/a.t7") == 1


@pytest.mark.parametrize("onedrive", [{"token_lives_for": 2}], indirect=True)
def test_a_transfer_resumes_across_a_token_refresh(onedrive, cache_dir):
    # The first link breaks after 1 MiB, then is refused (its token has expired); the share is
    # redeemed again with a fresh token, and the new link is asked for the rest only.
    resumed_at = 2**20
    onedrive.add_share(SHARE, "a.t7", BODY, first_content_faults=[Fault(reset_after=resumed_at), Fault(status=401)])
    assert fetch(_record(), progress=False).read_bytes() == BODY
    assert onedrive.tokens_issued == 2
    (second,) = onedrive.files.requests_for("/c/anon-2/a.t7")
    assert second.range == f"bytes={resumed_at}-" and second.status == 206
    assert onedrive.files.bytes_sent("/c/anon-2/a.t7") == len(BODY) - resumed_at


def test_a_share_that_no_longer_exists_is_named(onedrive, cache_dir):
    with pytest.raises(DownloadError) as info:
        fetch(_record(), progress=False)
    message = str(info.value)
    assert "the share no longer exists" in message
    # The old anonymous API was tried too, and its refusal is explained, not a bare status.
    assert onedrive.count("GET", "/legacy/shares/") == 1
    assert "old anonymous API" in message and "since mid-2024" in message


@pytest.mark.parametrize("onedrive", [{"refuse_tokens": 403}], indirect=True)
def test_a_refused_token_is_named(onedrive, cache_dir):
    onedrive.add_share(SHARE, "a.t7", BODY)
    with pytest.raises(DownloadError, match="OneDrive refused the anonymous token"):
        fetch(_record(), progress=False)
    assert onedrive.count("POST", "/api/shares/") == 0


def test_a_small_document_behind_a_share_link(onedrive, cache_dir):
    onedrive.add_share(SHARE, "manifest.json", b'{"format": 1}')
    assert fetch_url_bytes(SHARE, max_bytes=100) == b'{"format": 1}'


def test_a_token_service_that_does_not_resolve_is_not_retried(
    onedrive, cache_dir, monkeypatch, caplog, unresolvable_host
):
    onedrive.add_share(SHARE, "a.t7", BODY)
    monkeypatch.setenv("DSD_ZOO_ONEDRIVE_TOKEN_URL", f"http://{unresolvable_host}/token")
    with caplog.at_level("WARNING"), pytest.raises(DownloadError) as info:
        fetch(_record(), progress=False)
    assert (
        f"OneDrive's token service could not be reached: the host name '{unresolvable_host}' does not resolve"
        in str(info.value)
    )
    assert not [r for r in caplog.records if "retrying" in r.getMessage()]
    assert onedrive.count("GET", "/legacy/shares/") == 1  # the old API, on a host that resolves, was still asked
