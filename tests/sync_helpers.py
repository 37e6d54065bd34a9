"""Helpers for sync tests: an in-process transport, ids and sample args."""

from __future__ import annotations

import datetime as dt
import io
import uuid

from starlette.testclient import TestClient

from sync.client import Response, SyncClient
from tests.conftest import PASSWORD


def asgi_transport(client: TestClient):
    def send(method, path, headers, body):
        response = client.request(method, path, headers=headers, content=body)
        return Response(response.status_code,
                        {k.lower(): v for k, v in response.headers.items()}, response.content)

    return send


def phone(client: TestClient, username: str) -> SyncClient:
    sync_client = SyncClient(asgi_transport(client), sleep=lambda _s: None)
    sync_client.login(username, PASSWORD)
    return sync_client


def new_id() -> str:
    return str(uuid.uuid4())


def jpeg(width: int = 64, height: int = 48, seed: int = 0) -> bytes:
    from PIL import Image

    image = Image.new("RGB", (width, height), ((seed * 37) % 256, (seed * 91) % 256, 120))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


# Visits and diary entries stay on the phone for 90 days (sync/working_set.py).
RECENTLY = (dt.datetime.now(dt.UTC) - dt.timedelta(days=2)).replace(microsecond=0).isoformat()


def visit_args(**extra) -> dict:
    return {"id": new_id(), "method": "sbls", "started_at": RECENTLY,
            "checklist": ["no_notice", "direct_scene"], **extra}


def problem_args(**extra) -> dict:
    return {"id": new_id(), "description": "小区二次供水水压不足，五楼以上停水",
            "found_at": "2026-05-01T02:00:00+00:00", **extra}
