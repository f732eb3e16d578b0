"""The selection pipeline as small stages: plan → read → embed → score → select (→ write,
in ``export``).

Each stage is usable and testable alone. ``SelectionRun`` carries one selection through
them: the CLI calls ``run()``, which chains every stage in this process; the service's
workers call the stages one by one, so that the embedding can fan out to other workers
between ``lookup()`` and ``score()``.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from abc import ABC, abstractmethod
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .columns import CodeColumn, StrColumn, concat_strings
from .embed.base import (
    EmbeddingCache,
    EmbeddingLookup,
    EmbedStats,
    Encoder,
    complete_embeddings,
    lookup_embeddings,
    text_key,
)
from .embed.templates import unit_texts
from .errors import ConfigError
from .ingest.dataset import IngestReport, PreferenceFile
from .ingest.records import Example, render_text
from .progress import StageProgress
from .select import Budget, SelectionMethod, apply_budget
from .select.base import CHOSEN_CHARS, PROMPT_GROUP, REJECTED_CHARS

Level = Literal["auto", "pair", "item"]


@dataclass(slots=True)
class UnitTable:
    """The units a method chooses among, in canonical order (sorted by row_id, side).

    Canonical order makes every result independent of the order of rows in the file.
    A table read with ``keep_texts=False`` holds no texts and no prompt keys, only the
    texts' content keys (``text_keys``): tens of millions of units fit in memory. No
    column holds a Python object per unit: row ids are one Arrow string array
    (``StrColumn``), sides and labels one int8 code each (``CodeColumn``); lists given
    for them are turned into those.
    """

    level: str
    template: str
    row_ids: Sequence[str]  # a StrColumn
    sides: Sequence[str | None]  # None for a whole pair; "chosen"/"rejected"/"completion"
    source_rows: np.ndarray  # 0-based record ordinal in the file
    texts: list[str]  # embedded texts (empty when read without them)
    text_labels: Sequence[str]  # "chosen", "rejected", "completion", "prompt" or "pair"
    groups: np.ndarray  # text -> unit index
    meta: dict[str, np.ndarray] = field(default_factory=dict)
    prompt_keys: list[str] = field(default_factory=list)  # per unit: hash of its prompt
    text_keys: np.ndarray | None = None  # per text: its 16-byte content key (text_key)

    def __post_init__(self) -> None:
        self.row_ids = StrColumn(self.row_ids)
        self.sides = CodeColumn.of(self.sides, SIDES)
        self.text_labels = CodeColumn.of(self.text_labels, ITEM_LABELS)

    @property
    def side_codes(self) -> np.ndarray:
        """Per unit: its side's code (``SIDES``), 1 byte."""
        return CodeColumn.of(self.sides, SIDES).codes

    @property
    def label_codes(self) -> np.ndarray:
        """Per item: its label's code (``ITEM_LABEL_CODE``), 1 byte."""
        return CodeColumn.of(self.text_labels, ITEM_LABELS).codes

    def __len__(self) -> int:
        return len(self.row_ids)

    @property
    def n_items(self) -> int:
        """How many texts (items) the units hold."""
        return len(self.groups)

    def unit_keys(self) -> list[str]:
        return [r if s is None else f"{r}:{s}" for r, s in zip(self.row_ids, self.sides,
                                                                 strict=True)]


#: side codes in canonical order (a whole pair, then its items by name)
SIDES: tuple[str | None, ...] = (None, "chosen", "completion", "rejected")
_SIDE_CODE = {s: i for i, s in enumerate(SIDES)}
#: item labels and their codes (compact label columns, here and in ``isa.unit_files``)
ITEM_LABELS = ("chosen", "rejected", "completion", "prompt", "pair")
ITEM_LABEL_CODE = {s: i for i, s in enumerate(ITEM_LABELS)}


def item_label_codes(labels: Sequence[str]) -> np.ndarray:
    """``labels`` (``UnitTable.text_labels``) as ``ITEM_LABEL_CODE`` codes, 1 byte each."""
    return CodeColumn.of(labels, ITEM_LABELS).codes


def _resolve_level(level: str, ex: Example) -> str:
    resolved = ("pair" if ex.kind == "pair" else "item") if level == "auto" else level
    if resolved == "pair" and ex.kind != "pair":
        raise ConfigError("pair-level selection needs paired data; this data is unpaired "
                          "(KTO): use level 'item'", code="invalid_level")
    return resolved


def _unit_sides(ex: Example, level: str) -> list[str | None]:
    return [None] if level == "pair" else (
        ["chosen", "rejected"] if ex.kind == "pair" else ["completion"])


def key_ids(keys: np.ndarray, *, inverse: bool = True
            ) -> tuple[np.ndarray, np.ndarray | None]:
    """Distinct 16-byte keys (rows of a ``(n, 16)`` uint8 array): ``(first, inverse)``,
    the index of each distinct key's first row, in order of first appearance, and per
    row the number of its key in that order (None with ``inverse=False``). Sorts; no
    Python object per key, and no sorted copy of the keys (equal neighbours are compared
    a block at a time). Positions are 4-byte while they fit (20M keys: 0.5 GB of
    working arrays, not 1 GB); both answers are int64."""
    if not len(keys):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64) if inverse else None
    position = np.int32 if len(keys) < 2**31 else np.int64
    # any total order puts equal keys together: native 8-byte halves, no byte swapping
    halves = np.ascontiguousarray(keys).view(np.uint64).reshape(-1, 2)
    order = np.lexsort((halves[:, 1], halves[:, 0])).astype(position)
    new = np.ones(len(order), dtype=bool)
    for a in range(1, len(order), _KEY_BLOCK):
        b = min(a + _KEY_BLOCK, len(order))
        new[a:b] = (halves[order[a:b]] != halves[order[a - 1:b - 1]]).any(axis=1)
    first = order[new]  # lexsort is stable: the earliest row of each key
    by_first = np.argsort(first, kind="stable").astype(position)
    if not inverse:
        del order, new
        return first[by_first].astype(np.int64), None
    rank = np.empty(len(first), dtype=position)  # sorted key number -> appearance number
    rank[by_first] = np.arange(len(by_first), dtype=position)
    ids = np.cumsum(new, dtype=position)
    del new
    ids -= 1
    for a in range(0, len(ids), _KEY_BLOCK):  # ids become appearance numbers in place
        ids[a:a + _KEY_BLOCK] = rank[ids[a:a + _KEY_BLOCK]]
    del rank
    numbers = np.empty(len(keys), dtype=np.int64)
    numbers[order] = ids
    return first[by_first].astype(np.int64), numbers


_KEY_BLOCK = 1 << 20  # keys compared at a time (key_ids)
_ROW_ID_CHUNK = 1 << 16  # row ids gathered as Python strings before they become Arrow


def read_units(source: PreferenceFile, *, level: Level = "auto",
               template: str = "prompt_completion",
               keep_texts: bool = True) -> tuple[UnitTable, IngestReport]:
    """Stage 1: stream the file into units, their texts and numeric metadata.

    Columns are gathered in compact arrays as the file streams. ``keep_texts=False``
    hashes each text as it is read and keeps only its key (``UnitTable.text_keys``),
    for tables too large to hold their texts (``texts_of`` finds texts again by key).
    """
    if level not in ("auto", "pair", "item"):
        raise ConfigError("level must be 'auto', 'pair' or 'item'")
    id_chunks: list[pa.Array] = []  # row ids, as Arrow a chunk at a time
    ids: list[str] = []
    side_codes, rows, counts = array("b"), array("q"), array("B")
    label_codes, keys, prompts = array("b"), bytearray(), bytearray()
    texts: list[str] = []
    chosen_chars, rejected_chars = array("d"), array("d")
    numeric: dict[str, array] = {}
    non_numeric: set[str] = set()
    resolved: str | None = None
    paired = False
    last_row = -1
    n = 0
    for ex in source.iter_examples():
        resolved = resolved or _resolve_level(level, ex)
        if resolved == "pair" and ex.kind != "pair":
            _resolve_level("pair", ex)  # raises: a pair-level table met an unpaired row
        prompt_key = text_key(render_text(ex.prompt))
        if ex.kind == "pair":  # answer lengths: for length-aware evaluation and methods
            paired = True
            lengths = (len(render_text(ex.chosen or "")), len(render_text(ex.rejected or "")))
        else:
            lengths = (math.nan, math.nan)
        sides = _unit_sides(ex, resolved)
        if resolved == "item" and ex.row == last_row:
            # a ranked row's later pairs share its best answer: one item for it
            sides = [s for s in sides if s != "chosen"]
        last_row = ex.row
        for side in sides:
            _collect_numeric(ex.extra, n, numeric, non_numeric)
            n += 1
            ids.append(ex.row_id)
            if len(ids) == _ROW_ID_CHUNK:
                id_chunks.append(pa.array(ids, pa.string()))
                ids = []
            side_codes.append(_SIDE_CODE[side])
            rows.append(ex.row)
            prompts += prompt_key
            chosen_chars.append(lengths[0])
            rejected_chars.append(lengths[1])
            items = unit_texts(ex, side, template)
            counts.append(len(items))
            for label, text in items:
                label_codes.append(ITEM_LABEL_CODE[label])
                keys += text_key(text)
                if keep_texts:
                    texts.append(text)
    assert resolved is not None  # iter_examples raises on a file with no valid rows
    id_chunks.append(pa.array(ids, pa.string()))
    row_ids = concat_strings(id_chunks)
    del ids, id_chunks
    sides_np = np.frombuffer(side_codes, dtype=np.int8)
    order = pc.sort_indices(  # Arrow compares strings by UTF-8 bytes: code point order
        pa.table({"r": row_ids, "s": sides_np}),
        sort_keys=[("r", "ascending"), ("s", "ascending")]).to_numpy()
    row_ids = row_ids.take(pa.array(order))
    sides_np = sides_np[order]
    # per unit: each column sorted, then its unsorted buffer let go
    source_rows = _rows_at(rows, np.int64, order)
    del rows
    meta = {name: np.concatenate([np.frombuffer(values, dtype=np.float64),
                                  np.full(n - len(values), np.nan)])[order]
            for name, values in numeric.items() if name not in non_numeric}
    del numeric
    if paired:
        meta[CHOSEN_CHARS] = _rows_at(chosen_chars, np.float64, order)
        meta[REJECTED_CHARS] = _rows_at(rejected_chars, np.float64, order)
    del chosen_chars, rejected_chars
    # which units share a prompt (a numeric column, so methods can stratify by prompt)
    prompt_rows = _rows_at(prompts, np.uint8, order, width=16)
    del prompts
    meta[PROMPT_GROUP] = key_ids(prompt_rows)[1].astype(float)
    prompt_keys = [bytes(k).hex() for k in prompt_rows] if keep_texts else []
    del prompt_rows
    # per item: the items of each unit, in unit order
    per_unit = np.frombuffer(counts, dtype=np.uint8)
    k = int(per_unit[0])
    if k and (per_unit == k).all():  # k items a unit (the usual): rows of k keys
        text_keys = _rows_at(keys, np.uint8, order, width=16 * k).reshape(-1, 16)
        labels = _rows_at(label_codes, np.int8, order, width=k).reshape(-1)
        if keep_texts:
            texts = [texts[k * i + j] for i in order.tolist() for j in range(k)]
        groups = np.repeat(np.arange(n, dtype=np.int64), k)
    else:
        item_order, c = _item_order(per_unit, order)
        text_keys = _rows_at(keys, np.uint8, item_order, width=16)
        labels = _rows_at(label_codes, np.int8, item_order)
        if keep_texts:
            texts = [texts[i] for i in item_order]
        del item_order
        groups = np.repeat(np.arange(n, dtype=np.int64), c)
    table = UnitTable(
        level=resolved, template=template,
        row_ids=StrColumn(row_ids), sides=CodeColumn(sides_np, SIDES),
        source_rows=source_rows, texts=texts, text_labels=CodeColumn(labels, ITEM_LABELS),
        groups=groups, meta=meta, prompt_keys=prompt_keys, text_keys=text_keys,
    )
    return table, source.report


def _item_order(per_unit: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Units of ``per_unit[u]`` items each, gathered in file order, taken in ``order``:
    per item in the new order, its place in the old; and per unit its item count."""
    c = per_unit.astype(np.int64)[order]
    starts = (np.cumsum(per_unit, dtype=np.int64) - per_unit)[order]
    ends = np.cumsum(c)
    item_order = np.repeat(starts - (ends - c), c)  # each unit's first item, per item
    del starts, ends
    for a in range(0, len(item_order), _KEY_BLOCK):  # + the item's place in its unit
        item_order[a:a + _KEY_BLOCK] += np.arange(a, min(a + _KEY_BLOCK, len(item_order)))
    return item_order, c


def _rows_at(buffer: array | bytearray, dtype: type, index: np.ndarray, *,
             width: int = 0) -> np.ndarray:
    """The rows of a gathered ``buffer`` at ``index``, as a numpy array of their own."""
    values = np.frombuffer(buffer, dtype=dtype)
    return (values.reshape(-1, width) if width else values)[index]


def texts_of(source: PreferenceFile, keys: set[bytes], *, level: str,
             template: str) -> Iterator[str]:
    """The texts of a file whose keys are in ``keys``, each once, in file order (a
    streaming pass: how a table read without texts finds the ones it must embed).
    ``level`` as ``read_units`` takes it ("auto" included)."""
    wanted = set(keys)
    for ex in source.iter_examples():
        for side in _unit_sides(ex, _resolve_level(level, ex)):
            for _, text in unit_texts(ex, side, template):
                k = text_key(text)
                if k in wanted:
                    wanted.discard(k)
                    yield text
        if not wanted:
            return


def _collect_numeric(extra: dict[str, Any], idx: int, numeric: dict[str, array],
                     non_numeric: set[str]) -> None:
    """Unit ``idx``'s numeric extra values, each column one ``array("d")`` (NaN where a
    unit has none; a column shorter than the units ends in NaNs)."""
    for k, v in extra.items():
        if v is None or k in non_numeric:
            continue
        if isinstance(v, bool):
            non_numeric.add(k)
            continue
        if isinstance(v, int | float):
            _put(numeric, k, idx, float(v))
            continue
        if isinstance(v, str):  # CSV cells
            try:
                f = float(v)
            except ValueError:
                non_numeric.add(k)
                continue
            if math.isfinite(f):
                _put(numeric, k, idx, f)
                continue
        non_numeric.add(k)


def _put(numeric: dict[str, array], name: str, idx: int, value: float) -> None:
    col = numeric.setdefault(name, array("d"))
    if len(col) < idx:
        col.extend(array("d", [math.nan]) * (idx - len(col)))
    col.append(value)


def embed_units(table: UnitTable, encoder: Encoder, *, cache: EmbeddingCache | None = None,
                progress: StageProgress | None = None,
                lookup: EmbeddingLookup | None = None) -> tuple[np.ndarray, EmbedStats]:
    """Stage 2: one embedding per text (identical texts embedded once, cached ones not at
    all). ``lookup``: the cache lookup, when the caller has made it already."""
    cb = (lambda d, t: progress("embedding", d, t)) if progress else None
    if lookup is None:
        lookup = lookup_embeddings(table.texts, encoder.name, cache)
    return complete_embeddings(table.texts, lookup, encoder, cache=cache, progress=cb)


def score_units(table: UnitTable, method: SelectionMethod, X: np.ndarray | None, *,
                n_select: int | None = None,
                progress: StageProgress | None = None) -> SelectionMethod:
    """Stage 3: fit the method on the items, scoring every unit (``progress`` hears of
    long fits as they advance, as ``("scoring", done, total)``)."""
    cb = (lambda d, t: progress("scoring", d, t)) if progress else None
    return method.fit(X, groups=table.groups, meta=table.meta, n_units=len(table),
                      n_select=n_select, item_labels=np.asarray(table.text_labels),
                      progress=cb)


def select_units(method: SelectionMethod, budget: Budget) -> np.ndarray:
    """Stage 4: the budget applied to the fitted method's ranking (a mask per unit)."""
    return apply_budget(method.ranking_, budget)


def default_export_shapes(units: UnitTable) -> tuple[str, ...]:
    """The export shapes a selection can be written in, the natural one first: the input's
    own shape, except for single items picked from pairs, which only ``kto`` can hold."""
    if units.level == "item" and units.sides and units.sides[0] != "completion":
        return ("kto",)
    if units.level == "item":
        return ("input", "kto")
    return ("input", "kto", "trl", "openai")


class ScoreCache(ABC):
    """Where fitted method states (``SelectionMethod.state_dict()``) are kept, so another
    budget on the same selection does no scoring."""

    @abstractmethod
    def get(self, key: str) -> dict[str, np.ndarray] | None: ...

    @abstractmethod
    def put(self, key: str, state: dict[str, np.ndarray]) -> None: ...


class MemoryScoreCache(ScoreCache):
    """A process-local score cache."""

    def __init__(self) -> None:
        self._data: dict[str, dict[str, np.ndarray]] = {}

    def get(self, key: str) -> dict[str, np.ndarray] | None:
        return self._data.get(key)

    def put(self, key: str, state: dict[str, np.ndarray]) -> None:
        self._data[key] = dict(state)


@dataclass(slots=True)
class SelectionPlan:
    """Stage 0, resolved before any work: what to select from, how, and how much.

    Args:
        source: the data.
        method: an unfitted method (its parameters are part of the score cache key).
        budget: how much to keep.
        level: the units (see ``read_units``).
        template: the embedded texts (see ``read_units``).
        encoder: an encoder, or a factory called only when the method needs embeddings
            (``random`` and ``margin`` never load a model).
        encoder_key: what identifies the encoder's output before it is loaded (its
            settings); ``None``: the loaded encoder's ``name``.
        source_key: what identifies the data (e.g. a content hash plus read options);
            ``None`` turns the score cache off for this plan.
        keep_texts: ``False`` reads the units without their texts (only their keys), for
            selections scored elsewhere from the embedding store (too large to hold).
    """

    source: PreferenceFile
    method: SelectionMethod
    budget: Budget
    level: Level = "auto"
    template: str = "prompt_completion"
    encoder: Encoder | Callable[[], Encoder] | None = None
    encoder_key: Any = None
    source_key: str | None = None
    keep_texts: bool = True
    #: the reference model (``isa.embed.reference.ReferenceScorer``, or a factory) for a
    #: method that reads its log-probabilities; ``reference_key`` as ``encoder_key``
    reference: Encoder | Callable[[], Encoder] | None = None
    reference_key: Any = None

    def score_key(self) -> str | None:
        """The score cache key: everything that changes the fitted scores."""
        if self.source_key is None:
            return None
        parts = {
            "source": self.source_key, "method": self.method.name,
            "params": self.method.get_params(), "level": self.level,
            "template": self.template,
            "encoder": self.encoder_key if self.method.needs_embeddings else None,
            "reference": self.reference_key if self.method.needs_reference else None,
            # a greedy method's order past the budget differs by budget: key it too
            "budget": self.budget.to_dict() if self.method.uses_budget_hint else None,
        }
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()
                              ).hexdigest()[:32]


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
    score_cache_hit: bool = False
    #: the reference model's scoring, for a method that reads it
    reference_stats: EmbedStats | None = None
    reference_name: str | None = None

    @property
    def n_selected(self) -> int:
        return int(self.selected.sum())

    def selected_keys(self) -> set[tuple[str, str | None]]:
        at = np.flatnonzero(self.selected)
        rows = StrColumn(self.units.row_ids).take(at).arrow.to_pylist()
        sides = [SIDES[c] for c in self.units.side_codes[at].tolist()]
        return set(zip(rows, sides, strict=True))

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
            "score_cache_hit": self.score_cache_hit,
            **({"reference": {"model": self.reference_name,
                              **self.reference_stats.to_dict()}}
               if self.reference_stats else {}),
            "ingest": {k: v for k, v in self.ingest.to_dict().items() if k != "skipped"},
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
        }


class SelectionRun:
    """One selection carried through the stages. Each stage method runs once and keeps
    its output; ``run()`` chains them all.

    Args:
        plan: what to select.
        cache: embedding cache (texts embedded before are not embedded again).
        scores: score cache, used when the plan has a ``source_key``.
        progress: ``(stage, done, total)`` callback; it may raise to stop the run
            (the service raises when a job is cancelled).
    """

    def __init__(self, plan: SelectionPlan, *, cache: EmbeddingCache | None = None,
                 scores: ScoreCache | None = None,
                 progress: StageProgress | None = None) -> None:
        self.plan, self.cache, self.scores = plan, cache, scores
        self.progress = progress or (lambda stage, done, total: None)
        self.timings: dict[str, float] = {}
        self.table: UnitTable | None = None
        self.report: IngestReport | None = None
        self.X: np.ndarray | None = None
        self.embed_stats: EmbedStats | None = None
        self.score_cache_hit = False
        #: the method's scores are in place (restored, fitted here or adopted)
        self.scored = False
        self._encoder: Encoder | None = None
        self._lookup: EmbeddingLookup | None = None
        self.reference_stats: EmbedStats | None = None
        self._reference: Encoder | None = None

    def _timed(self, stage: str, t0: float) -> None:
        self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - t0

    @property
    def units(self) -> UnitTable:
        if self.table is None:
            self.read()
        assert self.table is not None
        return self.table

    def read(self) -> UnitTable:
        """Stream the file into units; fails early on a budget larger than the data."""
        t0 = time.perf_counter()
        self.progress("reading", 0, 0)
        self.table, self.report = read_units(self.plan.source, level=self.plan.level,
                                             template=self.plan.template,
                                             keep_texts=self.plan.keep_texts)
        self.plan.budget.size(len(self.table))
        self.progress("reading", self.report.rows_read, self.report.rows_read)
        self._timed("reading", t0)
        return self.table

    def use_units(self, table: UnitTable, report: IngestReport) -> UnitTable:
        """Units read before (by another task: ``isa.unit_files``) instead of reading."""
        self.plan.budget.size(len(table))
        self.table, self.report = table, report
        return table

    def restore_scores(self) -> bool:
        """Take the fitted scores from the score cache when it has them."""
        key = self.plan.score_key()
        state = self.scores.get(key) if self.scores is not None and key else None
        if state is not None:
            self.plan.method.load_state_dict(state)
            self.score_cache_hit = self.scored = True
        return self.score_cache_hit

    def adopt_scores(self, state: dict[str, np.ndarray], seconds: float = 0.0) -> None:
        """Scores computed elsewhere (sharded scoring's reduce step), as ``state_dict``
        returns them: load them and keep them in the score cache."""
        self.plan.method.load_state_dict(state)
        key = self.plan.score_key()
        if self.scores is not None and key:
            self.scores.put(key, state)
        self.scored = True
        self.timings["scoring"] = seconds

    @property
    def encoder(self) -> Encoder:
        """The plan's encoder, loaded on first use."""
        if self._encoder is None:
            enc = self.plan.encoder
            if enc is None:
                raise ConfigError(f"method {self.plan.method.name!r} needs an encoder")
            t0 = time.perf_counter()
            self._encoder = enc if isinstance(enc, Encoder) else enc()
            self._timed("loading_encoder", t0)
        return self._encoder

    def lookup(self) -> EmbeddingLookup:
        """Ask the embedding cache, once, for every distinct text."""
        if not self.plan.keep_texts:
            raise ConfigError("this plan reads its units without texts: embed through the "
                              "store (texts_of finds the missing ones)")
        if self._lookup is None:
            self._lookup = lookup_embeddings(self.units.texts, self.encoder.name, self.cache)
        return self._lookup

    def embed(self) -> np.ndarray:
        """Embed what the cache lacks, in this process."""
        t0 = time.perf_counter()
        self.X, self.embed_stats = embed_units(self.units, self.encoder, cache=self.cache,
                                               progress=self.progress, lookup=self.lookup())
        self._timed("embedding", t0)
        return self.X

    def score_reference(self) -> None:
        """The reference model's log-probabilities of every pair's answers, into the
        units' numeric columns (what the cache holds is not scored again)."""
        from .embed.reference import reference_columns

        enc = self.plan.reference
        if enc is None:
            raise ConfigError(f"method {self.plan.method.name!r} needs a reference model",
                              code="needs_reference")
        if self.units.level != "pair":
            raise ConfigError("reference log-probabilities are per pair: select at the pair "
                              "level", code="needs_pairs")
        t0 = time.perf_counter()
        self._reference = enc if isinstance(enc, Encoder) else enc()
        columns, self.reference_stats = reference_columns(
            self.plan.source, self.units.row_ids, self._reference, cache=self.cache,
            progress=lambda d, t: self.progress("reference", d, t))
        self.units.meta.update(columns)
        self._timed("reference", t0)

    def score(self) -> SelectionMethod:
        """Fit the method (unless its scores were restored) and cache its state."""
        method = self.plan.method
        if self.scored:
            return method
        if method.needs_embeddings and self.X is None:
            self.embed()
        if method.needs_reference and self.reference_stats is None:
            self.score_reference()
        t0 = time.perf_counter()
        n = len(self.units)
        self.progress("scoring", 0, n)
        score_units(self.units, method, self.X, n_select=self.plan.budget.size(n),
                    progress=self.progress)
        key = self.plan.score_key()
        if self.scores is not None and key:
            self.scores.put(key, method.state_dict())
        self.scored = True
        self.progress("scoring", n, n)
        self._timed("scoring", t0)
        return method

    def select(self) -> SelectionResult:
        """Apply the budget to the ranking."""
        t0 = time.perf_counter()
        self.progress("selecting", 0, len(self.units))
        selected = select_units(self.plan.method, self.plan.budget)
        self._timed("selecting", t0)
        assert self.report is not None
        return SelectionResult(self.units, self.plan.method, self.plan.budget, selected,
                               self.report, self.embed_stats,
                               self._encoder.name if self._encoder else None,
                               dict(self.timings), self.score_cache_hit,
                               self.reference_stats,
                               self._reference.name if self._reference else None)

    def run(self) -> SelectionResult:
        """read → (restore scores | embed → score) → select, in this process."""
        self.read()
        if not self.restore_scores():
            self.score()
        return self.select()


def run_selection(source: PreferenceFile, method: SelectionMethod, budget: Budget, *,
                  encoder: Encoder | Callable[[], Encoder] | None = None,
                  level: Level = "auto", template: str = "prompt_completion",
                  cache: EmbeddingCache | None = None,
                  progress: StageProgress | None = None,
                  reference: Encoder | Callable[[], Encoder] | None = None) -> SelectionResult:
    """read → embed → score → select in this process. ``encoder`` may be a factory, called
    only when the method needs embeddings (``random`` and ``margin`` never load a model);
    ``reference`` likewise, for a method that reads reference log-probabilities
    (``isa.embed.reference.ReferenceScorer``)."""
    plan = SelectionPlan(source, method, budget, level=level, template=template,
                         encoder=encoder, reference=reference)
    return SelectionRun(plan, cache=cache, progress=progress).run()
