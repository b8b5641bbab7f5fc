"""compose.yaml validates against the Compose Specification's JSON schema, and has the
team topology: one-shot migrations and bucket creation before anything uses them,
health checks, named volumes, settings from .env with defaults.

There is no Docker engine here: test_compose_up.py runs the assay services of this file
from the image with buildah, and test_replicas.py the same topology as processes. The
schema is a copy of shared/schemas/compose-spec.json.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TEXT = (ROOT / "compose.yaml").read_text()
DOC = yaml.safe_load(TEXT)
SERVICES = DOC["services"]
ONE_SHOT = {"migrate", "minio-init"}
ASSAY_SERVICES = {"migrate", "registry", "worker"}
# ${VAR...}, but not $${...} (an escaped dollar, left to the container's shell).
INTERPOLATION = re.compile(r"(?<!\$)\$\{([^}]*)\}")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY", re.IGNORECASE)


def _env(service: str) -> dict[str, str]:
    env = SERVICES[service].get("environment", {})
    assert isinstance(env, dict), f"{service}: environment as a mapping"
    return {k: str(v) for k, v in env.items()}


def _depends(service: str) -> dict[str, str]:
    deps = SERVICES[service].get("depends_on", {})
    assert isinstance(deps, dict), f"{service}: depends_on with conditions"
    return {name: spec["condition"] for name, spec in deps.items()}


def _long_running() -> list[str]:
    return [name for name in SERVICES if name not in ONE_SHOT]


def test_compose_file_is_valid():
    schema = json.loads((ROOT / "tests/fixtures/compose-spec.json").read_text())
    jsonschema.Draft7Validator(schema).validate(DOC)
    assert {"registry", "worker", "postgres", "minio", "proxy"} <= set(SERVICES)
    env = _env("registry")
    assert env["ASSAY_STORAGE"] == "s3"
    assert env["ASSAY_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert env["ASSAY_WORKERS"] == "0"  # verification runs in the worker service only


def test_migrate_runs_once_before_registry_and_worker():
    migrate = SERVICES["migrate"]
    assert migrate["command"] == ["assay", "migrate"]
    assert migrate.get("restart", "no") == "no"
    assert _depends("migrate") == {"postgres": "service_healthy"}
    assert _env("migrate")["ASSAY_DATABASE_URL"] == _env("registry")["ASSAY_DATABASE_URL"]
    for name in ("registry", "worker"):
        assert _depends(name)["migrate"] == "service_completed_successfully", name


def test_bucket_created_at_start_before_use():
    init = SERVICES["minio-init"]
    assert init["image"].startswith("minio/mc")
    assert init.get("restart", "no") == "no"
    assert _depends("minio-init") == {"minio": "service_healthy"}
    script = " ".join(init["command"]) if isinstance(init["command"], list) else init["command"]
    assert "mc mb --ignore-existing" in script
    # the bucket it creates is the one the registry and workers use
    assert _env("minio-init")["BUCKET"] == _env("registry")["ASSAY_S3_BUCKET"]
    assert '"local/$$BUCKET"' in script
    for name in ("registry", "worker"):
        assert _depends(name)["minio-init"] == "service_completed_successfully", name
        assert _env(name)["ASSAY_S3_ENDPOINT_URL"] == "http://minio:9000"


@pytest.mark.parametrize("service", _long_running())
def test_long_running_services_have_healthchecks_and_restart(service):
    spec = SERVICES[service]
    check = spec.get("healthcheck")
    assert check and not check.get("disable"), f"{service} has no health check"
    assert check["test"][0] in ("CMD", "CMD-SHELL") and len(check["test"]) > 1
    assert spec.get("restart") == "unless-stopped"


def test_registry_probe_is_readyz_and_proxy_waits_for_it():
    test = " ".join(SERVICES["registry"]["healthcheck"]["test"])
    assert test.startswith("CMD python -c ")
    assert "http://127.0.0.1:5000/readyz" in test
    compile(SERVICES["registry"]["healthcheck"]["test"][-1], "<healthcheck>", "exec")
    compile(SERVICES["worker"]["healthcheck"]["test"][-1], "<healthcheck>", "exec")
    assert _depends("proxy") == {"registry": "service_healthy"}
    assert _depends("registry")["postgres"] == "service_healthy"
    assert "mc" in SERVICES["minio"]["healthcheck"]["test"]


def test_registry_scales_behind_the_proxy():
    # `--scale registry=N` only works without a fixed published host port.
    assert "ports" not in SERVICES["registry"]
    assert "container_name" not in SERVICES["registry"]
    assert "container_name" not in SERVICES["worker"]
    assert SERVICES["proxy"]["ports"] == ["${ASSAY_HTTP_PORT:-5000}:80"]
    (config,) = SERVICES["proxy"]["configs"]
    assert config["target"] == "/etc/caddy/Caddyfile"
    caddyfile = DOC["configs"][config["source"]]["content"]
    assert "reverse_proxy" in caddyfile
    assert re.search(r"dynamic a registry 5000\b", caddyfile)  # every replica's address


def test_named_volumes_for_all_state():
    declared = set(DOC["volumes"])
    used = set()
    for name, spec in SERVICES.items():
        for volume in spec.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume["source"]
            assert not source.startswith((".", "/", "~")), f"{name}: bind mount {source}"
            used.add(source)
    assert used == declared
    for name in ("postgres", "minio", "registry", "worker"):
        assert SERVICES[name].get("volumes"), f"{name} keeps no volume"


def test_every_setting_has_a_default():
    found = INTERPOLATION.findall(TEXT)
    assert found
    for expr in found:
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*:-[^}]+", expr), f"${{{expr}}} has no default"


def test_no_hard_coded_secrets():
    for name in SERVICES:
        for key, value in _env(name).items():
            if SECRET_NAME.search(key):
                assert re.fullmatch(r"\$\{[A-Z0-9_]+:-[^}]*\}", value), f"{name}: {key}"
            for password in re.findall(r"://[^:/@]+:([^@]+)@", value):
                assert INTERPOLATION.fullmatch(password), f"{name}: password in {key}"


def test_env_example_lists_every_variable():
    listed = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            listed[key] = value
    used = {expr.split(":-")[0]: expr.split(":-", 1)[1] for expr in INTERPOLATION.findall(TEXT)}
    assert set(used) == set(listed)
    for var in ("POSTGRES_PASSWORD", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "ASSAY_AUTH",
                "ASSAY_PUBLIC_URL", "ASSAY_WORKER_CONCURRENCY", "ASSAY_MODEL_CACHE_BYTES",
                "ASSAY_HTTP_PORT"):
        assert var in listed
    for var, default in used.items():
        assert listed[var] == default, f"{var}: .env.example and compose.yaml disagree"


def test_services_read_as_compose_resolves_them():
    """tests/support/compose.py, which test_compose_up.py runs the services with, resolves
    ${VAR:-default} from .env or the default, ${VAR-default} only when unset, and $$."""
    from tests.support import compose

    assert compose.interpolate("${A:-x}/${B-y}/${C}/$$D", {"A": "", "B": ""}) == "x///$D"
    assert compose.interpolate("${A:-x}/${B-y}", {"A": "a", "B": "b"}) == "a/b"
    with pytest.raises(ValueError, match="unsupported"):
        compose.interpolate("${A:?required}", {})
    registry = compose.service("registry")
    assert registry.environment["ASSAY_S3_BUCKET"] == "assay"
    assert registry.environment["ASSAY_DATABASE_URL"] == \
        "postgresql+psycopg://assay:assay@postgres:5432/assay"
    assert registry.healthcheck[:2] == ["python", "-c"]
    ours = compose.service("registry", {"ASSAY_S3_BUCKET": "ours", "POSTGRES_PASSWORD": "pw"})
    assert ours.environment["ASSAY_S3_BUCKET"] == "ours"
    assert ours.environment["ASSAY_DATABASE_URL"].startswith("postgresql+psycopg://assay:pw@")
    assert compose.service("worker", {"ASSAY_WORKER_CONCURRENCY": "3"}).command == \
        ["assay", "worker", "--concurrency", "3"]
    assert "$MINIO_ROOT_USER" in compose.service("minio-init").command[0]
