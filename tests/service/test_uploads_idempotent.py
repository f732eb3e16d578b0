"""Idempotency-Key on uploads and imports, against the real gateway, worker and Redis:
one data set per key and body, even for requests sent at once; a replay whatever the
data set's state and the tenant's quota; another body refused; the Python client's
retry after a lost answer makes one data set."""

from __future__ import annotations

import threading
import uuid

import httpx
import pytest
import redis

from isa.remote import Client
from tests.conftest import ALPACA_SAMPLE, HH_SAMPLE, TEST_REDIS_URL
from tests.service.conftest import IMPORT_BUCKET

KEY = "key-idem"


def _upload(c: httpx.Client, key: str | None, path=HH_SAMPLE, **form: str) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    with open(path, "rb") as fh:
        return c.post("/v1/datasets", files={"file": (path.name, fh)}, data=form,
                      headers=headers)


def _count(c: httpx.Client) -> int:
    return c.get("/v1/datasets", params={"limit": 1}).json()["count"]


def _code(r: httpx.Response) -> str:
    return r.json()["error"]["code"]


def _stored(service) -> set[str]:
    return {p.name for p in (service.data_dir / "artifacts" / "datasets").glob("*")}


def test_the_same_upload_twice_is_one_data_set_in_any_state(service):
    c, key = service.client(KEY), uuid.uuid4().hex
    before, files = _count(c), _stored(service)
    first = _upload(c, key)
    assert first.status_code == 201, first.text
    again = _upload(c, key)
    assert again.status_code == 200, again.text  # a replay, as jobs answer
    assert again.json()["id"] == first.json()["id"]
    ready = service.wait_dataset(c, first.json()["id"])
    assert ready["status"] == "ready"
    late = _upload(c, key)  # replays the data set as it is now
    assert (late.status_code, late.json()["id"], late.json()["status"]) == \
        (200, first.json()["id"], "ready")
    # another file, or the same file with other options, under the key: refused
    other_file = _upload(c, key, ALPACA_SAMPLE)
    other_options = _upload(c, key, shape="hh_raw")
    for r in (other_file, other_options):
        assert r.status_code == 422 and _code(r) == "idempotency_key_reused", r.text
        assert r.json()["error"]["details"]["dataset_id"] == first.json()["id"]
    assert _count(c) == before + 1
    # the replays' copies of the file were not kept
    assert _stored(service) - files == {first.json()["id"]}


def test_concurrent_identical_uploads_make_one_data_set(service):
    c, key = service.client(KEY), uuid.uuid4().hex
    before = _count(c)
    answers: list[httpx.Response] = []
    start = threading.Barrier(6)

    def send() -> None:
        with service.client(KEY) as own:
            start.wait()
            answers.append(_upload(own, key))

    threads = [threading.Thread(target=send) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(r.status_code for r in answers)
    assert statuses.count(201) == 1, [r.text for r in answers]
    assert set(statuses) <= {200, 201, 409}, [r.text for r in answers]
    made = {r.json()["id"] for r in answers if r.status_code in (200, 201)}
    assert len(made) == 1
    for r in answers:
        if r.status_code == 409:
            assert _code(r) == "idempotency_key_in_progress" and r.headers["Retry-After"]
    assert _count(c) == before + 1
    # the Python client retries "in progress": two at once both get the one data set
    key2, got = uuid.uuid4().hex, []
    start2 = threading.Barrier(2)

    def client_upload() -> None:
        with Client(service.base_url, api_key=KEY, max_backoff_s=1) as cl:
            start2.wait()
            got.append(cl.upload(HH_SAMPLE, wait=False, idempotency_key=key2).id)

    threads = [threading.Thread(target=client_upload) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 2 and got[0] == got[1]
    assert _count(c) == before + 2


def test_a_replay_answers_at_the_quota(service, s3):
    c, up_key, imp_key = service.client(KEY), uuid.uuid4().hex, uuid.uuid4().hex
    s3.client().put_object(Bucket=IMPORT_BUCKET, Key="allowed/idem.jsonl.gz",
                           Body=HH_SAMPLE.read_bytes())
    url = f"s3://{IMPORT_BUCKET}/allowed/idem.jsonl.gz"
    first = _upload(c, up_key)
    imported = c.post("/v1/datasets/import", json={"url": url},
                      headers={"Idempotency-Key": imp_key})
    assert first.status_code == 201 and imported.status_code == 201, imported.text
    # the tenant's stored bytes raised to the quota (20 GiB by default), then put back
    counter = f"{service.env['ISA_KEY_PREFIX']}tenant:tenant-idem:stored_bytes"
    r, extra = redis.Redis.from_url(TEST_REDIS_URL), 20 * 1024 ** 3
    r.incrby(counter, extra)
    try:
        # a new upload and a new import are refused …
        fresh = _upload(c, uuid.uuid4().hex)
        fresh_import = c.post("/v1/datasets/import", json={"url": url},
                              headers={"Idempotency-Key": uuid.uuid4().hex})
        for refused in (fresh, fresh_import):
            assert refused.status_code == 429, refused.text
            assert _code(refused) == "storage_quota_exceeded"
        # … a replay is not
        again = _upload(c, up_key)
        assert (again.status_code, again.json()["id"]) == (200, first.json()["id"]), \
            again.text
        again_import = c.post("/v1/datasets/import", json={"url": url},
                              headers={"Idempotency-Key": imp_key})
        assert (again_import.status_code, again_import.json()["id"]) == \
            (200, imported.json()["id"]), again_import.text
    finally:
        r.decrby(counter, extra)


def test_imports_take_a_key_and_share_the_scope_of_uploads(service, s3):
    c, key = service.client(KEY), uuid.uuid4().hex
    s3.client().put_object(Bucket=IMPORT_BUCKET, Key="allowed/idem2.jsonl.gz",
                           Body=HH_SAMPLE.read_bytes())
    url = f"s3://{IMPORT_BUCKET}/allowed/idem2.jsonl.gz"
    first = c.post("/v1/datasets/import", json={"url": url}, headers={"Idempotency-Key": key})
    again = c.post("/v1/datasets/import", json={"url": url}, headers={"Idempotency-Key": key})
    assert (first.status_code, again.status_code) == (201, 200), again.text
    assert again.json()["id"] == first.json()["id"]
    other = c.post("/v1/datasets/import", json={"url": url, "shape": "hh_raw"},
                   headers={"Idempotency-Key": key})
    as_upload = _upload(c, key)
    for r in (other, as_upload):
        assert r.status_code == 422 and _code(r) == "idempotency_key_reused", r.text
    # a job's key space is its own: the same key starts a job
    job = c.post("/v1/jobs", json={"type": "select", "dataset_id": first.json()["id"],
                                   "method": "random", "budget": {"count": 3}},
                 headers={"Idempotency-Key": key})
    assert job.status_code == 201, job.text


def test_deleting_a_data_set_frees_its_key(service):
    c, key = service.client(KEY), uuid.uuid4().hex
    first = _upload(c, key)
    assert first.status_code == 201
    assert c.delete(f"/v1/datasets/{first.json()['id']}").status_code == 204
    # documented: the record is gone, so the request makes a new one (not 409 for a day)
    again = _upload(c, key)
    assert again.status_code == 201 and again.json()["id"] != first.json()["id"]
    assert _upload(c, key).json()["id"] == again.json()["id"]


class _LoseFirstAnswer(httpx.HTTPTransport):
    """Sends each request to the real server; the first answer is then "lost" (the
    connection fails after the server did the work), as on a flaky network."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[str | None] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.method == "POST":
            self.sent.append(request.headers.get("Idempotency-Key"))
            if len(self.sent) == 1:
                response.read()
                response.close()
                raise httpx.ReadError("connection reset before the answer", request=request)
        return response


@pytest.mark.parametrize("kind", ["upload", "import"])
def test_the_clients_retry_after_a_lost_answer_makes_one_data_set(service, s3, kind):
    c = service.client(KEY)
    s3.client().put_object(Bucket=IMPORT_BUCKET, Key="allowed/lost.jsonl.gz",
                           Body=HH_SAMPLE.read_bytes())
    before = _count(c)
    transport = _LoseFirstAnswer()
    with Client(service.base_url, api_key=KEY, max_backoff_s=0.5,
                transport=transport) as cl:
        if kind == "upload":
            ds = cl.upload(HH_SAMPLE, wait=False)
        else:
            ds = cl.import_url(f"s3://{IMPORT_BUCKET}/allowed/lost.jsonl.gz", wait=False)
    assert len(transport.sent) == 2 and transport.sent[0] == transport.sent[1] is not None
    assert _count(c) == before + 1
    assert c.get(f"/v1/datasets/{ds.id}").status_code == 200


def test_stored_options_hold_no_nulls_and_job_claims_their_old_name(service, s3):
    """A rolling deploy: a worker of the version before validates DatasetOptions with a
    strict model that lacks newer options, so a record stores only the options that are
    set ("pairing": null would be refused there); reading back gives the defaults. A job
    claim keeps "job_id" for the gateways of the version before."""
    import json

    c = service.client(KEY)
    s3.client().put_object(Bucket=IMPORT_BUCKET, Key="allowed/opts.jsonl.gz",
                           Body=HH_SAMPLE.read_bytes())
    uploaded = _upload(c, None)
    ranked = _upload(c, None, shape="hh_raw", pairing="best_vs_each")
    imported = c.post("/v1/datasets/import",
                      json={"url": f"s3://{IMPORT_BUCKET}/allowed/opts.jsonl.gz"})
    r = redis.Redis.from_url(TEST_REDIS_URL, decode_responses=True)
    prefix = service.env["ISA_KEY_PREFIX"]
    stored = {}
    for answer in (uploaded, ranked, imported):
        assert answer.status_code == 201, answer.text
        raw = r.hget(f"{prefix}dataset:{answer.json()['id']}", "options")
        stored[answer.json()["id"]] = json.loads(raw)
        assert None not in stored[answer.json()["id"]].values(), raw
    assert stored[uploaded.json()["id"]] == stored[imported.json()["id"]] == {
        "on_invalid": "fail"}
    assert stored[ranked.json()["id"]] == {"shape": "hh_raw", "pairing": "best_vs_each",
                                           "on_invalid": "fail"}
    for answer in (uploaded, imported):  # read back: the defaults, and the file reads
        ds = service.wait_dataset(c, answer.json()["id"])
        assert ds["status"] == "ready" and ds["rows_valid"] == 600, ds
        assert ds["options"] == {"format": None, "shape": None, "column_map": None,
                                 "id_field": None, "on_invalid": "fail", "pairing": None}
    job_key = uuid.uuid4().hex
    job = c.post("/v1/jobs", json={"type": "select", "dataset_id": uploaded.json()["id"],
                                   "method": "random", "budget": {"count": 10}},
                 headers={"Idempotency-Key": job_key})
    assert job.status_code == 201, job.text
    claims = [json.loads(r.get(k)) for k in r.scan_iter(f"{prefix}idem:tenant-idem:*")]
    mine = [cl for cl in claims if cl["id"] == job.json()["id"]]
    assert len(mine) == 1 and mine[0]["job_id"] == job.json()["id"], claims
