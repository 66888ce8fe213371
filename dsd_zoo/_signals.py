"""Termination signals as Python exceptions, so that a killed CLI cleans up like an interrupted one.

Python turns SIGINT into KeyboardInterrupt, and every file dsd-zoo writes goes through a temporary
part that an exception removes (``dsd_zoo.atomic``). SIGTERM (``timeout``, job schedulers,
``kill``) and SIGHUP (a closed terminal) end the process without running any of that, leaving
parts of hundreds of megabytes behind. Inside :func:`exit_on_termination` they raise
``SystemExit(128 + signal)`` instead, the status a shell reports for a process killed by it.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Iterator

__all__ = ["exit_on_termination"]


def _raise_exit(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def exit_on_termination() -> Iterator[None]:
    """SIGTERM and SIGHUP raise SystemExit in the block (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    wanted = [getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]
    previous = {signum: signal.signal(signum, _raise_exit) for signum in wanted}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
