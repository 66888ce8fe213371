"""`import dsd_zoo` vs `import torchvision`, each in fresh interpreters, as a ratio (goal < 1.5).

python benchmarks/import_time.py --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from _ratio import print_command, print_ratio


def cold_import(module: str) -> float:
    code = f"import {module}" if module else "pass"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    baseline = statistics.median(cold_import("") for _ in range(args.repeats))
    results = {}
    for module in ("torchvision", "dsd_zoo"):
        cold_import(module)  # warm the file cache
        results[module] = statistics.median(cold_import(module) for _ in range(args.repeats))
    print_command()
    print(f"  bare interpreter     {baseline * 1000:8.1f} ms")
    for module, seconds in results.items():
        print(f"  import {module:12s} {seconds * 1000:8.1f} ms (wall time of python -c 'import ...')")
    print_ratio("dsd_zoo / torchvision", results["dsd_zoo"] / results["torchvision"], 1.5, lower_is_better=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
