"""A phone's health, as it reports it with every push and pull, and the one rule for when a
phone is at risk of losing records.

The phone sends a compact JSON object in the ``X-Device-Health`` header (see
``docs/sync-protocol.md``); ``parse`` checks it against ``SCHEMA`` and ``record`` keeps the
latest on the device's row. ``risks`` says what is wrong: records unsynced for more than
``UNSYNCED_HOURS``, storage not persisted or above ``STORAGE_RATIO`` of its quota, an app
older than the one served. The field app's home says the same about its own phone with the
same thresholds (static/app/health.js; tests/test_device_health.py checks they agree).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from jsonschema import Draft202012Validator

from server.i18n import gettext as _
from server.timeutil import now_iso, parse_iso, utcnow
from sync.schemas import TIMESTAMP

HEADER = "X-Device-Health"
MAX_HEADER_LENGTH = 1024
UNSYNCED_HOURS = 24
STORAGE_RATIO = 0.8
RISKS = ("unsynced", "not_persisted", "storage_full", "old_version")

COUNT = {"type": "integer", "minimum": 0, "maximum": 10**9}
BYTES = {"type": "integer", "minimum": 0, "maximum": 2**53}
SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["app_version", "unsynced_mutations", "unsynced_photos"],
    "properties": {
        "app_version": {"type": "string", "maxLength": 64, "pattern": "^[0-9A-Za-z._-]*$"},
        "unsynced_mutations": COUNT,
        "unsynced_photos": COUNT,
        "oldest_unsynced_at": {"anyOf": [TIMESTAMP, {"type": "null"}]},
        "storage_used": {"anyOf": [BYTES, {"type": "null"}]},
        "storage_quota": {"anyOf": [BYTES, {"type": "null"}]},
        "storage_persisted": {"type": ["boolean", "null"]},
        "last_sync_at": {"anyOf": [TIMESTAMP, {"type": "null"}]},
    },
}
_VALIDATOR = Draft202012Validator(SCHEMA)


class BadHealth(Exception):
    """The health header is not JSON of ``SCHEMA`` (400 ``bad_health``)."""

    code = "bad_health"

    def __init__(self, detail: str):
        super().__init__(_("device_health.bad", detail=detail))
        self.message = str(self)


def parse(header: str | None) -> dict | None:
    """The health a request carries, or None when it carries none."""
    if header is None:
        return None
    if len(header) > MAX_HEADER_LENGTH:
        raise BadHealth(_("device_health.too_long", max=MAX_HEADER_LENGTH))
    try:
        health = json.loads(header)
    except ValueError:
        raise BadHealth(_("device_health.not_json")) from None
    error = next(iter(sorted(_VALIDATOR.iter_errors(health), key=lambda e: e.path)), None)
    if error is not None:
        where = ".".join(str(part) for part in error.absolute_path) or "health"
        raise BadHealth(f"{where}: {error.message}"[:200])
    for name in ("oldest_unsynced_at", "last_sync_at"):
        if health.get(name):
            try:
                parse_iso(health[name])
            except ValueError:
                # The shape of a time but no real one (a phone's clock gone wrong): the
                # report is kept, without that time.
                health[name] = None
    return health


def record(db, device_id: int | None, health: dict | None) -> None:
    """Keep the latest health on the device's row (in the caller's write transaction)."""
    if device_id is None or health is None:
        return
    db.execute("UPDATE devices SET health = ?, health_at = ? WHERE id = ?",
               [json.dumps(health, sort_keys=True), now_iso(), device_id])


@dataclass(frozen=True)
class Risk:
    kind: str
    words: dict

    @property
    def text(self) -> str:
        return _(f"device_health.risk_{self.kind}", **self.words)


def risks(health: dict | None, current_version: str, now: dt.datetime | None = None
          ) -> list[Risk]:
    """What puts this phone's records at risk, by the one rule; [] when nothing does."""
    if not health:
        return []
    now = now or utcnow()
    found = []
    unsynced = health.get("unsynced_mutations", 0) + health.get("unsynced_photos", 0)
    oldest = health.get("oldest_unsynced_at")
    if unsynced and oldest:
        hours = (now - parse_iso(oldest)).total_seconds() / 3600
        if hours > UNSYNCED_HOURS:
            found.append(Risk("unsynced", {"count": unsynced, "hours": int(hours)}))
    if health.get("storage_persisted") is False:
        found.append(Risk("not_persisted", {}))
    used, quota = health.get("storage_used"), health.get("storage_quota")
    if used is not None and quota and used / quota > STORAGE_RATIO:
        found.append(Risk("storage_full", {"percent": round(100 * used / quota)}))
    if health.get("app_version") and health["app_version"] != current_version:
        found.append(Risk("old_version", {}))
    return found


def with_risks(rows: list[dict], current_version: str) -> list[dict]:
    """Device rows (with ``health`` as stored) given their decoded health and risks."""
    now = utcnow()
    for row in rows:
        row["health"] = json.loads(row["health"]) if row.get("health") else None
        row["risks"] = risks(row["health"], current_version, now)
    return rows
