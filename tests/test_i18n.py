"""Every user-facing string comes from the catalog, and every key used exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from server import i18n
from server.ledger import events
from server.paths import ROOT
from server.views import field_app

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
    from server.ledger.problems import STATUSES
    from server.visits import CHECKLIST, METHODS

    catalog = i18n.catalog()
    for status in STATUSES:
        assert f"status.{status}" in catalog
    for method in METHODS:
        assert f"visit.method_{method}" in catalog
    for item in CHECKLIST:
        assert f"visit.check_{item}" in catalog
    from server.ledger.workflow import ACTIONS

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


# Problem events ---------------------------------------------------------------------

CODE_FOLDERS = ("server", "sync")


def _literal_event_kinds() -> set[tuple[str, str]]:
    """Event kinds the code writes as literals: the kind argument of every
    ``_event(db, problem, kind, ...)`` or ``append_event(db, problem, kind, ...)`` call,
    and the "kind" of any dict that also has a "problem_id" (a row of problem_events)."""
    found = set()
    for folder in CODE_FOLDERS:
        for path in (ROOT / folder).rglob("*.py"):
            where = str(path.relative_to(ROOT))
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Call):
                    name = getattr(node.func, "id", getattr(node.func, "attr", ""))
                    if name in ("_event", "append_event") and len(node.args) > 2:
                        kind = node.args[2]
                        if isinstance(kind, ast.Constant) and isinstance(kind.value, str):
                            found.add((kind.value, where))
                elif isinstance(node, ast.Dict):
                    keys = {k.value: v for k, v in zip(node.keys, node.values, strict=True)
                            if isinstance(k, ast.Constant)}
                    kind = keys.get("kind")
                    if ("problem_id" in keys and isinstance(kind, ast.Constant)
                            and isinstance(kind.value, str)):
                        found.add((kind.value, where))
    return found


def test_every_event_kind_has_a_label():
    catalog = i18n.catalog()
    missing = [kind for kind in events.kinds() if f"event.{kind}" not in catalog]
    assert not missing, f"add event.<kind> strings for {missing}"


def test_every_event_kind_the_code_writes_is_listed():
    found = _literal_event_kinds()
    assert {"reported", "note", "edited", "merged_in", "deadline_recomputed"} <= {
        kind for kind, _ in found}
    unknown = sorted(f"{kind} ({where})" for kind, where in found if kind not in events.kinds())
    assert not unknown, (
        "list these in server/ledger/events.py NON_ACTION_KINDS:\n" + "\n".join(unknown))


def test_event_labels_are_not_their_keys():
    for kind in events.kinds():
        assert events.label(kind) and "." not in events.label(kind)


# The field app's keys -----------------------------------------------------------------

APP_DIR = ROOT / "static" / "app"
JS_KEY = re.compile(r"""\bt\(\s*(?:'([^'\n]+)'|"([^"\n]+)"|`([^`\n]+)`)""")


def _app_key_uses() -> list[tuple[str, str]]:
    uses = []
    for path in sorted(APP_DIR.glob("*.js")):
        for match in JS_KEY.finditer(path.read_text(encoding="utf-8")):
            uses.append((next(filter(None, match.groups())), path.name))
    return uses


def _dynamic_families() -> dict[str, tuple[str, ...]]:
    """Every value a `t(`prefix${…}`)` of the app may be called with, where the code knows it."""
    from server.ledger.problems import STATUSES
    from sync.schemas import CHECKLIST, PERSON_KINDS, URGENCIES, VISIT_METHODS

    routes = re.findall(r"\), '(\w+)'\],", (APP_DIR / "main.js").read_text(encoding="utf-8"))
    assert routes
    return {
        "event.": events.kinds(),
        "status.": tuple(STATUSES),
        "urgency.": tuple(URGENCIES),
        "visit.method_": tuple(VISIT_METHODS),
        "visit.check_": tuple(CHECKLIST),
        "diary.kind_": tuple(PERSON_KINDS),
        "title.": tuple(routes),
    }


def test_every_key_the_app_uses_exists():
    strings = field_app.strings()
    uses = _app_key_uses()
    assert len(uses) > 100
    families = _dynamic_families()
    missing = []
    for key, where in uses:
        if "${" not in key:
            if key not in strings:
                missing.append(f"{key} ({where})")
            continue
        prefix = key.split("${")[0]
        values = families.get(prefix)
        if values is None:  # a family the code cannot enumerate: at least one string
            pattern = re.compile(re.sub(r"\\\$\\\{[^}]*\\\}", "[a-z0-9_]+", re.escape(key)) + "$")
            if not any(pattern.match(name) for name in strings):
                missing.append(f"{key} ({where})")
            continue
        missing += [f"{prefix}{value} ({where})" for value in values
                    if f"{prefix}{value}" not in strings]
    assert not missing, "\n".join(sorted(set(missing)))


def test_app_strings_carry_the_event_labels():
    strings = field_app.strings()
    for kind in events.kinds():
        assert strings[f"event.{kind}"] == i18n.gettext(f"event.{kind}")
