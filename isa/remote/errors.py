"""Exceptions of the Python client: one class per error ``code`` the service answers,
grouped under one class per HTTP status, so a caller catches as narrowly as it needs:

    try:
        client.select(ds_id, budget="5%")
    except isa.remote.errors.JobQuotaExceededError:   # this code only
        ...
    except isa.remote.errors.RateLimitError:          # any 429
        ...
    except isa.remote.errors.ServiceError:            # anything the service refused
        ...

A code this client does not know yet (a newer server) raises its status's class, with the
code on ``.code``.
"""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """The service refused or failed a request: ``status`` (HTTP), ``code`` (stable),
    ``message`` (for people) and ``details`` (fields named by the code)."""

    def __init__(self, message: str, *, status: int = 0, code: str = "unknown",
                 details: dict[str, Any] | None = None, retry_after: float | None = None
                 ) -> None:
        super().__init__(f"{code}: {message}" if code != "unknown" else message)
        self.status, self.code, self.message = status, code, message
        self.details = details or {}
        #: seconds the service asked the caller to wait (a 429 or 503's Retry-After)
        self.retry_after = retry_after


class TransportError(ServiceError):
    """The service could not be reached (connection refused, timed out)."""


class BadRequestError(ServiceError):
    """400."""


class InvalidPaginationError(BadRequestError):
    """400: ``after`` is not a cursor the service gave, or came with ``offset``."""


class InvalidFilterError(BadRequestError):
    """400: listing filters that do not go together (``metadata`` takes no other)."""


class InvalidMultipartError(BadRequestError):
    """400: an upload's body is not a readable multipart/form-data form (no boundary, a
    part header too long, a body cut short)."""


class AuthenticationError(ServiceError):
    """401: no API key, or an unknown one."""


class PermissionDeniedError(ServiceError):
    """403."""


class NotFoundError(ServiceError):
    """404: no such record for this tenant (another tenant's ids answer the same)."""


class ConflictError(ServiceError):
    """409: the record is not in a state that allows the request."""


class PayloadTooLargeError(ServiceError):
    """413: over the service's upload or body limit."""


class InvalidRequestError(ServiceError):
    """422: the request names something that does not exist or breaks a rule."""


class RateLimitError(ServiceError):
    """429: a quota is reached; ``retry_after`` says when to try again."""


class ServerError(ServiceError):
    """5xx."""


class ServiceUnavailableError(ServerError):
    """503: the service's store is away for a moment; retried by the client."""


class JobFailedError(ServiceError):
    """``wait()`` saw the job end ``failed`` (or ``cancelled``); ``job`` is its record and
    ``code`` the job's own error code."""

    def __init__(self, message: str, *, job: Any, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.job = job


class JobTimeoutError(ServiceError):
    """``wait()`` gave up before the job ended; ``job`` is the last record seen."""

    def __init__(self, message: str, *, job: Any) -> None:
        super().__init__(message, code="wait_timeout")
        self.job = job


# --- one class per code ------------------------------------------------------------------

class MissingApiKeyError(AuthenticationError): ...
class InvalidApiKeyError(AuthenticationError): ...
class InvalidMetricsKeyError(AuthenticationError): ...
class ForbiddenError(PermissionDeniedError): ...
class DatasetNotFoundError(NotFoundError): ...
class JobNotFoundError(NotFoundError): ...
class DatasetNotReadyError(ConflictError): ...
class DatasetInvalidError(ConflictError): ...
class JobNotSucceededError(ConflictError): ...
class JobFinishedError(ConflictError): ...
class QueueUnavailableError(ConflictError): ...
class IdempotencyKeyInProgressError(ConflictError): ...
class UploadTooLargeError(PayloadTooLargeError): ...
class RequestTooLargeError(PayloadTooLargeError): ...
class ValidationError(InvalidRequestError): ...
class InvalidOptionsError(InvalidRequestError): ...
class IdempotencyKeyReusedError(InvalidRequestError): ...
class FormatUnavailableError(InvalidRequestError): ...
class UnknownModelError(InvalidRequestError): ...
class UnknownMethodError(InvalidRequestError): ...
class InvalidParametersError(InvalidRequestError): ...
class InvalidBudgetError(InvalidRequestError): ...
#: 422: a query parameter the route does not take (``details["field"]`` names it)
class UnknownParameterError(InvalidRequestError): ...
class InvalidCallbackUrlError(InvalidRequestError): ...
#: 422: a webhook event type the service does not send (``details["event"]`` names it)
class UnknownEventTypeError(InvalidRequestError): ...
class InvalidTrackingUriError(InvalidRequestError): ...
class JobQuotaExceededError(RateLimitError): ...
class StorageQuotaExceededError(RateLimitError): ...
class InternalError(ServerError): ...
#: 416: a download's Range starts past the file's end (``details["size"]`` is its size)
class RangeNotSatisfiableError(ServiceError): ...


_BY_STATUS: dict[int, type[ServiceError]] = {
    400: BadRequestError, 401: AuthenticationError, 403: PermissionDeniedError,
    404: NotFoundError, 409: ConflictError, 413: PayloadTooLargeError,
    416: RangeNotSatisfiableError,
    422: InvalidRequestError, 429: RateLimitError, 503: ServiceUnavailableError,
}


def _code_of(cls: type) -> str:
    name = cls.__name__.removesuffix("Error")
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


#: error code -> its class (``dataset_not_found`` -> ``DatasetNotFoundError``)
BY_CODE: dict[str, type[ServiceError]] = {
    _code_of(cls): cls for cls in (
        MissingApiKeyError, InvalidApiKeyError, InvalidMetricsKeyError, ForbiddenError,
        DatasetNotFoundError, JobNotFoundError, DatasetNotReadyError, DatasetInvalidError,
        JobNotSucceededError, JobFinishedError, QueueUnavailableError,
        IdempotencyKeyInProgressError, UploadTooLargeError, RequestTooLargeError,
        ValidationError, InvalidOptionsError, IdempotencyKeyReusedError,
        FormatUnavailableError, UnknownModelError, UnknownMethodError,
        InvalidParametersError, InvalidBudgetError, UnknownParameterError,
        InvalidCallbackUrlError, UnknownEventTypeError,
        InvalidTrackingUriError, InvalidPaginationError, InvalidMultipartError,
        InvalidFilterError,
        JobQuotaExceededError, StorageQuotaExceededError, InternalError,
        RangeNotSatisfiableError)}
# codes that end in "_error" themselves
BY_CODE.update({"validation_error": ValidationError, "internal_error": InternalError,
                "service_unavailable": ServiceUnavailableError})
del BY_CODE["validation"], BY_CODE["internal"]


def error_for_code(code: str, status: int) -> type[ServiceError]:
    """The most specific class for an error ``code`` answered with HTTP ``status``."""
    if code in BY_CODE:
        return BY_CODE[code]
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return ServerError if status >= 500 else ServiceError
