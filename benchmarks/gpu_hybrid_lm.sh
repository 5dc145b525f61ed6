#!/usr/bin/env bash
# hybrid_lm on one GPU (H100/H200): a CUDA smoke run that fails fast, then the "gpu" profile
# (the notes' tiny design, d = 256, 400 steps of 32 x 512 bytes per model, bf16 autocast).
#
#   bash benchmarks/gpu_hybrid_lm.sh [RESULTS_DIR]    (default: results)
#
# Needs the package importable (pip install -e . or PYTHONPATH=src) and a CUDA build of torch.
set -euo pipefail
results=${1:-results}
export PYTHONUNBUFFERED=1
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
start=$(date +%s)
python3 -m nanorepro run hybrid_lm --profile smoke --device cuda --results "$(mktemp -d)"
echo "smoke on cuda: $(( $(date +%s) - start )) s"
python3 -m nanorepro run hybrid_lm --profile gpu --device cuda --results "$results"
echo "total: $(( $(date +%s) - start )) s"
