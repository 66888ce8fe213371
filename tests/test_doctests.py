"""The examples in the docstrings (what help() and torch.hub.help show) run and print what they say."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["dsd_zoo", "dsd_zoo.digests", "dsd_zoo.onedrive", "dsd_zoo.model_card", "dsd_zoo.dsd.schedule"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed"
