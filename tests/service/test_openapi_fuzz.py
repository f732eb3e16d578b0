"""The OpenAPI document is a contract the service keeps: schemathesis generates requests
from /openapi.json (examples, coverage, fuzzing and stateful sequences linking the ids
one answer returns to the next request) and runs every check against the live service:
no server error, no status code or content type the document does not declare, no
response that breaks its schema, Allow headers that name every method of a path, auth
that is not ignored. The one narrowing is in schemathesis.toml beside this file."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
#: GET routes of a job that must answer 200 during the run (with the real job's id)
JOB_ROUTES = ("/v1/jobs/{job_id}", "/v1/jobs/{job_id}/events", "/v1/jobs/{job_id}/scores",
              "/v1/jobs/{job_id}/result", "/v1/datasets/{dataset_id}",
              "/v1/datasets/{dataset_id}/rows")


def _real_ids_config(service, tmp_path: Path) -> tuple[Path, str, str]:
    """schemathesis.toml plus a ready data set and a succeeded select job of the fuzz
    tenant, named by every GET with a job_id or dataset_id: the job routes (result
    formats, scores, events, rows) answer from real records, not only 404."""
    from tests.conftest import HH_SAMPLE, read_rows, write_jsonl

    c = service.client("key-fuzz")
    ds = service.wait_dataset(c, service.upload(
        c, write_jsonl(tmp_path / "fuzz.jsonl", read_rows(HH_SAMPLE, 40)))["id"])
    assert ds["status"] == "ready", ds
    r = c.post("/v1/jobs", json={"type": "select", "dataset_id": ds["id"],
                                 "method": "random", "budget": {"count": 5}})
    assert r.status_code == 201, r.text
    job = service.wait_job(c, r.json()["id"])
    assert job["status"] == "succeeded", job
    job_id, dataset_id = job["id"], ds["id"]
    config = tmp_path / "schemathesis.toml"
    # every GET naming a job or a data set names these (the unknown-id 404s are tested in
    # test_api_contract.py); writes keep generated ids, so nothing deletes them mid-run
    config.write_text((HERE / "schemathesis.toml").read_text() + "\n".join([
        "", "[[operations]]", 'include-method = "GET"',
        f'parameters = {{ "path.job_id" = "{job_id}", "path.dataset_id" = "{dataset_id}" }}',
        ""]))
    return config, dataset_id, job_id


def _answered(service, route: str) -> dict[str, float]:
    """Requests the gateway answered on ``route`` (a route template), by status."""
    text = service.client("key-fuzz").get("/metrics").text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("isa_http_requests_total{") and f'route="{route}"' in line:
            status = re.search(r'status="(\d+)"', line).group(1)
            out[status] = out.get(status, 0) + float(line.rsplit(" ", 1)[1])
    return out


def _schemathesis(service, config: Path, tmp_path: Path, *extra: str) -> tuple[int, str]:
    # One worker: with two, schemathesis builds hypothesis strategies in threads, and
    # hypothesis describes filter lambdas with ast.parse, which CPython 3.11 does not make
    # thread-safe ("SystemError: AST constructor recursion depth mismatch", cpython#106905):
    # a CI run failed on that error in the fuzzer itself, not on the service.
    st = Path(sys.executable).parent / "schemathesis"
    cmd = [str(st), "--config-file", str(config), "run",
           f"{service.base_url}/openapi.json", "-H", "X-API-Key: key-fuzz",
           "--checks", "all", "--max-examples", os.environ.get("ISA_FUZZ_EXAMPLES", "25"),
           "--workers", "1", "--seed", os.environ.get("ISA_FUZZ_SEED", "1"),
           "--max-failures", "20", *extra]
    out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    return out.returncode, out.stdout + out.stderr


def test_the_live_service_keeps_its_openapi_contract(service, tmp_path):
    # first the reads of a real data set and job (a separate run: the full one deletes
    # every data set of the tenant with DELETE /v1/datasets?all=true, in its own order)
    config, _, _ = _real_ids_config(service, tmp_path)
    before = {r: _answered(service, r) for r in JOB_ROUTES}
    code, text = _schemathesis(service, config, tmp_path, "--include-method", "GET")
    assert code == 0, text[-6000:]
    for route in JOB_ROUTES:  # answered from the real records, not only 404
        after = _answered(service, route)
        assert after.get("200", 0) - before[route].get("200", 0) > 0, (route, after)
    # then everything, with generated ids and stateful links
    code, text = _schemathesis(service, HERE / "schemathesis.toml", tmp_path)
    generated = re.search(r"(\d+) generated", text)
    assert generated and int(generated.group(1)) > 500, text[-3000:]
    assert "Stateful" in text and "Fuzzing" in text  # the phases ran
    assert code == 0, text[-6000:]
    print(f"schemathesis: {generated.group(0)} requests, 0 failures")


def test_allow_names_every_method_of_a_path_and_metrics_says_its_type(service):
    c = service.client("key-fuzz")
    r = c.options("/v1/datasets/ds_x")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    assert r.headers["allow"] == "DELETE, GET, HEAD"  # two routes share the path
    spec = c.get("/openapi.json").json()
    m = c.get("/metrics")
    assert m.status_code == 200
    declared = spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert m.headers["content-type"] in declared
    # every operation declares the error statuses it answers, with the error body
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            if path.startswith("/v1/"):
                assert {"401", "422", "503"} <= set(op["responses"]), (method, path)
                assert op["responses"]["401"]["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/ErrorResponse"}
