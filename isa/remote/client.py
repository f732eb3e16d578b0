"""A typed client of the ISA service, sync (``Client``) and async (``AsyncClient``), on
httpx. Answers are the service's own models (``isa.remote.contract``); errors are one
exception class per error code (``isa.remote.errors``).

What it does for the caller:

* **retries** a request answered 429 or 503, or that could not connect, honouring the
  service's ``Retry-After`` (else exponential backoff with jitter), up to ``max_retries``;
* sends a fresh **Idempotency-Key** with every job, upload and import it creates, the
  same on each retry, so a retried create never makes two jobs or data sets;
* **streams** uploads (a path, a binary file object, a pandas DataFrame or a Hugging Face
  ``datasets.Dataset``) and downloads, with a progress bar when asked; a download whose
  connection drops resumes where it stopped (``Range`` + ``If-Range``);
* **waits** for a job with backoff and a progress bar, and raises ``JobFailedError`` when
  it fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import io
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import IO, Any

import httpx
from pydantic import PrivateAttr

from isa.files import atomic_output
from isa.progress import StageBar, StageProgress
from isa.remote import errors
from isa.remote.contract import (
    DatasetPublic,
    DatasetRows,
    DatasetsPublic,
    JobEvent,
    JobEvents,
    JobPublic,
    JobsPublic,
    WebhookPublic,
)

#: (stage, done, total) — the same callback shape as the library's ``progress=``
ProgressCallback = StageProgress
DEFAULT_URL = "http://localhost:8000"
TERMINAL = ("succeeded", "failed", "cancelled")
_RETRY_STATUSES = (429, 503)


class Job(JobPublic):
    """A job record, with the calls that act on it (``wait``, ``cancel``, ``download``,
    ``scores``) bound to the client that fetched it."""

    _client: Client | None = PrivateAttr(default=None)

    def wait(self, **kwargs: Any) -> Job:
        """``Client.wait`` on this job."""
        return self._bound().wait(self.id, **kwargs)

    def refresh(self) -> Job:
        return self._bound().job(self.id)

    def cancel(self) -> Job:
        return self._bound().cancel(self.id)

    def download(self, path: str | Path, **kwargs: Any) -> Path:
        return self._bound().download(self.id, path, **kwargs)

    def scores(self) -> Any:
        return self._bound().scores(self.id)

    def _bound(self) -> Client:
        if self._client is None:
            raise RuntimeError("this Job was not fetched by a Client")
        return self._client


class AsyncJob(JobPublic):
    """``Job`` for ``AsyncClient``: the same calls, awaited."""

    _client: AsyncClient | None = PrivateAttr(default=None)

    async def wait(self, **kwargs: Any) -> AsyncJob:
        return await self._bound().wait(self.id, **kwargs)

    async def refresh(self) -> AsyncJob:
        return await self._bound().job(self.id)

    async def cancel(self) -> AsyncJob:
        return await self._bound().cancel(self.id)

    async def download(self, path: str | Path, **kwargs: Any) -> Path:
        return await self._bound().download(self.id, path, **kwargs)

    async def scores(self) -> Any:
        return await self._bound().scores(self.id)

    def _bound(self) -> AsyncClient:
        if self._client is None:
            raise RuntimeError("this AsyncJob was not fetched by an AsyncClient")
        return self._client


# --- shared pieces (no I/O) ---------------------------------------------------------------

def _settings(base_url: str | None, api_key: str | None) -> tuple[str, dict[str, str]]:
    url = (base_url or os.environ.get("ISA_SERVER_URL") or DEFAULT_URL).rstrip("/")
    key = api_key if api_key is not None else os.environ.get("ISA_API_KEY")
    headers = {"User-Agent": "isa-remote/1"}
    if key:
        headers["X-API-Key"] = key
    return url, headers


def _raise_for(response: httpx.Response) -> None:
    """The error class of the answer's code, when it is an error."""
    if response.is_success:
        return
    try:
        info = response.json()["error"]
        code, message, details = info["code"], info["message"], info.get("details") or {}
    except Exception:  # not our error shape (a proxy in between, say)
        code, message, details = "unknown", response.text[:500] or response.reason_phrase, {}
    cls = errors.error_for_code(code, response.status_code)
    raise cls(message, status=response.status_code, code=code, details=details,
              retry_after=_retry_after(response))


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    with contextlib.suppress(TypeError, ValueError):  # an HTTP date
        when = email.utils.parsedate_to_datetime(value).timestamp()
        return max(0.0, when - time.time())
    return None


def _next_delay(attempt: int, retries: int, cap: float, response: httpx.Response | None,
                failure: httpx.TransportError | None) -> float | None:
    """After one try of a request: seconds to wait before the next, or None when
    ``response`` is the answer. Raises the error of a refusal, or of the last failure."""
    if failure is not None:
        if attempt == retries:
            raise errors.TransportError(f"{type(failure).__name__}: {failure}",
                                        code="unreachable") from failure
        return _backoff(attempt, None, cap)
    assert response is not None
    if not _retryable(response) or attempt == retries:
        _raise_for(response)
        return None
    return _backoff(attempt, _retry_after(response), cap)


def _retryable(response: httpx.Response) -> bool:
    """429, 503, or our own earlier try still being processed (it may have reached the
    server although its answer was lost: this retry then replays what it created)."""
    if response.status_code in _RETRY_STATUSES:
        return True
    if response.status_code != 409:
        return False
    try:
        return response.json()["error"]["code"] == "idempotency_key_in_progress"
    except Exception:
        return False


def _list_params(limit: int, after: str | None, **filters: str | None) -> dict[str, Any]:
    return {k: v for k, v in {"limit": limit, "after": after, **filters}.items()
            if v is not None}


def _backoff(attempt: int, retry_after: float | None, cap: float) -> float:
    if retry_after is not None:
        return min(retry_after, cap)
    return min(cap, 0.5 * 2 ** attempt) * (0.5 + random.random() / 2)


def _job_request(type_: str, fields: dict[str, Any]) -> dict[str, Any]:
    return {"type": type_, **{k: v for k, v in fields.items() if v is not None}}


def _budget(budget: str | float | int | dict[str, Any]) -> dict[str, Any]:
    """``"5%"``, ``0.05`` (a fraction), ``500`` (a count) or the wire form itself."""
    if isinstance(budget, dict):
        return budget
    if isinstance(budget, str):
        text = budget.strip()
        if text.endswith("%"):
            return {"fraction": float(text[:-1]) / 100}
        budget = float(text) if "." in text else int(text)
    if isinstance(budget, float) and budget < 1:
        return {"fraction": budget}
    return {"count": int(budget)}


def _upload_options(options: dict[str, Any]) -> dict[str, str]:
    import json

    out = {}
    for key, value in options.items():
        if value is None:
            continue
        out[key] = json.dumps(value) if isinstance(value, dict) else str(value)
    return out


@contextlib.contextmanager
def _upload_source(source: Any, filename: str | None) -> Iterator[tuple[str, IO[bytes], int]]:
    """(file name, binary stream, size) for a path, a file object, a DataFrame or a
    ``datasets.Dataset`` (the last two written to a temporary Parquet file first)."""
    if isinstance(source, str | Path):
        path = Path(source)
        with path.open("rb") as fh:
            yield filename or path.name, fh, path.stat().st_size
        return
    if hasattr(source, "read"):
        size = -1
        with contextlib.suppress(Exception):
            pos = source.tell()
            size = source.seek(0, io.SEEK_END) - pos
            source.seek(pos)
        yield filename or Path(getattr(source, "name", "upload.jsonl")).name, source, size
        return
    if hasattr(source, "to_parquet"):  # pandas.DataFrame, datasets.Dataset
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / (filename or "upload.parquet")
            if hasattr(source, "_data") and hasattr(source, "features"):  # datasets
                source.to_parquet(str(path))
            else:
                source.to_parquet(path, index=False)
            with path.open("rb") as fh:
                yield path.name, fh, path.stat().st_size
        return
    raise TypeError(f"cannot upload a {type(source).__name__}: give a path, a binary file "
                    "object, a pandas DataFrame or a datasets.Dataset")


class _ProgressReader:
    """A binary file wrapper that reports how far the upload has read it. It passes
    ``fileno``/``seek``/``tell`` through, so httpx still learns the length (and sends a
    Content-Length) and can rewind it for a retry."""

    def __init__(self, fh: IO[bytes], report: Callable[[int], None]) -> None:
        self.fh, self.report, self.done = fh, report, 0

    def read(self, size: int = -1) -> bytes:
        block = self.fh.read(size)
        self.done += len(block)
        self.report(self.done)
        return block

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        pos = self.fh.seek(offset, whence)
        self.done = pos
        return pos

    def tell(self) -> int:
        return self.fh.tell()

    def fileno(self) -> int:
        return self.fh.fileno()


def _bar(enabled: bool | ProgressCallback | None) -> StageBar:
    """A caller's callback, or a bar on stderr (``None``: when it is a terminal)."""
    if callable(enabled):
        return StageBar(False, forward=enabled)
    show = enabled if isinstance(enabled, bool) else sys.stderr.isatty()
    if not show:
        return StageBar(False)
    from rich.console import Console

    return StageBar(True, console=Console(stderr=True))  # stdout stays the caller's


def _job_finished(job: JobPublic, raise_on_failure: bool) -> bool:
    if job.status not in TERMINAL:
        return False
    if raise_on_failure and job.status != "succeeded":
        err = job.error
        raise errors.JobFailedError(
            f"job {job.id} {job.status}" + (f": {err.message}" if err else ""),
            job=job, status=0, code=err.code if err else job.status,
            details=err.details if err else {})
    return True


def _report_job(bar: StageBar, job: JobPublic) -> None:
    bar(job.stage or job.status, job.progress.done, job.progress.total)


# --- the sync client ----------------------------------------------------------------------

class Client:
    """The ISA service over HTTP.

    ``base_url`` defaults to ``$ISA_SERVER_URL`` (else ``http://localhost:8000``) and
    ``api_key`` to ``$ISA_API_KEY``. ``max_retries`` bounds the retries of one request
    (429, 503, connection errors); ``max_backoff_s`` caps one wait between them.
    """

    def __init__(self, base_url: str | None = None, *, api_key: str | None = None,
                 timeout: float = 60.0, max_retries: int = 5, max_backoff_s: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        url, headers = _settings(base_url, api_key)
        self.max_retries, self.max_backoff_s = max_retries, max_backoff_s
        self._http = httpx.Client(base_url=url, headers=headers, timeout=timeout,
                                  transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- transport --

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send, retrying 429/503 and connection failures; raise the code's class."""
        for attempt in range(self.max_retries + 1):
            try:
                response, failure = self._http.request(method, url, **kwargs), None
            except httpx.TransportError as exc:
                response, failure = None, exc
            delay = _next_delay(attempt, self.max_retries, self.max_backoff_s, response, failure)
            if delay is None:
                return response  # type: ignore[return-value]
            time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _job(self, data: dict[str, Any]) -> Job:
        job = Job.model_validate(data)
        job._client = self
        return job

    # -- data sets --

    def upload(self, source: Any, *, filename: str | None = None, format: str | None = None,
               shape: str | None = None, column_map: dict[str, str] | None = None,
               id_field: str | None = None, on_invalid: str = "fail", wait: bool = True,
               timeout: float | None = None, progress: bool | ProgressCallback | None = None,
               idempotency_key: str | None = None,
               pairing: str | None = None,
               metadata: dict[str, str] | None = None) -> DatasetPublic:
        """Upload a preference data set (streamed). With ``wait`` (default), return once
        the service has validated it; raise ``DatasetInvalidError`` if it failed. A fresh
        Idempotency-Key is sent unless one is given, the same on every retry."""
        fields = _upload_options({"format": format, "shape": shape, "column_map": column_map,
                                  "id_field": id_field, "on_invalid": on_invalid,
                                  "pairing": pairing, "metadata": metadata})
        key = idempotency_key or uuid.uuid4().hex
        with _bar(progress) as bar, _upload_source(source, filename) as (name, fh, size):
            reader = _ProgressReader(fh, lambda done: bar("upload", done, max(size, 0)))
            # a retry sends the file again: httpx seeks it back to 0 first
            response = self._request("POST", "/v1/datasets", data=fields,
                                     files={"file": (name, reader)},
                                     headers={"Idempotency-Key": key})
            dataset = DatasetPublic.model_validate(response.json())
            if wait:
                dataset = self.wait_dataset(dataset.id, timeout=timeout)
        return dataset

    def import_url(self, url: str, *, wait: bool = True, timeout: float | None = None,
                   idempotency_key: str | None = None, **options: Any) -> DatasetPublic:
        """A data set read by the service from ``url`` (under its allowed import
        locations); ``options`` as for ``upload`` (``format``, ``shape``, …)."""
        response = self._request("POST", "/v1/datasets/import",
                                 json=_import_body(url, options),
                                 headers={"Idempotency-Key": idempotency_key or
                                          uuid.uuid4().hex})
        dataset = DatasetPublic.model_validate(response.json())
        return self.wait_dataset(dataset.id, timeout=timeout) if wait else dataset

    def dataset(self, dataset_id: str) -> DatasetPublic:
        return DatasetPublic.model_validate(
            self._request("GET", f"/v1/datasets/{dataset_id}").json())

    def wait_dataset(self, dataset_id: str, *, timeout: float | None = None,
                     poll_s: float = 0.25) -> DatasetPublic:
        """Poll until validation ends; ``DatasetInvalidError`` when the file is refused."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            ds = self.dataset(dataset_id)
            if ds.status in ("ready", "invalid"):
                return _dataset_done(ds)
            if deadline is not None and time.monotonic() > deadline:
                raise errors.JobTimeoutError(f"data set {dataset_id} still {ds.status}",
                                             job=ds)
            time.sleep(poll_s)
            poll_s = min(poll_s * 1.5, 5.0)

    def datasets(self, *, status: str | None = None, filename: str | None = None,
                 metadata: tuple[str, str] | None = None,
                 page_size: int = 100) -> Iterator[DatasetPublic]:
        """Every data set of the tenant (of one ``status`` and/or whose file name contains
        ``filename``, any case; or carrying one ``metadata`` pair), newest first, fetched a
        page at a time by cursor: each one exactly once, even while others are created."""
        after = None
        while True:
            page = DatasetsPublic.model_validate(self._request(
                "GET", "/v1/datasets", params=_list_params(
                    page_size, after, status=status, filename=filename,
                    metadata=":".join(metadata) if metadata else None)).json())
            yield from page.data
            if (after := page.next_after) is None:
                return

    def rows(self, dataset_id: str, *, offset: int = 0, limit: int = 20) -> DatasetRows:
        return DatasetRows.model_validate(self._request(
            "GET", f"/v1/datasets/{dataset_id}/rows",
            params={"offset": offset, "limit": limit}).json())

    def delete_dataset(self, dataset_id: str) -> None:
        self._request("DELETE", f"/v1/datasets/{dataset_id}")

    # -- jobs --

    def create_job(self, request: dict[str, Any] | Any, *,
                   idempotency_key: str | None = None) -> Job:
        """Start a job from a request (a dict or one of the contract's job models). A fresh
        Idempotency-Key is sent unless one is given, the same on every retry."""
        body = request.model_dump(mode="json", exclude_none=True) \
            if hasattr(request, "model_dump") else request
        key = idempotency_key or uuid.uuid4().hex
        response = self._request("POST", "/v1/jobs", json=body,
                                 headers={"Idempotency-Key": key})
        return self._job(response.json())

    def select(self, dataset_id: str, *, budget: str | float | int | dict[str, Any],
               method: str = "isa", params: dict[str, Any] | None = None,
               **fields: Any) -> Job:
        """A select job (``budget``: ``"5%"``, a fraction below 1 or a row count); other
        request fields (``level``, ``template``, ``encoder``, ``seed``, ``queue``,
        ``callback_url``) as keywords."""
        return self.create_job(_job_request("select", {
            "dataset_id": dataset_id, "method": method, "params": params or {},
            "budget": _budget(budget), **fields}))

    def evaluate(self, dataset_id: str, *, budget: str | float | int | dict[str, Any],
                 method: str = "isa", params: dict[str, Any] | None = None,
                 **fields: Any) -> Job:
        return self.create_job(_job_request("evaluate", {
            "dataset_id": dataset_id, "method": method, "params": params or {},
            "budget": _budget(budget), **fields}))

    def curve(self, dataset_id: str, **fields: Any) -> Job:
        return self.create_job(_job_request("curve", {"dataset_id": dataset_id, **fields}))

    def align(self, *, dataset_id: str | None = None, select_job_id: str | None = None,
              **fields: Any) -> Job:
        return self.create_job(_job_request("align", {
            "dataset_id": dataset_id, "select_job_id": select_job_id, **fields}))

    def job(self, job_id: str) -> Job:
        return self._job(self._request("GET", f"/v1/jobs/{job_id}").json())

    def jobs(self, *, status: str | None = None, type: str | None = None,
             metadata: tuple[str, str] | None = None, page_size: int = 100) -> Iterator[Job]:
        """The tenant's jobs (of one ``status`` and/or ``type``, or carrying one
        ``metadata`` pair), newest first, a page at a time by cursor."""
        after = None
        while True:
            page = JobsPublic.model_validate(self._request(
                "GET", "/v1/jobs", params=_list_params(
                    page_size, after, status=status, type=type,
                    metadata=":".join(metadata) if metadata else None)).json())
            for item in page.data:
                yield self._job(item.model_dump())
            if (after := page.next_after) is None:
                return

    def job_events(self, job_id: str, *, after: str | None = None,
                   limit: int = 100) -> JobEvents:
        """One page of the job's events after the event id ``after``, oldest first."""
        params: dict[str, Any] = {"limit": limit} | ({"after": after} if after else {})
        return JobEvents.model_validate(self._request(
            "GET", f"/v1/jobs/{job_id}/events", params=params).json())

    def iter_job_events(self, job_id: str, *, follow: bool = False,
                        poll_s: float = 1.0) -> Iterator[JobEvent]:
        """Every event of the job, oldest first; with ``follow``, also those still to come,
        until the job ends (as ``isa remote events --follow`` shows them)."""
        after, ended_at = None, None
        while True:
            page = self.job_events(job_id, after=after, limit=1000)
            yield from page.data
            after = page.next_after
            if page.has_more:
                continue
            if not follow or any(e.type == "status" and e.data.get("status") in TERMINAL
                                 for e in page.data):
                return
            if ended_at is None and self.job(job_id).status in TERMINAL:
                ended_at = time.monotonic()
            # the end's own event is written just after the status: read until it shows
            # (a job whose log lost it, e.g. trimmed, ends the wait after 10 s)
            if ended_at is not None and time.monotonic() - ended_at > 10:
                return
            time.sleep(poll_s if ended_at is None else min(poll_s, 0.2))

    def cancel(self, job_id: str) -> Job:
        return self._job(self._request("POST", f"/v1/jobs/{job_id}/cancel").json())

    def wait(self, job_id: str, *, timeout: float | None = None, poll_s: float = 0.5,
             max_poll_s: float = 5.0, raise_on_failure: bool = True,
             progress: bool | ProgressCallback | None = None) -> Job:
        """Poll until the job ends (backoff from ``poll_s`` to ``max_poll_s``); raise
        ``JobFailedError`` if it failed or was cancelled (unless ``raise_on_failure`` is
        off) and ``JobTimeoutError`` after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with _bar(progress) as bar:
            while True:
                job = self.job(job_id)
                _report_job(bar, job)
                if _job_finished(job, raise_on_failure):
                    return job
                if deadline is not None and time.monotonic() > deadline:
                    raise errors.JobTimeoutError(f"job {job_id} still {job.status} after "
                                                 f"{timeout:g} s", job=job)
                time.sleep(poll_s)
                poll_s = min(poll_s * 1.5, max_poll_s)

    # -- results --

    def download(self, job_id: str, path: str | Path, *, format: str | None = None,
                 progress: bool | ProgressCallback | None = None) -> Path:
        """Stream a job's result (``format`` as ``GET /v1/jobs/{id}/result`` takes it;
        ``"scores"`` for the per-row scores) to ``path``, written atomically (a temporary
        beside it, renamed once whole). A connection that drops mid-way is resumed with
        ``Range`` from the bytes already written (``If-Range``: a file that changed
        meanwhile is fetched again whole); the final size is checked."""
        url, params = _result_url(job_id, format)
        path, part, failures = Path(path), _Partial(), 0
        with _bar(progress) as bar, atomic_output(path) as out:
            while True:
                try:
                    with self._http.stream("GET", url, params=params,
                                           headers=part.headers()) as response:
                        if _retryable(response) and failures < self.max_retries:
                            failures += 1
                            time.sleep(_backoff(failures, _retry_after(response),
                                                self.max_backoff_s))
                            continue
                        if part.restart_on(response):
                            part.reset(out)
                            continue
                        if not response.is_success:
                            response.read()
                            _raise_for(response)
                        part.begin(response, out)
                        # blocks as they arrive (not gathered to a size): a drop keeps
                        # every byte received before it
                        for block in response.iter_bytes():
                            part.write(out, block)
                            bar("download", part.have, part.total)
                    part.check()
                    return path
                except httpx.TransportError as exc:
                    failures = 0 if part.progressed() else failures + 1
                    if failures > self.max_retries:
                        raise part.gave_up(exc, failures) from exc
                    time.sleep(_backoff(failures, None, self.max_backoff_s))

    def result_bytes(self, job_id: str, *, format: str | None = None) -> bytes:
        url, params = _result_url(job_id, format)
        return self._request("GET", url, params=params).content

    def result_table(self, job_id: str) -> Any:
        """A select job's subset as a ``pyarrow.Table`` (its Parquet result)."""
        import pyarrow.parquet as pq

        return pq.read_table(io.BytesIO(self.result_bytes(job_id, format="parquet")))

    def report(self, job_id: str) -> dict[str, Any]:
        """An evaluate, curve or align job's JSON report."""
        return self._request("GET", f"/v1/jobs/{job_id}/result",
                             params={"format": "json"}).json()

    def scores(self, job_id: str) -> Any:
        """A select job's per-row scores as a pandas DataFrame."""
        import pyarrow.parquet as pq

        return pq.read_table(io.BytesIO(self.result_bytes(job_id, format="scores"))).to_pandas()

    # -- the tenant's webhook --

    def webhook(self) -> WebhookPublic:
        """The tenant's webhook: its URL, the event types it receives and the secret
        deliveries are signed with (verify them with any Standard Webhooks library)."""
        return WebhookPublic.model_validate(self._request("GET", "/v1/webhook").json())

    def set_webhook(self, url: str | None, *, events: list[str] | None = None
                    ) -> WebhookPublic:
        """Replace the tenant's registration: ``url`` (None removes it) and ``events``,
        the event types it receives (``isa.remote.contract.WEBHOOK_EVENTS``:
        ``job.started``, ``job.succeeded``, ``job.failed``, ``job.cancelled``,
        ``dataset.ready``, ``dataset.invalid``). ``events`` None: the job end events only
        (what a registration always received); another type raises
        ``UnknownEventTypeError``. A job's own ``callback_url`` gets that job's end
        whatever the tenant subscribes to."""
        return WebhookPublic.model_validate(self._request(
            "PUT", "/v1/webhook", json=_webhook_body(url, events)).json())

    def rotate_webhook_secret(self, *, overlap_s: float | None = None) -> WebhookPublic:
        """A new signing secret; the old one signs beside it for ``overlap_s`` seconds (the
        server's default, 24 h, when None)."""
        return WebhookPublic.model_validate(self._request(
            "POST", "/v1/webhook/rotate-secret", params=_overlap(overlap_s)).json())


def _webhook_body(url: str | None, events: list[str] | None) -> dict[str, Any]:
    # events left out when None: the server's default, and a server from before
    # subscriptions (which refuses the field) still takes the URL
    return {"url": url, **({"events": list(events)} if events is not None else {})}


def _overlap(overlap_s: float | None) -> dict[str, float]:
    return {} if overlap_s is None else {"overlap_s": overlap_s}


def _dataset_done(ds: DatasetPublic) -> DatasetPublic:
    if ds.status == "invalid":
        err = ds.error
        raise errors.DatasetInvalidError(
            f"data set {ds.id} is invalid" + (f": {err.message}" if err else ""),
            status=0, code=err.code if err else "dataset_invalid",
            details=err.details if err else {})
    return ds


def _result_url(job_id: str, format: str | None) -> tuple[str, dict[str, str]]:
    if format == "scores":
        return f"/v1/jobs/{job_id}/scores", {}
    return f"/v1/jobs/{job_id}/result", ({"format": format} if format else {})


def _import_body(url: str, options: dict[str, Any]) -> dict[str, Any]:
    return {"url": url, **{k: v for k, v in options.items() if v is not None}}


class _Partial:
    """A download's bytes so far, and how to ask for the rest after a dropped connection
    (``Range: bytes=<have>-``, ``If-Range: <ETag>``)."""

    def __init__(self) -> None:
        self.have, self.total, self.etag = 0, -1, None
        # the most bytes held at any failure, kept across restarts from byte 0: a try
        # counts as progress only past it (a connection cut at the same size each time,
        # with no ETag to resume by, makes none and ends after max_retries)
        self.best = 0

    def headers(self) -> dict[str, str]:
        if not self.have or not self.etag:
            return {}  # nothing yet, or a server that cannot resume: from the start
        return {"Range": f"bytes={self.have}-", "If-Range": self.etag}

    def restart_on(self, response: httpx.Response) -> bool:
        """A 416 to a resume (the file got shorter): start again from byte 0."""
        return response.status_code == 416 and self.have > 0

    def begin(self, response: httpx.Response, out: IO[bytes]) -> None:
        etag = response.headers.get("ETag")
        strong = etag if etag and not etag.startswith("W/") else None  # If-Range needs one
        if response.status_code == 206:
            start, total = _content_range(response.headers.get("Content-Range", ""))
            if start == self.have:
                self.total, self.etag = total, strong
                return
        # a whole file (a first try, a changed file, a server without ranges) or a part
        # that does not continue ours: write from the start
        self.reset(out)
        self.total, self.etag = int(response.headers.get("Content-Length", -1)), strong
        if response.status_code == 206:
            raise httpx.RemoteProtocolError("the server answered another range")

    def reset(self, out: IO[bytes]) -> None:
        out.seek(0)
        out.truncate()
        self.have = 0
        self.etag = None

    def write(self, out: IO[bytes], block: bytes) -> None:
        out.write(block)
        self.have += len(block)

    def progressed(self) -> bool:
        """At a failure: did this try get further than every try before it?"""
        moved, self.best = self.have > self.best, max(self.best, self.have)
        return moved

    def gave_up(self, exc: Exception, tries: int) -> errors.TransportError:
        why = f"{type(exc).__name__}: {exc}"
        if self.best:
            of = f" of {self.total:,}" if self.total >= 0 else ""
            why += (f" (gave up: {tries} tries in a row got no further than {self.best:,} "
                    f"bytes{of}" + (")" if self.etag else
                                    "; the server sent no ETag to resume by)"))
        return errors.TransportError(why, code="unreachable")

    def check(self) -> None:
        if self.total >= 0 and self.have != self.total:
            raise errors.TransportError(f"the download ended at {self.have:,} of "
                                        f"{self.total:,} bytes", code="incomplete_download")


def _content_range(value: str) -> tuple[int, int]:
    """(first byte, total size) of ``Content-Range: bytes a-b/size``; (-1, -1) if not."""
    with contextlib.suppress(ValueError, IndexError):
        span, total = value.removeprefix("bytes ").split("/")
        return int(span.split("-")[0]), int(total)
    return -1, -1


# --- the async client ---------------------------------------------------------------------

class AsyncClient:
    """``Client`` for asyncio: the same calls, awaited (iterators are async)."""

    def __init__(self, base_url: str | None = None, *, api_key: str | None = None,
                 timeout: float = 60.0, max_retries: int = 5, max_backoff_s: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        url, headers = _settings(base_url, api_key)
        self.max_retries, self.max_backoff_s = max_retries, max_backoff_s
        self._http = httpx.AsyncClient(base_url=url, headers=headers, timeout=timeout,
                                       transport=transport)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        for attempt in range(self.max_retries + 1):
            try:
                response, failure = await self._http.request(method, url, **kwargs), None
            except httpx.TransportError as exc:
                response, failure = None, exc
            delay = _next_delay(attempt, self.max_retries, self.max_backoff_s, response, failure)
            if delay is None:
                return response  # type: ignore[return-value]
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _job(self, data: dict[str, Any]) -> AsyncJob:
        job = AsyncJob.model_validate(data)
        job._client = self
        return job

    async def upload(self, source: Any, *, filename: str | None = None,
                     format: str | None = None, shape: str | None = None,
                     column_map: dict[str, str] | None = None, id_field: str | None = None,
                     on_invalid: str = "fail", wait: bool = True,
                     timeout: float | None = None,
                     idempotency_key: str | None = None,
                     pairing: str | None = None) -> DatasetPublic:
        fields = _upload_options({"format": format, "shape": shape, "column_map": column_map,
                                  "id_field": id_field, "on_invalid": on_invalid,
                                  "pairing": pairing})
        key = idempotency_key or uuid.uuid4().hex
        with _upload_source(source, filename) as (name, fh, _):
            # httpx's async multipart needs the bytes in memory or an async stream: read
            # the file in the worker thread pool, bounded by the service's upload limit
            content = await asyncio.to_thread(fh.read)
            response = await self._request("POST", "/v1/datasets", data=fields,
                                           files={"file": (name, content)},
                                           headers={"Idempotency-Key": key})
        dataset = DatasetPublic.model_validate(response.json())
        return await self.wait_dataset(dataset.id, timeout=timeout) if wait else dataset

    async def import_url(self, url: str, *, wait: bool = True, timeout: float | None = None,
                         idempotency_key: str | None = None,
                         **options: Any) -> DatasetPublic:
        response = await self._request("POST", "/v1/datasets/import",
                                       json=_import_body(url, options),
                                       headers={"Idempotency-Key": idempotency_key or
                                                uuid.uuid4().hex})
        dataset = DatasetPublic.model_validate(response.json())
        return await self.wait_dataset(dataset.id, timeout=timeout) if wait else dataset

    async def dataset(self, dataset_id: str) -> DatasetPublic:
        return DatasetPublic.model_validate(
            (await self._request("GET", f"/v1/datasets/{dataset_id}")).json())

    async def wait_dataset(self, dataset_id: str, *, timeout: float | None = None,
                           poll_s: float = 0.25) -> DatasetPublic:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            ds = await self.dataset(dataset_id)
            if ds.status in ("ready", "invalid"):
                return _dataset_done(ds)
            if deadline is not None and time.monotonic() > deadline:
                raise errors.JobTimeoutError(f"data set {dataset_id} still {ds.status}",
                                             job=ds)
            await asyncio.sleep(poll_s)
            poll_s = min(poll_s * 1.5, 5.0)

    async def datasets(self, *, status: str | None = None, filename: str | None = None,
                       page_size: int = 100) -> AsyncIterator[DatasetPublic]:
        after = None
        while True:
            page = DatasetsPublic.model_validate((await self._request(
                "GET", "/v1/datasets", params=_list_params(
                    page_size, after, status=status, filename=filename))).json())
            for item in page.data:
                yield item
            if (after := page.next_after) is None:
                return

    async def delete_dataset(self, dataset_id: str) -> None:
        await self._request("DELETE", f"/v1/datasets/{dataset_id}")

    async def create_job(self, request: dict[str, Any] | Any, *,
                         idempotency_key: str | None = None) -> AsyncJob:
        body = request.model_dump(mode="json", exclude_none=True) \
            if hasattr(request, "model_dump") else request
        key = idempotency_key or uuid.uuid4().hex
        response = await self._request("POST", "/v1/jobs", json=body,
                                       headers={"Idempotency-Key": key})
        return self._job(response.json())

    async def select(self, dataset_id: str, *, budget: str | float | int | dict[str, Any],
                     method: str = "isa", params: dict[str, Any] | None = None,
                     **fields: Any) -> AsyncJob:
        return await self.create_job(_job_request("select", {
            "dataset_id": dataset_id, "method": method, "params": params or {},
            "budget": _budget(budget), **fields}))

    async def evaluate(self, dataset_id: str, *, budget: str | float | int | dict[str, Any],
                       method: str = "isa", params: dict[str, Any] | None = None,
                       **fields: Any) -> AsyncJob:
        return await self.create_job(_job_request("evaluate", {
            "dataset_id": dataset_id, "method": method, "params": params or {},
            "budget": _budget(budget), **fields}))

    async def curve(self, dataset_id: str, **fields: Any) -> AsyncJob:
        return await self.create_job(_job_request("curve", {"dataset_id": dataset_id,
                                                            **fields}))

    async def align(self, *, dataset_id: str | None = None, select_job_id: str | None = None,
                    **fields: Any) -> AsyncJob:
        return await self.create_job(_job_request("align", {
            "dataset_id": dataset_id, "select_job_id": select_job_id, **fields}))

    async def job(self, job_id: str) -> AsyncJob:
        return self._job((await self._request("GET", f"/v1/jobs/{job_id}")).json())

    async def jobs(self, *, status: str | None = None, type: str | None = None,
                   page_size: int = 100) -> AsyncIterator[AsyncJob]:
        after = None
        while True:
            page = JobsPublic.model_validate((await self._request(
                "GET", "/v1/jobs", params=_list_params(page_size, after, status=status,
                                                       type=type))).json())
            for item in page.data:
                yield self._job(item.model_dump())
            if (after := page.next_after) is None:
                return

    async def cancel(self, job_id: str) -> AsyncJob:
        return self._job((await self._request("POST", f"/v1/jobs/{job_id}/cancel")).json())

    async def wait(self, job_id: str, *, timeout: float | None = None, poll_s: float = 0.5,
                   max_poll_s: float = 5.0, raise_on_failure: bool = True,
                   progress: ProgressCallback | None = None) -> AsyncJob:
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = _bar(progress or False)
        while True:
            job = await self.job(job_id)
            _report_job(bar, job)
            if _job_finished(job, raise_on_failure):
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise errors.JobTimeoutError(f"job {job_id} still {job.status} after "
                                             f"{timeout:g} s", job=job)
            await asyncio.sleep(poll_s)
            poll_s = min(poll_s * 1.5, max_poll_s)

    async def download(self, job_id: str, path: str | Path, *,
                       format: str | None = None) -> Path:
        """``Client.download``: atomic, resumed after a dropped connection."""
        url, params = _result_url(job_id, format)
        path, part, failures = Path(path), _Partial(), 0
        with atomic_output(path) as out:
            while True:
                try:
                    async with self._http.stream("GET", url, params=params,
                                                 headers=part.headers()) as response:
                        if _retryable(response) and failures < self.max_retries:
                            failures += 1
                            await asyncio.sleep(_backoff(failures, _retry_after(response),
                                                         self.max_backoff_s))
                            continue
                        if part.restart_on(response):
                            part.reset(out)
                            continue
                        if not response.is_success:
                            await response.aread()
                            _raise_for(response)
                        part.begin(response, out)
                        async for block in response.aiter_bytes():
                            part.write(out, block)
                    part.check()
                    return path
                except httpx.TransportError as exc:
                    failures = 0 if part.progressed() else failures + 1
                    if failures > self.max_retries:
                        raise part.gave_up(exc, failures) from exc
                    await asyncio.sleep(_backoff(failures, None, self.max_backoff_s))

    async def result_bytes(self, job_id: str, *, format: str | None = None) -> bytes:
        url, params = _result_url(job_id, format)
        return (await self._request("GET", url, params=params)).content

    async def report(self, job_id: str) -> dict[str, Any]:
        return (await self._request("GET", f"/v1/jobs/{job_id}/result",
                                    params={"format": "json"})).json()

    async def scores(self, job_id: str) -> Any:
        import pyarrow.parquet as pq

        data = await self.result_bytes(job_id, format="scores")
        return pq.read_table(io.BytesIO(data)).to_pandas()

    async def webhook(self) -> WebhookPublic:
        """As ``Client.webhook``."""
        return WebhookPublic.model_validate((await self._request("GET", "/v1/webhook")).json())

    async def set_webhook(self, url: str | None, *, events: list[str] | None = None
                          ) -> WebhookPublic:
        """As ``Client.set_webhook``: the whole registration, ``events`` None the job end
        events."""
        return WebhookPublic.model_validate((await self._request(
            "PUT", "/v1/webhook", json=_webhook_body(url, events))).json())

    async def rotate_webhook_secret(self, *, overlap_s: float | None = None
                                    ) -> WebhookPublic:
        """As ``Client.rotate_webhook_secret``."""
        return WebhookPublic.model_validate((await self._request(
            "POST", "/v1/webhook/rotate-secret", params=_overlap(overlap_s))).json())
