"""/docs and /redoc in a real headless Chromium with every request off this machine
refused, as in a closed network: both render the service's operations from scripts
the gateway serves itself (they were a CDN's, and the page stayed blank)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import TEST_REDIS_URL
from tests.service.harness import free_port, wait_http
from tests.service.test_dashboard import browser  # noqa: F401 - the Chromium fixture


@pytest.fixture(scope="module")
def gateway(tmp_path_factory) -> Iterator[str]:
    """The real gateway alone (the docs need no worker)."""
    folder = tmp_path_factory.mktemp("docs")
    log, port = folder / "api.log", free_port()
    env = {**os.environ, "ISA_REDIS_URL": TEST_REDIS_URL, "ISA_DATA_DIR": str(folder),
           "ISA_KEY_PREFIX": f"isa-test-{uuid.uuid4().hex[:8]}:"}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "app.main:app", "--host",
                                 "127.0.0.1", "--port", str(port)], env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/healthz", [proc], log.read_text, timeout=60)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def offline_page(browser, base_url: str):  # noqa: F811
    """A page whose requests to any host but this server are aborted (and recorded)."""
    context = browser.new_context(base_url=base_url)
    page = context.new_page()
    refused: list[tuple[str, str]] = []  # (resource type, URL)

    def only_local(route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            refused.append((route.request.resource_type, route.request.url))
            route.abort()

    page.route("**/*", only_local)
    return context, page, refused


def test_swagger_ui_renders_the_operations_offline(browser, gateway):  # noqa: F811
    from playwright.sync_api import expect

    op = httpx.get(f"{gateway}/openapi.json").json()["paths"]["/v1/datasets"]["post"]
    context, page, refused = offline_page(browser, gateway)
    try:
        page.goto("/docs")
        block = page.locator(f"#operations-{op['tags'][0]}-{op['operationId']}")
        expect(block).to_be_visible(timeout=20_000)
        assert "/v1/datasets" in block.inner_text()
        assert page.locator(".opblock").count() >= 10  # every operation, not only one
        assert refused == [], refused
    finally:
        context.close()


def test_redoc_renders_the_operations_offline(browser, gateway):  # noqa: F811
    from playwright.sync_api import expect

    op = httpx.get(f"{gateway}/openapi.json").json()["paths"]["/v1/datasets"]["post"]
    context, page, refused = offline_page(browser, gateway)
    try:
        page.goto("/redoc")
        expect(page.get_by_role("heading", name=op["summary"]).first).to_be_visible(
            timeout=20_000)
        # no script, style, font or data from elsewhere; ReDoc's footer shows the
        # Redocly logo from their CDN, an image that hides itself when it fails
        assert {kind for kind, _ in refused} <= {"image"}, refused
    finally:
        context.close()
