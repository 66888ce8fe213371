"""Throughput of ``dsd_zoo.verify``'s evaluation against the usual way of evaluating.

Two comparisons, on the same generated JPEG images (ImageNet-like sizes, written once to a temp
ImageFolder), with the same torch threads, DataLoader workers and batch size:

1. **one model vs torchvision's reference evaluation.** ResNet-50 (the ``resnet50_dsd``
   architecture, random weights: speed does not depend on the values) through

   * ``reference``: ``torchvision.datasets.ImageFolder`` + PIL + ``Resize(256)`` +
     ``CenterCrop(224)`` + ``ToTensor`` + ``Normalize`` (torchvision's reference ``train.py``
     evaluation), a ``DataLoader``, ``torch.inference_mode``;
   * ``verify``: :func:`dsd_zoo.verify.engine.evaluate` with the model's own fb.resnet.torch
     transform (Torch7 bicubic; only the crop window is resampled; channels-last), twice:
     ``eager`` (``--no-compile``) and ``compiled`` (``--compile``: ``torch.compile``, what verify
     does by default on a CPU from 2,000 images). Each compiled run starts from an empty inductor
     cache and the compilation counts in its time.

   Ratio = verify img/s / reference img/s (the goal on CPU is >= 1.3). The compiled run is also
   shown after its first batch (the one that compiles): the rate that the rest of a 50,000-image
   run goes at. ``--methods`` adds other runs: ``fast`` (bf16), ``gpu-decode`` and
   ``gpu-decode-fast`` (JPEGs decoded on the device; with these the benchmark also prints how far
   the device's crops are from the exact crops, in pixel levels).

2. **the 13-model table vs 13 separate runs.** Every manifest model (random weights) in one
   ``evaluate`` call (each image decoded once, resampled once per pipeline: 3 pipelines), against
   13 calls of one model each, all eager. Ratio = sum of the separate times / the combined time.
   ``--table-compile`` also times the combined run compiled (cold cache), to show from how many
   images compiling 13 models pays.

Each measurement is repeated (``--repeat``) alternating the methods, and the best time is kept
(the least disturbed by other processes). Run from the repository root::

    python benchmarks/eval_throughput.py                       # defaults: 64 images, 16 for the table
    python benchmarks/eval_throughput.py --images 2048 --repeat 1 --skip-table   # compilation repaid
    python benchmarks/eval_throughput.py --skip-single --table-images 256 --repeat 1 --table-compile
    python benchmarks/eval_throughput.py --device cuda --images 4096 --batch-size 256 --workers 15 --skip-table
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dsd_zoo.api import get_weights, imagenet_classes  # noqa: E402
from dsd_zoo.manifest import load_manifest  # noqa: E402
from dsd_zoo.models import ARCHITECTURES  # noqa: E402
from dsd_zoo.transforms import CaffeTransform  # noqa: E402
from dsd_zoo.verify.datasets import scan_imagefolder  # noqa: E402
from dsd_zoo.verify.engine import EvalTarget, default_workers, evaluate  # noqa: E402

# Common ILSVRC-2012 validation sizes (most images are 500 pixels on the long side).
SIZES = ((500, 375), (375, 500), (500, 333), (500, 400), (640, 480))
CLASSES = 10


def make_images(root: Path, count: int, seed: int = 0) -> Path:
    """``count`` JPEGs (quality 90, smooth random content so they compress like photos) in CLASSES folders."""
    rng = np.random.default_rng(seed)
    wnids = [wnid for wnid, _ in imagenet_classes()][:CLASSES]
    for i in range(count):
        width, height = SIZES[i % len(SIZES)]
        coarse = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((width, height), Image.BICUBIC)
        folder = root / wnids[i % CLASSES]
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"ILSVRC2012_val_{i:08d}.JPEG", quality=90)
    return root


def reference_run(model: torch.nn.Module, root: Path, batch_size: int, workers: int, device: torch.device) -> float:
    """Seconds for torchvision's reference evaluation of ``model`` over ``root`` (top-1/top-5 counted)."""
    from torchvision import datasets, transforms

    preprocess = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                                     transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    loader = torch.utils.data.DataLoader(datasets.ImageFolder(str(root), preprocess), batch_size=batch_size,
                                         num_workers=workers, pin_memory=device.type == "cuda")
    start = time.perf_counter()
    correct = torch.zeros(2, dtype=torch.int64, device=device)
    with torch.inference_mode():
        for images, labels in loader:
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            hits = model(images).topk(5, dim=1).indices == labels[:, None]
            correct += torch.stack([hits[:, 0].sum(), hits.any(dim=1).sum()])
    correct.tolist()  # wait for the device
    return time.perf_counter() - start


# verify's ways of running, as evaluate() arguments; --methods picks among them.
METHODS = {
    "eager": {"compile_models": False},
    "compiled": {"compile_models": True},
    "fast": {"compile_models": False, "fast": True},
    "gpu-decode": {"compile_models": False, "decode_on_device": True},
    "gpu-decode-fast": {"compile_models": False, "decode_on_device": True, "fast": True},
}
LABELS = {
    "reference": "reference (torchvision ImageFolder + PIL Resize/CenterCrop)",
    "eager": "verify --no-compile",
    "compiled": "verify --compile ({compile_s:.1f} s first batch, compiling)",
    "compiled, after the first batch": "verify --compile, after its first batch",
    "fast": "verify --no-compile --fast (bf16)",
    "gpu-decode": "verify --no-compile --gpu-decode",
    "gpu-decode-fast": "verify --no-compile --gpu-decode --fast",
}
AFTER_FIRST = "compiled, after the first batch"


def verify_run(targets, samples, batch_size: int, workers: int, device: torch.device, **options) -> Tuple[float, float]:
    """(seconds, of which the first, compiling batch) for one :func:`evaluate` call over ``samples``.

    A compiled run gets a new, empty inductor cache, so it pays the whole compilation as a
    first run on a machine does.
    """
    with tempfile.TemporaryDirectory(prefix="dsd_zoo_inductor_") as cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
        torch._dynamo.reset()
        start = time.perf_counter()
        result = evaluate(targets, samples, batch_size=batch_size, workers=workers, device=str(device),
                          progress=False, **{"compile_models": False, **options})
        seconds = time.perf_counter() - start
    return seconds, result.extra.get("compile_seconds", 0.0)


def _fresh(arch: str, state) -> torch.nn.Module:
    model = ARCHITECTURES[arch].build()
    model.load_state_dict(state)
    return model.eval()


def bench_single(root: Path, args, device: torch.device) -> dict:
    samples = scan_imagefolder(root, [wnid for wnid, _ in imagenet_classes()])
    state = ARCHITECTURES["fb_resnet50"].build().state_dict()
    reference_model = _fresh("fb_resnet50", state).to(device)
    transform = get_weights("resnet50_dsd").transforms()
    times: Dict[str, List[float]] = {"reference": []}
    for _ in range(args.repeat):
        times["reference"].append(reference_run(reference_model, root, args.batch_size, args.workers, device))
        for method in args.methods:
            target = EvalTarget("resnet50_dsd", _fresh("fb_resnet50", state), transform)
            seconds, compiling = verify_run([target], samples, args.batch_size, args.workers, device,
                                            **METHODS[method])
            times.setdefault(method, []).append(seconds)
            if method == "compiled":
                times.setdefault(AFTER_FIRST, []).append(seconds - compiling)
    best = {k: min(v) for k, v in times.items()}
    # The first call of the compiled model (compilation and its first batch) is left out, images and time.
    images = {k: len(samples) - (args.batch_size if k == AFTER_FIRST else 0) for k in best}
    img_s = {k: images[k] / s for k, s in best.items()}
    compile_s = min(a - b for a, b in zip(times["compiled"], times[AFTER_FIRST])) if "compiled" in times else 0.0
    return {"images": len(samples), "seconds": best, "img_s": img_s, "compile_s": compile_s,
            "ratio": {k: img_s[k] / img_s["reference"] for k in best if k != "reference"}}


def crop_differences(root: Path, device: torch.device, count: int = 256) -> Tuple[int, float, float]:
    """(images, max |difference|, mean |difference|) of the fb crops decoded on ``device`` vs the exact crops.

    On a CPU both decoders are libjpeg-turbo and the answer is 0; on a GPU it measures nvJPEG.
    """
    from dsd_zoo.verify.datasets import MultiPipelineDataset
    from dsd_zoo.verify.device_decode import DeviceDecoder, EncodedDataset, collate_encoded

    samples = scan_imagefolder(root, [wnid for wnid, _ in imagenet_classes()])
    transform = get_weights("resnet50_dsd").transforms()
    indices = range(min(count, len(samples)))
    exact = torch.stack([MultiPipelineDataset(samples, {"fb": transform.resample})[i][3][0] for i in indices])
    items = collate_encoded([EncodedDataset(samples, {"fb": transform.resample})[i] for i in indices])
    _, crops = DeviceDecoder({"fb": transform}, device)(*items[2:])
    difference = (crops[0].cpu() - exact).abs() * 255  # in pixel levels
    return len(indices), float(difference.max()), float(difference.mean())


def _table_targets():
    """All manifest models with random weights and their own transforms (a stand-in mean image for AlexNet)."""
    targets = []
    for name, entry in load_manifest().models.items():
        spec = entry.transforms
        if spec.get("pipeline") not in ("caffe", "fb_resnet"):
            continue
        if "mean_image" in spec:  # the real one travels in the weight file; any image costs the same
            transform = CaffeTransform(spec["crop"], mean_image=torch.full((3, *spec["resize"]), 110.0),
                                       resize=tuple(spec["resize"]))
        else:
            transform = get_weights(name).transforms()
        targets.append(EvalTarget(name, ARCHITECTURES[entry.arch].build().eval(), transform))
    return targets


def bench_table(root: Path, args, device: torch.device) -> dict:
    samples = scan_imagefolder(root, [wnid for wnid, _ in imagenet_classes()])
    targets = _table_targets()
    combined, separate, compiled = [], [], []
    for _ in range(args.repeat):
        combined.append(verify_run(targets, samples, args.batch_size, args.workers, device)[0])
        separate.append(sum(verify_run([t], samples, args.batch_size, args.workers, device)[0] for t in targets))
        if args.table_compile:
            compiled.append(verify_run(_table_targets(), samples, args.batch_size, args.workers, device,
                                       compile_models=True))
    result = {"images": len(samples), "models": len(targets), "combined_s": min(combined),
              "separate_s": min(separate), "ratio": min(separate) / min(combined)}
    if compiled:
        seconds, first_batch = min(compiled)
        result["compiled"] = {"seconds": seconds, "first_batch_s": first_batch,
                              "per_image_after": (seconds - first_batch) / max(1, len(samples) - args.batch_size),
                              "per_image_eager": min(combined) / len(samples)}
    return result


def report_single(single: dict, args, device: torch.device, root: Path) -> None:
    """Print the one-model comparison (and, for --gpu-decode runs, the crop difference)."""
    print(f"\n1. ResNet-50, {single['images']} images (img/s, seconds, ratio to the reference; goal >= 1.3 "
          f"on CPU):")
    for method, seconds in single["seconds"].items():
        ratio = "" if method == "reference" else f"  {single['ratio'][method]:.2f}x"
        label = LABELS[method].format(compile_s=single["compile_s"])
        print(f"   {label:<62} {single['img_s'][method]:7.1f} img/s {seconds:8.2f} s{ratio}")
    if any(m.startswith("gpu-decode") for m in args.methods):
        count, largest, mean = crop_differences(root, device)
        print(f"   --gpu-decode crops vs the exact crops, {count} images: max |difference| {largest:.3f}, "
              f"mean {mean:.5f} pixel levels")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=64, help="images for the one-model comparison (default 64)")
    parser.add_argument("--table-images", type=int, default=16, help="images for the 13-model comparison (default 16)")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size of every run (default 32)")
    parser.add_argument("--workers", type=int, default=None,
                        help="DataLoader workers of every run (default: verify's default for the device)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--repeat", type=int, default=2, help="repetitions, best kept (default 2)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--skip-table", action="store_true", help="only the one-model comparison")
    parser.add_argument("--skip-single", action="store_true", help="only the 13-model comparison")
    parser.add_argument("--table-compile", action="store_true",
                        help="also time the combined 13-model run with --compile (cold cache, compilation included)")
    parser.add_argument("--methods", default=None,
                        help=f"comma-separated verify runs to compare with the reference, of {', '.join(METHODS)} "
                             "(default: eager,compiled on a CPU; eager,gpu-decode,gpu-decode-fast on CUDA)")
    args = parser.parse_args()
    default_methods = "eager,compiled" if args.device == "cpu" else "eager,gpu-decode,gpu-decode-fast"
    args.methods = (args.methods or default_methods).split(",")
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown --methods {unknown}; choose from {', '.join(METHODS)}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    args.workers = default_workers(device) if args.workers is None else args.workers

    print("command: python " + " ".join(shlex.quote(a) for a in sys.argv))
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "?") if Path("/proc/cpuinfo").exists() else "?"
    print(f"machine: {os.cpu_count()} cpus ({cpu}), device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
          + f"; torch {torch.__version__}, {torch.get_num_threads()} threads, {args.workers} workers, "
            f"batch {args.batch_size}, best of {args.repeat}")
    with tempfile.TemporaryDirectory(prefix="dsd_zoo_eval_bench_") as tmp:
        if not args.skip_single:
            report_single(bench_single(make_images(Path(tmp) / "one", args.images), args, device), args, device,
                          Path(tmp) / "one")
        if not args.skip_table:
            table = bench_table(make_images(Path(tmp) / "table", args.table_images, seed=1), args, device)
            print(f"\n2. {table['models']} models, {table['images']} images: one combined run {table['combined_s']:.2f} s; "
                  f"{table['models']} separate runs {table['separate_s']:.2f} s")
            print(f"   ratio separate / combined: {table['ratio']:.2f}x")
            if "compiled" in table:
                c = table["compiled"]
                print(f"   combined with --compile: {c['seconds']:.2f} s, of which {c['first_batch_s']:.1f} s in the "
                      f"first (compiling) batch; after it {c['per_image_after']:.3f} s per image vs "
                      f"{c['per_image_eager']:.3f} eager: {c['per_image_eager'] / c['per_image_after']:.2f}x")


if __name__ == "__main__":
    main()
