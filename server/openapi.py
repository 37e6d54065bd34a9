"""The OpenAPI description of the phone API, built from the same schemas that validate it."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from server import device_health, validation
from server.views.auth import DEVICE_LOGIN_SCHEMA, SESSION_DEVICE_SCHEMA
from sync import schemas
from sync.pull import MAX_CURSOR
from sync.push import SCHEMA_VERSION
from sync.uploads import MAX_SIZE

ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            "required": ["code", "message"],
        }
    },
    "required": ["error"],
}


def _json(schema: dict, description: str = "") -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _body(schema: dict) -> dict:
    """A request body the endpoint cannot do without (no body is a 400)."""
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _no_body(*statuses: int, **described: str) -> dict:
    """Answers with no body (HEAD, and tus answers), by status."""
    return {str(status): {"description": described.get(f"s{status}", "")}
            for status in statuses}


# What server/validation.py accepts in a text field: no control characters (tab
# and line breaks aside) and, where required, something besides spaces (a
# password is taken as typed).
_NO_CONTROL = "[^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f]"
_NOT_BLANK = "[^\\s\\x00-\\x1f\\x7f-\\x9f]"


def _text_field(field: validation.Field) -> dict:
    schema = {"type": "string", "maxLength": field.max_length,
              "pattern": f"^{_NO_CONTROL}*$"}
    if field.required:
        schema["minLength"] = 1
        if field.kind != "password":
            schema["pattern"] = f"^{_NO_CONTROL}*{_NOT_BLANK}{_NO_CONTROL}*$"
    return schema


def _json_body_of(fields: validation.Schema) -> dict:
    """The JSON object ``Schema.clean_json`` accepts (text fields only here)."""
    return {"type": "object",
            "properties": {field.name: _text_field(field) for field in fields.fields},
            "required": [field.name for field in fields.fields if field.required],
            "additionalProperties": False}


def _errors(*statuses: int) -> dict:
    return {str(status): _json({"$ref": "#/components/schemas/Error"}) for status in statuses}


BEARER = [{"device": []}]
SESSION = [{"session": []}]
CSRF_HEADER = {"name": "X-CSRF-Token", "in": "header", "required": True,
               "schema": {"type": "string"},
               "description": "csrf_token from GET /api/session"}
DEVICE_SIGN_IN = _json({
    "type": "object",
    "properties": {"token": {"type": "string"}, "device_id": {"type": "integer"},
                   "user": {"type": "object"}},
    "required": ["token", "device_id", "user"],
}, "token (shown once), device_id, user")
TUS_HEADER = {"name": "Tus-Resumable", "in": "header", "required": True,
              "schema": {"const": "1.0.0"}}
BASE64 = "(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?"
UPLOAD_LENGTH = {"name": "Upload-Length", "in": "header", "required": True,
                 "schema": {"type": "integer", "minimum": 1, "maximum": MAX_SIZE},
                 "description": f"the photo's size in bytes; above {MAX_SIZE}: 413"}
UPLOAD_OFFSET = {"name": "Upload-Offset", "in": "header", "required": True,
                 "schema": {"type": "integer", "minimum": 0},
                 "description": "where these bytes start: the offset HEAD gave; else 409"}
UPLOAD_CHECKSUM = {"name": "Upload-Checksum", "in": "header", "required": False,
                   "schema": {"type": "string", "pattern": f"^(sha1|sha256|md5) {BASE64}$"},
                   "description": "<algorithm> <base64 digest of this request's bytes>; "
                                  "a mismatch is 460"}
HEALTH_HEADER = {"name": "X-Device-Health", "in": "header", "required": False,
                 "content": {"application/json": {"schema": device_health.SCHEMA}},
                 "description": "the phone's health, JSON (docs/sync-protocol.md, Device "
                                "health); sent with a round's first push and pull; a bad one "
                                "is 400 bad_health and nothing is applied"}
UPLOAD_ID = {"name": "upload_id", "in": "path", "required": True, "schema": {"type": "string"}}
SHA = {"name": "sha256", "in": "path", "required": True, "schema": schemas.SHA256}

PUSH_RESPONSE = {
    "type": "object",
    "properties": {
        "last_mutation_id": {"type": "integer"},
        "gap": {"type": "boolean",
                "description": "processing stopped at a mutation id above last_mutation_id + 1"},
        "epoch": {"type": "string"},
        "results": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer"},
                    "status": {"enum": ["applied", "rejected", "skipped"]},
                    "error": {"$ref": "#/components/schemas/Error/properties/error"},
                },
            },
        },
    },
}
PULL_RESPONSE = {
    "type": "object",
    "properties": {
        "epoch": {"type": "string"},
        "cursor": {"type": "integer"},
        "has_more": {"type": "boolean"},
        "reset": {"type": "boolean"},
        "last_mutation_id": {"type": "integer"},
        "changes": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "entity": {"enum": ["area", "unit", "category", "visit", "diary", "problem"]},
                    "id": {"type": "string"},
                    "version": {"type": "integer"},
                    "data": {"type": "object"},
                    "deleted": {"type": "boolean"},
                },
            },
        },
    },
}

PULL_PAGES_RESPONSE = {
    "type": "object",
    "description": "format 2: a snapshot of the working set from cursor 0, then the log",
    "properties": {
        "format": {"const": 2},
        "epoch": {"type": "string"},
        "cursor": {"type": "string", "description": "opaque: send it back as it came"},
        "has_more": {"type": "boolean"},
        "reset": {"type": "boolean"},
        "snapshot": {"type": "boolean", "description": "this page began a snapshot"},
        "last_mutation_id": {"type": "integer"},
        "records": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "properties": {
                    "columns": {"type": "array", "items": {"type": "string"}},
                    "versions": {"type": "array", "items": {"type": "integer"}},
                    "rows": {"type": "array", "items": {"type": "array"}},
                },
                "required": ["columns", "versions", "rows"],
            },
        },
        "deleted": {"type": "object", "additionalProperties": {"type": "array"}},
    },
    "required": ["format", "epoch", "cursor", "has_more", "reset", "snapshot",
                 "last_mutation_id", "records", "deleted"],
}
LOOKUP_RESPONSE = {
    "type": "object",
    "properties": {
        "problems": {"type": "array", "items": {"type": "object"}},
        "more": {"type": "boolean"},
    },
    "required": ["problems", "more"],
}


def build() -> dict:
    mutation_schemas = {
        f"Mutation_{name.replace('.', '_')}": {
            "type": "object",
            "properties": {"id": {"type": "integer", "minimum": 1}, "name": {"const": name},
                           "args": args},
            "required": ["id", "name", "args"],
        }
        for name, args in schemas.MUTATIONS.items()
    }
    push_body = {
        **schemas.PUSH_BODY,
        "properties": {
            **schemas.PUSH_BODY["properties"],
            "schema_version": {"const": SCHEMA_VERSION},
            "mutations": {
                **schemas.PUSH_BODY["properties"]["mutations"],
                "description": "Each mutation should be one of "
                + ", ".join(f"#/components/schemas/{key}" for key in mutation_schemas)
                + ". Only its id is checked for the request as a whole; a mutation that"
                " breaks its schema is answered `rejected` in results (docs/sync-protocol.md).",
            },
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "FieldLedger phone API", "version": str(SCHEMA_VERSION),
                 "description": "See docs/sync-protocol.md for the rules behind these shapes."},
        "components": {
            "securitySchemes": {
                "device": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "fl_session",
                            "description": "the web session of the office sign-in page"},
            },
            "schemas": {"Error": ERROR, **mutation_schemas},
        },
        "paths": {
            "/api/login": {"post": {
                "summary": "Sign a phone in; returns a device token",
                "requestBody": _body(_json_body_of(DEVICE_LOGIN_SCHEMA)),
                "responses": {"201": DEVICE_SIGN_IN, **_errors(400, 401, 413, 422, 429, 503)},
            }},
            "/api/session": {"get": {
                "security": SESSION,
                "summary": "The browser's web session, for the field app on this site: "
                           "user, signed_in_at and the CSRF token for /api/session/device",
                "responses": {"200": _json({"type": "object", "properties": {
                    "user": {"type": "object"}, "signed_in_at": {"type": "string"},
                    "csrf_token": {"type": "string"}},
                    "required": ["user", "signed_in_at", "csrf_token"]}),
                    **_errors(401, 403)},
            }},
            "/api/session/device": {"post": {
                "security": SESSION,
                "summary": "Sign the field app in with the web session (no password): "
                           "a device token as /api/login gives; same-origin only, "
                           "sync.capture only, never cached",
                "parameters": [CSRF_HEADER],
                "requestBody": _body(_json_body_of(SESSION_DEVICE_SCHEMA)),
                "responses": {"201": DEVICE_SIGN_IN, **_errors(400, 401, 403, 413, 422, 429)},
            }},
            "/api/me": {"get": {"security": BEARER, "summary": "The signed-in user",
                                "responses": {"200": _json({"type": "object"}),
                                              **_errors(401)}}},
            "/api/logout": {"post": {"security": BEARER, "summary": "Revoke this device's token",
                                     "responses": {"200": _json({"type": "object"}),
                                                   **_errors(401)}}},
            "/api/account/password": {"post": {
                "security": BEARER,
                "summary": "Change the signed-in user's own password: the current one is "
                           "checked as a sign-in is (wrong ones count toward the lockout); "
                           "the user's web sessions end; this phone stays signed in",
                "requestBody": _body({"type": "object", "properties": {
                    "current_password": {"type": "string"},
                    "new_password": {"type": "string"},
                    "new_password_repeat": {"type": "string"}},
                    "required": ["current_password", "new_password", "new_password_repeat"],
                    "additionalProperties": False}),
                "responses": {"200": _json({"type": "object", "properties": {
                    "ok": {"const": True}}, "required": ["ok"]}),
                    **_errors(400, 401, 422, 429, 503)},
            }},
            "/api/sync/push": {"post": {
                "security": BEARER,
                "summary": "Apply queued mutations, exactly once and in order",
                "parameters": [HEALTH_HEADER],
                "requestBody": _body(push_body),
                "responses": {"200": _json(PUSH_RESPONSE), **_errors(400, 401, 403, 413),
                              "503": {"description": "busy; nothing applied; see Retry-After"}},
            }},
            "/api/sync/pull": {"get": {
                "security": BEARER,
                "summary": "Changes above a cursor that this user may hold; with format 2, "
                           "a snapshot of the working set first (docs/sync-protocol.md)",
                "parameters": [
                    {"name": "client_id", "in": "query", "required": True, "schema": schemas.UUID},
                    {"name": "cursor", "in": "query", "description":
                     "format 1: a version; format 2: 0 or the cursor of the previous answer",
                     "schema": {"oneOf": [
                         {"type": "integer", "minimum": 0, "maximum": MAX_CURSOR},
                         {"type": "string", "pattern": r"^c2\.[A-Za-z0-9_-]{1,400}$"}]}},
                    {"name": "limit", "in": "query",
                     "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                    {"name": "format", "in": "query",
                     "schema": {"type": "integer", "enum": [1, 2], "default": 1}},
                    HEALTH_HEADER,
                ],
                "responses": {"200": _json({"oneOf": [PULL_RESPONSE, PULL_PAGES_RESPONSE]}),
                              **_errors(400, 401)},
            }},
            "/api/problems/lookup": {"get": {
                "security": BEARER,
                "summary": "Problems outside the phone's set, found online by ledger number "
                           "or words within the user's scope (masked as a pull masks them; "
                           "not to be kept)",
                "parameters": [{"name": "q", "in": "query", "required": True,
                                "schema": {"type": "string", "minLength": 1, "maxLength": 100}}],
                "responses": {"200": _json(LOOKUP_RESPONSE), **_errors(400, 401, 403)},
            }},
            "/api/uploads": {
                "options": {"summary": "tus discovery", "responses": {"204": {
                    "description": f"Tus-Version 1.0.0; creation,checksum; max {MAX_SIZE}"}}},
                "post": {
                    "security": BEARER, "summary": "tus creation (Upload-Length, Upload-Metadata "
                    "with sha256 and filetype)",
                    "parameters": [TUS_HEADER, UPLOAD_LENGTH],
                    "responses": {"201": {"description": "Location of the upload"},
                                  **_errors(400, 401, 412, 413)},
                },
            },
            "/api/uploads/{upload_id}": {
                "head": {"security": BEARER, "parameters": [TUS_HEADER, UPLOAD_ID],
                         "responses": _no_body(200, 401, 404, 410, 412,
                                               s200="Upload-Offset, Upload-Length",
                                               s401="no or unknown device token",
                                               s404="unknown upload, or another user's",
                                               s410="the upload was refused (not an image,"
                                                    " too many pixels) and has ended",
                                               s412="Tus-Resumable: 1.0.0 missing")},
                "patch": {
                    "security": BEARER,
                    "parameters": [TUS_HEADER, UPLOAD_ID, UPLOAD_OFFSET, UPLOAD_CHECKSUM],
                    "requestBody": {"required": True, "content": {
                        "application/offset+octet-stream": {
                            "schema": {"type": "string", "format": "binary"}}}},
                    "responses": {"204": {"description": "new Upload-Offset"},
                                  **_errors(400, 401, 404, 409, 410, 412, 413, 415, 460),
                                  "409": _json({"$ref": "#/components/schemas/Error"},
                                               "offset_mismatch: HEAD for the offset;"
                                               " busy_upload: another PATCH of this upload is"
                                               " running (on any server process): wait, HEAD,"
                                               " resume")},
                },
            },
            "/api/photos/{sha256}": {"get": {
                "security": BEARER, "parameters": [SHA],
                "responses": {"200": {"description": "the photo"}, **_errors(401, 404)}}},
            "/api/photos/{sha256}/thumb": {"get": {
                "security": BEARER, "parameters": [SHA],
                "responses": {"200": {"description": "JPEG, at most 320 px"},
                              **_errors(401, 404, 413)}}},
        },
    }


async def openapi(request: Request):
    return JSONResponse(build())
