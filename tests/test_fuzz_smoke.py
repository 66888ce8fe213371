"""A short run of benchmarks/fuzz_parsers.py: a few hundred mutated inputs per parser, 0 crashes."""

from __future__ import annotations

import importlib.util
import random
import sys
import time

import pytest

from .conftest import REPO_ROOT

pytest.importorskip("google.protobuf", reason="the Caffe reader needs protobuf (dsd-zoo[convert])")


def _fuzz_module():
    if "fuzz_parsers" in sys.modules:
        return sys.modules["fuzz_parsers"]
    spec = importlib.util.spec_from_file_location("fuzz_parsers", REPO_ROOT / "benchmarks" / "fuzz_parsers.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_parsers"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_fuzz_smoke():
    fuzz = _fuzz_module()
    start = time.perf_counter()
    results = fuzz.run(iterations=300, seed=12345, timeout=5.0)
    assert set(results) == {"caffe", "t7", "net", "prototxt"}
    for name, result in results.items():
        assert result.inputs == 300
        assert not result.crashes, f"{name}: {[what for what, _ in result.crashes[:3]]}"
        # The mutations must not be so destructive that nothing ever parses.
        assert result.accepted > 0, name
    assert time.perf_counter() - start < 20


def test_mutations_are_deterministic():
    fuzz = _fuzz_module()
    a = fuzz.mutate(b"0123456789abcdef", [b"xyz"], random.Random(7))
    assert a == fuzz.mutate(b"0123456789abcdef", [b"xyz"], random.Random(7))


def test_cli_reports_and_exits_zero(capsys):
    fuzz = _fuzz_module()
    assert fuzz.main(["--iterations", "20", "--parsers", "net,t7"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["parser", "inputs", "accepted", "rejected", "crashes", "seconds"]
    assert out.splitlines()[1].split()[:2] == ["net", "20"]
