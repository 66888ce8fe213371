"""Starting the default process group so that destroying it really ends it.

``torch.distributed.nn.functional`` evaluates ``group=group.WORLD`` default arguments when it is
first imported. Imported after the default group exists (torchvision imports it on its own first
import, DDP when it is first built), those defaults hold the group for the rest of the process:
``destroy_process_group`` then leaves it, and gloo's worker threads, running. A worker that frees
a finished collective while the interpreter shuts down needs the GIL, is stopped by Python's
finalization, and aborts the rank ("terminate called without an active exception"). Imported
before the group exists, the defaults are ``None``.
"""

from __future__ import annotations

import importlib

__all__ = ["init_process_group"]


def init_process_group(backend: str) -> None:
    """``torch.distributed.init_process_group(backend)`` from the environment, after the import above."""
    import torch.distributed as dist

    importlib.import_module("torch.distributed.nn.functional")
    dist.init_process_group(backend=backend)
