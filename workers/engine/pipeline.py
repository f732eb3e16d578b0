"""The selection pipeline as small stages: read → embed → score → select (→ write, in
``export``). Each stage is a plain function usable and testable alone; ``run_selection``
chains them for the CLI and the workers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from .embed.base import EmbeddingCache, EmbedStats, Encoder, embed_texts, text_key
from .embed.templates import unit_texts
from .errors import ConfigError
from .ingest.dataset import IngestReport, PreferenceFile
from .ingest.records import render_text
from .select import Budget, SelectionMethod, apply_budget

Level = Literal["auto", "pair", "item"]
#: progress callback: (stage, done, total)
StageProgress = Callable[[str, int, int], None]


@dataclass(slots=True)
class UnitTable:
    """The units a method chooses among, in canonical order (sorted by row_id, side).

    Canonical order makes every result independent of the order of rows in the file.
    """

    level: str
    template: str
    row_ids: list[str]
    sides: list[str | None]  # None for a whole pair; "chosen"/"rejected"/"completion"
    source_rows: np.ndarray  # 0-based record ordinal in the file
    texts: list[str]  # embedded texts
    text_labels: list[str]  # "chosen", "rejected", "completion", "prompt" or "pair"
    groups: np.ndarray  # text -> unit index
    meta: dict[str, np.ndarray] = field(default_factory=dict)
    prompt_keys: list[str] = field(default_factory=list)  # per unit: hash of its prompt

    def __len__(self) -> int:
        return len(self.row_ids)

    def unit_keys(self) -> list[str]:
        return [r if s is None else f"{r}:{s}" for r, s in zip(self.row_ids, self.sides,
                                                                 strict=True)]


def read_units(source: PreferenceFile, *, level: Level = "auto",
               template: str = "prompt_completion") -> tuple[UnitTable, IngestReport]:
    """Stage 1: stream the file into units, their texts and numeric metadata."""
    if level not in ("auto", "pair", "item"):
        raise ConfigError("level must be 'auto', 'pair' or 'item'")
    records: list[tuple[str, str | None, int, list[tuple[str, str]], str]] = []
    numeric: dict[str, dict[int, float]] = {}
    non_numeric: set[str] = set()
    resolved: str | None = None if level == "auto" else level
    for ex in source.iter_examples():
        if resolved is None:
            resolved = "pair" if ex.kind == "pair" else "item"
        if resolved == "pair" and ex.kind != "pair":
            raise ConfigError("pair-level selection needs paired data; this data is unpaired "
                              "(KTO): use level 'item'", code="invalid_level")
        sides: list[str | None] = [None] if resolved == "pair" else (
            ["chosen", "rejected"] if ex.kind == "pair" else ["completion"])
        for side in sides:
            idx = len(records)
            records.append((ex.row_id, side, ex.row, unit_texts(ex, side, template),
                            text_key(render_text(ex.prompt)).hex()))
            _collect_numeric(ex.extra, idx, numeric, non_numeric)
    assert resolved is not None  # iter_examples raises on a file with no valid rows
    order = sorted(range(len(records)), key=lambda i: (records[i][0], records[i][1] or ""))
    texts: list[str] = []
    labels: list[str] = []
    groups: list[int] = []
    for u, i in enumerate(order):
        for label, text in records[i][3]:
            texts.append(text)
            labels.append(label)
            groups.append(u)
    meta = {}
    for name, values in numeric.items():
        if name in non_numeric:
            continue
        col = np.full(len(records), np.nan)
        for i, v in values.items():
            col[i] = v
        meta[name] = col[order]
    # which units share a prompt (a numeric column, so methods can stratify by prompt)
    prompt_ids: dict[str, int] = {}
    meta["_prompt_group"] = np.asarray(
        [prompt_ids.setdefault(records[i][4], len(prompt_ids)) for i in order], dtype=float)
    table = UnitTable(
        level=resolved, template=template,
        row_ids=[records[i][0] for i in order], sides=[records[i][1] for i in order],
        source_rows=np.asarray([records[i][2] for i in order], dtype=np.int64),
        texts=texts, text_labels=labels, groups=np.asarray(groups, dtype=np.int64), meta=meta,
        prompt_keys=[records[i][4] for i in order],
    )
    return table, source.report


def _collect_numeric(extra: dict[str, Any], idx: int, numeric: dict[str, dict[int, float]],
                     non_numeric: set[str]) -> None:
    for k, v in extra.items():
        if v is None or k in non_numeric:
            continue
        if isinstance(v, bool):
            non_numeric.add(k)
            continue
        if isinstance(v, int | float):
            numeric.setdefault(k, {})[idx] = float(v)
            continue
        if isinstance(v, str):  # CSV cells
            try:
                f = float(v)
            except ValueError:
                non_numeric.add(k)
                continue
            if math.isfinite(f):
                numeric.setdefault(k, {})[idx] = f
                continue
        non_numeric.add(k)


def embed_units(table: UnitTable, encoder: Encoder, *, cache: EmbeddingCache | None = None,
                progress: StageProgress | None = None) -> tuple[np.ndarray, EmbedStats]:
    """Stage 2: one embedding per text (identical texts embedded once)."""
    cb = (lambda d, t: progress("embedding", d, t)) if progress else None
    return embed_texts(table.texts, encoder, cache=cache, progress=cb)


def score_units(table: UnitTable, method: SelectionMethod, X: np.ndarray | None, *,
                n_select: int | None = None) -> SelectionMethod:
    """Stage 3: fit the method on the items, scoring every unit."""
    return method.fit(X, groups=table.groups, meta=table.meta, n_units=len(table),
                      n_select=n_select)


@dataclass(slots=True)
class SelectionResult:
    """Everything a selection produced, keyed by unit (see ``UnitTable``)."""

    units: UnitTable
    method: SelectionMethod
    budget: Budget
    selected: np.ndarray  # bool per unit
    ingest: IngestReport
    embed_stats: EmbedStats | None
    encoder_name: str | None
    timings: dict[str, float]

    @property
    def n_selected(self) -> int:
        return int(self.selected.sum())

    def selected_keys(self) -> set[tuple[str, str | None]]:
        return {(self.units.row_ids[i], self.units.sides[i]) for i in np.flatnonzero(
            self.selected)}

    def summary(self) -> dict[str, Any]:
        return {
            "method": self.method.name,
            "params": self.method.get_params(),
            "level": self.units.level,
            "template": self.units.template,
            "budget": self.budget.to_dict(),
            "units": len(self.units),
            "selected": self.n_selected,
            "encoder": self.encoder_name,
            "embedding": self.embed_stats.to_dict() if self.embed_stats else None,
            "ingest": {k: v for k, v in self.ingest.to_dict().items() if k != "skipped"},
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
        }


def run_selection(source: PreferenceFile, method: SelectionMethod, budget: Budget, *,
                  encoder: Encoder | Callable[[], Encoder] | None = None,
                  level: Level = "auto", template: str = "prompt_completion",
                  cache: EmbeddingCache | None = None,
                  progress: StageProgress | None = None) -> SelectionResult:
    """read → embed → score → select. ``encoder`` may be a factory, called only when the
    method needs embeddings (``random`` and ``margin`` never load a model)."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if progress:
        progress("reading", 0, 0)
    table, report = read_units(source, level=level, template=template)
    timings["read"] = time.perf_counter() - t0
    if progress:
        progress("reading", report.rows_read, report.rows_read)
    n_select = budget.size(len(table))
    X, stats, enc_name = None, None, None
    if method.needs_embeddings:
        if encoder is None:
            raise ConfigError(f"method {method.name!r} needs an encoder")
        t = time.perf_counter()
        enc = encoder if isinstance(encoder, Encoder) else encoder()
        enc_name = enc.name
        timings["load_encoder"] = time.perf_counter() - t
        t = time.perf_counter()
        X, stats = embed_units(table, enc, cache=cache, progress=progress)
        timings["embed"] = time.perf_counter() - t
    t = time.perf_counter()
    if progress:
        progress("scoring", 0, len(table))
    score_units(table, method, X, n_select=n_select)
    timings["score"] = time.perf_counter() - t
    if progress:
        progress("scoring", len(table), len(table))
    if progress:
        progress("selecting", n_select, len(table))
    selected = apply_budget(method.ranking_, budget)
    return SelectionResult(table, method, budget, selected, report, stats, enc_name, timings)
