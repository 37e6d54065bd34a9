"""A visit's 走访小结, composed from what was recorded: when and where, the four-no statement,
whom the official talked to (counts by kind, names masked), the problems found and where
each stands, what was solved on the spot.

The same lines, from the same catalog keys (``visit_summary.*``, shared with the field
app), are composed on the phone by static/app/summary.js, offline, from the records it
holds; tests/test_visit_summary_browser.py checks that the two texts agree.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from server import masking
from server.i18n import gettext as _
from server.timeutil import local, parse_iso
from server.visits import CHECKLIST

PERSON_KINDS = ("resident", "business", "cadre", "other")
DESCRIPTION_CLIP = 30


@dataclass(frozen=True)
class SummaryProblem:
    ledger_no: str | None
    description: str
    status: str | None  # None: recorded on the phone, not yet on the server
    solved_on_spot: bool


@dataclass(frozen=True)
class VisitFacts:
    """What a 走访小结 says, gathered from a visit's records."""

    method: str
    place: str
    started_at: str
    ended_at: str | None
    checklist: tuple[str, ...]
    people: tuple[tuple[str, str], ...]  # (kind, name as recorded)
    problems: tuple[SummaryProblem, ...]


def clip(text: str, length: int = DESCRIPTION_CLIP) -> str:
    """The text cut to ``length`` characters, with … when cut."""
    value = (text or "").strip()
    return f"{value[:length]}…" if len(value) > length else value


def lines(facts: VisitFacts) -> list[str]:
    """The summary, line by line."""
    sep = _("visit_summary.separator")
    out = [_("visit_summary.title")]
    day, start = local(facts.started_at, "%Y-%m-%d"), local(facts.started_at, "%H:%M")
    if facts.ended_at:
        seconds = (parse_iso(facts.ended_at) - parse_iso(facts.started_at)).total_seconds()
        minutes = max(0, int(seconds // 60))
        out.append(_("visit_summary.when", day=day, start=start,
                     end=local(facts.ended_at, "%H:%M"), minutes=minutes))
    else:
        out.append(_("visit_summary.when_open", day=day, start=start))
    if facts.place:
        out.append(_("visit_summary.where", place=facts.place))
    out.append(_("visit_summary.method", method=_(f"visit.method_{facts.method}")))
    done = [_(f"visit.check_{item}") for item in CHECKLIST if item in facts.checklist]
    missing = [_(f"visit.check_{item}") for item in CHECKLIST if item not in facts.checklist]
    if not done:
        out.append(_("visit_summary.checklist_none"))
    elif not missing:
        out.append(_("visit_summary.checklist_all", done=sep.join(done)))
    else:
        out.append(_("visit_summary.checklist_some", done=sep.join(done),
                     missing=sep.join(missing)))
    if facts.people:
        kinds = Counter(kind for kind, _name in facts.people)
        out.append(_("visit_summary.people", count=len(facts.people), kinds=sep.join(
            _("visit_summary.kind_count", kind=_(f"diary.kind_{kind}"), count=kinds[kind])
            for kind in PERSON_KINDS if kinds[kind])))
        names = [masking.mask_name(name) for _kind, name in facts.people if (name or "").strip()]
        if names:
            out.append(_("visit_summary.people_names", names=sep.join(names)))
    else:
        out.append(_("visit_summary.people_none"))
    if facts.problems:
        solved = sum(problem.solved_on_spot for problem in facts.problems)
        out.append(_("visit_summary.problems", count=len(facts.problems), solved=solved))
        for n, problem in enumerate(facts.problems, 1):
            status = (_(f"status.{problem.status}") if problem.status
                      else _("visit_summary.not_synced"))
            if problem.solved_on_spot:
                status = f"{status}{sep}{_('visit_summary.solved_on_spot')}"
            label = f"{problem.ledger_no} " if problem.ledger_no else ""
            out.append(_("visit_summary.problem_line", n=n, label=label,
                         description=clip(problem.description), status=status))
    else:
        out.append(_("visit_summary.problems_none"))
    return out


def text(facts: VisitFacts) -> str:
    return "\n".join(lines(facts))


def place_of(area_name: str | None, place: str | None) -> str:
    return " · ".join(part for part in (area_name, place) if part)


def facts_of(visit: dict) -> VisitFacts:
    """The facts of a visit as ``server.visits.get_visit`` reads it (diary and problems)."""
    return VisitFacts(
        method=visit["method"],
        place=place_of(visit.get("area_name"), visit.get("place")),
        started_at=visit["started_at"],
        ended_at=visit.get("ended_at"),
        checklist=tuple(visit["checklist"]),
        people=tuple((entry["person_kind"], entry.get("person_name") or "")
                     for entry in visit["diary"]),
        problems=tuple(SummaryProblem(problem.get("ledger_no"), problem["description"],
                                      problem["status"], bool(problem.get("solved_on_spot")))
                       for problem in visit["problems"]),
    )
