#!/usr/bin/env bash
# The GPU checks of issue 5 in one device call (a lent GPU has 15 minutes in all; this takes about
# 3-5 of them). From the repository root, on the GPU machine:
#
#     bash benchmarks/gpu_check.sh            # output also saved under $OUT (or ./gpu_check_out)
#
# 1. the tests of the device-decode path and the engine, with the CUDA cases that skip elsewhere;
# 2. the throughput of verify's ResNet-50 evaluation on the GPU against torchvision's reference
#    (eager exact float32, --gpu-decode, --gpu-decode --fast), and how far nvJPEG's crops are from
#    the exact crops. The goal of issue 5: >= 3,000 img/s end to end on one H100.
# Record the printed numbers in docs/benchmarks.md with the device named.
set -uo pipefail
out=${OUT:-gpu_check_out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python=${PYTHON:-python3}
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$python" -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, \
torch.cuda.get_device_name(0), 'cpus', __import__('os').cpu_count())"
  "$python" -c "import importlib.util as u; print('torchcodec:', 'yes' if u.find_spec('torchcodec') else 'no')"
  "$python" -m pytest -q -p no:cacheprovider tests/test_verify_device_decode.py tests/test_verify_engine.py
  "$python" benchmarks/eval_throughput.py --device cuda --images 4096 --batch-size 256 \
      --workers "$(( $(nproc) - 1 ))" --repeat 2 --skip-table
} 2>&1 | tee "$out/gpu_check.log"
