"""docker-compose.yml against the code it runs: every command names a real module and a
queue the Celery app declares, every variable is a setting the code reads, the data
volume is where ISA_DATA_DIR points, and every service waits for healthy dependencies.
(No Docker engine is needed: this reads the files.)"""

from __future__ import annotations

import importlib
import importlib.util
import re

import yaml

from tests.conftest import ROOT

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict = COMPOSE["services"]
APP_SERVICES = {name: svc for name, svc in SERVICES.items() if svc.get("build")}
#: variables the code reads that are not ISA_ settings
OTHER_VARIABLES = {"HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM"}


def _option(command: list[str], *names: str) -> str | None:
    for i, word in enumerate(command):
        if word in names:
            return command[i + 1]
    return None


def test_every_service_has_a_healthcheck_and_waits_for_healthy_dependencies():
    for name, svc in SERVICES.items():
        check = svc.get("healthcheck")
        assert check and check.get("test"), f"{name} has no healthcheck"
        needs = svc.get("depends_on", {})
        assert isinstance(needs, dict), f"{name}: depends_on must name a condition"
        for other, condition in needs.items():
            assert other in SERVICES, f"{name} depends on unknown service {other}"
            assert condition == {"condition": "service_healthy"}, (name, other)
            assert SERVICES[other].get("healthcheck"), f"{other} has no healthcheck"
    assert set(APP_SERVICES["api"]["depends_on"]) == {"redis", "cache", "rabbitmq"}
    # the broker is RabbitMQ, with the consumer timeout raised past the longest task
    from core.settings import Settings

    env = SERVICES["api"]["environment"]
    assert env["ISA_BROKER_URL"].startswith("amqp://") and "@rabbitmq:5672" in \
        env["ISA_BROKER_URL"]
    erl = SERVICES["rabbitmq"]["environment"]["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"]
    timeout_ms = int(erl.split("consumer_timeout")[1].split()[0])
    assert timeout_ms >= (Settings().task_time_limit_s + 60) * 1000


def test_commands_name_real_modules_and_declared_queues():
    from core.celery_app import celery_app
    from core.settings import Settings

    declared = {q.name for q in celery_app.conf.task_queues}
    served: set[str] = set()
    for name, svc in APP_SERVICES.items():
        command = svc["command"]
        if command[:3] == ["python", "-m", "app.serve"]:
            # the production start (app/serve.py) serves app.main:app
            assert importlib.util.find_spec("app.serve") is not None
            command = ["uvicorn", "app.main:app", *command[3:]]
        if command[0] == "uvicorn":
            module, attr = command[1].split(":")
            assert callable(getattr(importlib.import_module(module), attr)), command
            port = _option(command, "--port")
            # the healthcheck asks the port the server listens on, on a route that exists
            probe = " ".join(svc["healthcheck"]["test"])
            url = re.search(r"http://127\.0\.0\.1:(\d+)(/\w+)", probe)
            assert url and url.group(1) == port, probe
            routes = set(importlib.import_module(module).app.openapi()["paths"])
            assert url.group(2) in routes, url.group(2)
        else:
            assert command[:2] == ["celery", "-A"], command
            assert importlib.util.find_spec(command[2]) is not None, command[2]
            assert hasattr(importlib.import_module(command[2]), "celery_app") or \
                hasattr(importlib.import_module(command[2]), "app"), command[2]
            queues = set(_option(command, "-Q").split(","))
            assert queues <= declared, f"{name} serves undeclared queues {queues - declared}"
            served |= queues
            assert "celery@$$HOSTNAME" in " ".join(svc["healthcheck"]["test"]), name
    defaults = Settings()
    # jobs and webhook deliveries both have a worker by default (the gpu one is a profile)
    assert {defaults.default_queue, defaults.webhook_queue} <= served


def test_environment_names_settings_the_code_reads(monkeypatch):
    from core.settings import Settings

    fields = set(Settings.model_fields)
    for name, svc in APP_SERVICES.items():
        env = svc["environment"]
        for var, value in env.items():
            if var.startswith("ISA_"):
                assert var[4:].lower() in fields, f"{name}: {var} is no setting"
                monkeypatch.setenv(var, str(value))
            else:
                assert var in OTHER_VARIABLES, f"{name}: unknown variable {var}"
        settings = Settings(_env_file=None)  # the values parse as the code reads them
        data = str(settings.data_dir)
        mounts = {v.split(":")[1]: v.split(":")[0] for v in svc["volumes"]}
        assert data in mounts, f"{name}: nothing mounted at ISA_DATA_DIR {data}"
        assert mounts[data] in COMPOSE["volumes"], mounts[data]
        if settings.api_keys_file is not None:  # kept in the volume
            assert str(settings.api_keys_file).startswith(data + "/"), settings.api_keys_file
        # only the gateway creates the key file on first start (and prints its key)
        assert settings.create_api_keys_file == (name == "api"), name
        for var in env:
            monkeypatch.delenv(var, raising=False)
    # every app service shares one artifact volume (the store is a local folder there)
    assert len({tuple(svc["volumes"]) for svc in APP_SERVICES.values()}) == 1
    assert APP_SERVICES["api"]["environment"]["ISA_API_KEYS_FILE"] == "/data/api_keys.json"


def test_the_image_command_and_build_context():
    dockerfile = (ROOT / "Dockerfile").read_text()
    cmd = re.search(r'^CMD (\[.*\])$', dockerfile, re.M)
    assert cmd and yaml.safe_load(cmd.group(1)) == APP_SERVICES["api"]["command"]
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", "data", "out"} <= ignored
    for copied in re.findall(r"^COPY (\S+)", dockerfile, re.M):
        assert copied not in ignored, copied

