#!/usr/bin/env bash
# CPU against CUDA on a machine with an NVIDIA GPU: offline, balanced and live real-time factors, and how far the
# CUDA stems stray from the CPU ones (benchmarks/gpu_check.py; the table goes to benchmarks/results/gpu_check.txt).
#
#   bash benchmarks/gpu_check.sh [ONNXRUNTIME_GPU_WHEEL]
#
# With a wheel, it replaces onnxruntime by onnxruntime-gpu first (the two provide one module: never both).
# Run from the repository root, where `pip install -e .` works.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -ge 1 ]; then
    python -m pip uninstall -y -q onnxruntime onnxruntime-gpu || true
    python -m pip install -q --no-deps "$1"
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
python -c 'import onnxruntime as o; print("onnxruntime", o.__version__, o.get_available_providers())'
exec python benchmarks/gpu_check.py --seconds "${SECONDS_OF_AUDIO:-60}" --repeats "${REPEATS:-3}"
