"""A user's own account: changing one's password, on the office pages and from the field app.

The current password is checked as a sign-in is (``auth.sign_in``), so wrong
guesses count toward the account's sign-in lockout. A new password follows the
rule every password follows (``accounts.password_problem``). Success ends the
user's other web sessions; the phones stay signed in (their tokens are not
passwords, and an administrator stops a lost phone: /admin/devices).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from server import accounts, auth
from server.errors import json_error
from server.i18n import gettext as _
from server.validation import ValidationError
from server.views.auth import login_error, read_json, sign_in, validation_api_error
from server.web import redirect, render, store, user

PAGE = "/account/password"


class NotChecked(Exception):
    """The current password could not be checked now (the sign-in is locked, or the
    server too busy): answered as a sign-in would be."""

    def __init__(self, error: auth.AuthError):
        super().__init__(error.code)
        self.code = error.code
        self.status, self.message, self.headers = login_error(error)


async def change_password(request: Request, raw, keep_session: str | None) -> None:
    """Check and store the signed-in user's new password; raises ``ValidationError``
    (field -> message) or ``NotChecked``. Nothing is saved unless all is right."""
    current = user(request)
    data = accounts.clean_password_change(raw, current.username)
    try:
        await sign_in(request, current.username, data["current_password"])
    except auth.BadCredentials:
        raise ValidationError({"current_password": _("account.password.wrong_current")}) from None
    except auth.AuthError as error:
        raise NotChecked(error) from None
    checks = request.app.state.password_checks
    password_hash = await checks.run(auth.hash_password, data["new_password"])
    await store(request).write(
        accounts.set_own_password, current.id, password_hash, keep_session
    )


def _page(request: Request, errors=None, error=None, status=200, headers=None):
    response = render(request, "account/password.html", {
        "schema": accounts.CHANGE_SCHEMA,
        "errors": errors or {},
        "error": error,
        "done": request.query_params.get("done") == "1" and not errors and not error,
        "min_length": accounts.MIN_PASSWORD_LENGTH,
    }, status=status)
    response.headers.update(headers or {})
    return response


async def password_form(request: Request):
    return _page(request)


async def password_change(request: Request):
    form = await request.form()
    try:
        await change_password(request, form, keep_session=request.state.session.token)
    except ValidationError as error:
        return _page(request, errors=error.errors, status=400)
    except NotChecked as refused:
        return _page(request, error=refused.message, status=refused.status,
                     headers=refused.headers)
    return redirect(f"{PAGE}?done=1")


async def api_password_change(request: Request):
    """The field app's password change (bearer token): 200, or 422 with the fields'
    messages, or as a refused sign-in: 429 while locked, 503 when busy."""
    body = await read_json(request)
    try:
        await change_password(request, body, keep_session=None)
    except ValidationError as error:
        raise validation_api_error(error) from None
    except NotChecked as refused:
        return json_error(refused.status, refused.code, refused.message, headers=refused.headers)
    return JSONResponse({"ok": True})
