"""Signing in and out: the web login form, the phone's device-token login, and
the field app's sign-in with the browser's web session (no second password)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from server import admission, auth, authz, drafts
from server.errors import ApiError, json_error
from server.i18n import gettext as _
from server.validation import Field, Schema, ValidationError
from server.web import (
    SESSION_COOKIE,
    csrf_token,
    redirect,
    render,
    rotate_csrf,
    safe_next,
    set_cookie,
    set_new_csrf_cookie,
    store,
    user,
)

LOGIN_SCHEMA = Schema(
    Field("username", "login.username", required=True, max_length=64),
    Field("password", "login.password", kind="password", required=True, max_length=128),
)
DEVICE_NAME = Field("device_name", "device.name", max_length=60)
DEVICE_LOGIN_SCHEMA = Schema(*LOGIN_SCHEMA.fields, DEVICE_NAME)
SESSION_DEVICE_SCHEMA = Schema(DEVICE_NAME)
NO_STORE = {"Cache-Control": "no-store"}


# A screen narrower than this (its shorter side, in CSS pixels) is a phone's.
PHONE_SCREEN_MAX = 600


def phone_sized(form, headers) -> bool:
    """Whether the sign-in came from a phone-sized screen.

    The sign-in page's script (static/js/login.js) sends the screen's shorter
    side as ``screen_width``; without script, a User-Agent that says "Mobile"
    (phones' browsers do, tablets' do not) decides.
    """
    width = form.get("screen_width") or ""
    if width.isdigit():
        return int(width) < PHONE_SCREEN_MAX
    return "Mobile" in headers.get("user-agent", "")


def landing(current: authz.User, next_url: str, phone: bool) -> str:
    """Where a sign-in leads: a field-only official on a phone goes to the field app,
    unless the sign-in was asked for on the way to a particular page."""
    if phone and next_url == "/" and current.roles == {authz.FIELD}:
        return "/app/"
    return next_url


def client_address(request: Request) -> str:
    """The address a request came from, as the sign-in limits count it. Behind a
    reverse proxy it is the proxy's, unless uvicorn trusts the proxy's
    X-Forwarded-For (``--forwarded-allow-ips``, docs/deployment.md)."""
    return request.client.host if request.client else ""


async def sign_in(request: Request, username: str, password: str) -> int:
    return await auth.sign_in(
        store(request), request.app.state.password_checks, username, password,
        client_address(request), gone=lambda: admission.client_gone(request),
    )


def login_error(error: auth.AuthError) -> tuple[int, str, dict]:
    """The status, message and headers of a refused sign-in."""
    if isinstance(error, auth.LockedOut):
        return (429, _("login.locked_out", minutes=error.minutes),
                {"Retry-After": str(error.minutes * 60)})
    if isinstance(error, auth.Busy):
        seconds = error.retry_after
        return 503, _("lockout.busy", seconds=seconds), {"Retry-After": str(seconds)}
    return 401, _("login.bad_credentials"), {}


async def login_form(request: Request):
    if getattr(request.state, "user", None):
        return redirect(safe_next(request.query_params.get("next")))
    return render(request, "login.html", {"next": safe_next(request.query_params.get("next"))})


def _posted_draft(form) -> dict | None:
    """The draft a sign-in page carries (server/drafts.py), as it was rendered."""
    path = form.get("draft_path")
    if not isinstance(path, str) or not path.startswith("/"):
        return None
    fields = [(name[len(drafts.PREFIX):], value) for name, value in drafts.typed_fields(form)
              if name.startswith(drafts.PREFIX)]
    return {"path": path, "owner": form.get("draft_owner", ""), "fields": fields}


async def _keep_draft(request: Request, draft: dict | None, user_id: int, next_url: str) -> str:
    """Where to go after signing in: with the draft's key if it is this user's."""
    if draft is None or not draft["fields"] or draft["owner"] not in ("", str(user_id)):
        return next_url
    key = await store(request).write(drafts.put, user_id, draft["path"], draft["fields"])
    return drafts.with_key(next_url, key)


async def login(request: Request):
    form = await request.form()
    next_url = safe_next(form.get("next"))
    draft = _posted_draft(form)
    context = {"next": next_url, "values": {"username": form.get("username", "")},
               "draft": draft}
    try:
        data = LOGIN_SCHEMA.clean(form)
        user_id = await sign_in(request, data["username"], data["password"])
    except ValidationError as error:
        return render(request, "login.html", {**context, "errors": error.errors}, status=400)
    except auth.AuthError as error:
        status, message, headers = login_error(error)
        response = render(request, "login.html", {**context, "error": message}, status=status)
        response.headers.update(headers)
        return response
    token = await store(request).write(auth.start_session, user_id)
    current = await store(request).read(auth.load_user, user_id)
    landing_url = landing(current, next_url, phone_sized(form, request.headers))
    response = redirect(await _keep_draft(request, draft, user_id, landing_url))
    set_cookie(
        request, response, SESSION_COOKIE, token, max_age=int(auth.SESSION_LIFETIME.total_seconds())
    )
    rotate_csrf(request, response, token)
    return response


async def logout(request: Request):
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        await store(request).write(auth.end_session, token)
    response = redirect("/login")
    response.delete_cookie(SESSION_COOKIE, path="/")
    rotate_csrf(request, response)
    return response


async def read_json(request: Request) -> dict:
    """The request body as a JSON object, or a 400 API error."""
    try:
        body = await request.json()
    except ValueError:
        raise ApiError(400, "bad_json", _("errors.bad_json")) from None
    except RecursionError:  # nested deeper than Python's parser goes
        raise ApiError(400, "bad_body", _("errors.json_too_deep")) from None
    if not isinstance(body, dict):
        raise ApiError(400, "bad_json", _("errors.bad_json"))
    return body


def validation_api_error(error: ValidationError) -> ApiError:
    return ApiError(422, "invalid_input", _("errors.invalid_input"), fields=error.errors)


def user_json(current) -> dict:
    return {
        "id": current.id,
        "username": current.username,
        "display_name": current.display_name,
        "roles": sorted(current.roles),
        "area": {"id": current.area_id, "name": current.area_name},
        "unit": {"id": current.unit_id, "name": current.unit_name} if current.unit_id else None,
    }


async def issue_device(
    request: Request, user_id: int, device_name: str, register=auth.register_device
) -> JSONResponse:
    """A new device token for the user, answered as the app expects it from a sign-in:
    201 with the token (shown this once), the device's id and the user."""
    device_name = device_name or _("auth.device_name_default")
    device_id, token = await store(request).write(register, user_id, device_name)
    current = await store(request).read(auth.load_user, user_id)
    return JSONResponse(
        {"token": token, "device_id": device_id, "user": user_json(current)},
        status_code=201,
        headers=NO_STORE,
    )


async def api_login(request: Request):
    body = await read_json(request)
    try:
        data = DEVICE_LOGIN_SCHEMA.clean_json(body)
    except ValidationError as error:
        raise validation_api_error(error) from None
    try:
        user_id = await sign_in(request, data["username"], data["password"])
    except auth.AuthError as error:
        status, message, headers = login_error(error)
        code = "bad_credentials" if status == 401 else error.code
        return json_error(status, code, message, headers=headers)
    return await issue_device(request, user_id, data["device_name"])


async def api_session(request: Request):
    """The web session the browser holds, for the field app on the same site:
    who is signed in, since when, and the session's CSRF token, which the app
    sends back to ``api_session_device``. Other sites cannot read this answer
    (no CORS), so they never learn the token."""
    current = user(request)
    started = request.state.session.created_at
    response = JSONResponse(
        {"user": user_json(current), "signed_in_at": started, "csrf_token": csrf_token(request)}
    )
    set_new_csrf_cookie(request, response)
    return response


async def api_session_device(request: Request):
    """Sign the field app in with the browser's web session: the device token that
    ``/api/login`` would give, without asking for the password a second time.

    The web session is a cookie the browser sends by itself, so this exchange
    must not be possible from another site (``server.web.session_api`` checks
    it before this runs). Of the two usual defences both are required, because
    each covers what the other may miss: the session's CSRF token, which only a
    page of this site can read (from ``api_session``) and which no browser
    quirk or missing header can bypass; and ``Sec-Fetch-Site``/``Origin``
    saying same-origin, which also stops a sibling subdomain that could plant
    a CSRF cookie. The session cookie itself is SameSite=Lax, so a cross-site
    POST does not even carry it. Only an active user with a live session gets
    here (else 401), with the sync.capture permission (else 403); the number
    of new devices is limited like sign-in attempts
    (``auth.register_device_from_session``).
    """
    body = await read_json(request)
    try:
        data = SESSION_DEVICE_SCHEMA.clean_json(body)
    except ValidationError as error:
        raise validation_api_error(error) from None
    try:
        return await issue_device(
            request, user(request).id, data["device_name"], auth.register_device_from_session
        )
    except auth.TooManyDevices:
        minutes = int(auth.FAILURE_WINDOW.total_seconds() // 60)
        raise ApiError(
            429, "too_many_devices", _("auth.too_many_devices", minutes=minutes)
        ) from None


async def api_me(request: Request):
    return JSONResponse({"user": user_json(user(request)), "device_id": request.state.device.id})


async def api_logout(request: Request):
    """Sign this phone out: its token stops working (a plain revocation by its owner)."""
    current = user(request)
    await store(request).write(auth.revoke_device, request.state.device.id, "stop", current.id)
    return JSONResponse({"ok": True})
