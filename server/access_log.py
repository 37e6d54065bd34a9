"""The server's access log, without residents' personal data.

Search words (``q``) hold residents' names and addresses, ``next`` may carry a
whole search (``/login?next=/problems%3Fq%3D...``) and ``draft`` names what
someone typed (server/drafts.py). Their values never reach the log; the rest
of each request line stays as uvicorn writes it.
"""

from __future__ import annotations

import copy
import logging
import urllib.parse

REDACTED_PARAMETERS = frozenset({"q", "next", "draft"})
REDACTED = "-"
ACCESS_LOGGER = "uvicorn.access"


def redact_query(path: str) -> str:
    """``path`` (with its query string) with the values of REDACTED_PARAMETERS replaced."""
    base, sep, query = path.partition("?")
    if not sep:
        return path
    parts = []
    for part in query.split("&"):
        name, has_value, _value = part.partition("=")
        if urllib.parse.unquote_plus(name) in REDACTED_PARAMETERS:
            part = f"{name}={REDACTED}" if has_value else name
        parts.append(part)
    return f"{base}?{'&'.join(parts)}"


class RedactQuery(logging.Filter):
    """Redacts the path of uvicorn's access records: (client, method, path, version, status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            record.args = (args[0], args[1], redact_query(args[2]), *args[3:])
        return True


def log_config() -> dict:
    """uvicorn's logging configuration with the access log redacted."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_query"] = {"()": RedactQuery}
    config["loggers"][ACCESS_LOGGER]["filters"] = ["redact_query"]
    return config
