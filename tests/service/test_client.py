"""The Python client (isa.remote) against the real running service: uploads of every
source kind, each job call, waiting with progress, downloads, errors as classes, retries
that honour Retry-After and never create a job twice."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from isa.remote import AsyncClient, Client, errors
from isa.remote.contract import SelectJob
from tests.conftest import HH_SAMPLE, ROOT

FAST_ENCODER = {"name": "sentence", "max_seq_length": 128}


@pytest.fixture
def client(service) -> Client:
    with Client(service.base_url, api_key="key-client", max_backoff_s=2) as c:
        yield c


def test_upload_select_wait_download_and_scores(client, tmp_path):
    seen_upload = []
    ds = client.upload(HH_SAMPLE, progress=lambda stage, done, total:
                       seen_upload.append((stage, done, total)))
    assert (ds.status, ds.shape, ds.rows_valid) == ("ready", "hh_raw", 600)
    size = HH_SAMPLE.stat().st_size
    assert seen_upload[-1] == ("upload", size, size)  # the progress reached the whole file

    stages = []
    job = client.select(ds.id, budget="5%", encoder=FAST_ENCODER)
    assert job.type == "select" and job.request["budget"] == {"fraction": 0.05, "count": None}
    job = job.wait(timeout=600, poll_s=0.2,
                   progress=lambda stage, done, total: stages.append(stage))
    assert job.status == "succeeded" and job.result["rows_selected"] == 30
    assert "embedding" in stages or "scoring" in stages  # progress came from the job

    out = job.download(tmp_path / "subset" / "trl.jsonl", format="trl")
    lines = out.read_text().splitlines()
    assert len(lines) == 30 and all('"chosen"' in x for x in lines)
    assert not list(out.parent.glob(".*.tmp"))  # written atomically

    scores = job.scores()
    assert isinstance(scores, pd.DataFrame) and len(scores) == 600
    assert scores["selected"].sum() == 30
    assert client.result_table(job.id).num_rows == 30
    # the typed request model is accepted as well as a dict
    again = client.create_job(SelectJob(type="select", dataset_id=ds.id, method="random",
                                        budget={"count": 7}, encoder=FAST_ENCODER))
    assert again.wait(timeout=600).result["rows_selected"] == 7


def test_upload_a_dataframe_and_a_hf_dataset(client):
    import datasets

    rows = _standard_rows(40)
    ds = client.upload(pd.DataFrame(rows), filename="prefs.parquet")
    assert (ds.status, ds.format, ds.rows_valid) == ("ready", "parquet", 40)
    hf = client.upload(datasets.Dataset.from_list(rows[:25]))
    assert (hf.status, hf.format, hf.rows_valid) == ("ready", "parquet", 25)
    # both data sets are listed, through pagination one record at a time
    ids = [d.id for d in client.datasets(page_size=1)]
    assert {ds.id, hf.id} <= set(ids) and len(ids) == len(set(ids))


def test_errors_are_classes_named_by_their_code(client, service, tmp_path):
    with pytest.raises(errors.DatasetNotFoundError) as exc:
        client.select("ds_nope", budget=10)
    assert exc.value.status == 404 and exc.value.code == "dataset_not_found"
    assert isinstance(exc.value, errors.NotFoundError)

    ds = client.upload(HH_SAMPLE)
    with pytest.raises(errors.UnknownMethodError):
        client.select(ds.id, budget="5%", method="no_such_method")
    with pytest.raises(errors.ValidationError) as exc:
        client.select(ds.id, budget="5%", level="sideways")
    assert exc.value.details["errors"][0]["field"] == "body.level"

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "chosen": "a"}\n')
    with pytest.raises(errors.DatasetInvalidError) as exc:
        client.upload(bad)
    assert exc.value.code == "unknown_shape" and "columns" in exc.value.message

    with Client(service.base_url, api_key=None) as anonymous, \
            pytest.raises(errors.MissingApiKeyError):
        anonymous.dataset(ds.id)
    # another tenant's id answers like a missing one
    with Client(service.base_url, api_key="key-other") as other, \
            pytest.raises(errors.DatasetNotFoundError):
        other.dataset(ds.id)


def test_every_code_the_gateway_answers_has_its_class():
    source = "\n".join(p.read_text() for p in (ROOT / "app").rglob("*.py"))
    codes = set(re.findall(r'ApiError\(\d+, "([a-z_]+)"', source))
    codes |= {f"{kind}_not_found" for kind in re.findall(r'not_found\("([a-z]+)"', source)}
    codes |= set(re.findall(r'"(upload_too_large|request_too_large)"', source))
    codes |= {"validation_error", "internal_error", "service_unavailable"}
    assert len(codes) > 15
    generic = {c for c in codes
               if errors.error_for_code(c, 400).__name__.removesuffix("Error")
               in ("BadRequest", "Service")}
    assert generic == set()


class _LoseFirstAnswer(httpx.HTTPTransport):
    """Sends every request to the real service, but the first ``POST /v1/jobs`` answer
    never reaches the client: it sees a 503 with Retry-After instead (a proxy timing
    out after the service has already created the job)."""

    def __init__(self) -> None:
        super().__init__()
        self.lost = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.method == "POST" and request.url.path == "/v1/jobs" and not self.lost:
            self.lost = 1
            response.read()
            return httpx.Response(503, headers={"Retry-After": "1"},
                                  json={"error": {"code": "service_unavailable",
                                                  "message": "lost", "details": {}}})
        return response


def test_a_retried_create_honours_retry_after_and_makes_one_job(service):
    transport = _LoseFirstAnswer()
    with Client(service.base_url, api_key="key-retry", transport=transport) as c:
        ds = c.upload(HH_SAMPLE)
        t = time.monotonic()
        job = c.select(ds.id, budget=5, method="random", encoder=FAST_ENCODER)
        assert time.monotonic() - t >= 1.0  # waited as Retry-After asked
        assert transport.lost == 1
        jobs = list(c.jobs())
        assert [j.id for j in jobs] == [job.id]  # the retry replayed, not a second job
        assert job.wait(timeout=600).status == "succeeded"


def test_retries_give_up_with_the_code_of_the_last_answer(service):
    def always_busy(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "0"}, json={"error": {
            "code": "job_quota_exceeded", "message": "busy", "details": {}}})

    with Client(service.base_url, api_key="k", max_retries=2,
                transport=httpx.MockTransport(always_busy)) as c, \
            pytest.raises(errors.JobQuotaExceededError) as exc:
        c.job("job_x")
    assert exc.value.retry_after == 0 and isinstance(exc.value, errors.RateLimitError)


def test_wait_raises_when_the_job_fails_or_is_cancelled(client):
    ds = client.upload(HH_SAMPLE)
    job = client.select(ds.id, budget="50%", method="isa",
                        encoder={"name": "sentence", "max_seq_length": 40})
    job.cancel()
    with pytest.raises(errors.JobFailedError) as exc:
        job.wait(timeout=300)
    assert exc.value.job.status == "cancelled"
    assert client.wait(job.id, raise_on_failure=False).status == "cancelled"


def test_the_async_client(service, tmp_path):
    async def main() -> tuple:
        async with AsyncClient(service.base_url, api_key="key-async") as c:
            ds = await c.upload(HH_SAMPLE)
            job = await (await c.select(ds.id, budget=12, method="random",
                                        encoder=FAST_ENCODER)).wait(timeout=600)
            path = await job.download(tmp_path / "s.jsonl")
            scores = await job.scores()
            listed = [j.id async for j in c.jobs(page_size=1)]
            return job, path, scores, listed

    job, path, scores, listed = asyncio.run(main())
    assert job.result["rows_selected"] == 12
    assert len(Path(path).read_text().splitlines()) == 12
    assert len(scores) == 600 and listed == [job.id]


def _standard_rows(n: int) -> list[dict]:
    """The first ``n`` HH rows as prompt/chosen/rejected (the library's own parse)."""
    from isa import PreferenceFile

    out = []
    for ex in PreferenceFile(HH_SAMPLE):
        out.append({"prompt": ex.prompt, "chosen": ex.chosen, "rejected": ex.rejected})
        if len(out) == n:
            return out
    return out
