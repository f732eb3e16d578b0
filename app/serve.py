"""The gateway's production start: ``python -m app.serve``.

Several uvicorn worker processes (``ISA_API_WORKERS``, default: one per CPU), each with
its own event loop and Redis pool, behind one listening socket; a fleet of pollers is
spread over them. HTTP metrics then live in Prometheus' multiprocess files
(``PROMETHEUS_MULTIPROC_DIR``, made fresh at each start) and ``/metrics`` sums every
process. Job and data set metrics are in Redis already and need nothing.

Connections are defended (``app/protocol.py``): header and body read timeouts, a cap on
connections still sending their headers, idle keep-alive connections closed after
``ISA_API_KEEPALIVE_S``, and past ``ISA_API_MAX_CONNECTIONS`` requests per process a 503
at once rather than a queue without bound.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)


def main(argv: list[str] | None = None) -> None:
    from core.settings import get_settings

    settings = get_settings()
    ap = argparse.ArgumentParser(prog="python -m app.serve", description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--workers", type=int, default=None,
                    help="processes (default ISA_API_WORKERS, else one per CPU)")
    args = ap.parse_args(argv)
    workers = args.workers or settings.api_workers or _cpus()
    if workers > 1:
        # set before any worker imports prometheus_client: its values then go to files
        folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if folder:
            shutil.rmtree(folder, ignore_errors=True)  # counts of an earlier run go
            os.makedirs(folder, exist_ok=True)
        else:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="isa-metrics-")
    import uvicorn

    from app.protocol import GuardedHTTPProtocol

    uvicorn.run("app.main:app", host=args.host, port=args.port, workers=workers,
                http=GuardedHTTPProtocol,  # type: ignore[arg-type]
                log_level=os.environ.get("ISA_API_LOG_LEVEL", "info"),
                timeout_keep_alive=settings.api_keepalive_s,
                limit_concurrency=settings.api_max_connections, backlog=4096)


if __name__ == "__main__":
    main()
