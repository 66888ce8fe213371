"""Mutation fuzzing of the foreign-format parsers in ``dsd_zoo.convert`` (and the tests' prototxt reader).

Each parser gets ``--iterations`` inputs made by applying 1-4 random mutations (bit flips,
interesting bytes and integers, insertions, deletions, duplications, truncations, splices of
two seeds) to small valid seed files written by the test writers (plus the real fixture
files where ``../shared/fixtures`` is present). An input may parse or be refused with the
package's own error (``FormatError``; ``ConversionError`` too for prototxt shape inference);
any other exception, and any input that takes longer than ``--timeout`` seconds, is a crash.

    python benchmarks/fuzz_parsers.py                      # 10,000 inputs per parser
    python benchmarks/fuzz_parsers.py --iterations 500 --parsers t7,net --seed 3
    python benchmarks/fuzz_parsers.py --crash-dir /tmp/crashes

Prints one line per parser and exits with status 1 when any crash was seen (the crashing
inputs are written to ``--crash-dir`` when given).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # the seeds come from the test writers in tests/formats
    sys.path.insert(0, str(REPO))

from dsd_zoo.errors import ConversionError, FormatError  # noqa: E402

FIXTURES = Path(os.environ.get("DSD_ZOO_SHARED", REPO.parent / "shared")) / "fixtures"
PARSERS = ("caffe", "t7", "net", "prototxt")
_INTERESTING_BYTES = (0x00, 0x01, 0x02, 0x03, 0x04, 0x07, 0x08, 0x7F, 0x80, 0xFF)
_INTERESTING_INTS = (0, 1, -1, 2, 7, 8, 255, 2**15, 2**31 - 1, -(2**31), 2**32 - 1, 2**62, 2**63 - 1)


@dataclass
class Target:
    """One parser under test: seed inputs, the call, and the errors it may raise."""

    name: str
    seeds: list[bytes]
    parse: Callable[[bytes], object]
    allowed: tuple[type[BaseException], ...] = (FormatError,)
    tokens: Sequence[bytes] = ()  # format-aware fragments the mutator may insert


@dataclass
class Result:
    """What happened to the inputs of one parser."""

    inputs: int = 0
    accepted: int = 0
    rejected: int = 0
    crashes: list[tuple[str, bytes]] = field(default_factory=list)
    seconds: float = 0.0


# --------------------------------------------------------------------------- targets


def caffe_target() -> Target:
    from dsd_zoo.convert.caffe import read_caffemodel_layers
    from tests.formats.caffe_writer import CaffeLayerSpec, encode_caffemodel

    rng = np.random.default_rng(0)
    layers = [
        CaffeLayerSpec(
            "conv1",
            [rng.standard_normal((2, 1, 2, 2)).astype(np.float32), rng.standard_normal(2).astype(np.float32)],
            "Convolution",
            ["data"],
            ["conv1"],
        ),
        CaffeLayerSpec("relu", [], "ReLU", ["conv1"], ["conv1"]),
        CaffeLayerSpec("fc", [rng.standard_normal((3, 2)).astype(np.float32)], "InnerProduct"),
    ]
    seeds = [
        encode_caffemodel(layers, layout=layout, legacy_shape=legacy, double=double)
        for layout in ("new", "v1", "v0")
        for legacy in (False, True)
        for double in (False, True)
    ]
    return Target("caffe", seeds, read_caffemodel_layers)


def t7_target() -> Target:
    from dsd_zoo.convert.torch7 import read_t7
    from tests.formats.t7_writer import (
        T7Function,
        T7Storage,
        T7Tensor,
        TdsHash,
        TdsVec,
        dumps_t7,
        nn_module,
        shared_parameters,
    )

    rng = np.random.default_rng(0)
    views = shared_parameters(
        [rng.standard_normal((2, 3)).astype(np.float32), rng.standard_normal(2).astype(np.float32)]
    )
    linear = nn_module("nn.Linear", weight=views[0], bias=views[1])
    linear.fields["self"] = linear
    storage = T7Storage(np.arange(12, dtype=np.float64))
    seeds = [
        dumps_t7(nn_module("nn.Sequential", modules=[linear, nn_module("nn.ReLU"), linear])),
        dumps_t7(
            {
                "a": [1, 2.5, "x", True, None],
                "t": T7Tensor(storage, (3, 2), (1, 3), 2),
                "h": TdsHash({1: 2, "k": TdsVec([3])}),
                "f": T7Function(b"\x1bLJ", [1]),
            }
        ),
        dumps_t7(
            [T7Tensor.from_array(np.ones((2, 2), np.int64), cuda=True), T7Tensor.from_array(np.ones(3, np.float16))]
        ),
    ]
    seeds += [p.read_bytes() for p in sorted((FIXTURES / "torch7").glob("*.t7"))]
    return Target("t7", seeds, read_t7)


def net_target() -> Target:
    from dsd_zoo.convert.deep_compression import read_deep_compression
    from tests.formats.net_writer import encode_net, random_layer

    rng = np.random.default_rng(0)
    layers = [random_layer("conv1", (4, 2, 3, 3), rng, density=0.1), random_layer("fc", (5, 7), rng, density=0.5)]
    layout = [layer.layout() for layer in layers]
    return Target("net", [encode_net(layers)], lambda data: read_deep_compression(data, layout))


def prototxt_target() -> Target:
    from tests.formats.prototxt import layer_specs, param_shapes, parse_prototxt

    def parse(data: bytes) -> object:
        net = parse_prototxt(data.decode("utf-8", "replace"))
        return layer_specs(net), param_shapes(net)

    seeds = [
        b"""name: "tiny" input: "data" input_dim: 1 input_dim: 3 input_dim: 9 input_dim: 9
layer { name: "c" type: "Convolution" bottom: "data" top: "c"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1 stride: 2 group: 1 } }
layer { name: "p" type: "Pooling" bottom: "c" top: "p" pooling_param { pool: MAX kernel_size: 2 } }
layer { name: "cat" type: "Concat" bottom: "p" bottom: "p" top: "cat" }
layer { name: "n" type: "LRN" bottom: "cat" top: "n" lrn_param { local_size: 3 alpha: 1e-4 } }
layer { name: "fc" type: "InnerProduct" bottom: "n" top: "fc" inner_product_param { num_output: 2 } }
""",
        b"""layers { name: "conv" type: CONVOLUTION bottom: "data" top: "conv"
  convolution_param { num_output: 2 kernel_h: 1 kernel_w: 3 } }  # v1
layers { name: "g" type: POOLING bottom: "conv" top: "g" pooling_param { global_pooling: true } }
""",
    ]
    seeds += [p.read_bytes() for p in sorted(FIXTURES.glob("*/*.prototxt"))]
    tokens = [
        b" 0",
        b" -1",
        b" 3",
        b" 99999999999999999999",
        b" 1e400",
        b" nan",
        b" 0x7fffffff",
        b"{",
        b"}",
        b":",
        b"[",
        b"]",
        b'"',
        b"#",
        b"\\",
        b" kernel_size: 0",
        b" pad: 7",
        b" stride: 0",
        b" group: 3",
        b" num_output: 0",
        b" global_pooling: true",
        b" kernel_h: 2",
        b' type: "Concat"',
        b' type: "InnerProduct"',
        b" axis: -9",
        b' bottom: "data"',
        b' top: "data"',
        b" input_dim: 0",
        b" layer {",
        b" dilation: 9",
    ]
    return Target("prototxt", seeds, parse, (FormatError, ConversionError), tokens)


TARGETS: dict[str, Callable[[], Target]] = {
    "caffe": caffe_target,
    "t7": t7_target,
    "net": net_target,
    "prototxt": prototxt_target,
}


# --------------------------------------------------------------------------- mutation


def mutate(data: bytes, seeds: Sequence[bytes], rng: random.Random, tokens: Sequence[bytes] = ()) -> bytes:
    """Apply 1-4 random mutations to ``data``."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(10 if tokens else 8)
        pos = rng.randrange(len(out) + 1)
        if op >= 8:
            out[pos : pos + rng.randrange(4)] = rng.choice(tokens)
        elif op == 0 and out:
            out[pos % len(out)] ^= 1 << rng.randrange(8)
        elif op == 1 and out:
            out[pos % len(out)] = rng.choice(_INTERESTING_BYTES)
        elif op == 2:
            size = rng.choice((4, 8))
            value = rng.choice(_INTERESTING_INTS) % (1 << (8 * size))
            out[pos : pos + size] = value.to_bytes(size, "little")
        elif op == 3:
            out[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 4:
            del out[pos : pos + rng.randint(1, 16)]
        elif op == 5:
            chunk = out[pos : pos + rng.randint(1, 32)]
            out[pos:pos] = chunk
        elif op == 6:
            del out[pos:]
        else:
            other = rng.choice(seeds)
            cut = rng.randrange(len(other) + 1)
            out[pos:] = other[cut:]
    return bytes(out)


class _Timeout(Exception):
    pass


def _on_alarm(signum, frame):  # pragma: no cover - only fires on a hang
    raise _Timeout()


def fuzz(target: Target, iterations: int, seed: int, timeout: float) -> Result:
    """Feed ``iterations`` mutated inputs to ``target`` and classify the outcomes."""
    rng = random.Random(f"{seed}-{target.name}")
    result = Result()
    # SIGALRM needs a POSIX main thread; elsewhere hangs are simply not detected.
    use_alarm = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGALRM, _on_alarm) if use_alarm else None
    start = time.perf_counter()
    try:
        for _ in range(iterations):
            data = mutate(rng.choice(target.seeds), target.seeds, rng, target.tokens)
            result.inputs += 1
            if use_alarm:
                signal.setitimer(signal.ITIMER_REAL, timeout)
            try:
                target.parse(data)
                result.accepted += 1
            except target.allowed:
                result.rejected += 1
            except _Timeout:
                result.crashes.append((f"hang: more than {timeout}s", data))
            except Exception as exc:  # noqa: BLE001 - any other error is what we hunt for
                where = traceback.extract_tb(exc.__traceback__)[-1]
                result.crashes.append(
                    (f"{type(exc).__name__}: {exc} ({Path(where.filename).name}:{where.lineno})", data)
                )
            finally:
                if use_alarm:
                    signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        if use_alarm:
            signal.signal(signal.SIGALRM, previous)
    result.seconds = time.perf_counter() - start
    return result


def run(
    parsers: Sequence[str] = PARSERS, iterations: int = 10_000, seed: int = 0, timeout: float = 5.0
) -> dict[str, Result]:
    """Fuzz each named parser; returns its :class:`Result` by name."""
    return {name: fuzz(TARGETS[name](), iterations, seed, timeout) for name in parsers}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=10_000, help="mutated inputs per parser (default 10,000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parsers", default=",".join(PARSERS), help=f"comma-separated subset of {', '.join(PARSERS)}")
    parser.add_argument(
        "--timeout", type=float, default=5.0, help="seconds one input may take before it counts as a hang"
    )
    parser.add_argument("--crash-dir", type=Path, help="write crashing inputs here")
    args = parser.parse_args(argv)
    names = [n for n in args.parsers.split(",") if n]
    unknown = sorted(set(names) - set(PARSERS))
    if unknown:
        parser.error(f"unknown parsers {unknown}; choose from {', '.join(PARSERS)}")

    results = run(names, args.iterations, args.seed, args.timeout)
    print(f"{'parser':<9} {'inputs':>7} {'accepted':>9} {'rejected':>9} {'crashes':>8} {'seconds':>8}")
    for name, r in results.items():
        print(f"{name:<9} {r.inputs:>7} {r.accepted:>9} {r.rejected:>9} {len(r.crashes):>8} {r.seconds:>8.1f}")
        for i, (what, data) in enumerate(r.crashes[:5]):
            print(f"  crash {i}: {what}")
        if args.crash_dir and r.crashes:
            args.crash_dir.mkdir(parents=True, exist_ok=True)
            for i, (_, data) in enumerate(r.crashes):
                (args.crash_dir / f"{name}-{i}.bin").write_bytes(data)
    return 1 if any(r.crashes for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
