"""The selection engine: plain Python over numpy arrays, usable without Redis or Celery.

    from workers.engine import PreferenceFile, Budget, make_method, run_selection
    from workers.engine import SentenceTransformerEncoder, write_subset

    data = PreferenceFile("prefs.jsonl.gz", on_invalid="skip")
    result = run_selection(data, make_method("isa"), Budget(fraction=0.05),
                           encoder=SentenceTransformerEncoder())
    write_subset(data, result, "subset.jsonl")
"""

from .embed.base import EmbeddingCache, EmbedStats, Encoder, MemoryEmbeddingCache, embed_texts
from .embed.causal import CausalLMEncoder
from .embed.device import resolve_device, resolve_precision
from .embed.sentence import SentenceTransformerEncoder
from .embed.templates import TEMPLATES
from .errors import ConfigError, EncoderError, EngineError, IngestError, MethodInputError
from .export import EXPORT_SHAPES, iter_subset, write_records, write_scores, write_subset
from .ingest.dataset import IngestReport, PreferenceFile
from .ingest.readers import FILE_FORMATS
from .ingest.records import Example
from .ingest.shapes import SHAPES
from .pipeline import SelectionResult, UnitTable, read_units, run_selection
from .select import METHODS, Budget, SelectionMethod, apply_budget, describe_methods, make_method
from .select.isa import isa_delta

__all__ = [
    "Budget", "CausalLMEncoder", "ConfigError", "EXPORT_SHAPES", "EmbedStats", "EmbeddingCache",
    "Encoder", "EncoderError", "EngineError", "Example", "FILE_FORMATS", "IngestError",
    "IngestReport", "METHODS", "MemoryEmbeddingCache", "MethodInputError", "PreferenceFile",
    "SHAPES", "SelectionMethod", "SelectionResult", "SentenceTransformerEncoder", "TEMPLATES",
    "UnitTable", "apply_budget", "describe_methods", "embed_texts", "isa_delta", "iter_subset",
    "make_method", "read_units", "resolve_device", "resolve_precision", "run_selection",
    "write_records", "write_scores", "write_subset",
]
