#!/usr/bin/env bash
# Training throughput, medrun vs PyTorch, back to back on the same machine (run by hand).
#
#   benches/train-vs-torch.sh [VENV] [STEPS]
#
# VENV is a Python venv with torch (default /tmp/torch-peer; create it with
# ../shared/bench/torch-peer-setup.sh). Both sides train the same 5.3 M-parameter Llama (vocab 4096,
# hidden 256, 4 layers, 8 heads, intermediate 688, untied head, sequence 128, batch 8, f32,
# AdamW) with 2 threads, and report the median step time.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-/tmp/torch-peer}
steps=${2:-20}
peer=../shared/bench/torch_llama.py
quiet=../shared/bench/quiet.sh
[ -f "$peer" ] || { echo "error: $peer not found (the PyTorch peer script)"; exit 1; }
[ -x "$venv/bin/python" ] || { echo "error: no venv at $venv; run ../shared/bench/torch-peer-setup.sh $venv"; exit 1; }

cargo bench --bench train --no-run -q 2>/dev/null || cargo bench --bench train --no-run
wait_quiet() { if [ -x "$quiet" ]; then "$quiet" 120; fi; }

wait_quiet
echo "== medrun"
RAYON_NUM_THREADS=2 cargo bench -q --bench train -- 3 "$steps" | tee /tmp/medrun-train-bench.txt
wait_quiet
echo "== PyTorch"
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PROBE_H=8 PROBE_T=128 \
  "$venv/bin/python" "$peer" 2 3 "$steps" | tee /tmp/torch-train-bench.txt

m=$(grep -m1 'full fine-tuning' /tmp/medrun-train-bench.txt | awk '{for(i=1;i<=NF;i++) if($i=="tokens/s") print $(i-1)}')
t=$(grep -m1 'tokens/s' /tmp/torch-train-bench.txt | awk '{print $2}')
echo "== ratio: medrun ${m} tokens/s / PyTorch ${t} tokens/s = $(python3 -c "print(round($m/$t, 3))")"
