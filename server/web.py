"""Request plumbing shared by every view: the route guard, rendering, cookies and CSRF.

``page()``, ``api()`` and ``session_api()`` build routes whose endpoint runs
only after ``guard`` has identified the user, checked the route's permission
and (for requests that change data on the strength of the session cookie) the
CSRF token. No view repeats those checks.
"""

from __future__ import annotations

import hmac
import secrets
import urllib.parse
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from server import auth, authz, drafts
from server.errors import ApiError, error_page, json_error
from server.i18n import gettext as _
from server.settings import settings
from server.timeutil import parse_iso, utcnow

SESSION_COOKIE = "fl_session"
CSRF_COOKIE = "fl_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
NO_STORE = "no-store"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
DEVICE_TOUCH_SECONDS = 60

Endpoint = Callable[[Request], Awaitable[Response]]


def store(request: Request):
    return request.app.state.store


def user(request: Request) -> authz.User:
    return request.state.user


# Cookies ------------------------------------------------------------------


def _secure(request: Request) -> bool:
    return request.url.scheme == "https" or request.app.state.settings.secure_cookies


def set_cookie(request: Request, response: Response, name: str, value: str, max_age=None) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=_secure(request),
        path="/",
    )


def _session(request: Request) -> auth.Session | None:
    return getattr(request.state, "session", None)


def csrf_token(request: Request) -> str:
    """The CSRF token for forms on this page.

    Signed in, it is the web session's own (``auth.session_csrf_token``): a
    token from another session, or planted in the CSRF cookie, does not pass.
    Without a session (the sign-in form) it is a double-submit cookie.
    """
    session = _session(request)
    if session is not None:
        return auth.session_csrf_token(session.token)
    token = request.cookies.get(CSRF_COOKIE) or getattr(request.state, "new_csrf", None)
    if not token:
        token = secrets.token_urlsafe(32)
        request.state.new_csrf = token
    return token


def rotate_csrf(request: Request, response: Response, session_token: str | None = None) -> None:
    """A new CSRF cookie on signing in or out: the new session's token, or a fresh
    pre-session one. (Signed in, the cookie is not what is checked; it keeps the
    token of the session it was set with, for a form posted after that session
    ended: see ``sign_in_again``.)"""
    token = auth.session_csrf_token(session_token) if session_token else None
    set_cookie(request, response, CSRF_COOKIE, token or secrets.token_urlsafe(32))


def set_new_csrf_cookie(request: Request, response: Response) -> None:
    """Send the CSRF cookie if ``csrf_token`` had to make one for this answer."""
    new_token = getattr(request.state, "new_csrf", None)
    if new_token:
        set_cookie(request, response, CSRF_COOKIE, new_token)


def csrf_matches(request: Request, submitted) -> bool:
    """Whether ``submitted`` is the CSRF token: the session's when signed in, else
    the double-submit cookie's."""
    session = _session(request)
    if session is not None:
        expected = auth.session_csrf_token(session.token)
    else:
        expected = request.cookies.get(CSRF_COOKIE, "")
    return (
        bool(expected)
        and isinstance(submitted, str)
        and hmac.compare_digest(expected.encode(), submitted.encode())
    )


async def csrf_ok(request: Request) -> bool:
    if request.headers.get("sec-fetch-site") == "cross-site":
        return False
    try:
        form = await request.form()
    except Exception:
        return False
    return csrf_matches(request, form.get(CSRF_FIELD, ""))


def same_origin(request: Request) -> bool:
    """Whether the browser says this request comes from a page of this site.

    Browsers send ``Sec-Fetch-Site`` and ``Origin`` with a script's POST; a
    request that has them must be same-origin by both. Clients that send
    neither (old browsers, tests) are left to the CSRF token.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None and site != "same-origin":
        return False
    origin = request.headers.get("origin")
    return origin is None or urllib.parse.urlsplit(origin).netloc == request.url.netloc


# Rendering ----------------------------------------------------------------


def render(request: Request, template: str, context: dict | None = None, status: int = 200):
    context = dict(context or {})
    context.setdefault("user", getattr(request.state, "user", None))
    context["csrf_token"] = csrf_token(request)
    templates = request.app.state.templates
    response = templates.TemplateResponse(request, template, context, status_code=status)
    set_new_csrf_cookie(request, response)
    return response


def redirect(url: str, status: int = 303) -> RedirectResponse:
    return RedirectResponse(url, status_code=status)


def safe_next(url: str | None) -> str:
    """Only same-site relative paths may be redirected to after sign-in."""
    if not url or not url.startswith("/") or url.startswith("//") or "\\" in url:
        return "/"
    return url


# Identifying the user -----------------------------------------------------


def _signed_in(db, token: str) -> tuple[auth.Session | None, authz.User | None]:
    session = auth.live_session(db, token, settings(db)["session_idle_minutes"])
    found = auth.load_user(db, session.user_id) if session else None
    return (session, found) if found else (None, None)


async def session_user(request: Request) -> authz.User | None:
    """The user of the request's web session, if it is live; the session is kept
    in ``request.state.session`` and its last use recorded (once a minute at most)."""
    token = request.cookies.get(SESSION_COOKIE)
    session, found = await store(request).read(_signed_in, token) if token else (None, None)
    request.state.session = session
    request.state.user = found
    if session is not None and auth.session_needs_touch(session):
        await store(request).write(auth.touch_session, token)
    return found


def _device_user(db, token: str):
    device = auth.device_for_token(db, token)
    user = auth.load_user(db, device.user_id)
    if user is None:
        raise auth.AccountDisabled()
    return device, user


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _sep, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


AUTH_ERROR_MESSAGES = {
    "invalid_token": "auth.invalid_token",
    "device_revoked": "auth.device_revoked",
    "device_wiped": "auth.device_wiped",
    "account_disabled": "auth.invalid_token",
}


async def _api_user(request: Request) -> authz.User:
    token = bearer_token(request)
    if token is None:
        raise ApiError(401, "unauthorized", _("auth.token_required"))
    try:
        device, found = await store(request).read(_device_user, token)
    except auth.AuthError as error:
        raise ApiError(401, error.code, _(AUTH_ERROR_MESSAGES[error.code])) from None
    request.state.device = device
    last_seen = device.last_seen_at
    if (
        last_seen is None
        or (utcnow() - parse_iso(last_seen)).total_seconds() > DEVICE_TOUCH_SECONDS
    ):
        await store(request).write(auth.touch_device, device.id)
    return found


async def sign_in_again(request: Request, token: str | None) -> Response:
    """A form posted after its session expired: the sign-in page, carrying what was typed
    (see server/drafts.py). A post that fails the CSRF check carries nothing."""
    keep = await csrf_ok(request)
    owner = await store(request).read(auth.session_owner, token) if keep and token else None
    context = {
        "next": safe_next(drafts.return_path(request.url.path, request.headers.get("referer"))),
        "error": _("office.draft.expired"),
    }
    if keep:
        form = await request.form()
        context["draft"] = {"path": request.url.path, "owner": owner or "",
                            "fields": drafts.typed_fields(form)}
    return render(request, "login.html", context, status=401)


async def _session_api_response(request: Request, permission: str, endpoint: Endpoint):
    if await session_user(request) is None:
        raise ApiError(401, "session_required", _("auth.session_required"))
    try:
        authz.check(request.state.user, permission)
    except authz.Forbidden:
        raise ApiError(403, "forbidden", _("errors.http_403")) from None
    if request.method not in SAFE_METHODS and not (
        same_origin(request) and csrf_matches(request, request.headers.get(CSRF_HEADER))
    ):
        raise ApiError(403, "csrf", _("errors.csrf"))
    return await endpoint(request)


def guard(permission: str, endpoint: Endpoint, *, is_api: bool, by_session=False) -> Endpoint:
    async def guarded(request: Request) -> Response:
        if is_api and by_session:
            try:
                response = await _session_api_response(request, permission, endpoint)
            except ApiError as error:
                response = json_error(error.status, error.code, error.message, **error.extra)
            response.headers["Cache-Control"] = NO_STORE
            return response

        if is_api:
            request.state.user = None
            if permission != authz.PUBLIC:
                request.state.user = await _api_user(request)
            try:
                authz.check(request.state.user, permission)
            except authz.Forbidden:
                raise ApiError(403, "forbidden", _("errors.http_403")) from None
            return await endpoint(request)

        token = request.cookies.get(SESSION_COOKIE)
        await session_user(request)
        if request.state.user is None and permission != authz.PUBLIC:
            if request.method in SAFE_METHODS:
                target = urllib.parse.quote(
                    request.url.path + ("?" + request.url.query if request.url.query else "")
                )
                return redirect(f"/login?next={target}")
            return await sign_in_again(request, token)
        try:
            authz.check(request.state.user, permission)
        except authz.Forbidden:
            return error_page(request, 403)
        if request.method not in SAFE_METHODS and not await csrf_ok(request):
            return error_page(request, 403, _("errors.csrf"))
        return await endpoint(request)

    guarded.__name__ = getattr(endpoint, "__name__", "endpoint")
    guarded.__doc__ = endpoint.__doc__
    return guarded


def page(path: str, endpoint: Endpoint, permission: str, methods=("GET",), name=None) -> Route:
    """A server-rendered page or form action, guarded by ``permission``."""
    route = Route(path, guard(permission, endpoint, is_api=False), methods=list(methods), name=name)
    route.permission = permission  # read by the route x role matrix test
    return route


def api(path: str, endpoint: Endpoint, permission: str, methods=("GET",), name=None) -> Route:
    """A JSON API route, guarded by ``permission`` and authenticated by a device token."""
    route = Route(path, guard(permission, endpoint, is_api=True), methods=list(methods), name=name)
    route.permission = permission
    return route


def session_api(path: str, endpoint: Endpoint, permission: str, methods=("GET",)) -> Route:
    """A JSON API route for a page of this site, authenticated by the web session.

    Answers as the API does (errors as JSON: 401 without a session, 403
    without the permission) and are never stored (``Cache-Control: no-store``).
    A request that changes anything must come from this site: same-origin by
    ``Sec-Fetch-Site`` and ``Origin`` when the browser sends them, and always
    with the session's CSRF token in the ``X-CSRF-Token`` header.
    """
    route = Route(
        path, guard(permission, endpoint, is_api=True, by_session=True), methods=list(methods)
    )
    route.permission = permission
    return route


def page_number(request: Request) -> int:
    raw = request.query_params.get("page", "1")
    if raw.isascii() and raw.isdigit() and 0 < int(raw) < 100_000:
        return int(raw)
    return 1


def not_found_page(request: Request) -> Response:
    return error_page(request, 404)
