"""The served OpenAPI description is valid and matches the validating schemas."""

from __future__ import annotations

import pytest
import schemathesis
from jsonschema import Draft202012Validator
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import events, from_schema
from starlette.testclient import TestClient

from server import auth
from server.db import immediate
from sync import schemas
from tests.conftest import api_login, login


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


def test_the_tus_answers_are_documented(client):
    spec = client.get("/api/openapi.json").json()["paths"]["/api/uploads/{upload_id}"]
    tus = {"Tus-Resumable": "1.0.0"}
    bearer = {**tus, "Authorization": f"Bearer {api_login(client, 'field1')}"}
    chunk = {"Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"}
    answers = {
        ("head", 401): client.head("/api/uploads/x", headers=tus),
        ("head", 412): client.head("/api/uploads/x", headers={"Authorization":
                                                               bearer["Authorization"]}),
        ("head", 404): client.head("/api/uploads/x", headers=bearer),
        ("patch", 401): client.patch("/api/uploads/x", headers={**tus, **chunk}, content=b"1"),
        ("patch", 404): client.patch("/api/uploads/x", headers={**bearer, **chunk},
                                     content=b"1"),
    }
    for (method, status), response in answers.items():
        assert response.status_code == status, (method, status)
        assert str(status) in spec[method]["responses"], (method, status)


def test_a_sign_in_body_is_described_by_the_fields_that_clean_it(client):
    body = client.get("/api/openapi.json").json()["paths"]["/api/login"]["post"]["requestBody"]
    schema = body["content"]["application/json"]["schema"]
    assert body["required"] is True
    assert schema["required"] == ["username", "password"]
    assert schema["additionalProperties"] is False
    username = Draft202012Validator(schema["properties"]["username"])
    assert username.is_valid("张三")
    for refused in ("", "   ", "a\x12b", "x" * 65):
        assert not username.is_valid(refused), refused
        response = client.post("/api/login", json={"username": refused, "password": "x"})
        assert response.status_code == 422, refused


# The description against the behaviour: schemathesis, bounded ------------------------

# Every check; tus answers a missing or unsupported Tus-Resumable with 412
# (tus 1.0 core), which counts as refusing the request.
REFUSED = ["400", "401", "403", "404", "405", "406", "409", "412", "413", "415", "422", "428",
           "429", "5xx"]
FUZZ_CONFIG = {
    "seed": 20261206,
    "generation": {"max-examples": 30, "mode": "all"},
    "checks": {
        "enabled": True,
        "negative_data_rejection": {"expected-statuses": REFUSED},
        "missing_required_header": {
            "expected-statuses": ["400", "401", "403", "406", "412", "415", "422"]},
    },
    # No links between operations are described, so there is nothing stateful to run.
    "phases": {"stateful": {"enabled": False}},
    "operations": [{
        # A well-formed change is still refused (422, naming the field) for what
        # no schema can say: a wrong current password, new passwords that differ,
        # one too common or equal to the username.
        "include-path": "/api/account/password",
        "checks": {"positive_data_acceptance": {
            "expected-statuses": ["2xx", "401", "403", "422", "429", "503"]}},
    }, {
        # A pull's cursor is opaque (0, a bare version, or a cursor an answer gave):
        # a well-formed one that no answer gave, or a token with format 1, is
        # refused 400 bad_cursor. Its other parameters are exactly described.
        "include-path": "/api/sync/pull",
        "checks": {"positive_data_acceptance": {
            "expected-statuses": ["2xx", "400", "401", "403", "404", "409", "429", "5xx"]}},
    }],
}


@schemathesis.serializer("application/offset+octet-stream")
def _tus_chunk(ctx, value):
    """A tus PATCH body: the bytes as generated."""
    return value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogatepass")


def _failures(event) -> list[str]:
    if isinstance(event, events.ScenarioFinished):
        return [f"{event.recorder.label}: {node.failure_info.failure}\n"
                f"{node.failure_info.code_sample}"
                for nodes in event.recorder.checks.values() for node in nodes
                if node.failure_info is not None]
    if isinstance(event, events.NonFatalError | events.FatalError):
        return [f"{getattr(event, 'label', '')}: {event.info.format()}"]
    return []


@pytest.mark.slow
def test_the_api_behaves_as_its_openapi_description_says(app, db, world):
    with TestClient(app) as client:
        # field2's web session; field1's device tokens (the session may make
        # 5 devices in 15 minutes, and field1's would count).
        assert login(client, "field2").status_code == 303
        session = client.cookies["fl_session"]
    schema = schemathesis.openapi.from_asgi(
        "/api/openapi.json", app, config=SchemathesisConfig.from_dict(FUZZ_CONFIG))

    def new_token() -> str:
        with immediate(db):
            return auth.register_device(db, world.users["field1"], "schemathesis")[1]

    token = new_token()

    @schema.auth(refresh_interval=None)
    class Credentials:
        """Real credentials, except where a case leaves them out on purpose."""

        def get(self, case, context):
            # A sign-out ends the token it is sent with: give it its own.
            return new_token() if case.operation.label == "POST /api/logout" else token

        def set(self, case, value, context):
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {value}"}
            case.cookies = {**(case.cookies or {}), "fl_session": session}

    failures = [failure for event in from_schema(schema).execute()
                for failure in _failures(event)]
    assert failures == [], "\n\n".join(failures)
