"""The JSON Schema of every mutation's ``args``: the contract, and the validator.

``docs/sync-protocol.md`` and the served OpenAPI description are generated
from these dictionaries, so the documentation cannot drift from the checks.
"""

from __future__ import annotations

UUID = {
    "type": "string",
    "pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$",
    # Python's "$" also matches before a final newline.
    "maxLength": 36,
    "description": "a lowercase UUID made on the phone",
}
TIMESTAMP = {
    "type": "string",
    "maxLength": 40,
    "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})$",
    "description": "ISO-8601 with a UTC offset; at most a day in the future",
}
SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
PHOTOS = {
    "type": "array",
    "items": SHA256,
    "maxItems": 20,
    "uniqueItems": True,
    "description": "SHA-256 of photos announced with a tus upload (the bytes may follow later)",
}
# Bounded so that any accepted id fits an SQLite INTEGER.
AREA_ID = {"type": ["integer", "null"], "minimum": 1, "maximum": 2**53}
REF_ID = {"type": ["integer", "null"], "minimum": 1, "maximum": 2**53}
LAT = {"type": ["number", "null"], "minimum": -90, "maximum": 90}
LNG = {"type": ["number", "null"], "minimum": -180, "maximum": 180}
ACCURACY = {"type": ["number", "null"], "minimum": 0, "maximum": 100000}
PHONE = {"type": "string", "maxLength": 20, "pattern": r"^[0-9+\-() ]*$"}
# A note on a problem, from the phone or from the office's action forms.
NOTE_MAX_LENGTH = 2000


def text(max_length: int, required: bool = False) -> dict:
    schema = {"type": "string", "maxLength": max_length}
    if required:
        schema["minLength"] = 1
        schema["pattern"] = r"\S"
    return schema


def obj(properties: dict, required: list[str]) -> dict:
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


VISIT_METHODS = ["sbls", "dundian", "xianchang", "ruhu", "jiefang", "other"]
CHECKLIST = [
    "no_notice", "no_greeting", "no_briefing", "no_escort", "direct_grassroots", "direct_scene",
]
PERSON_KINDS = ["resident", "business", "cadre", "other"]
URGENCIES = ["normal", "urgent", "critical"]

PROBLEM_FIELDS = {
    "area_id": AREA_ID,
    "place": text(200),
    "lat": LAT,
    "lng": LNG,
    "category_id": REF_ID,
    "urgency": {"enum": URGENCIES},
    "description": text(2000, required=True),
    "resident_name": text(50),
    "resident_phone": PHONE,
    "suggested_unit_id": REF_ID,
}

MUTATIONS: dict[str, dict] = {
    "visit.save": obj(
        {
            "id": UUID,
            "method": {"enum": VISIT_METHODS},
            "area_id": AREA_ID,
            "place": text(200),
            "checklist": {
                "type": "array", "items": {"enum": CHECKLIST}, "uniqueItems": True,
                "maxItems": len(CHECKLIST),
            },
            "companions": text(200),
            "started_at": TIMESTAMP,
            "ended_at": {"anyOf": [TIMESTAMP, {"type": "null"}]},
            "lat": LAT,
            "lng": LNG,
            "accuracy_m": ACCURACY,
            "photos": PHOTOS,
        },
        ["id", "method", "started_at"],
    ),
    "diary.save": obj(
        {
            "id": UUID,
            "visit_id": {"anyOf": [UUID, {"type": "null"}]},
            "area_id": AREA_ID,
            "person_name": text(50),
            "person_kind": {"enum": PERSON_KINDS},
            "phone": PHONE,
            "address": text(200),
            "content": text(4000, required=True),
            "recorded_at": TIMESTAMP,
            "photos": PHOTOS,
        },
        ["id", "person_kind", "content", "recorded_at"],
    ),
    "problem.report": obj(
        {
            "id": UUID,
            "visit_id": {"anyOf": [UUID, {"type": "null"}]},
            "diary_id": {"anyOf": [UUID, {"type": "null"}]},
            **PROBLEM_FIELDS,
            "accuracy_m": ACCURACY,
            "found_at": TIMESTAMP,
            "photos": PHOTOS,
            "tracking_hash": {
                **SHA256,
                "description": "SHA-256 (64 lowercase hex digits) of the resident's tracking"
                               " token, made on the phone; the token itself is never sent",
            },
            "solved_on_spot": {
                "anyOf": [
                    {"type": "null"},
                    obj({"note": text(NOTE_MAX_LENGTH, required=True), "photos": PHOTOS}, ["note"]),
                ]
            },
        },
        ["id", "description", "found_at"],
    ),
    "problem.note": obj(
        {
            "id": UUID,
            "problem_id": UUID,
            "note": text(NOTE_MAX_LENGTH),
            "photos": PHOTOS,
            "at": TIMESTAMP,
            "lat": LAT,
            "lng": LNG,
        },
        ["id", "problem_id", "at"],
    ),
    "problem.edit": obj(
        {
            "problem_id": UUID,
            "base_version": {"type": "integer", "minimum": 0},
            "changes": {**obj(PROBLEM_FIELDS, []), "minProperties": 1},
        },
        ["problem_id", "base_version", "changes"],
    ),
}

# A mutation's number; a push whose mutations are not numbered so is refused whole.
MUTATION_ID = {"type": "integer", "minimum": 1, "maximum": 2**53}

MUTATION = obj(
    {
        "id": MUTATION_ID,
        "name": {"enum": sorted(MUTATIONS)},
        "args": {"type": "object"},
    },
    ["id", "name", "args"],
)

PUSH_BODY = obj(
    {
        "client_id": UUID,
        "schema_version": {"type": "integer"},
        # Only the numbering is checked for the request as a whole; a mutation
        # that breaks MUTATION or its args schema is rejected on its own.
        "mutations": {
            "type": "array",
            "items": {"type": "object", "properties": {"id": MUTATION_ID}, "required": ["id"]},
            "maxItems": 1000,
        },
    },
    ["client_id", "schema_version", "mutations"],
)
