"""The gateway's production start: ``python -m app.serve``.

Several uvicorn worker processes (``ISA_API_WORKERS``, default: one per CPU), each with
its own event loop and Redis pool, behind one listening socket; a fleet of pollers is
spread over them. HTTP metrics then live in Prometheus' multiprocess files
(``PROMETHEUS_MULTIPROC_DIR``, made fresh at each start) and ``/metrics`` sums every
process. Job and data set metrics are in Redis already and need nothing.

Connections are defended here too: idle keep-alive connections close after
``ISA_API_KEEPALIVE_S``, and beyond ``ISA_API_MAX_CONNECTIONS`` per process new
requests get 503 at once rather than queueing without bound.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile


def _workers(value: str | None) -> int:
    if value:
        n = int(value)
        if n < 1:
            raise SystemExit(f"ISA_API_WORKERS must be at least 1, not {n}")
        return n
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m app.serve", description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default=os.environ.get("ISA_API_HOST", "127.0.0.1"))
    ap.add_argument("--port", type=int, default=int(os.environ.get("ISA_API_PORT", "8000")))
    ap.add_argument("--workers", type=int, default=None,
                    help="processes (default ISA_API_WORKERS, else one per CPU)")
    args = ap.parse_args(argv)
    workers = args.workers or _workers(os.environ.get("ISA_API_WORKERS"))
    if workers > 1:
        # set before any worker imports prometheus_client: its values then go to files
        folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if folder:
            shutil.rmtree(folder, ignore_errors=True)  # counts of an earlier run go
            os.makedirs(folder, exist_ok=True)
        else:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="isa-metrics-")
    import uvicorn

    uvicorn.run("app.main:app", host=args.host, port=args.port, workers=workers,
                log_level=os.environ.get("ISA_API_LOG_LEVEL", "info"),
                timeout_keep_alive=int(os.environ.get("ISA_API_KEEPALIVE_S", "5")),
                limit_concurrency=int(os.environ.get("ISA_API_MAX_CONNECTIONS", "2048")),
                backlog=4096)


if __name__ == "__main__":
    main()
