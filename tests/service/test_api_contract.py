"""Idempotency, cancel, tenant isolation, limits, invalid files, unknown ids."""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from tests.conftest import ALPACA_SAMPLE, ROOT, read_rows, varied_rows, write_jsonl
from tests.service.conftest import MAX_UPLOAD


def _ready_dataset(service, c, tmp_path: Path, n: int = 60, name: str = "d.jsonl") -> dict:
    rows = read_rows(ALPACA_SAMPLE, n) if n <= 500 else varied_rows(
        read_rows(ALPACA_SAMPLE, 500), -(-n // 500))[:n]
    path = write_jsonl(tmp_path / name, rows, gz=name.endswith(".gz"))
    ds = service.wait_dataset(c, service.upload(c, path)["id"])
    assert ds["status"] == "ready", ds
    return ds


def test_idempotency_replay_and_conflict(service, tmp_path):
    c = service.client()
    ds = _ready_dataset(service, c, tmp_path)
    body = {"type": "select", "dataset_id": ds["id"], "method": "random",
            "budget": {"count": 5}}
    first = c.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k-1"})
    again = c.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == 201 and again.status_code == 200
    assert first.json()["id"] == again.json()["id"]
    other = c.post("/v1/jobs", json={**body, "budget": {"count": 6}},
                   headers={"Idempotency-Key": "k-1"})
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    # keys are per tenant: tenant B may use the same key for its own job
    other_tenant = service.client("key-b").post("/v1/jobs", json=body,
                                                 headers={"Idempotency-Key": "k-1"})
    assert other_tenant.status_code == 404  # ... and cannot see tenant A's data set
    listed = c.get("/v1/jobs", params={"type": "select"}).json()
    assert [j["id"] for j in listed["data"]].count(first.json()["id"]) == 1
    # once the job ended and its data set is gone with keep_results, a replay still
    # answers the job; without it the job went too, and the key is free again
    assert service.wait_job(c, first.json()["id"])["status"] == "succeeded"
    assert c.delete(f"/v1/datasets/{ds['id']}", params={"keep_results": "true"}
                    ).status_code == 204
    late = c.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k-1"})
    assert (late.status_code, late.json()["id"]) == (200, first.json()["id"]), late.text
    fresh = c.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k-2"})
    assert fresh.status_code == 404 and fresh.json()["error"]["code"] == "dataset_not_found"
    ds2 = _ready_dataset(service, c, tmp_path, name="again.jsonl")
    body2 = {**body, "dataset_id": ds2["id"]}
    made = c.post("/v1/jobs", json=body2, headers={"Idempotency-Key": "k-3"}).json()["id"]
    assert c.delete(f"/v1/datasets/{ds2['id']}").status_code == 204
    gone = c.post("/v1/jobs", json=body2, headers={"Idempotency-Key": "k-3"})
    assert gone.status_code == 404 and c.get(f"/v1/jobs/{made}").status_code == 404


def test_listings_page_by_cursor_and_filter(service, tmp_path):
    c = service.client()
    ds = _ready_dataset(service, c, tmp_path, n=40)
    for n in range(5):
        assert c.post("/v1/jobs", json={"type": "select", "dataset_id": ds["id"],
                                        "method": "random", "budget": {"count": n + 1}}
                      ).status_code == 201
    whole = c.get("/v1/jobs", params={"limit": 500, "type": "select"}).json()
    assert whole["next_after"] is None and whole["count"] == len(whole["data"]) >= 5
    paged, after = [], None
    while True:
        page = c.get("/v1/jobs", params={"limit": 2, "type": "select",
                                         **({"after": after} if after else {})}).json()
        assert page["count"] == whole["count"] and len(page["data"]) <= 2
        assert page["has_more"] is (page["next_after"] is not None)
        paged += [j["id"] for j in page["data"]]
        if (after := page["next_after"]) is None:
            break
    assert paged == [j["id"] for j in whole["data"]]
    ready = c.get("/v1/datasets", params={"status": "ready"}).json()
    assert ds["id"] in [d["id"] for d in ready["data"]]
    assert all(d["status"] == "ready" for d in ready["data"])
    bad = c.get("/v1/jobs", params={"after": "not-a-cursor"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_pagination"
    both = c.get("/v1/jobs", params={"after": whole["data"][0]["id"], "offset": 3})
    assert both.status_code == 400 and both.json()["error"]["code"] == "invalid_pagination"
    assert c.get("/v1/jobs", params={"status": "bogus"}).status_code == 422
    assert whole["has_more"] is False


def test_a_query_parameter_a_route_does_not_take_is_refused(service):
    c = service.client()
    # a filter the listing does not have used to answer every job, as if it filtered
    r = c.get("/v1/jobs", params={"dataset_id": "ds_x", "limit": 5})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "unknown_parameter" and error["details"]["field"] == "dataset_id"
    assert "after, limit, metadata, offset, status, type" in error["message"]
    for url in ("/v1/datasets?statu=ready", "/v1/jobs/job_x/events?since=1",
                "/v1/methods?verbose=1", "/v1/webhook?x=1"):
        r = c.get(url)
        assert (r.status_code, r.json()["error"]["code"]) == (422, "unknown_parameter"), url
    # the parameters a route declares still pass, its dependencies' too
    assert c.get("/v1/jobs", params={"limit": 1, "status": "succeeded"}).status_code == 200
    assert c.get("/v1/datasets", params={"limit": 1, "offset": 0}).status_code == 200


def test_cancel_stops_a_running_job(service, tmp_path):
    c = service.client()
    ds = _ready_dataset(service, c, tmp_path, n=2000, name="big.jsonl.gz")
    job = c.post("/v1/jobs", json={"type": "select", "dataset_id": ds["id"], "method": "isa",
                                   "budget": {"fraction": 0.05},
                                   "encoder": {"name": "sentence", "max_seq_length": 256}}
                 ).json()
    deadline = time.monotonic() + 120
    while True:
        doc = c.get(f"/v1/jobs/{job['id']}").json()
        if doc["stage"] == "embedding" and doc["progress"]["done"] > 0:
            break
        assert time.monotonic() < deadline, doc
        time.sleep(0.2)
    r = c.post(f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] in ("cancelling", "cancelled")
    t0 = time.monotonic()
    doc = service.wait_job(c, job["id"], timeout=90)
    assert doc["status"] == "cancelled", doc
    assert time.monotonic() - t0 < 60
    stopped_at = doc["progress"]["done"]
    assert stopped_at < doc["progress"]["total"]
    time.sleep(3)  # no task goes on embedding for a cancelled job
    assert c.get(f"/v1/jobs/{job['id']}").json()["progress"]["done"] == stopped_at
    assert c.post(f"/v1/jobs/{job['id']}/cancel").json()["error"]["code"] == "job_finished"
    # the worker is unharmed: the next job runs
    small = _ready_dataset(service, c, tmp_path, n=20, name="small.jsonl")
    nxt = c.post("/v1/jobs", json={"type": "select", "dataset_id": small["id"],
                                   "method": "random", "budget": {"count": 3}}).json()
    assert service.wait_job(c, nxt["id"])["status"] == "succeeded"


def test_tenants_see_only_their_own_records(service, tmp_path):
    a, b = service.client("key-a"), service.client("key-b")
    ds = _ready_dataset(service, a, tmp_path)
    job = a.post("/v1/jobs", json={"type": "select", "dataset_id": ds["id"],
                                   "method": "random", "budget": {"count": 2}}).json()
    for url in (f"/v1/datasets/{ds['id']}", f"/v1/datasets/{ds['id']}/rows",
                f"/v1/jobs/{job['id']}", f"/v1/jobs/{job['id']}/result"):
        r = b.get(url)
        assert r.status_code == 404, url
        unknown = b.get(url.replace(ds["id"], "ds_nope").replace(job["id"], "job_nope"))
        assert unknown.status_code == 404
        assert r.json()["error"]["code"] == unknown.json()["error"]["code"]
    assert b.delete(f"/v1/datasets/{ds['id']}").status_code == 404
    assert b.post(f"/v1/jobs/{job['id']}/cancel").status_code == 404
    assert ds["id"] not in {d["id"] for d in b.get("/v1/datasets").json()["data"]}
    assert job["id"] not in {j["id"] for j in b.get("/v1/jobs").json()["data"]}
    assert a.get(f"/v1/datasets/{ds['id']}").status_code == 200


def test_auth_unknown_ids_and_error_shape(service):
    assert service.client(None).get("/v1/jobs").status_code == 401
    r = service.client("wrong").get("/v1/jobs")
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    r = service.client().get("/v1/jobs/job_doesnotexist")
    assert r.status_code == 404
    assert r.json() == {"error": {"code": "job_not_found",
                                  "message": "no job 'job_doesnotexist'",
                                  "details": {"id": "job_doesnotexist"}}}
    r = service.client().post("/v1/jobs", json={"type": "select", "budget": {"count": 0}})
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"
    assert service.client(None).get("/healthz").json() == {"status": "ok"}


def test_oversized_upload_is_refused_with_413(service, tmp_path):
    c = service.client()
    before = c.get("/v1/datasets").json()["count"]
    big = tmp_path / "big.jsonl"
    row = b'{"prompt": "p", "chosen": "' + b"x" * 1000 + b'", "rejected": "r"}\n'
    big.write_bytes(row * (MAX_UPLOAD // len(row) + 10))
    with open(big, "rb") as fh:
        r = c.post("/v1/datasets", files={"file": ("big.jsonl", fh)})
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "upload_too_large"
    assert f"{MAX_UPLOAD:,}" in r.json()["error"]["message"]
    assert c.get("/v1/datasets").json()["count"] == before
    leftovers = list((service.data_dir / "artifacts" / "datasets").rglob("*.tmp")) \
        if (service.data_dir / "artifacts" / "datasets").exists() else []
    assert leftovers == []


def test_invalid_files_end_invalid_with_line_numbers(service, tmp_path):
    c = service.client()
    good = read_rows(ALPACA_SAMPLE, 3)
    bad = tmp_path / "bad.jsonl"
    lines = [__import__("json").dumps(r) for r in good]
    lines.insert(2, '{"prompt": "p", "chosen": "c"')
    bad.write_text("\n".join(lines) + "\n")
    ds = service.wait_dataset(c, service.upload(c, bad)["id"])
    assert ds["status"] == "invalid"
    assert ds["error"]["code"] == "invalid_json" and ds["error"]["details"]["line"] == 3
    skipping = service.wait_dataset(c, service.upload(c, bad, on_invalid="skip")["id"])
    assert skipping["status"] == "ready" and skipping["rows_skipped"] == 1
    assert skipping["report"]["skipped"][0]["line"] == 3
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    ds = service.wait_dataset(c, service.upload(c, empty)["id"])
    assert ds["status"] == "invalid" and ds["error"]["code"] == "empty_file"
    job = c.post("/v1/jobs", json={"type": "select", "dataset_id": ds["id"],
                                   "method": "random", "budget": {"count": 1}})
    assert job.status_code == 409 and job.json()["error"]["code"] == "dataset_invalid"


def test_compose_file_parses():
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = doc["services"]
    assert {"redis", "api", "worker", "worker-gpu"} <= set(services)
    assert "noeviction" in " ".join(services["redis"]["command"])
    # the embedding index may evict, in a Redis apart from the one holding job state
    assert "allkeys-lru" in " ".join(services["cache"]["command"])
    env = doc["x-app-env"]
    assert env["ISA_CACHE_REDIS_URL"].split("//")[1].split(":")[0] == "cache"
    assert services["worker-gpu"]["profiles"] == ["gpu"]


def test_metadata_labels_jobs_and_data_sets_and_lists_them(service, tmp_path):
    import json
    import uuid

    from isa.remote import Client

    c = service.client()
    team = uuid.uuid4().hex[:8]  # a value no other test's records carry
    with open(ALPACA_SAMPLE, "rb") as fh:
        up = c.post("/v1/datasets", files={"file": (ALPACA_SAMPLE.name, fh)},
                    data={"metadata": json.dumps({"team": team, "stage": "pilot"})})
    assert up.status_code == 201, up.text
    assert up.json()["metadata"] == {"team": team, "stage": "pilot"}
    ds = service.wait_dataset(c, up.json()["id"])
    made = []
    for n in range(3):
        r = c.post("/v1/jobs", json={"type": "select", "dataset_id": ds["id"],
                                     "method": "random", "budget": {"count": n + 1},
                                     "metadata": {"team": team, "run": str(n)}})
        assert r.status_code == 201, r.text
        assert r.json()["metadata"] == {"team": team, "run": str(n)}
        made.append(r.json()["id"])
    # listed by one pair: exactly those, newest first, paged like any listing
    listed = c.get("/v1/jobs", params={"metadata": f"team:{team}", "limit": 2}).json()
    assert listed["count"] == 3 and listed["has_more"] is True
    rest = c.get("/v1/jobs", params={"metadata": f"team:{team}",
                                     "after": listed["next_after"]}).json()
    assert [j["id"] for j in listed["data"] + rest["data"]] == made[::-1]
    assert made[1] in [j["id"] for j in c.get("/v1/jobs", params={"metadata": "run:1"}
                                             ).json()["data"]]
    assert c.get("/v1/datasets", params={"metadata": f"team:{team}"}).json()["data"][0][
        "id"] == ds["id"]
    assert c.get("/v1/datasets", params={"metadata": f"team:{team}x"}).json()["count"] == 0
    # the client asks the same
    with Client(service.base_url, api_key="key-a") as client:
        assert [j.id for j in client.jobs(metadata=("team", team))] == made[::-1]
        assert [d.id for d in client.datasets(metadata=("stage", "pilot"))][:1] == [ds["id"]]
    # bounds: 16 pairs, 64-character keys without ':', 512-character values; one filter
    for bad in ({f"k{i}": "v" for i in range(17)}, {"a:b": "v"}, {"k" * 65: "v"},
                {"k": "v" * 513}):
        r = c.post("/v1/jobs", json={"type": "select", "dataset_id": ds["id"],
                                     "method": "random", "budget": {"count": 1},
                                     "metadata": bad})
        assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error", bad
    r = c.post("/v1/datasets", files={"file": ("x.jsonl", b'{"prompt": "p"}\n')},
               data={"metadata": json.dumps({"k": 5})})
    assert r.status_code == 422 and r.json()["error"]["details"]["errors"][0][
        "field"].startswith("body.metadata")
    both = c.get("/v1/jobs", params={"metadata": f"team:{team}", "status": "queued"})
    assert both.status_code == 400 and both.json()["error"]["code"] == "invalid_filter"
    # deleting the labelled data set takes it out of its label's listing
    assert c.delete(f"/v1/datasets/{ds['id']}").status_code in (200, 202, 204)
    assert c.get("/v1/datasets", params={"metadata": f"team:{team}"}).json()["count"] == 0
