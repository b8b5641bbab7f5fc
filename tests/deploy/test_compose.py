"""compose.yaml validates against the Compose Specification's JSON schema.

There is no Docker engine here; the same topology runs as real processes in the
other deploy tests. The schema is a copy of shared/schemas/compose-spec.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_compose_file_is_valid():
    schema = json.loads((ROOT / "tests/fixtures/compose-spec.json").read_text())
    doc = yaml.safe_load((ROOT / "compose.yaml").read_text())
    jsonschema.Draft7Validator(schema).validate(doc)
    assert {"registry", "postgres", "minio"} <= set(doc["services"])
    env = doc["services"]["registry"]["environment"]
    assert env["ASSAY_STORAGE"] == "s3"
    assert env["ASSAY_DATABASE_URL"].startswith("postgresql+psycopg://")
