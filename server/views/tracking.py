"""The resident's tracking page (``/t/<token>``, no login) and the office's link actions.

The resident's page and its rating form are public routes; the token in the path is the
only credential (``server/ledger/tracking.py``). The form posts back with the guard's
CSRF check, the double-submit cookie the sign-in form uses (a signed-in visitor: their
session's token), so no page POST is exempt from it; the rating itself needs the token,
which a cross-site page does not have. Answers are ``no-store`` (middleware) and carry
``Referrer-Policy: no-referrer``, so the token leaves in no Referer header.

The office's actions (permission ``tracking.manage``) are ``reissue``, which answers the
printable receipt (回执) with the new link and its QR code, the only time the token is
shown, and ``revoke``.
"""

from __future__ import annotations

import io

import segno
from markupsafe import Markup
from starlette.requests import Request

from server.i18n import gettext as _
from server.ledger import tracking
from server.ledger.states import TransitionError
from server.validation import ValidationError
from server.views.auth import client_address
from server.views.pages import problem_page
from server.web import redirect, render, store, user

PRIVATE_HEADERS = {"Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex"}


def _page(request: Request, template: str, context: dict, status: int = 200):
    context = {"comment_max": tracking.COMMENT_MAX_LENGTH, "change_days": tracking.CHANGE_DAYS,
               **context}
    response = render(request, template, context, status=status)
    response.headers.update(PRIVATE_HEADERS)
    return response


def _refused(request: Request, error: tracking.TrackingError):
    if error.status == 404:
        return _page(request, "tracking/not_found.html", {}, status=404)
    response = _page(request, "tracking/refused.html", {"message": error.message},
                     status=error.status)
    if isinstance(error, tracking.RateLimited):
        response.headers["Retry-After"] = str(error.extra["minutes"] * 60)
    return response


def _view(db, token: str) -> dict | None:
    problem = tracking.find(db, token)
    return tracking.resident_view(db, problem) if problem else None


async def _counted(request: Request, token: str) -> tracking.TrackingError | None:
    try:
        await store(request).write(tracking.count_request, client_address(request), token)
    except tracking.RateLimited as error:
        return error
    return None


async def resident_page(request: Request):
    token = request.path_params["token"]
    limited = await _counted(request, token)
    if limited:
        return _refused(request, limited)
    view = await store(request).read(_view, token)
    if view is None:
        return _refused(request, tracking.TrackingError(404, _("tracking.not_found")))
    saved = request.query_params.get("saved") == "1"
    return _page(request, "tracking/page.html", {"view": view, "token": token, "saved": saved,
                                                 "values": {}, "errors": {}})


async def resident_rate(request: Request):
    token = request.path_params["token"]
    limited = await _counted(request, token)
    if limited:
        return _refused(request, limited)
    form = await request.form()
    try:
        await store(request).write(tracking.rate, token, form)
    except tracking.TrackingError as error:
        if error.status == 404:
            return _refused(request, error)
        view = await store(request).read(_view, token)
        return _page(request, "tracking/page.html", {
            "view": view, "token": token, "values": dict(form), "errors": {},
            "message": error.message}, status=error.status)
    except ValidationError as error:
        view = await store(request).read(_view, token)
        return _page(request, "tracking/page.html", {
            "view": view, "token": token, "values": dict(form), "errors": error.errors},
            status=400)
    response = redirect(f"/t/{token}?saved=1")
    response.headers.update(PRIVATE_HEADERS)
    return response


def qr_svg(url: str) -> Markup:
    """The link as a QR code, an inline SVG (error correction M, scaled by CSS)."""
    out = io.BytesIO()
    segno.make(url, error="m").save(out, kind="svg", xmldecl=False, svgns=True, scale=4,
                                    border=2, svgclass="qr", lineclass=None)
    return Markup(out.getvalue().decode())


def _receipt_data(db, problem_id: str) -> dict:
    row = db.execute(
        "SELECT p.ledger_no, p.found_at, p.accepted_at, c.name FROM problems p"
        " LEFT JOIN categories c ON c.id = p.category_id WHERE p.id = ?", [problem_id]
    ).fetchone()
    return {"ledger_no": row[0] or "", "found_at": row[1], "accepted_at": row[2],
            "category": row[3] or ""}


async def reissue(request: Request):
    problem_id = request.path_params["problem_id"]
    token = await store(request).write(tracking.reissue, user(request), problem_id)
    receipt = await store(request).read(_receipt_data, problem_id)
    url = tracking.tracking_url(str(request.base_url), token)
    return _page(request, "tracking/receipt.html", {
        "problem_id": problem_id, "receipt": receipt, "url": url, "qr": qr_svg(url)})


async def revoke(request: Request):
    try:
        await store(request).write(tracking.revoke, user(request), request.path_params[
            "problem_id"])
    except TransitionError as error:
        return await problem_page(request, message=error.message, status=error.status)
    return await problem_page(request, notice=_("tracking.revoked"))
