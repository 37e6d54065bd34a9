"""The served OpenAPI description is valid and matches the validating schemas."""

from __future__ import annotations

from jsonschema import Draft202012Validator

from sync import schemas


def test_openapi_is_served_and_lists_every_mutation(client):
    spec = client.get("/api/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    for name in schemas.MUTATIONS:
        key = f"Mutation_{name.replace('.', '_')}"
        assert spec["components"]["schemas"][key]["properties"]["args"] == schemas.MUTATIONS[name]
    for path in ("/api/sync/push", "/api/sync/pull", "/api/uploads", "/api/uploads/{upload_id}"):
        assert path in spec["paths"]


def test_every_mutation_schema_is_a_valid_json_schema():
    for schema in schemas.MUTATIONS.values():
        Draft202012Validator.check_schema(schema)
    Draft202012Validator.check_schema(schemas.PUSH_BODY)
