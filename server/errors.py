"""Errors: named exceptions, and how each becomes a response.

API routes (under ``/api/``) always answer errors as
``{"error": {"code": "...", "message": "..."}}``; pages answer with an HTML
error page. No response ever carries a traceback.
"""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from server.i18n import gettext as _

log = logging.getLogger("fieldledger")


class ApiError(Exception):
    """An error answered to an API client with a stable ``code``."""

    def __init__(self, status: int, code: str, message: str, **extra):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


class NotFound(Exception):
    """The record does not exist, or the user may not know that it does."""


def is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def json_error(status: int, code: str, message: str, headers=None, **extra) -> JSONResponse:
    body = {"error": {"code": code, "message": message, **extra}}
    return JSONResponse(body, status_code=status, headers=headers)


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    429: "too_many_requests",
    500: "server_error",
    503: "unavailable",
}


def _status_message(status: int) -> str:
    key = f"errors.http_{status}"
    try:
        return _(key)
    except KeyError:
        return _("errors.http_other")


def error_page(request: Request, status: int, message: str | None = None) -> Response:
    from server.web import render

    return render(
        request,
        "error.html",
        {"status": status, "message": message or _status_message(status)},
        status=status,
    )


def allowed_methods(request: Request) -> str:
    """Every method some route of this path answers to (a path's methods may be
    spread over several routes, each with its own permission)."""
    methods = set()
    for route in request.app.routes:
        pattern = getattr(route, "path_regex", None)
        if pattern is not None and getattr(route, "methods", None) and pattern.match(
                request.url.path):
            methods |= route.methods
    return ", ".join(sorted(methods))


async def handle_http_exception(request: Request, exc: HTTPException) -> Response:
    headers = exc.headers
    if exc.status_code == 405:
        headers = {**(headers or {}), "Allow": allowed_methods(request)}
    if is_api(request):
        return json_error(
            exc.status_code,
            _STATUS_CODES.get(exc.status_code, "error"),
            _status_message(exc.status_code),
            headers=headers,
        )
    response = error_page(request, exc.status_code)
    if headers:
        response.headers.update(headers)
    return response


async def handle_api_error(request: Request, exc: ApiError) -> Response:
    return json_error(exc.status, exc.code, exc.message, **exc.extra)


async def handle_not_found(request: Request, exc: NotFound) -> Response:
    return await handle_http_exception(request, HTTPException(404))


async def handle_server_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    if is_api(request):
        return json_error(500, "server_error", _status_message(500))
    try:
        return error_page(request, 500)
    except Exception:  # the error page itself failed: answer plain text
        return Response(_status_message(500), status_code=500, media_type="text/plain")


EXCEPTION_HANDLERS = {
    HTTPException: handle_http_exception,
    ApiError: handle_api_error,
    NotFound: handle_not_found,
    Exception: handle_server_error,
}
