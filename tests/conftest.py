"""Shared test set-up: paths of the real fixtures in ../shared and a small torch thread budget."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DSD_ZOO_SHARED", REPO_ROOT.parent / "shared"))
FIXTURES = SHARED / "fixtures"
RELEASE = SHARED / "reference" / "dsd-release"


def require(path: Path) -> Path:
    """Skip the calling test, saying why, when a real fixture file is not present."""
    if not path.exists():
        pytest.skip(
            f"real fixture {path} is absent: these files live in ../shared (not in this repository); "
            "set DSD_ZOO_SHARED to the folder that holds fixtures/ and reference/"
        )
    return path


@pytest.fixture(autouse=True, scope="session")
def _torch_threads():
    # CI has 2 cores; more threads than cores only adds contention.
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    yield


@pytest.fixture
def one_thread():
    """One torch thread, for modules that opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``.

    For small models on a shared 2-core machine a second intra-op thread mostly spins (measured:
    about 10x slower per training step, 7x slower per evaluation while other jobs run).
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _never_the_users_cache(tmp_path_factory, monkeypatch):
    """Every test's default dsd-zoo cache is one under pytest's temporary folder, never the user's.

    Tests that need a private one ask for :func:`isolated_cache`; the rest share this one, as the
    runs of one user share theirs (an ONNX export made by one test is found by the next).
    """
    monkeypatch.setenv("DSD_ZOO_CACHE", str(tmp_path_factory.getbasetemp() / "shared-cache"))


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    """A private dsd-zoo cache and HF home, so no test sees another's files or the user's."""
    monkeypatch.setenv("DSD_ZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("DSD_ZOO_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("DSD_ZOO_TRUST_UNVERIFIED", raising=False)
    monkeypatch.delenv("DSD_ZOO_MANIFEST", raising=False)
    return tmp_path / "cache"


# The loopback servers' fixtures, for every test module.
from .servers import cache_dir, server  # noqa: E402,F401


# RFC 6761 reserves .invalid: a resolver must answer that no such name exists. Tests that use it
# ask this machine's own resolver, as a user's download would.
UNRESOLVABLE = "dsd-zoo-test.invalid"


@pytest.fixture
def unresolvable_host() -> str:
    """A host name that does not resolve here (skips if this machine's resolver answers one anyway)."""
    try:
        socket.getaddrinfo(UNRESOLVABLE, None)
    except socket.gaierror:
        return UNRESOLVABLE
    pytest.skip(
        f"this machine's resolver gives an address for {UNRESOLVABLE}, which RFC 6761 says no name under .invalid has"
    )
