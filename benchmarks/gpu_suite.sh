#!/usr/bin/env bash
# Every GPU check of docs/performance.md in one go (for a short GPU lease), results into OUTDIR:
#   1. the CUDA tests (tests/gpu: KV cache == recomputation, fused SDPA kernels in bf16 training);
#   2. ours vs HF GPT-NeoX in bf16: tokens/s, MFU, peak memory, the SDPA kernels training runs;
#   3. a bf16-mixed Lightning training run of star_easy_arlm_cpu through the `xlm` CLI;
#   4. the same comparison with torch.compile'd training of both models;
#   5. the cost and break-even of the CUDA-graph decoding step (benchmarks/decode_step.py);
#   6. the Qwen2 vocabulary (151,936 ids): fused head + cross-entropy vs HF, memory, largest batch
#      (benchmarks/large_vocab.py).
# Each step has its own time limit, so one slow step cannot take the others' results with it.
#   bash benchmarks/gpu_suite.sh OUTDIR [PYTHON]
set -uo pipefail
out=${1:-gpu_results}
py=${2:-python}
mkdir -p "$out"
out=$(cd "$out" && pwd)  # absolute: the steps run from the repository root
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."

{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  "$py" -c "import torch, transformers, lightning; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'| transformers', transformers.__version__, '| lightning', lightning.__version__)"
  "$py" -m xlm_core.cli families
} >"$out/env.txt" 2>&1
cat "$out/env.txt"

step() {  # step NAME SECONDS CMD...: run CMD under a time limit, log to OUTDIR/NAME.log
  local name=$1 limit=$2; shift 2
  echo "=== $name (limit ${limit}s): $*"
  local t0=$SECONDS
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  local rc=$?
  tail -n 40 "$out/$name.log"
  echo "=== $name: rc=$rc, $((SECONDS - t0)) s"
}

step pytest_gpu 90 "$py" -m pytest -q -p no:cacheprovider -m gpu tests/gpu -rs
step compare_hf_bf16 200 "$py" benchmarks/compare_hf.py --device cuda --dtype bf16 --warmup 3 --repeats 10 \
  --small-batch 32 --json "$out/compare_hf_bf16.json"
step train_star_bf16 150 "$py" -m xlm_core.cli job_type=train family=arlm experiment=star_easy_arlm_cpu \
  trainer_strategy=single_device trainer.precision=bf16-mixed job_name=gpu_star_bf16
tar czf "$out/train_star_bf16_run.tgz" --exclude='*.ckpt' -C outputs gpu_star_bf16 2>/dev/null
step compare_hf_compile 110 "$py" benchmarks/compare_hf.py --device cuda --dtype bf16 --compile --no-memory \
  --no-small --warmup 3 --repeats 5
step decode_step 150 "$py" benchmarks/decode_step.py --device cuda --json "$out/cuda_decode_step.json"
step large_vocab_bf16 240 "$py" benchmarks/large_vocab.py --device cuda --dtype bf16 --warmup 2 --repeats 5 \
  --batch 32 --small-batch 8 --fit-batches 8,16,32 --json "$out/cuda_large_vocab_bf16.json"
