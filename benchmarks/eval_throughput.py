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

   and ``onnxruntime`` (``--engine onnxruntime``: the model exported to ONNX, the export counted
   in its time as a first run without a cache pays it; the engine column of the table).
   Ratio = verify img/s / reference img/s (the goal on CPU is >= 1.3). The compiled run is also
   shown after its first batch (the one that compiles): the rate that the rest of a 50,000-image
   run goes at. ``--methods`` adds other runs: ``fast`` (bf16), ``gpu-decode`` and
   ``gpu-decode-fast`` (JPEGs decoded on the device; with these the benchmark also prints how far
   the device's crops are from the exact crops, in pixel levels).

2. **whole processes** (``--process NAME``): ``python -m dsd_zoo.verify NAME --imagenet DIR`` as a
   user runs it, against a process that runs torchvision's reference evaluation of the same model
   (same random weights, images, threads, workers and batch), wall time of each whole process
   (imports, loading, export, evaluation). verify runs with ``--engine torch`` and with
   ``--engine onnxruntime``, the latter first with an empty cache (``cold``: the export paid)
   and then with the export in the cache (``cached``: every later run of the same weights).

3. **the forward pass alone** (``--forward``): per architecture, a batch of random input through
   eager PyTorch (channels-last, as verify runs it), ``torch.compile`` and ONNX Runtime, img/s
   and the ratio to eager, all in this run; and the GFLOPS of one large convolution (eager
   oneDNN and ONNX Runtime) with the forward-pass limit it implies for each architecture.

4. **preprocessing per image** (``--stages``): on one thread, as in a DataLoader worker, the ms
   per image of decoding (PIL, in full) and of each exact pipeline's resampling (fb.resnet.torch
   256 -> 224, Caffe 256x256 -> 227 and -> 224), best of ``--repeat`` passes over the images.

5. **the 13-model table vs 13 separate runs.** Every manifest model (random weights) in one
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
    python benchmarks/eval_throughput.py --skip-single --skip-table --process resnet50_fb --images 512 --threads 2
    python benchmarks/eval_throughput.py --skip-single --skip-table --forward --threads 2
    python benchmarks/eval_throughput.py --skip-single --skip-table --stages --images 256
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
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
from dsd_zoo.transforms import CaffeTransform, FbResNetTransform  # noqa: E402
from dsd_zoo.verify.datasets import scan_imagefolder  # noqa: E402
from dsd_zoo.verify.engine import EvalTarget, default_workers, evaluate  # noqa: E402

from _reference_eval import reference_run  # noqa: E402  (benchmarks/, beside this file)

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


# verify's ways of running, as evaluate() arguments; --methods picks among them.
METHODS = {
    "eager": {"compile_models": False},
    "compiled": {"compile_models": True},
    "onnxruntime": {"engine": "onnxruntime"},
    "fast": {"compile_models": False, "fast": True},
    "gpu-decode": {"compile_models": False, "decode_on_device": True},
    "gpu-decode-fast": {"compile_models": False, "decode_on_device": True, "fast": True},
}
LABELS = {
    "reference": "reference (torchvision ImageFolder + PIL Resize/CenterCrop)",
    "eager": "verify --no-compile",
    "compiled": "verify --compile ({compile_s:.1f} s first batch, compiling)",
    "compiled, after the first batch": "verify --compile, after its first batch",
    "onnxruntime": "verify --engine onnxruntime ({export_s:.1f} s exporting)",
    "onnxruntime, after the export": "verify --engine onnxruntime, after its export",
    "fast": "verify --no-compile --fast (bf16)",
    "gpu-decode": "verify --no-compile --gpu-decode",
    "gpu-decode-fast": "verify --no-compile --gpu-decode --fast",
}
AFTER_FIRST = "compiled, after the first batch"
AFTER_EXPORT = "onnxruntime, after the export"


def verify_run(targets, samples, batch_size: int, workers: int, device: torch.device, **options) -> Tuple[float, float]:
    """(seconds, of which the first, compiling batch or the ONNX export) for one :func:`evaluate` call over ``samples``.

    A compiled run gets a new, empty inductor cache, so it pays the whole compilation as a
    first run on a machine does.
    """
    with tempfile.TemporaryDirectory(prefix="dsd_zoo_inductor_") as cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
        torch._dynamo.reset()
        start = time.perf_counter()
        result = evaluate(
            targets,
            samples,
            batch_size=batch_size,
            workers=workers,
            device=str(device),
            progress=False,
            **{**({} if "engine" in options else {"compile_models": False}), **options},
        )
        seconds = time.perf_counter() - start
    return seconds, result.extra.get("compile_seconds", 0.0) + result.extra.get("export_seconds", 0.0)


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
            seconds, compiling = verify_run([target], samples, args.batch_size, args.workers, device, **METHODS[method])
            times.setdefault(method, []).append(seconds)
            if method == "compiled":
                times.setdefault(AFTER_FIRST, []).append(seconds - compiling)
            if method == "onnxruntime":
                times.setdefault(AFTER_EXPORT, []).append(seconds - compiling)
    best = {k: min(v) for k, v in times.items()}
    # The first call of the compiled model (compilation and its first batch) is left out, images and time.
    images = {k: len(samples) - (args.batch_size if k == AFTER_FIRST else 0) for k in best}
    img_s = {k: images[k] / s for k, s in best.items()}
    compile_s = min(a - b for a, b in zip(times["compiled"], times[AFTER_FIRST])) if "compiled" in times else 0.0
    export_s = min(a - b for a, b in zip(times["onnxruntime"], times[AFTER_EXPORT])) if "onnxruntime" in times else 0.0
    return {
        "images": len(samples),
        "seconds": best,
        "img_s": img_s,
        "compile_s": compile_s,
        "export_s": export_s,
        "ratio": {k: img_s[k] / img_s["reference"] for k in best if k != "reference"},
    }


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


# The speed goals of whole-process verify vs the reference process, per architecture (CPU, same threads).
PROCESS_GOALS = {"fb_resnet50": 1.6, "fb_resnet18": 1.3}


def _timed_process(command: List[str], env: Dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return seconds


def bench_process(root: Path, args, tmp: Path) -> dict:
    """Wall seconds of whole processes: the reference, and verify with each engine (onnxruntime cold and cached)."""
    from dsd_zoo.atomic import write_safetensors

    name = args.process
    arch = load_manifest().models[name].arch
    weights = tmp / f"{name}.safetensors"
    write_safetensors(weights, ARCHITECTURES[arch].build().state_dict(), {})
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(torch.get_num_threads())}
    reference = [
        sys.executable,
        str(REPO / "benchmarks" / "_reference_eval.py"),
        str(root),
        str(weights),
        arch,
        str(args.batch_size),
        str(args.workers),
    ]
    verify = [
        sys.executable,
        "-m",
        "dsd_zoo.verify",
        name,
        "--weights",
        f"{name}={weights}",
        "--imagenet",
        str(root),
        "--workers",
        str(args.workers),
        "--batch-size",
        str(args.batch_size),
        "--no-progress",
    ]
    times: Dict[str, List[float]] = {}
    for k in range(args.repeat):
        cache = tmp / f"cache{k}"  # empty: the first onnxruntime run exports, the second finds the export
        runs = {
            "reference": reference,
            "verify --engine torch": verify + ["--engine", "torch"],
            "verify --engine onnxruntime, cold cache": verify + ["--engine", "onnxruntime"],
            "verify --engine onnxruntime, cached export": verify + ["--engine", "onnxruntime"],
        }
        for label, command in runs.items():
            times.setdefault(label, []).append(_timed_process(command, {**env, "DSD_ZOO_CACHE": str(cache)}))
    best = {label: min(values) for label, values in times.items()}
    return {
        "name": name,
        "arch": arch,
        "images": sum(1 for _ in root.rglob("*.JPEG")),
        "seconds": best,
        "ratio": {label: best["reference"] / s for label, s in best.items() if label != "reference"},
    }


def report_process(result: dict, args) -> None:
    from _ratio import print_ratio

    print(
        f"\n2. whole processes, {result['name']} ({result['arch']}, random weights), {result['images']} images, "
        f"{torch.get_num_threads()} threads, {args.workers} worker(s), batch {args.batch_size} "
        "(wall seconds, ratio = reference seconds / these):"
    )
    for label, seconds in result["seconds"].items():
        ratio = "" if label == "reference" else f"  {result['ratio'][label]:.2f}x"
        print(f"   {label:<48} {seconds:8.2f} s {result['images'] / seconds:7.1f} img/s{ratio}")
    goal = PROCESS_GOALS.get(result["arch"])
    if goal is not None:
        print_ratio(
            f"whole-process verify (onnxruntime, cached export) / reference, {result['name']}",
            result["ratio"]["verify --engine onnxruntime, cached export"],
            goal,
            lower_is_better=False,
        )


FORWARD_ARCHS = ("alexnet", "vgg16", "googlenet", "squeezenet1_0", "fb_resnet18", "fb_resnet50")


def _best_seconds(run, repeat: int) -> float:
    run()  # warm-up: allocations, oneDNN primitive and ONNX Runtime kernel selection
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def _gflop_per_image(model: torch.nn.Module, size: int) -> float:
    """Multiply-adds x 2 of the convolutions and linear layers for one image, in GFLOP."""
    flops = []

    def count(module, inputs, output):
        if isinstance(module, torch.nn.Conv2d):
            per_output = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            flops.append(2 * output.numel() * per_output)
        elif isinstance(module, torch.nn.Linear):
            flops.append(2 * output.numel() * module.in_features)

    hooks = [
        m.register_forward_hook(count) for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
    ]
    with torch.inference_mode():
        model(torch.zeros(1, 3, size, size))
    for hook in hooks:
        hook.remove()
    return sum(flops) / 1e9


def conv_gflops(repeat: int) -> Dict[str, float]:
    """GFLOPS of one large convolution (256 -> 256 channels, 3x3, 56x56, batch 8): eager oneDNN and ONNX Runtime."""
    from dsd_zoo.export.onnx_export import OnnxModule

    conv = torch.nn.Conv2d(256, 256, 3, padding=1).eval()
    x = torch.randn(8, 256, 56, 56)
    flops = 2 * 8 * 256 * 56 * 56 * 256 * 9
    result = {}
    with torch.inference_mode():
        cl, xcl = conv.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
        result["eager"] = flops / _best_seconds(lambda: cl(xcl), repeat) / 1e9
    import io

    buffer = io.BytesIO()
    with torch.inference_mode():
        program = torch.onnx.export(conv, (x,), dynamo=True, verbose=False)
    buffer.write(program.model_proto.SerializeToString())
    graph = OnnxModule(buffer.getvalue())
    result["onnxruntime"] = flops / _best_seconds(lambda: graph(x), repeat) / 1e9
    return result


def bench_forward(args) -> dict:
    """img/s of the forward pass alone per architecture: eager channels-last, torch.compile, ONNX Runtime."""
    rows = {}
    for arch in args.forward_archs:
        rows[arch] = row = _forward_row(arch, args.batch_size, args.repeat)
        gflop = row["gflop"]
        print(
            f"   {arch:<14} {gflop:6.2f} GFLOP/img  eager {row['eager']:6.1f}  compile {row['compile']:6.1f} "
            f"({row['compile'] / row['eager']:.2f}x, {row['compile_s']:.0f} s to compile)  onnxruntime "
            f"{row['onnxruntime']:6.1f} ({row['onnxruntime'] / row['eager']:.2f}x) img/s",
            flush=True,
        )
    return rows


def _forward_row(arch: str, batch_size: int, repeat: int) -> Dict[str, float]:
    from dsd_zoo.export.onnx_export import OnnxModule, export_checked
    from dsd_zoo.fingerprint import probe_for

    spec = ARCHITECTURES[arch]
    model = spec.build().eval()
    row = {"gflop": _gflop_per_image(model, spec.input_size)}
    x = torch.randn(batch_size, 3, spec.input_size, spec.input_size)
    data, _ = export_checked(model, name=arch, probe=probe_for(arch), progress=False)
    graph = OnnxModule(data)
    model = model.to(memory_format=torch.channels_last)
    xcl = x.contiguous(memory_format=torch.channels_last)
    torch._dynamo.reset()
    compiled = torch.compile(model, dynamic=False)
    with torch.inference_mode():
        start = time.perf_counter()
        compiled(xcl)
        row["compile_s"] = time.perf_counter() - start
        row["eager"] = batch_size / _best_seconds(lambda: model(xcl), repeat)
        row["compile"] = batch_size / _best_seconds(lambda: compiled(xcl), repeat)
        row["onnxruntime"] = batch_size / _best_seconds(lambda: graph(x), repeat)
    return row


def report_forward(rows: dict, gflops: Dict[str, float], args) -> None:
    peak = max(gflops.values())
    print(
        f"\n   one large convolution (256->256, 3x3, 56x56, batch 8): eager oneDNN {gflops['eager']:.1f} GFLOPS, "
        f"ONNX Runtime {gflops['onnxruntime']:.1f} GFLOPS"
    )
    print(
        f"   | architecture | GFLOP/img | eager img/s | compile img/s (x eager) | onnxruntime img/s (x eager) | "
        f"limit img/s at {peak:.0f} GFLOPS | onnxruntime / limit |"
    )
    print("   |---|---|---|---|---|---|---|")
    for arch, row in rows.items():
        limit = peak / row["gflop"]
        print(
            f"   | {arch} | {row['gflop']:.2f} | {row['eager']:.1f} | {row['compile']:.1f} "
            f"({row['compile'] / row['eager']:.2f}x) | {row['onnxruntime']:.1f} "
            f"({row['onnxruntime'] / row['eager']:.2f}x) | {limit:.1f} | {row['onnxruntime'] / limit:.2f} |"
        )


def _table_targets():
    """All manifest models with random weights and their own transforms (a stand-in mean image for AlexNet)."""
    targets = []
    for name, entry in load_manifest().models.items():
        spec = entry.transforms
        if spec.get("pipeline") not in ("caffe", "fb_resnet"):
            continue
        if "mean_image" in spec:  # the real one travels in the weight file; any image costs the same
            transform = CaffeTransform(
                spec["crop"], mean_image=torch.full((3, *spec["resize"]), 110.0), resize=tuple(spec["resize"])
            )
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
            compiled.append(
                verify_run(_table_targets(), samples, args.batch_size, args.workers, device, compile_models=True)
            )
    result = {
        "images": len(samples),
        "models": len(targets),
        "combined_s": min(combined),
        "separate_s": min(separate),
        "ratio": min(separate) / min(combined),
    }
    if compiled:
        seconds, first_batch = min(compiled)
        result["compiled"] = {
            "seconds": seconds,
            "first_batch_s": first_batch,
            "per_image_after": (seconds - first_batch) / max(1, len(samples) - args.batch_size),
            "per_image_eager": min(combined) / len(samples),
        }
    return result


def bench_stages(root: Path, repeat: int) -> None:
    """Print the ms per image, on one thread, of decoding and of each exact pipeline's resampling."""
    from dsd_zoo.verify.datasets import decode_image

    files = sorted(root.rglob("*.JPEG"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker
    pixels = [decode_image(file) for file in files]
    steps = {"decode (PIL, in full)": (decode_image, files)}
    for label, transform in (
        ("fb.resnet.torch 256 -> 224", FbResNetTransform()),
        ("Caffe 256x256 -> 227", CaffeTransform(227, mean_bgr=(0.0, 0.0, 0.0))),
        ("Caffe 256x256 -> 224", CaffeTransform(224, mean_bgr=(0.0, 0.0, 0.0))),
    ):
        steps[f"resample, {label}"] = (transform.resample, pixels)
    print(f"\n4. preprocessing, {len(files)} images, 1 thread, best of {repeat} (ms per image):")
    for label, (step, inputs) in steps.items():
        seconds = _best_seconds(lambda step=step, inputs=inputs: [step(item) for item in inputs], repeat)
        print(f"   {label:<40} {1000 * seconds / len(inputs):6.2f}")
    torch.set_num_threads(threads)


def report_single(single: dict, args, device: torch.device, root: Path) -> None:
    """Print the one-model comparison (and, for --gpu-decode runs, the crop difference)."""
    print(f"\n1. ResNet-50, {single['images']} images (img/s, seconds, ratio to the reference; goal >= 1.3 on CPU):")
    for method, seconds in single["seconds"].items():
        ratio = "" if method == "reference" else f"  {single['ratio'][method]:.2f}x"
        label = LABELS[method].format(compile_s=single["compile_s"], export_s=single["export_s"])
        print(f"   {label:<62} {single['img_s'][method]:7.1f} img/s {seconds:8.2f} s{ratio}")
    if any(m.startswith("gpu-decode") for m in args.methods):
        count, largest, mean = crop_differences(root, device)
        print(
            f"   --gpu-decode crops vs the exact crops, {count} images: max |difference| {largest:.3f}, "
            f"mean {mean:.5f} pixel levels"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=64, help="images for the one-model comparison (default 64)")
    parser.add_argument("--table-images", type=int, default=16, help="images for the 13-model comparison (default 16)")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size of every run (default 32)")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="DataLoader workers of every run (default: verify's default for the device)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--repeat", type=int, default=2, help="repetitions, best kept (default 2)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--skip-table", action="store_true", help="only the one-model comparison")
    parser.add_argument("--skip-single", action="store_true", help="only the 13-model comparison")
    parser.add_argument(
        "--process",
        metavar="NAME",
        default=None,
        help="also time whole processes: python -m dsd_zoo.verify NAME (torch and onnxruntime "
        "engines) vs the reference evaluation in its own process, on --images images",
    )
    parser.add_argument(
        "--forward",
        action="store_true",
        help="also time the forward pass alone per architecture (eager, compile, onnxruntime) and "
        "one large convolution's GFLOPS",
    )
    parser.add_argument(
        "--forward-archs",
        default=",".join(FORWARD_ARCHS),
        help=f"architectures of --forward (default {','.join(FORWARD_ARCHS)})",
    )
    parser.add_argument(
        "--stages", action="store_true", help="also time decoding and each pipeline's resampling per image"
    )
    parser.add_argument(
        "--table-compile",
        action="store_true",
        help="also time the combined 13-model run with --compile (cold cache, compilation included)",
    )
    parser.add_argument(
        "--methods",
        default=None,
        help=f"comma-separated verify runs to compare with the reference, of {', '.join(METHODS)} "
        "(default: eager,compiled on a CPU; eager,gpu-decode,gpu-decode-fast on CUDA)",
    )
    args = parser.parse_args()
    args.forward_archs = args.forward_archs.split(",")
    default_methods = "eager,compiled,onnxruntime" if args.device == "cpu" else "eager,gpu-decode,gpu-decode-fast"
    args.methods = (args.methods or default_methods).split(",")
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown --methods {unknown}; choose from {', '.join(METHODS)}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    args.workers = default_workers(device) if args.workers is None else args.workers

    print("command: python " + " ".join(shlex.quote(a) for a in sys.argv))
    cpu = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            "?",
        )
        if Path("/proc/cpuinfo").exists()
        else "?"
    )
    print(
        f"machine: {os.cpu_count()} cpus ({cpu}), device {device}"
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
        + f"; torch {torch.__version__}, {torch.get_num_threads()} threads, {args.workers} workers, "
        f"batch {args.batch_size}, best of {args.repeat}"
    )
    with tempfile.TemporaryDirectory(prefix="dsd_zoo_eval_bench_") as tmp:
        if not args.skip_single:
            report_single(
                bench_single(make_images(Path(tmp) / "one", args.images), args, device), args, device, Path(tmp) / "one"
            )
        if args.process:
            report_process(
                bench_process(make_images(Path(tmp) / "process", args.images, seed=2), args, Path(tmp)), args
            )
        if args.forward:
            print(f"\n3. the forward pass alone, batch {args.batch_size}, best of {args.repeat} (img/s):")
            rows = bench_forward(args)
            report_forward(rows, conv_gflops(args.repeat), args)
        if args.stages:
            bench_stages(make_images(Path(tmp) / "stages", args.images, seed=2), args.repeat)
        if not args.skip_table:
            table = bench_table(make_images(Path(tmp) / "table", args.table_images, seed=1), args, device)
            print(
                f"\n5. {table['models']} models, {table['images']} images: one combined run {table['combined_s']:.2f} s; "
                f"{table['models']} separate runs {table['separate_s']:.2f} s"
            )
            print(f"   ratio separate / combined: {table['ratio']:.2f}x")
            if "compiled" in table:
                c = table["compiled"]
                print(
                    f"   combined with --compile: {c['seconds']:.2f} s, of which {c['first_batch_s']:.1f} s in the "
                    f"first (compiling) batch; after it {c['per_image_after']:.3f} s per image vs "
                    f"{c['per_image_eager']:.3f} eager: {c['per_image_eager'] / c['per_image_after']:.2f}x"
                )


if __name__ == "__main__":
    main()
