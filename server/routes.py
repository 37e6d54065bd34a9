"""Every route of the app, with the permission each one requires (see server/authz.py)."""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from server import openapi
from server.authz import AUTHENTICATED, PUBLIC
from server.paths import STATIC_DIR
from server.views import (
    account,
    admin,
    admin_audit,
    admin_calendar,
    admin_import,
    admin_reasons,
    auth,
    field_app,
    ledger,
    ledger_pages,
    pages,
    reports,
    sync,
    tracking,
    visits,
)
from server.web import api, page, session_api


async def healthz(request):
    return JSONResponse({"ok": True})


def build_routes():
    return [
        page("/", pages.home, AUTHENTICATED, name="home"),
        page("/login", auth.login_form, PUBLIC, name="login"),
        page("/login", auth.login, PUBLIC, methods=["POST"]),
        page("/logout", auth.logout, AUTHENTICATED, methods=["POST"], name="logout"),
        page("/account/password", account.password_form, AUTHENTICATED, name="account_password"),
        page("/account/password", account.password_change, AUTHENTICATED, methods=["POST"]),
        page("/problems", ledger_pages.ledger_list, "problems.view", name="problems"),
        page("/problems/export.xlsx", ledger_pages.export_xlsx, "export"),
        page("/problems/export.csv", ledger_pages.export_csv, "export"),
        page("/work", ledger_pages.my_work, "work.view", name="work"),
        page("/diary", ledger_pages.diary_list, "visits.view", name="diary"),
        page("/stats", ledger_pages.stats, "stats.view", name="stats"),
        page("/supervision", ledger_pages.supervision_list, "supervision.view",
             name="supervision"),
        page("/problems/{problem_id}", pages.problem_detail, "problems.view"),
        page("/problems/{problem_id}/actions/{action}", ledger.problem_action, "problems.view",
             methods=["POST"]),
        page("/problems/{problem_id}/tracking/reissue", tracking.reissue, "tracking.manage",
             methods=["POST"]),
        page("/problems/{problem_id}/tracking/revoke", tracking.revoke, "tracking.manage",
             methods=["POST"]),
        page("/t/{token}", tracking.resident_page, PUBLIC, name="tracking"),
        page("/t/{token}/rating", tracking.resident_rate, PUBLIC, methods=["POST"]),
        page("/visits", visits.visit_list, "visits.view", name="visits"),
        page("/visits/report.docx", visits.visit_report_docx, "visits.report"),
        page("/visits/{visit_id}", visits.visit_detail, "visits.view"),
        *reports.routes(),
        *admin.routes(),
        *admin_import.routes(),
        *admin_calendar.routes(),
        *admin_reasons.routes(),
        *admin_audit.routes(),
        *field_app.routes(),
        api("/api/login", auth.api_login, PUBLIC, methods=["POST"]),
        session_api("/api/session", auth.api_session, "sync.capture"),
        session_api("/api/session/device", auth.api_session_device, "sync.capture",
                    methods=["POST"]),
        api("/api/me", auth.api_me, AUTHENTICATED),
        api("/api/logout", auth.api_logout, AUTHENTICATED, methods=["POST"]),
        api("/api/account/password", account.api_password_change, AUTHENTICATED,
            methods=["POST"]),
        api("/api/healthz", healthz, PUBLIC),
        api("/api/openapi.json", openapi.openapi, PUBLIC),
        api("/api/sync/push", sync.sync_push, AUTHENTICATED, methods=["POST"]),
        api("/api/sync/pull", sync.sync_pull, AUTHENTICATED),
        api("/api/problems/lookup", sync.problem_lookup, "problems.view"),
        api("/api/uploads", sync.tus_options, PUBLIC, methods=["OPTIONS"]),
        api("/api/uploads", sync.tus_create, AUTHENTICATED, methods=["POST"]),
        api("/api/uploads/{upload_id}", sync.tus_head, AUTHENTICATED, methods=["HEAD"]),
        api("/api/uploads/{upload_id}", sync.tus_patch, AUTHENTICATED, methods=["PATCH"]),
        api("/api/photos/{sha256}", sync.photo, AUTHENTICATED),
        api("/api/photos/{sha256}/thumb", sync.photo_thumb, AUTHENTICATED),
        page("/photos/{sha256}", sync.photo, AUTHENTICATED),
        page("/photos/{sha256}/thumb", sync.photo_thumb, AUTHENTICATED),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
