"""The field officials' offline app (PWA) at /app/: shell, manifest, service worker, strings.

Everything here is public: the app must start with no session and no signal.
All data goes through the bearer-token API (``/api/*``).

The service worker is generated: it lists every file the app needs and is
versioned by a hash of all of them (the shell template, the strings, the
static files and the worker's own template), so changing any file changes the
worker and the browser installs the new version.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

from server import i18n
from server.authz import PUBLIC
from server.paths import STATIC_DIR, TEMPLATES_DIR
from server.web import page

APP_DIR = STATIC_DIR / "app"
ICONS_DIR = STATIC_DIR / "icons"
VENDOR_DIR = STATIC_DIR / "vendor"  # third-party modules the app loads (the QR encoder)
SHELL_TEMPLATE = "field_app.html"
SW_TEMPLATE = APP_DIR / "sw-template.js"
STRINGS_PREFIX = "app_ui."
# Parts of the catalog the app shares with the office pages, under their own keys.
SHARED_PREFIXES = ("event.", "visit_summary.")
THEME_COLOR = "#1d5fa8"
BACKGROUND_COLOR = "#f4f6f9"
# Tests point this at a file whose content joins the version hash, to force
# an update of the service worker without touching the app's files.
VERSION_SALT_ENV = "FIELDLEDGER_APP_VERSION_FILE"
NO_CACHE = {"Cache-Control": "no-cache"}


def strings() -> dict[str, str]:
    """The app's strings, read from the merged catalog: every "app_ui.*" key
    without the prefix, and the parts shared with the office pages (the
    timeline's "event.*") under their own keys."""
    catalog = i18n.catalog()
    own = {
        key[len(STRINGS_PREFIX):]: value
        for key, value in catalog.items()
        if key.startswith(STRINGS_PREFIX)
    }
    shared = {key: value for key, value in catalog.items() if key.startswith(SHARED_PREFIXES)}
    clash = own.keys() & shared.keys()
    if clash:
        raise ValueError(f"app_ui redefines shared strings {sorted(clash)}")
    return dict(sorted({**own, **shared}.items()))


def strings_module() -> str:
    body = json.dumps(strings(), ensure_ascii=False, indent=0, sort_keys=True)
    return (
        "// Generated from server/locale/zh-CN/*.json (app_ui.*, and the shared event.*).\n"
        f"export default {body};\n"
    )


def _static_files() -> list[Path]:
    """Every static file the app needs offline, in a stable order."""
    files = []
    for folder in (APP_DIR, ICONS_DIR, VENDOR_DIR):
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path != SW_TEMPLATE and not path.name.startswith("."):
                files.append(path)
    return files


def module_files() -> list[str]:
    """URLs of the app's ES modules, for modulepreload in the shell."""
    return [
        "/static/" + path.relative_to(STATIC_DIR).as_posix()
        for path in sorted(APP_DIR.glob("*.js"))
        if path != SW_TEMPLATE and path.name != "photo-worker.js"
    ]


def asset_urls() -> list[str]:
    return [
        "/static/" + path.relative_to(STATIC_DIR).as_posix() for path in _static_files()
    ] + ["/app/strings.js", "/app/manifest.webmanifest"]


def version() -> str:
    """A hash of everything the app is made of: any change gives a new version."""
    digest = hashlib.sha256()
    inputs = [
        *(("static/" + path.relative_to(STATIC_DIR).as_posix(), path)
          for path in [*_static_files(), SW_TEMPLATE]),
        ("templates/" + SHELL_TEMPLATE, TEMPLATES_DIR / SHELL_TEMPLATE),
    ]
    for name, path in inputs:
        digest.update(name.encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    digest.update(strings_module().encode())
    digest.update(json.dumps(manifest_data(), sort_keys=True).encode())
    salt = os.environ.get(VERSION_SALT_ENV)
    if salt and Path(salt).is_file():
        digest.update(Path(salt).read_bytes())
    return digest.hexdigest()[:20]


def manifest_data() -> dict:
    name = i18n.gettext("app_ui.app.name")
    return {
        "name": name,
        "short_name": i18n.gettext("app_ui.app.short_name"),
        "description": i18n.gettext("app_ui.app.description"),
        "lang": "zh-CN",
        "start_url": "/app/",
        "scope": "/app/",
        "id": "/app/",
        "display": "standalone",
        "orientation": "portrait",
        "theme_color": THEME_COLOR,
        "background_color": BACKGROUND_COLOR,
        "icons": [
            {"src": "/static/icons/app-192.png", "sizes": "192x192", "type": "image/png",
             "purpose": "any"},
            {"src": "/static/icons/app-512.png", "sizes": "512x512", "type": "image/png",
             "purpose": "any"},
            {"src": "/static/icons/app-maskable-512.png", "sizes": "512x512",
             "type": "image/png", "purpose": "maskable"},
        ],
    }


def service_worker(module: bool = False) -> str:
    """The service worker: the template with the version and asset list filled in.

    ``module`` makes the module variant, which imports the sync client so that
    Background Sync can sync while no page of the app is open.
    """
    config = {"version": version(), "assets": asset_urls(), "shell": "/app/"}
    head = f"const CONFIG = {json.dumps(config, indent=1)};\n"
    if module:
        head = "import { syncFromWorker } from '/static/app/sync.js';\n" + head
        head += "self.flBackgroundSync = syncFromWorker;\n"
    return head + SW_TEMPLATE.read_text(encoding="utf-8")


# Views ----------------------------------------------------------------------


async def shell(request: Request):
    templates = request.app.state.templates
    return templates.TemplateResponse(
        request, SHELL_TEMPLATE,
        {"modules": module_files(), "theme_color": THEME_COLOR, "version": version()},
        headers=NO_CACHE,
    )


async def manifest(request: Request):
    return Response(
        json.dumps(manifest_data(), ensure_ascii=False),
        media_type="application/manifest+json", headers=NO_CACHE,
    )


async def sw(request: Request):
    module = request.query_params.get("module") == "1"
    return Response(
        service_worker(module), media_type="text/javascript",
        headers={**NO_CACHE, "Service-Worker-Allowed": "/app/"},
    )


async def strings_js(request: Request):
    return Response(strings_module(), media_type="text/javascript", headers=NO_CACHE)


def routes():
    return [
        page("/app/", shell, PUBLIC, name="field_app"),
        page("/app/manifest.webmanifest", manifest, PUBLIC),
        page("/app/sw.js", sw, PUBLIC),
        page("/app/strings.js", strings_js, PUBLIC),
    ]
