"""Loopback download: dsd-zoo's verified ``fetch`` against a plain transfer of the same bytes.

A loopback server in another process (``tests/servers.py``) serves one random body. Each
repetition times, on the same URL:

* ``plain``: ``requests`` streaming to a file in 1 MiB chunks, no hashing, no fsync (what
  ``torch.hub.download_url_to_file`` does minus its hashing);
* ``plain+fsync``: the same, then ``fsync`` of the file (the durability ``fetch`` guarantees);
* ``fetch``: ``dsd_zoo.download.fetch`` into an empty cache: lock, sha256 while streaming, size and
  digest check, fsync, atomic rename, stamp.

It prints the median of each and the ratios ``fetch / plain`` (the goal is <= 1.05) and
``fetch / plain+fsync``. Run from the repository root::

    python benchmarks/download_throughput.py --size-mb 200 --repeat 5
    python benchmarks/download_throughput.py --size-mb 200 --repeat 5 --rate-mib-s 110  # ~1 Gb/s link

Uncapped, the loopback transfer is bound by CPU, not I/O: on a machine with few free cores the
sha256 (about 0.1 s per 200 MiB with SHA-NI) cannot hide behind the transfer and shows in the
ratio. ``--rate-mib-s`` measures the same thing at the speed of a real link.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dsd_zoo.digests import Digest  # noqa: E402
from dsd_zoo.download import fetch  # noqa: E402
from dsd_zoo.records import FileRecord  # noqa: E402


def plain_transfer(url: str, dest: Path, fsync: bool) -> None:
    with requests.get(url, stream=True, timeout=(10, 60)) as response, open(dest, "wb") as file:
        response.raise_for_status()
        for chunk in response.iter_content(2**20):
            file.write(chunk)
        if fsync:
            file.flush()
            os.fsync(file.fileno())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=200, help="body size in MiB (default 200)")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions of each method (default 5)")
    parser.add_argument(
        "--rate-mib-s",
        type=float,
        default=None,
        help="cap the server's speed, as a network link would (default: loopback, uncapped)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="dsd_zoo_bench_") as tmp:
        work = Path(tmp)
        body = os.urandom(args.size_mb * 2**20)
        source = work / "body.bin"
        source.write_bytes(body)
        record_digest = Digest("sha256", hashlib.sha256(body).hexdigest())
        del body
        command = [sys.executable, str(REPO / "tests" / "servers.py"), str(source)]
        if args.rate_mib_s:
            command += ["--rate-mib-s", str(args.rate_mib_s)]
        server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        try:
            url = server.stdout.readline().strip()
            record = FileRecord("body.bin", record_digest, source.stat().st_size, urls=(url,))
            plain_transfer(url, work / "warmup.bin", fsync=False)  # warm the server and the page cache
            times: dict[str, list[float]] = {"plain": [], "plain+fsync": [], "fetch": []}
            for _ in range(args.repeat):
                for method in times:  # interleaved, so drift in machine load hits all methods alike
                    target = work / "out"
                    target.mkdir()
                    start = time.perf_counter()
                    if method == "fetch":
                        fetch(record, progress=False, cache_dir=target)
                    else:
                        plain_transfer(url, target / "body.bin", fsync=method == "plain+fsync")
                    times[method].append(time.perf_counter() - start)
                    shutil.rmtree(target)
        finally:
            server.terminate()
            server.wait()

    medians = {method: statistics.median(values) for method, values in times.items()}
    link = f"capped at {args.rate_mib_s:g} MiB/s" if args.rate_mib_s else "uncapped"
    print(f"loopback download ({link}) of {args.size_mb} MiB, {args.repeat} repetitions, median seconds (MiB/s):")
    for method, value in medians.items():
        spread = ", ".join(f"{v:.3f}" for v in times[method])
        print(f"  {method:12s} {value:.3f} s ({args.size_mb / value:.0f} MiB/s)   [{spread}]")
    print(f"ratio fetch / plain       = {medians['fetch'] / medians['plain']:.3f}   (goal <= 1.05)")
    print(f"ratio fetch / plain+fsync = {medians['fetch'] / medians['plain+fsync']:.3f}")


if __name__ == "__main__":
    main()
