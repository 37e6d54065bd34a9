"""Every user-facing string comes from the catalog, and every key used exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from server import i18n
from server.paths import ROOT

KEY_USE = re.compile(r"""_\(\s*["']([a-z_]+(?:\.[a-z0-9_]+)+)["']\s*[,)]""")


def used_keys() -> set[tuple[str, str]]:
    found = set()
    for folder in ("server", "templates"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in (".py", ".html"):
                for key in KEY_USE.findall(path.read_text(encoding="utf-8")):
                    found.add((key, str(path.relative_to(ROOT))))
    return found


def test_every_literal_key_exists():
    catalog = i18n.catalog()
    missing = sorted(f"{key} ({where})" for key, where in used_keys() if key not in catalog)
    assert not missing, "\n".join(missing)


def test_dynamic_keys_exist():
    from server.problems import STATUSES
    from server.visits import CHECKLIST, METHODS

    catalog = i18n.catalog()
    for status in STATUSES:
        assert f"status.{status}" in catalog
    for method in METHODS:
        assert f"visit.method_{method}" in catalog
    for item in CHECKLIST:
        assert f"visit.check_{item}" in catalog
    from server.workflow import ACTIONS

    for name in ACTIONS:  # each action's button, and the button that submits its form
        assert f"action.{name}" in catalog and f"action_submit.{name}" in catalog


def test_missing_key_raises():
    with pytest.raises(i18n.MissingString):
        i18n.gettext("no.such.key")


def test_placeholders_are_filled():
    assert i18n.gettext("login.locked_out", minutes=15) == "登录失败次数过多，请 15 分钟后再试。"


def test_duplicate_keys_across_files_are_refused(tmp_path, monkeypatch):
    folder = tmp_path / "xx"
    folder.mkdir()
    (folder / "a.json").write_text('{"a": {"b": "1"}}', encoding="utf-8")
    (folder / "b.json").write_text('{"a": {"b": "2"}}', encoding="utf-8")
    monkeypatch.setattr(i18n, "LOCALE_DIR", Path(tmp_path))
    with pytest.raises(ValueError, match="redefines"):
        i18n.catalog.__wrapped__("xx")
