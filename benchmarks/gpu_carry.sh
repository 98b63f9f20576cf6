#!/usr/bin/env bash
# Fill .gpu/ (git-ignored) with what benchmarks/gpu_cifar10_airbench.py needs on a CUDA machine
# without network access or ../shared: the CIFAR-10 JPEG zip (61 MiB) and airbench 0.1.8 built as a
# pure-Python wheel.  Copy the repository with .gpu/ to that machine, then run from its root:
#   python3 -m pip install -q --no-index --no-deps --target .gpu/site .gpu/wheels/*.whl
#   PYTHONPATH=.gpu/site:src PYTHONUNBUFFERED=1 python3 benchmarks/gpu_cifar10_airbench.py \
#       --data-dir .gpu/datasets --json gpu.jsonl
set -euo pipefail
cd "$(dirname "$0")/.."
shared="${1:-../shared/datasets}"
mkdir -p .gpu/datasets .gpu/wheels
cp "$shared/cifar10-jpeg.zip" .gpu/datasets/
python3 -m pip wheel -q --no-deps -w .gpu/wheels airbench==0.1.8
du -sh .gpu
