"""One exception hierarchy for the selection engine.

Every error carries a stable machine-readable ``code`` so the API edge can map it to
an HTTP status and the CLI can print it, plus the location it concerns (file, line or
row, field) when one is known.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class EngineError(Exception):
    """Base class of every error raised by the selection engine."""

    code: str = "engine_error"

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = {k: v for k, v in details.items() if v is not None}

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


@dataclass(frozen=True, slots=True)
class Location:
    """Where in an input a problem sits. ``line`` is 1-based (text formats),
    ``row`` is the 0-based ordinal of the record in the file."""

    file: str
    line: int | None = None
    row: int | None = None
    field: str | None = None

    def describe(self) -> str:
        parts = [self.file]
        if self.line is not None:
            parts.append(f"line {self.line}")
        elif self.row is not None:
            parts.append(f"row {self.row}")
        if self.field is not None:
            parts.append(f"field {self.field!r}")
        return ", ".join(parts)


class IngestError(EngineError):
    """The input cannot be read as a preference data set (file-level or, under
    ``on_invalid="fail"``, the first invalid row)."""

    code = "invalid_input"

    def __init__(self, message: str, *, code: str, location: Location, **details: Any) -> None:
        super().__init__(
            f"{location.describe()}: {message}",
            code=code,
            file=location.file,
            line=location.line,
            row=location.row,
            field=location.field,
            **details,
        )
        self.reason = message
        self.location = location


@dataclass(slots=True)
class RowProblem:
    """A row that failed validation (kept in the skip report under ``on_invalid="skip"``)."""

    code: str
    reason: str
    location: Location
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = {
            "code": self.code,
            "reason": self.reason,
            "file": self.location.file,
            "line": self.location.line,
            "row": self.location.row,
            "field": self.location.field,
        }
        return {k: v for k, v in d.items() if v is not None}

    def to_error(self) -> IngestError:
        return IngestError(self.reason, code=self.code, location=self.location)


class ConfigError(EngineError, ValueError):
    """A method, encoder, template or budget was asked for with invalid parameters.

    Also a ``ValueError``: pydantic models that embed library types (the service's job
    contract embeds ``Budget`` and ``AlignConfig``) then report it as a validation error.
    """

    code = "invalid_parameters"


class MethodInputError(EngineError):
    """A selection method cannot run on this data (e.g. ``margin`` without a margin column)."""

    code = "method_input_error"


class EncoderError(EngineError):
    """A model could not be found or loaded."""

    code = "encoder_unavailable"
