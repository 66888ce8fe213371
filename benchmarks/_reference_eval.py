"""torchvision's reference evaluation, the yardstick of ``eval_throughput.py``, in a module of its own.

It imports only torch, torchvision, safetensors and dsd-zoo's architectures, so that its
whole-process run (``python benchmarks/_reference_eval.py ROOT WEIGHTS ARCH BATCH WORKERS``)
pays for nothing that verify's process needs and the reference does not.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def reference_run(model: torch.nn.Module, root: Path, batch_size: int, workers: int, device: torch.device) -> float:
    """Seconds for torchvision's reference evaluation of ``model`` over ``root`` (top-1/top-5 counted)."""
    from torchvision import datasets, transforms

    preprocess = transforms.Compose(
        [
            transforms.Resize(256),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ]
    )
    loader = torch.utils.data.DataLoader(
        datasets.ImageFolder(str(root), preprocess),
        batch_size=batch_size,
        num_workers=workers,
        pin_memory=device.type == "cuda",
    )
    start = time.perf_counter()
    correct = torch.zeros(2, dtype=torch.int64, device=device)
    with torch.inference_mode():
        for images, labels in loader:
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            hits = model(images).topk(5, dim=1).indices == labels[:, None]
            correct += torch.stack([hits[:, 0].sum(), hits.any(dim=1).sum()])
    correct.tolist()  # wait for the device
    return time.perf_counter() - start


def main() -> None:
    """The whole reference process: build ``ARCH``, load ``WEIGHTS`` (safetensors), evaluate ``ROOT`` on the CPU."""
    from safetensors.torch import load_file

    from dsd_zoo.models import ARCHITECTURES

    root, weights, arch, batch, workers = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    model = ARCHITECTURES[arch].build()
    model.load_state_dict(load_file(weights))
    reference_run(model.eval(), Path(root), batch, workers, torch.device("cpu"))


if __name__ == "__main__":
    main()
