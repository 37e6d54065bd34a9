"""Authorization: the one place that says who may do what, and see which rows.

Two questions, answered only here:

* may this user use this route?  ``PERMISSIONS`` maps a permission to roles;
  every route names one permission (see ``server/routes.py``), checked by
  ``server.web.guard`` before the endpoint runs.
* which rows may this user see?  The ``*_scope`` functions return a SQL
  condition and its parameters, used by every query that lists or fetches
  records for a user.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FIELD = "field"  # 走访干部
OFFICE = "office"  # 台账管理员
HANDLER = "handler"  # 承办人
LEADER = "leader"  # 领导
ADMIN = "admin"  # 系统管理员

ROLES = (FIELD, OFFICE, HANDLER, LEADER, ADMIN)

# Public routes (login, static files, health) use the permission PUBLIC;
# AUTHENTICATED only requires a signed-in active user of any role.
PUBLIC = "public"
AUTHENTICATED = "authenticated"

PERMISSIONS: dict[str, frozenset[str]] = {
    # Reading problems; what rows each role sees is decided by problem_scope().
    "problems.view": frozenset({FIELD, OFFICE, HANDLER, LEADER}),
    # Visits and people's diaries: field officials their own, office and leaders their area.
    "visits.view": frozenset({FIELD, OFFICE, LEADER}),
    # The 走访报告 (a Word document of the visits in a period and an area), for those who
    # read visits of an area: the office and leaders.
    "visits.report": frozenset({OFFICE, LEADER}),
    # Recording visits, diaries and problems from the phone.
    "sync.capture": frozenset({FIELD, OFFICE, LEADER}),
    # The ledger's work queues (我的工作): office, unit handlers and leaders.
    "work.view": frozenset({OFFICE, HANDLER, LEADER}),
    # Statistics (统计分析), within the user's problem scope.
    "stats.view": frozenset({OFFICE, LEADER}),
    # The supervision page (督办): open orders and flags by unit, within the problem scope.
    "supervision.view": frozenset({OFFICE, LEADER}),
    # Reports handed up (周报/月报/季报): read by the office and leaders within their area
    # subtree; issued by the office (server/ledger/reports.py).
    "reports.view": frozenset({OFFICE, LEADER}),
    "reports.issue": frozenset({OFFICE}),
    # Exporting the ledger (XLSX / CSV), within the user's problem scope.
    "export": frozenset({OFFICE, HANDLER, LEADER}),
    # Residents' phone numbers unmasked, on every problem in scope: the office, which calls
    # them back. The lead unit's handlers see them on their unit's problems only
    # (may_see_resident_phone).
    "resident_phone.view": frozenset({OFFICE}),
    # The resident's tracking link of a problem in scope: issue a new one (the receipt, 回执)
    # or revoke it (server/ledger/tracking.py). The office, which owns the ledger.
    "tracking.manage": frozenset({OFFICE}),
    # Accounts, units, areas, categories, imports and devices.
    "admin.manage": frozenset({ADMIN}),
}


class Forbidden(Exception):
    """The user is signed in but may not do this."""


@dataclass(frozen=True)
class User:
    id: int
    username: str
    display_name: str
    roles: frozenset[str]
    area_id: int
    area_path: str
    unit_id: int | None
    area_name: str = ""
    unit_name: str = ""
    permissions: frozenset[str] = field(default=frozenset())

    def has_role(self, role: str) -> bool:
        return role in self.roles

    @property
    def area_depth(self) -> int:
        """The level of the user's area in the tree: 1 the city, 2 a district, ..."""
        return self.area_path.count("/") - 1

    def can(self, permission: str) -> bool:
        if permission in (PUBLIC, AUTHENTICATED):
            return True
        return bool(PERMISSIONS[permission] & self.roles)


def check(user: User | None, permission: str) -> None:
    if permission == PUBLIC:
        return
    if user is None:
        raise Forbidden(permission)
    if not user.can(permission):
        raise Forbidden(permission)


def parse_roles(text: str) -> frozenset[str]:
    return frozenset(role for role in text.split(",") if role)


def format_roles(roles) -> str:
    return ",".join(role for role in ROLES if role in set(roles))


def subtree_bounds(user: User) -> list[str]:
    # Area paths look like "/1/4/17/": a subtree is the range of paths with
    # that prefix ('0' sorts right after '/'), which uses the index on areas.path.
    return [user.area_path, user.area_path[:-1] + "0"]


def _subtree(path_column: str, user: User) -> tuple[str, list]:
    return (
        f"{path_column} IN (SELECT id FROM areas WHERE path >= ? AND path < ?)",
        subtree_bounds(user),
    )


def area_subtree(user: User, column: str = "area_id") -> tuple[str, list]:
    """Rows whose ``column`` (an area id) lies in the user's area subtree."""
    return _subtree(column, user)


def _any_of(clauses: list[tuple[str, list]]) -> tuple[str, list]:
    if not clauses:
        return "1 = 0", []
    sql = " OR ".join(f"({clause})" for clause, _ in clauses)
    params = [param for _, clause_params in clauses for param in clause_params]
    return f"({sql})", params


def scope_is_area(user: User) -> bool:
    """Whether problem_scope() is the user's area subtree and nothing else (an office or a
    leader, neither field official nor handler)."""
    return bool(user.roles & {OFFICE, LEADER}) and not user.roles & {FIELD, HANDLER}


def problem_scope(user: User, table: str = "problems") -> tuple[str, list]:
    """Which problems the user may see: office, leaders and field officials their area
    subtree, a field official also their own reports, a handler their unit's problems as
    lead unit or as a helper unit (协办) with a part not removed."""
    clauses = []
    if user.roles & {OFFICE, LEADER, FIELD}:
        clauses.append(area_subtree(user, f"{table}.area_id"))
    if FIELD in user.roles:
        clauses.append((f"{table}.reporter_id = ?", [user.id]))
    if HANDLER in user.roles and user.unit_id is not None:
        clauses.append((f"{table}.lead_unit_id = ?", [user.unit_id]))
        # A helper unit (协办) while its part is not removed (server/ledger/joint.py).
        clauses.append((f"{table}.id IN (SELECT problem_id FROM joint_parts"
                        f" WHERE unit_id = ? AND state != 'removed')", [user.unit_id]))
    return _any_of(clauses)


def may_see_resident_phone(user: User, problem: dict) -> bool:
    """Whether the user sees this problem's resident phone unmasked: those who must call the
    resident, the office (the callback), the official who reported it (who took the number)
    and the handlers of the problem's lead unit (signing
    asks whether they contacted the resident). Everyone else sees it masked."""
    if user.can("resident_phone.view") or problem.get("reporter_id") == user.id:
        return True
    return (HANDLER in user.roles and user.unit_id is not None
            and problem.get("lead_unit_id") == user.unit_id)


def scope_names(user: User) -> list[str]:
    """problem_scope() in words, for the heading of an export: the user's area (its whole
    subtree) and, for a handler, the unit. A field official's own reports outside the
    area are not named."""
    names = []
    if user.roles & {OFFICE, LEADER, FIELD}:
        names.append(user.area_name)
    if HANDLER in user.roles and user.unit_id is not None:
        names.append(user.unit_name)
    return names


def record_scope(user: User, table: str) -> tuple[str, list]:
    """Which visits or diary entries the user may see."""
    clauses = []
    if user.roles & {OFFICE, LEADER}:
        clauses.append(area_subtree(user, f"{table}.area_id"))
    if FIELD in user.roles:
        clauses.append((f"{table}.author_id = ?", [user.id]))
    return _any_of(clauses)


def admin_scope(user: User, table: str, column: str = "area_id") -> tuple[str, list]:
    """Which users, units or areas an administrator may manage."""
    if ADMIN not in user.roles:
        return "1 = 0", []
    return area_subtree(user, f"{table}.{column}")


def audit_scope(user: User, table: str) -> tuple[str, list]:
    """Which entries of the administration's audit trail an administrator may read: those
    about records in their area subtree, before or after the change (a record moved out of
    the subtree stays readable in the entry that moved it), and those about records the
    whole deployment shares (categories, the calendar), which every administrator manages."""
    if ADMIN not in user.roles:
        return "1 = 0", []
    after, after_params = area_subtree(user, f"{table}.area_id")
    before, before_params = area_subtree(user, f"{table}.old_area_id")
    return (
        f"(({table}.area_id IS NULL AND {table}.old_area_id IS NULL) OR ({after})"
        f" OR ({before}))",
        [*after_params, *before_params],
    )
