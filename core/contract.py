"""The typed job contract as the service uses it. The models themselves live in
``isa.remote.contract`` (the Python client types its calls with the same classes); this
module adds what needs the service: reading a data set record's file under its limits."""

from __future__ import annotations

from typing import Any

from core.artifacts import ArtifactStore
from core.settings import Settings
from isa.ingest.dataset import PreferenceFile
from isa.remote.contract import (
    JOB_TYPES,
    AlignJob,
    CurveJob,
    DatasetOptions,
    EncoderSpec,
    EvaluateJob,
    JobRequest,
    MethodSpec,
    SelectJob,
    check_methods,
    parse_job_request,
)


def open_dataset(record: dict[str, Any], artifacts: ArtifactStore,
                 settings: Settings) -> PreferenceFile:
    """A data set record's file, read with the options it was uploaded with, under the
    service's ingest limits."""
    return DatasetOptions.model_validate(record["options"]).open(
        artifacts.local_path(record["artifact"]), max_rows=settings.max_rows,
        max_field_chars=settings.max_field_chars,
        max_decompression_ratio=settings.max_decompression_ratio)


__all__ = ["JOB_TYPES", "AlignJob", "CurveJob", "DatasetOptions", "EncoderSpec",
           "EvaluateJob", "JobRequest", "MethodSpec", "SelectJob", "check_methods",
           "open_dataset", "parse_job_request"]
