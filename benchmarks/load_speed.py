"""Warm-cache model loading: dsd-zoo's path vs torchvision's usual way, as a ratio.

dsd-zoo: ``get_model(name, weights=FILE)`` = build on the meta device, validate the safetensors
header, read, strict check, assign; then the first forward.
torchvision's way: construct the model (random init), ``torch.load`` a state dict from a
``.pth`` of the same tensors, ``load_state_dict``, then the first forward.

Both read files already in the page cache (warm), on the same input tensor, in the same
process and threads, alternating, median of ``--repeats``. Goal (issue 3): ratio <= 0.25.

    python benchmarks/load_speed.py --model vgg16_dsd --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from _ratio import print_command, print_ratio


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="vgg16_dsd")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    import dsd_zoo
    from safetensors.torch import save_file

    arch = dsd_zoo.get_weights(args.model).architecture
    size = arch.input_size
    x = torch.randn(1, 3, size, size)
    with tempfile.TemporaryDirectory() as tmp:
        reference = arch.build().eval()
        state = {k: v.contiguous() for k, v in reference.state_dict().items()}
        st_path, pth_path = Path(tmp) / "w.safetensors", Path(tmp) / "w.pth"
        save_file(state, str(st_path))
        torch.save(state, pth_path)
        del reference, state

        def ours():
            model = dsd_zoo.get_model(args.model, weights=st_path)
            with torch.inference_mode():
                return model(x)

        def torchvision_way():
            model = arch.build()
            model.load_state_dict(torch.load(pth_path, map_location="cpu", weights_only=True))
            model.eval()
            with torch.inference_mode():
                return model(x)

        torch.testing.assert_close(ours(), torchvision_way())  # same weights, same logits; also warms caches
        times = {"dsd_zoo": [], "torchvision": []}
        for _ in range(args.repeats):
            for name, fn in (("dsd_zoo", ours), ("torchvision", torchvision_way)):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    print_command()
    print(f"model {args.model}, threads {args.threads}, repeats {args.repeats}, warm page cache")
    for name, value in med.items():
        print(f"  {name:12s} median {value * 1000:8.1f} ms  (all: {', '.join(f'{t * 1000:.0f}' for t in times[name])})")
    print_ratio("dsd_zoo / torchvision", med["dsd_zoo"] / med["torchvision"], 0.25, lower_is_better=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
