"""Deleting a data set deletes what was derived from it: its jobs, their subsets, scores
and cached scores (unless ``keep_results=true``), and a worker still busy with it writes
nothing back."""

from __future__ import annotations

import time

import redis

from tests.conftest import HH_SAMPLE, TEST_REDIS_URL, read_rows, write_jsonl


def _ready(service, c, path):  # noqa: ANN001, ANN202
    ds = service.wait_dataset(c, service.upload(c, path)["id"])
    assert ds["status"] == "ready", ds
    return ds


def _namespace(service) -> list[str]:  # noqa: ANN001
    r = redis.Redis.from_url(TEST_REDIS_URL)
    return [k.decode() for k in r.scan_iter(f"{service.env['ISA_KEY_PREFIX']}*", count=1000)]


def _files_of(service, job_id: str) -> list:  # noqa: ANN001
    return [p for p in service.data_dir.rglob("*") if job_id in str(p)]


def test_deleting_a_data_set_deletes_its_jobs_results_and_cached_scores(service, tmp_path):
    c = service.client()
    ds = _ready(service, c, write_jsonl(tmp_path / "d.jsonl", read_rows(HH_SAMPLE, 40)))
    kept = _ready(service, c, write_jsonl(tmp_path / "k.jsonl", read_rows(HH_SAMPLE, 30)))
    body = {"type": "select", "method": "random", "budget": {"count": 5}}
    jobs = [service.wait_job(c, c.post("/v1/jobs", json={**body, "dataset_id": d["id"]}
                                       ).json()["id"]) for d in (ds, ds, kept)]
    assert all(j["status"] == "succeeded" for j in jobs), jobs
    mine, other = jobs[0]["id"], jobs[2]["id"]
    assert c.get(f"/v1/jobs/{mine}/result").status_code == 200
    assert _files_of(service, mine)
    cached = [k for k in _namespace(service) if ":scorecache:" in k]
    assert cached  # the random method's scores, cached for the next budget

    assert c.delete(f"/v1/datasets/{ds['id']}").status_code == 204
    for job in jobs[:2]:
        for url in (f"/v1/jobs/{job['id']}", f"/v1/jobs/{job['id']}/result",
                    f"/v1/jobs/{job['id']}/scores"):
            assert c.get(url).status_code == 404, url
        assert not _files_of(service, job["id"])
    listed = {j["id"] for j in c.get("/v1/jobs", params={"limit": 500}).json()["data"]}
    assert mine not in listed and other in listed
    # the other data set's job and its cached scores are untouched
    assert c.get(f"/v1/jobs/{other}/result").status_code == 200
    left = [k for k in _namespace(service) if ":scorecache:" in k]
    assert len(left) == len(cached) - 1
    assert not [k for k in _namespace(service) if mine in k or ds["id"] in k]

    # keep_results=true: the data set goes, its jobs and their files stay
    assert c.delete(f"/v1/datasets/{kept['id']}", params={"keep_results": "true"}
                    ).status_code == 204
    assert c.get(f"/v1/datasets/{kept['id']}").status_code == 404
    assert c.get(f"/v1/jobs/{other}/result").status_code == 200


def test_a_job_whose_data_set_is_deleted_mid_run_is_not_written_back(service, tmp_path):
    c = service.client()
    path = write_jsonl(tmp_path / "big.jsonl", read_rows(HH_SAMPLE, 600))
    job_id = service.select_while_embedding(c, path, max_seq_length=200)
    ds_id = c.get(f"/v1/jobs/{job_id}").json()["request"]["dataset_id"]
    assert c.delete(f"/v1/datasets/{ds_id}").status_code == 204
    assert c.get(f"/v1/jobs/{job_id}").status_code == 404
    # the worker notices at its next batch and stops; nothing of the job comes back
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(2)
        assert c.get(f"/v1/jobs/{job_id}").status_code == 404
        if not [k for k in _namespace(service) if f"job:{job_id}" in k]:
            break
    assert not [k for k in _namespace(service) if f"job:{job_id}" in k]
    # the worker is unharmed: the next job runs
    small = _ready(service, c, write_jsonl(tmp_path / "s.jsonl", read_rows(HH_SAMPLE, 20)))
    nxt = c.post("/v1/jobs", json={"type": "select", "dataset_id": small["id"],
                                   "method": "random", "budget": {"count": 3}}).json()
    assert service.wait_job(c, nxt["id"])["status"] == "succeeded"


def test_a_tenant_deletes_everything_it_owns_and_nothing_else(service, tmp_path):
    # a tenant of its own (key-erase): what it owns is exactly what this test made
    a, b = service.client("key-a"), service.client("key-erase")
    theirs = _ready(service, a, write_jsonl(tmp_path / "a.jsonl", read_rows(HH_SAMPLE, 20)))
    a_job = a.post("/v1/jobs", json={"type": "select", "dataset_id": theirs["id"],
                                     "method": "random", "budget": {"count": 2}}).json()["id"]
    mine = [_ready(service, b, write_jsonl(tmp_path / f"b{i}.jsonl", read_rows(HH_SAMPLE, 20)))
            for i in range(2)]
    b_jobs = [b.post("/v1/jobs", json={"type": "select", "dataset_id": d["id"],
                                       "method": "random", "budget": {"count": 2}}).json()["id"]
              for d in mine]
    for j in b_jobs:
        service.wait_job(b, j)
    # one job outlives its data set (kept on purpose): deleting everything takes it too
    assert b.delete(f"/v1/datasets/{mine[1]['id']}", params={"keep_results": "true"}
                    ).status_code == 204
    for bare in (b.delete("/v1/datasets"), b.delete("/v1/datasets", params={"all": "false"})):
        assert bare.status_code == 422 and "all" in bare.text, bare.text
    assert b.get("/v1/datasets").json()["count"] == 1  # nothing went
    r = b.delete("/v1/datasets", params={"all": "true"})
    assert r.status_code == 200 and r.json() == {"deleted_datasets": 1, "deleted_jobs": 2}
    assert b.get("/v1/datasets").json()["count"] == 0
    assert b.get("/v1/jobs").json()["count"] == 0
    for j in b_jobs:
        assert b.get(f"/v1/jobs/{j}").status_code == 404 and not _files_of(service, j)
    left = _namespace(service)
    assert not [k for k in left for x in (*b_jobs, *(d["id"] for d in mine)) if x in k]
    # the other tenant's data set and job are untouched
    assert a.get(f"/v1/datasets/{theirs['id']}").status_code == 200
    assert service.wait_job(a, a_job)["status"] == "succeeded"
