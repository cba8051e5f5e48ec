#!/usr/bin/env bash
# CUDA/bf16 smoke run and throughput figures on a GPU machine (results: docs/benchmarks.md).
#   OUT=gpu_out bash benchmarks/gpu_smoke.sh
# Needs torch with CUDA and the packages of pyproject.toml; Fashion-MNIST under $STNAS_DATA.
set -uo pipefail
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD/src:${PYTHONPATH:-} PYTHONUNBUFFERED=1
export STNAS_DATA=${STNAS_DATA:-$PWD/.devdata}
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))" | tee "$OUT/env.txt"
nproc | tee -a "$OUT/env.txt"

echo "== 1. ImageNet-sized supernet throughput (paper preset, synthetic 224x224) =="
python3 benchmarks/throughput.py --preset paper --device cuda --batch 256 --steps 20 --warmup 5 \
  --out "$OUT/throughput_paper_cuda.json" 2>&1 | tee "$OUT/throughput_paper.txt"

echo "== 2. Fashion-MNIST supernet throughput =="
python3 benchmarks/throughput.py --preset fashion-mnist --device cuda --batch 256 --steps 30 --warmup 5 \
  --out "$OUT/throughput_fm_cuda.json" 2>&1 | tail -5 | tee "$OUT/throughput_fm.txt"

echo "== 3. stnas run on Fashion-MNIST, CUDA + bf16 autocast =="
start=$(date +%s)
python3 -m stnas.cli run --preset fashion-mnist --device cuda --out /tmp/gpu_run supernet.progress=false \
  retrain.progress=false 2>&1 | grep -v "it/s" | tail -40 > "$OUT/run_log.txt"
echo "wall $(( $(date +%s) - start )) s" | tee -a "$OUT/run_log.txt"
cp /tmp/gpu_run/report.md "$OUT/" 2>/dev/null
cp /tmp/gpu_run/supernet.json "$OUT/" 2>/dev/null
tail -5 "$OUT/run_log.txt"
