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


def test_the_live_service_keeps_its_openapi_contract(service, tmp_path):
    # One worker: with two, schemathesis builds hypothesis strategies in threads, and
    # hypothesis describes filter lambdas with ast.parse, which CPython 3.11 does not make
    # thread-safe ("SystemError: AST constructor recursion depth mismatch", cpython#106905):
    # a CI run failed on that error in the fuzzer itself, not on the service.
    st = Path(sys.executable).parent / "schemathesis"
    cmd = [str(st), "--config-file", str(HERE / "schemathesis.toml"), "run",
           f"{service.base_url}/openapi.json", "-H", "X-API-Key: key-fuzz",
           "--checks", "all", "--max-examples", os.environ.get("ISA_FUZZ_EXAMPLES", "25"),
           "--workers", "1", "--seed", os.environ.get("ISA_FUZZ_SEED", "1"), "--max-failures", "20"]
    out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    text = out.stdout + out.stderr
    generated = re.search(r"(\d+) generated", text)
    assert generated and int(generated.group(1)) > 500, text[-3000:]
    assert "Stateful" in text and "Fuzzing" in text  # the phases ran
    assert out.returncode == 0, text[-6000:]
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
