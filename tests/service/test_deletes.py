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
