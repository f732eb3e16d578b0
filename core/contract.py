"""The typed job contract as the service uses it. The models themselves live in
``isa.remote.contract`` (the Python client types its calls with the same classes); this
module adds what needs the service: reading a data set record's file under its limits."""

from __future__ import annotations

from typing import Any

from core.artifacts import SCORES, ArtifactStore
from core.settings import Settings, get_settings
from isa.ingest.dataset import PreferenceFile
from isa.remote.contract import (
    JOB_TYPES,
    AlignJob,
    CurveJob,
    DatasetOptions,
    EncoderSpec,
    EvaluateJob,
    JobPublic,
    JobRequest,
    MethodSpec,
    Progress,
    SelectJob,
    WaitingForWorker,
    check_methods,
    parse_job_request,
)

#: records since column_map runs {their_column: our_field} carry this; an older record's
#: map ran {our_field: their_column} and is read the other way round
COLUMN_MAP_VERSION = 2


def record_options(record: dict[str, Any]) -> DatasetOptions:
    """The read options of a data set record, as they read the file when it was
    validated: an old record's column map turned to today's direction, and the shape it
    was validated as pinned (a later version's detection must not read it otherwise)."""
    options = DatasetOptions.model_validate(record["options"])
    update: dict[str, Any] = {}
    if options.column_map and int(record.get("column_map_v") or 1) < COLUMN_MAP_VERSION:
        update["column_map"] = {v: k for k, v in options.column_map.items()}
    if options.shape is None and record.get("shape"):
        update["shape"] = record["shape"]
    return options.model_copy(update=update) if update else options


def open_dataset(record: dict[str, Any], artifacts: ArtifactStore,
                 settings: Settings) -> PreferenceFile:
    """A data set record's file, read with the options it was uploaded with, under the
    service's ingest limits."""
    return record_options(record).open(
        artifacts.local_path(record["artifact"]), max_rows=settings.max_rows,
        max_field_chars=settings.max_field_chars,
        max_decompression_ratio=settings.max_decompression_ratio)


def job_public(doc: dict[str, Any], waiting_since: float | None = None) -> JobPublic:
    """A job record as clients see it (the API's answer and the webhook's payload):
    result file names become links; ``waiting_since``: no live worker serves its queue
    since then (``core.presence``)."""
    result = doc.get("result")
    if result and "files" in result:
        jid = doc["id"]
        result = {**result, "files": {
            name: (f"/v1/jobs/{jid}/scores" if name == SCORES.name
                   else f"/v1/jobs/{jid}/result?format={name}") for name in result["files"]}}
    return JobPublic(
        id=doc["id"], type=doc["type"], status=doc["status"], stage=doc.get("stage"),
        progress=Progress(done=doc.get("progress_done", 0), total=doc.get("progress_total", 0),
                          loss=doc.get("latest_loss")),
        request=doc["request"], created_at=doc["created_at"],
        started_at=doc.get("started_at"), finished_at=doc.get("finished_at"),
        error=doc.get("error"), result=result, queue=doc.get("queue"),
        attempts=doc.get("attempts", 0), webhook=doc.get("webhook"),
        metadata=doc.get("metadata") or {},
        waiting_for_worker=None if waiting_since is None else WaitingForWorker(
            queue=doc.get("queue") or get_settings().default_queue, since=waiting_since))


__all__ = ["COLUMN_MAP_VERSION", "JOB_TYPES", "AlignJob", "CurveJob", "DatasetOptions",
           "EncoderSpec", "EvaluateJob", "JobRequest", "job_public", "MethodSpec", "SelectJob",
           "check_methods", "open_dataset", "parse_job_request", "record_options"]
