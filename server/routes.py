"""Every route of the app, with the permission each one requires (see server/authz.py)."""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from server.authz import AUTHENTICATED, PUBLIC
from server.paths import STATIC_DIR
from server.views import admin, auth, pages
from server.web import api, page


async def healthz(request):
    return JSONResponse({"ok": True})


def build_routes():
    return [
        page("/", pages.home, AUTHENTICATED, name="home"),
        page("/login", auth.login_form, PUBLIC, name="login"),
        page("/login", auth.login, PUBLIC, methods=["POST"]),
        page("/logout", auth.logout, AUTHENTICATED, methods=["POST"], name="logout"),
        page("/problems", pages.problem_list, "problems.view", name="problems"),
        page("/problems/{problem_id}", pages.problem_detail, "problems.view"),
        page("/visits", pages.visit_list, "visits.view", name="visits"),
        page("/visits/{visit_id}", pages.visit_detail, "visits.view"),
        *admin.routes(),
        api("/api/login", auth.api_login, PUBLIC, methods=["POST"]),
        api("/api/me", auth.api_me, AUTHENTICATED),
        api("/api/logout", auth.api_logout, AUTHENTICATED, methods=["POST"]),
        api("/api/healthz", healthz, PUBLIC),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
