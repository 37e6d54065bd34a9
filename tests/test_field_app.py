"""The field app's server side: shell, manifest, generated service worker, strings module."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from server import i18n
from server.paths import STATIC_DIR
from server.views import field_app


def test_shell_is_public_and_loads_one_module_without_inline_code(client):
    response = client.get("/app/")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-cache"
    html = response.text
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.S)
    assert len(scripts) == 1
    attributes, body = scripts[0]
    assert body.strip() == "" and 'type="module"' in attributes
    assert 'src="/static/app/main.js"' in attributes
    assert "<style" not in html and " style=" not in html
    assert not re.search(r"\son[a-z]+=", html)  # no inline event handlers
    assert 'href="/static/app/app.css"' in html
    assert 'rel="manifest" href="/app/manifest.webmanifest"' in html
    assert '<html lang="zh-CN" data-app-version="' in html
    assert "走访台账" in html


def test_shell_preloads_every_module_it_imports(client):
    html = client.get("/app/").text
    preloaded = set(re.findall(r'rel="modulepreload" href="([^"]+)"', html))
    for path in (STATIC_DIR / "app").glob("*.js"):
        for imported in re.findall(r"from '\./([\w-]+\.js)'", path.read_text(encoding="utf-8")):
            assert f"/static/app/{imported}" in preloaded
    assert "/app/strings.js" in preloaded


def test_manifest(client):
    response = client.get("/app/manifest.webmanifest")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/manifest+json")
    manifest = response.json()
    assert manifest["name"] == "走访台账"
    assert manifest["short_name"] == "走访台账"
    assert manifest["start_url"] == "/app/"
    assert manifest["scope"] == "/app/"
    assert manifest["display"] == "standalone"
    assert re.fullmatch(r"#[0-9a-f]{6}", manifest["theme_color"])
    assert re.fullmatch(r"#[0-9a-f]{6}", manifest["background_color"])
    by_purpose = {(icon["sizes"], icon["purpose"]) for icon in manifest["icons"]}
    assert {("192x192", "any"), ("512x512", "any"), ("512x512", "maskable")} <= by_purpose
    for icon in manifest["icons"]:
        image = client.get(icon["src"])
        assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
        from io import BytesIO

        from PIL import Image

        size = Image.open(BytesIO(image.content)).size
        assert f"{size[0]}x{size[1]}" == icon["sizes"]


def test_service_worker_lists_every_asset_and_carries_the_version(client):
    response = client.get("/app/sw.js")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["content-type"].startswith("text/javascript")
    assert response.headers["service-worker-allowed"] == "/app/"
    text = response.text
    config = json.loads(re.search(r"const CONFIG = (\{.*?\n\});", text, re.S).group(1))
    assert config["version"] == field_app.version()
    assert re.fullmatch(r"[0-9a-f]{20}", config["version"])
    assert config["shell"] == "/app/"
    assets = set(config["assets"])
    for name in ("main.js", "db.js", "sync.js", "photo-worker.js", "app.css"):
        assert f"/static/app/{name}" in assets
    assert "/static/icons/app-192.png" in assets and "/app/strings.js" in assets
    assert "/static/app/sw-template.js" not in assets
    for url in assets:
        assert client.get(url).status_code == 200, url
    assert "import " not in text.split("const CONFIG")[0]
    module = client.get("/app/sw.js?module=1").text
    assert module.startswith("import { syncFromWorker } from '/static/app/sync.js';")


def test_service_worker_strategies():
    text = field_app.service_worker()
    assert "startsWith('/api/')" in text  # the API passes through, never cached
    assert "SHELL_TIMEOUT_MS = 3000" in text
    assert "caches.delete" in text


@pytest.fixture
def app_copy(tmp_path, monkeypatch):
    """The app's static files copied to a temporary folder the test may change."""
    static = tmp_path / "static"
    shutil.copytree(STATIC_DIR / "app", static / "app")
    shutil.copytree(STATIC_DIR / "icons", static / "icons")
    shutil.copytree(STATIC_DIR / "vendor", static / "vendor")
    monkeypatch.setattr(field_app, "STATIC_DIR", static)
    monkeypatch.setattr(field_app, "APP_DIR", static / "app")
    monkeypatch.setattr(field_app, "ICONS_DIR", static / "icons")
    monkeypatch.setattr(field_app, "VENDOR_DIR", static / "vendor")
    monkeypatch.setattr(field_app, "SW_TEMPLATE", static / "app" / "sw-template.js")
    return static


@pytest.mark.parametrize("path", ["app/main.js", "app/app.css", "icons/app-192.png",
                                  "app/sw-template.js"])
def test_any_changed_file_changes_the_service_worker(app_copy, path):
    before = field_app.service_worker()
    target = app_copy / path
    target.write_bytes(target.read_bytes() + b"\n")
    after = field_app.service_worker()
    assert before != after
    assert field_app.version() in after


def test_a_new_file_changes_the_version(app_copy):
    before = field_app.version()
    (app_copy / "app" / "extra.js").write_text("export default 1;\n")
    assert field_app.version() != before
    assert "/static/app/extra.js" in field_app.asset_urls()


def test_strings_and_the_version_file_change_the_version(app_copy, monkeypatch, tmp_path):
    before = field_app.version()
    monkeypatch.setattr(field_app, "strings", lambda: {"x": "y"})
    assert field_app.version() != before
    monkeypatch.undo()
    salt = tmp_path / "salt"
    salt.write_text("1")
    monkeypatch.setenv(field_app.VERSION_SALT_ENV, str(salt))
    one = field_app.version()
    salt.write_text("2")
    assert field_app.version() != one


def test_strings_module_exports_every_app_string(client):
    response = client.get("/app/strings.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    text = response.text
    assert text.startswith("//") and "export default {" in text
    exported = json.loads(text.split("export default ", 1)[1].rstrip().rstrip(";"))
    catalog = i18n.catalog()
    expected = {k[len("app_ui."):]: v for k, v in catalog.items() if k.startswith("app_ui.")}
    # and the timeline's labels and the visit summary's lines, shared with the office pages
    # under their own keys
    expected |= {k: v for k, v in catalog.items() if k.startswith(("event.", "visit_summary."))}
    assert exported == expected
    assert exported["event.accept"] == "立案"
    assert exported["update.available"] == "新版本可用"


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_strings_module_is_valid_javascript(client, tmp_path):
    module = tmp_path / "strings.mjs"
    module.write_text(client.get("/app/strings.js").text, encoding="utf-8")
    out = subprocess.run(
        ["node", "--input-type=module", "-e",
         f"import s from {json.dumps(module.as_uri())}; console.log(Object.keys(s).length)"],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == len(field_app.strings())


def test_every_string_the_app_uses_exists():
    strings = field_app.strings()
    used = set()
    dynamic = set()
    for path in (STATIC_DIR / "app").glob("*.js"):
        source = path.read_text(encoding="utf-8")
        used |= set(re.findall(r"\bt\('([a-z_.]+)'", source))
        dynamic |= set(re.findall(r"\bt\(`([a-z_]+)\.\$\{", source))
    missing = sorted(key for key in used if key not in strings)
    assert not missing, missing
    for prefix in dynamic:
        assert any(key.startswith(prefix + ".") for key in strings), prefix
    for kind in ("visit", "diary", "problem", "note"):
        assert f"records.kind_{kind}" in strings
    from sync.schemas import CHECKLIST, PERSON_KINDS, URGENCIES, VISIT_METHODS

    for method in VISIT_METHODS:
        assert f"visit.method_{method}" in strings
    for item in CHECKLIST:
        assert f"visit.check_{item}" in strings
    for kind in PERSON_KINDS:
        assert f"diary.kind_{kind}" in strings
    for urgency in URGENCIES:
        assert f"urgency.{urgency}" in strings
    from server.ledger.problems import STATUSES

    for status in STATUSES:
        assert f"status.{status}" in strings


def test_app_code_has_no_user_visible_chinese_outside_the_catalog():
    wide = re.compile(r"[\u3000-\u9fff\uff00-\uffef]")
    for path in [*(STATIC_DIR / "app").rglob("*.js"), STATIC_DIR / "app" / "app.css"]:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("//")[0] if not line.lstrip().startswith("/*") else ""
            assert not wide.search(code), f"{path.name}:{number}: {line.strip()}"


def test_app_routes_need_no_session(client):
    for url in ("/app/", "/app/manifest.webmanifest", "/app/sw.js", "/app/strings.js"):
        response = client.get(url, follow_redirects=False)
        assert response.status_code == 200, url
        assert "set-cookie" not in response.headers, url


def _schema_limits(schema, limits=None) -> dict[str, set[int]]:
    """Every property's maxLength in the mutation schemas, by property name."""
    limits = {} if limits is None else limits
    if isinstance(schema, dict):
        for name, sub in schema.get("properties", {}).items():
            if isinstance(sub, dict) and "maxLength" in sub:
                limits.setdefault(name, set()).add(sub["maxLength"])
        for value in schema.values():
            _schema_limits(value, limits)
    elif isinstance(schema, list):
        for value in schema:
            _schema_limits(value, limits)
    return limits


def test_the_apps_text_limits_are_the_servers():
    """A field the app lets run longer than the server takes would be refused after the
    official left the place; shorter, and they could not type what the server allows."""
    from sync.schemas import MUTATIONS

    limits = _schema_limits(MUTATIONS)
    aliases = {"solved_note": "note"}
    found = []
    for path in field_app.APP_DIR.glob("*.js"):
        for name, limit in re.findall(r"name: '(\w+)'[^)]*?maxlength: (\d+)",
                                      path.read_text(encoding="utf-8")):
            found.append(name)
            assert int(limit) in limits[aliases.get(name, name)], (path.name, name, limit)
    assert {"description", "solved_note", "note", "content", "place", "companions"} <= set(found)


def test_the_qr_encoder_is_vendored_with_its_licence_and_precached():
    """The receipt's QR code is drawn offline: the encoder is one of the worker's files."""
    assert "/static/vendor/qrcode-generator.js" in field_app.asset_urls()
    licence = (STATIC_DIR / "vendor" / "qrcode-generator.LICENSE").read_text()
    assert "MIT" in licence and "Kazuhiko Arase" in licence
    module = (STATIC_DIR / "vendor" / "qrcode-generator.js").read_text()
    assert "export default qrcode" in module
    assert "/static/vendor/qrcode-generator.js" in (STATIC_DIR / "app" / "tracking.js").read_text()
