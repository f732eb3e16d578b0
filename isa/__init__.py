"""``isa`` — choose small, high-value subsets of LLM preference data.

Plain Python over numpy; usable without the service (no Redis, Celery or FastAPI):

    from isa import Budget, PreferenceFile, make_encoder, make_method, run_selection
    from isa import write_scores, write_subset

    data = PreferenceFile("prefs.jsonl.gz", on_invalid="skip")
    result = run_selection(data, make_method("isa"), Budget(fraction=0.05),
                           encoder=make_encoder("sentence"))
    write_subset(data, result, "subset.jsonl")

Subpackages: ``ingest`` (read files), ``embed`` (encoders, embedding caches), ``select``
(methods, budgets), ``evaluate`` (probe, plateau curve), ``align`` (DPO/KTO with TRL);
modules ``pipeline`` (the stages), ``export`` (write subsets and scores), ``cli``.

Names load lazily, on first use: ``import isa`` stays cheap, and a process that needs one
piece (the service's gateway reads the method registry) never loads the encoders.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: every public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    "EmbeddingCache": ".embed.base", "EmbeddingLookup": ".embed.base",
    "EmbedStats": ".embed.base", "Encoder": ".embed.base",
    "MemoryEmbeddingCache": ".embed.base", "complete_embeddings": ".embed.base",
    "embed_texts": ".embed.base", "lookup_embeddings": ".embed.base",
    "CausalLMEncoder": ".embed.causal",
    "resolve_device": ".embed.device", "resolve_precision": ".embed.device",
    "ENCODERS": ".embed.factory", "make_encoder": ".embed.factory",
    "SentenceTransformerEncoder": ".embed.sentence",
    "TEMPLATES": ".embed.templates",
    "ConfigError": ".errors", "EncoderError": ".errors", "EngineError": ".errors",
    "IngestError": ".errors", "MethodInputError": ".errors",
    "EXPORT_SHAPES": ".export", "iter_subset": ".export", "write_records": ".export",
    "write_scores": ".export", "write_subset": ".export", "write_subsets": ".export",
    "IngestReport": ".ingest.dataset", "PreferenceFile": ".ingest.dataset",
    "FILE_FORMATS": ".ingest.readers",
    "Example": ".ingest.records",
    "SHAPES": ".ingest.shapes",
    "MemoryScoreCache": ".pipeline", "ScoreCache": ".pipeline", "SelectionPlan": ".pipeline",
    "SelectionResult": ".pipeline", "SelectionRun": ".pipeline", "UnitTable": ".pipeline",
    "default_export_shapes": ".pipeline", "read_units": ".pipeline",
    "run_selection": ".pipeline",
    "METHODS": ".select", "Budget": ".select", "SelectionMethod": ".select",
    "apply_budget": ".select", "describe_methods": ".select", "make_method": ".select",
    "isa_delta": ".select.isa",
}
__all__ = [
    "Budget", "CausalLMEncoder", "ConfigError", "ENCODERS", "EXPORT_SHAPES", "EmbedStats",
    "EmbeddingCache", "EmbeddingLookup", "Encoder", "EncoderError", "EngineError", "Example",
    "FILE_FORMATS", "IngestError", "IngestReport", "METHODS", "MemoryEmbeddingCache",
    "MemoryScoreCache", "MethodInputError", "PreferenceFile", "SHAPES", "ScoreCache",
    "SelectionMethod", "SelectionPlan", "SelectionResult", "SelectionRun",
    "SentenceTransformerEncoder", "TEMPLATES", "UnitTable", "apply_budget",
    "complete_embeddings", "default_export_shapes", "describe_methods", "embed_texts",
    "isa_delta", "iter_subset", "lookup_embeddings", "make_encoder", "make_method",
    "read_units", "resolve_device", "resolve_precision", "run_selection", "write_records",
    "write_scores", "write_subset", "write_subsets",
]

def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'isa' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


if TYPE_CHECKING:  # what type checkers and IDEs see
    from .embed.base import (
        EmbeddingCache,
        EmbeddingLookup,
        EmbedStats,
        Encoder,
        MemoryEmbeddingCache,
        complete_embeddings,
        embed_texts,
        lookup_embeddings,
    )
    from .embed.causal import CausalLMEncoder
    from .embed.device import resolve_device, resolve_precision
    from .embed.factory import ENCODERS, make_encoder
    from .embed.sentence import SentenceTransformerEncoder
    from .embed.templates import TEMPLATES
    from .errors import ConfigError, EncoderError, EngineError, IngestError, MethodInputError
    from .export import (
        EXPORT_SHAPES,
        iter_subset,
        write_records,
        write_scores,
        write_subset,
        write_subsets,
    )
    from .ingest.dataset import IngestReport, PreferenceFile
    from .ingest.readers import FILE_FORMATS
    from .ingest.records import Example
    from .ingest.shapes import SHAPES
    from .pipeline import (
        MemoryScoreCache,
        ScoreCache,
        SelectionPlan,
        SelectionResult,
        SelectionRun,
        UnitTable,
        default_export_shapes,
        read_units,
        run_selection,
    )
    from .select import (
        METHODS,
        Budget,
        SelectionMethod,
        apply_budget,
        describe_methods,
        make_method,
    )
    from .select.isa import isa_delta
