"""Response models, one family per resource. They are defined once in
``isa.remote.contract`` — the Python client parses answers with the same classes — and
what a client may *ask* for (the job request union, the upload options) lives there too."""

from __future__ import annotations

from isa.remote.contract import (
    DatasetPublic,
    DatasetRows,
    DatasetsPublic,
    ErrorInfo,
    ErrorResponse,
    JobEvents,
    JobPublic,
    JobsPublic,
    Progress,
)

__all__ = ["DatasetPublic", "DatasetRows", "DatasetsPublic", "ErrorInfo", "ErrorResponse",
           "JobEvents", "JobPublic", "JobsPublic", "Progress"]
