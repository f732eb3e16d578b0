#!/usr/bin/env bash
# The one prepared GPU run (issues 22 and 23): the DPO yardstick's matrix on both domains
# (bench/dpo_candidates.json x budgets 5% and 10% x 3 seeds, 1,000 HH / 2,000 AlpacaEval
# evaluation pairs) and the GPU encoding bench, every table written under $OUT (the
# device tool's folder) or bench/results. Runs unchanged on a CPU at tiny size:
#
#   ISA_GPU_SUITE_TINY=1 bash bench/gpu_suite.sh     (tests/bench/test_gpu_suite.py)
#
# On a device machine the working tree travels without .venv, ../shared or the model
# packages (64 MiB a call): set ISA_GPU_SITE to a folder of the wheels the image lacks
# (installed with --target, then put on PYTHONPATH), ISA_FULL_DATA_DIR to the data sets,
# and ISA_SMOLLM2_FOLDER to the de-quantised SmolLM2 folder, each laid there beforehand.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
DEST=${OUT:-bench/results}
mkdir -p "$DEST"
if [ -n "${ISA_GPU_SITE:-}" ]; then
  export PYTHONPATH="$ISA_GPU_SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
model=(--model smollm2-135m)
if [ -n "${ISA_SMOLLM2_FOLDER:-}" ]; then
  model=(--model "$ISA_SMOLLM2_FOLDER")
fi
if [ -n "${ISA_GPU_SUITE_TINY:-}" ]; then
  common=(--tiny --seeds 0,1 --device cpu)
  domains=(tiny)
else
  common=(--budgets 0.05,0.1 --seeds 0,1,2 --device auto "${model[@]}"
          --batch-size 16 --eval-batch-size 64 --epochs 2)
  domains=(hh alpaca)
fi
start=$(date +%s)
for domain in "${domains[@]}"; do
  args=("${common[@]}")
  if [ "$domain" = hh ]; then args+=(--domain hh --eval-pairs 1000); fi
  if [ "$domain" = alpaca ]; then args+=(--domain alpaca --eval-pairs 2000); fi
  # resumable: a second call (after a cut) trains only the arms not yet in the runs file
  "$PY" bench/dpo.py "${args[@]}" --runs "$DEST/dpo_runs_$domain.jsonl" \
    --table "$DEST/dpo_$domain.md" --cache-dir "${TMPDIR:-/tmp}/isa-dpo-cache"
done
if [ -z "${ISA_GPU_SUITE_TINY:-}" ]; then
  "$PY" bench/gpu.py > "$DEST/gpu_encoding.txt" 2>&1 || echo "gpu_suite: bench/gpu.py failed" >&2
fi
echo "gpu_suite: done in $(( $(date +%s) - start )) s; tables in $DEST"
