"""The table of an evaluate or curve job's report (its ``report.json``), as the job page
shows it beside the plot: each score with its 95% interval and the pair counts it rests
on, so the page can be read without the PNG."""

from __future__ import annotations

import json
import logging
from typing import Any

from core.artifacts import REPORT_FORMATS, ArtifactStore, Keys

logger = logging.getLogger("isa.ui")
REPORT_JSON = REPORT_FORMATS[0].filename


def _read(artifacts: ArtifactStore, job_id: str) -> dict[str, Any] | None:
    key = Keys.job_file(job_id, REPORT_JSON)
    if not artifacts.exists(key):
        return None
    try:
        with artifacts.open_read(key) as fh:
            return json.load(fh)
    except (OSError, ValueError):  # the page still shows the rest
        logger.exception("report of job %s could not be read", job_id)
        return None


def _interval(row: dict[str, Any], value: str, low: str, high: str) -> dict[str, Any]:
    return {"value": row.get(value), "low": row.get(low), "high": row.get(high)}


def _probe_row(label: str, score: dict[str, Any], pairs: Any) -> dict[str, Any]:
    return {"label": label, "pairs": pairs, "eval_pairs": score.get("n_eval"),
            "accuracy": _interval(score, "accuracy", "ci_low", "ci_high"),
            "balanced": _interval(score, "balanced_accuracy", "balanced_ci_low",
                                  "balanced_ci_high"),
            "sd": score.get("accuracy_sd")}


def evaluate_table(report: dict[str, Any]) -> dict[str, Any]:
    subset = report["subset"]
    runs = subset.get("runs") or []
    if runs:  # several seeds: the mean, its spread, and the first run's pair counts
        subset = {**runs[0], **{k: v for k, v in subset.items() if k != "runs"},
                  "ci_low": None, "ci_high": None}
    length = report.get("length") or {}
    rows = [_probe_row(f"{report['method']} subset", subset, report.get("pairs")),
            _probe_row("full pool", report["full"], report.get("pool_pairs"))]
    return {"kind": "evaluate", "rows": rows, "seeds": len(runs) or 1,
            "eval_pairs": report.get("eval_pairs"), "pool_pairs": report.get("pool_pairs"),
            "length_rule": length.get("length_rule_accuracy"),
            "warning": length.get("warning"), "encoder": report.get("encoder")}


def curve_table(report: dict[str, Any]) -> dict[str, Any]:
    metric = report.get("metric", "accuracy")
    grid = report.get("grid_percent", [])
    methods = []
    for m in report.get("methods", []):
        values = m.get(metric) or []
        half = m.get(f"{metric}_ci_half_width") or []
        methods.append({"method": m["method"], "seeds": m.get("seeds"),
                        "recommended": m.get("recommended_budget_percent"),
                        "cells": [{"value": v, "half": h} for v, h in
                                  zip(values, half, strict=False)]})
    full = report.get("full") or {}
    return {"kind": "curve", "metric": metric, "grid": grid, "methods": methods,
            "eval_pairs": report.get("eval_pairs"), "pool_pairs": report.get("pool_pairs"),
            "full": _probe_row("full pool", full, report.get("pool_pairs")),
            "length_rule": (report.get("length") or {}).get("length_rule_accuracy"),
            "metric_reason": report.get("metric_reason"), "encoder": report.get("encoder")}


def report_table(doc: dict[str, Any], artifacts: ArtifactStore) -> dict[str, Any] | None:
    """The table of a succeeded evaluate or curve job, else None."""
    if doc["type"] not in ("evaluate", "curve") or doc["status"] != "succeeded":
        return None
    report = _read(artifacts, doc["id"])
    if report is None:
        return None
    try:
        return evaluate_table(report) if doc["type"] == "evaluate" else curve_table(report)
    except (KeyError, TypeError):  # a report of an older shape: the plot still shows
        logger.exception("report of job %s has an unexpected shape", doc["id"])
        return None
