"""Error answers: JSON for the API, a page for people, never a traceback."""

from __future__ import annotations

from starlette.testclient import TestClient

from server.i18n import gettext as _
from server.web import page
from tests.conftest import login


def test_unknown_page_is_a_404_page(client):
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert "text/html" in response.headers["content-type"]
    assert _("errors.http_404") in response.text


def test_unknown_api_route_is_a_json_404(client):
    response = client.get("/api/no-such-thing")
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": _("errors.http_404")}}


def test_wrong_method_is_405(client):
    response = client.delete("/api/login")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_a_405_lists_every_method_of_the_path(client):
    # A path's methods may be spread over routes with different permissions.
    assert client.request("OPTIONS", "/api/uploads/abc").headers["allow"] == "HEAD, PATCH"
    assert client.get("/api/uploads").headers["allow"] == "OPTIONS, POST"
    assert client.delete("/api/login").headers["allow"] == "POST"
    page_answer = client.delete("/login")
    assert page_answer.status_code == 405 and page_answer.headers["allow"] == "GET, HEAD, POST"


def test_server_error_shows_no_traceback(app, world):
    async def explode(request):
        raise RuntimeError("secret internals /etc/passwd")

    app.router.routes.insert(0, page("/explode", explode, "authenticated"))
    with TestClient(app, raise_server_exceptions=False) as client:
        login(client, "office")
        response = client.get("/explode")
    assert response.status_code == 500
    assert "secret internals" not in response.text
    assert "Traceback" not in response.text
    assert _("errors.http_500") in response.text


def test_api_server_error_is_json(app, world):
    from server.authz import PUBLIC
    from server.web import api

    async def explode(request):
        raise RuntimeError("boom")

    app.router.routes.insert(0, api("/api/explode", explode, PUBLIC))
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/api/explode")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "server_error"
    assert "boom" not in response.text


def test_security_headers_on_every_response(client):
    for url in ("/login", "/api/healthz", "/nowhere"):
        headers = client.get(url).headers
        assert headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in headers["content-security-policy"]


def test_forbidden_page_for_wrong_role(login_as):
    response = login_as("field1").get("/admin/users")
    assert response.status_code == 403
    assert _("errors.http_403") in response.text


def test_oversized_bodies_are_refused_before_reading(login_as, db):
    client = login_as("admin")
    before = db["units"].count
    response = client.post(
        "/admin/import",
        content=b"x" * (7 * 1024 * 1024),
        headers={"content-type": "multipart/form-data; boundary=x"},
    )
    assert response.status_code == 413
    assert db["units"].count == before


def test_oversized_api_body_is_a_json_413(client):
    response = client.post(
        "/api/sync/push",
        content=b"{" + b" " * (7 * 1024 * 1024),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
