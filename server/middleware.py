"""Response headers every answer carries (unless the answer sets its own of the same name:
the resident's tracking page sends no Referer at all)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data: blob:; object-src 'none'; "
        b"frame-ancestors 'none'; base-uri 'self'; form-action 'self'",
    ),
]


# Answers that set no caching rule of their own are never stored: pages, API
# answers and exports carry residents' personal data. Only the static files
# (and the field app's shell, which says "no-cache") may be kept.
NO_STORE = (b"cache-control", b"no-store")
CACHEABLE_PREFIX = "/static/"


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cacheable = scope["path"].startswith(CACHEABLE_PREFIX)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                own = message.get("headers", [])
                named = {name.lower() for name, _value in own}
                headers = [*own, *(header for header in HEADERS if header[0] not in named)]
                has_rule = any(name.lower() == NO_STORE[0] for name, _value in headers)
                if not cacheable and not has_rule:
                    headers.append(NO_STORE)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyTooLarge(Exception):
    pass


class BodySizeLimitMiddleware:
    """Refuse request bodies over a limit before anything reads them into memory.

    Photo uploads (tus PATCH, at most 10 MB per photo) get their own, larger
    limit; everything else — forms, spreadsheets, sync batches — the smaller one.
    """

    def __init__(
        self, app: ASGIApp, limit: int = 6 * 1024 * 1024, upload_limit: int = 11 * 1024 * 1024
    ):
        self.app = app
        self.limit = limit
        self.upload_limit = upload_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.upload_limit if scope["path"].startswith("/api/uploads/") else self.limit
        declared = dict(scope.get("headers", [])).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge()
            return message

        try:
            await self.app(scope, counting_receive, send)
        except BodyTooLarge:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        from starlette.exceptions import HTTPException
        from starlette.requests import Request

        from server.errors import handle_http_exception

        request = Request(scope, receive)
        response = await handle_http_exception(request, HTTPException(413))
        await response(scope, receive, send)
