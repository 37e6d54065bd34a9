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


def test_the_web_session_sign_in_is_described(client):
    spec = client.get("/api/openapi.json").json()
    assert spec["components"]["securitySchemes"]["session"] == {
        "type": "apiKey", "in": "cookie", "name": "fl_session",
        "description": "the web session of the office sign-in page"}
    session = spec["paths"]["/api/session"]["get"]
    assert session["security"] == [{"session": []}]
    assert set(session["responses"]) == {"200", "401", "403"}
    exchange = spec["paths"]["/api/session/device"]
    assert set(exchange) == {"post"}  # a POST only
    assert exchange["post"]["security"] == [{"session": []}]
    assert {"name": "X-CSRF-Token", "in": "header", "required": True}.items() <= (
        exchange["post"]["parameters"][0].items())
    assert {"201", "401", "403", "429"} <= set(exchange["post"]["responses"])
    # The same answer as the password sign-in.
    login = spec["paths"]["/api/login"]["post"]["responses"]["201"]
    assert exchange["post"]["responses"]["201"] == login


def test_openapi_names_the_refused_upload_statuses(client):
    paths = client.get("/api/openapi.json").json()["paths"]
    upload = paths["/api/uploads/{upload_id}"]
    assert "410" in upload["head"]["responses"]
    assert {"410", "413", "415"} <= set(upload["patch"]["responses"])
    assert "413" in paths["/api/photos/{sha256}/thumb"]["get"]["responses"]
