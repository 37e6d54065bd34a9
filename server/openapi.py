"""The OpenAPI description of the phone API, built from the same schemas that validate it."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from sync import schemas
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
                "type": "array", "maxItems": 1000,
                "items": {"oneOf": [{"$ref": f"#/components/schemas/{key}"}
                                    for key in mutation_schemas]},
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
                "requestBody": _json({"type": "object", "properties": {
                    "username": {"type": "string"}, "password": {"type": "string"},
                    "device_name": {"type": "string"}},
                    "required": ["username", "password"], "additionalProperties": False}),
                "responses": {"201": DEVICE_SIGN_IN, **_errors(400, 401, 422, 429, 503)},
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
                "requestBody": _json({"type": "object", "properties": {
                    "device_name": {"type": "string"}}, "additionalProperties": False}),
                "responses": {"201": DEVICE_SIGN_IN, **_errors(400, 401, 403, 422, 429)},
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
                "requestBody": _json({"type": "object", "properties": {
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
                "requestBody": _json(push_body),
                "responses": {"200": _json(PUSH_RESPONSE), **_errors(400, 401, 403),
                              "503": {"description": "busy; nothing applied; see Retry-After"}},
            }},
            "/api/sync/pull": {"get": {
                "security": BEARER,
                "summary": "Changes above a cursor that this user may hold",
                "parameters": [
                    {"name": "client_id", "in": "query", "required": True, "schema": schemas.UUID},
                    {"name": "cursor", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                    {"name": "limit", "in": "query",
                     "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                ],
                "responses": {"200": _json(PULL_RESPONSE), **_errors(400, 401)},
            }},
            "/api/uploads": {
                "options": {"summary": "tus discovery", "responses": {"204": {
                    "description": f"Tus-Version 1.0.0; creation,checksum; max {MAX_SIZE}"}}},
                "post": {
                    "security": BEARER, "summary": "tus creation (Upload-Length, Upload-Metadata "
                    "with sha256 and filetype)",
                    "parameters": [TUS_HEADER],
                    "responses": {"201": {"description": "Location of the upload"},
                                  **_errors(400, 401, 412, 413)},
                },
            },
            "/api/uploads/{upload_id}": {
                "head": {"security": BEARER, "parameters": [TUS_HEADER, UPLOAD_ID],
                         "responses": {"200": {"description": "Upload-Offset, Upload-Length"},
                                       "404": {"description": "unknown upload"},
                                       "410": {"description": "the upload was refused (not an"
                                               " image, too many pixels) and has ended"}}},
                "patch": {
                    "security": BEARER, "parameters": [TUS_HEADER, UPLOAD_ID],
                    "requestBody": {"content": {"application/offset+octet-stream": {}}},
                    "responses": {"204": {"description": "new Upload-Offset"},
                                  **_errors(409, 410, 413, 415, 460)},
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
