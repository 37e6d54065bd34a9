"""考核: units ranked by a composite score of their rates, with weights an administrator sets.

score = Σ weight × rate over the weighted rates (weights are whole points that add up to
100, a rate is 0..1, so the score is 0..100; a rate where lower is better, 超期率, counts
as 1 − rate). A unit is ranked only when every weighted rate has at least the minimum
sample (``stats_min_sample``, as the statistics page ranks): otherwise it is listed under
样本不足 without a score's rank. Problems not dispatched yet ("未交办", no lead unit) are
no unit and never ranked. docs/metrics.md gives the defaults and why.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from server import audit
from server.i18n import gettext as _
from server.ledger import metrics
from server.validation import Field, Schema, ValidationError

SETTING_KEY = "assessment_weights"
TOTAL = 100
# 办结率 30, 按期办结率 30, 满意率 40: closing the loop, on time, as the resident judges it.
DEFAULT_WEIGHTS = {"completion": 30, "on_time": 30, "satisfaction": 40}
# The units' own "solved" share is what they say of themselves: never assessed.
NOT_ASSESSED = ("claimed",)


def assessable() -> list[str]:
    """The rates an administrator may weigh: every rate of metrics.RATES but the units'
    own claim, so a rate added there can be weighed at once."""
    return [name for name in metrics.RATES if name not in NOT_ASSESSED]


def weights(db) -> dict[str, int]:
    """The weights in force: the stored setting when it is valid, else the defaults."""
    row = db.execute("SELECT value FROM settings WHERE key = ?", [SETTING_KEY]).fetchone()
    if row:
        try:
            stored = json.loads(row[0])
            return check({name: str(value) for name, value in stored.items()})
        except (ValueError, TypeError, AttributeError, ValidationError):
            pass
    return dict(DEFAULT_WEIGHTS)


def schema() -> Schema:
    return Schema(*(Field(name, f"stats.rate.{name}", kind="int", min_value=0,
                          max_value=TOTAL) for name in assessable()))


def check(raw) -> dict[str, int]:
    """The weights from a form (or the stored setting): each a whole number 0..100, a rate
    not given is 0, together 100; ValidationError with every problem otherwise."""
    values = schema().clean(raw)
    weights_ = {name: value for name, value in values.items() if value}
    total = sum(weights_.values())
    if total != TOTAL:
        raise ValidationError({"total": _("reports.weights.bad_total", total=total)})
    return weights_


def save(db, actor_id: int, raw) -> dict[str, int]:
    """Check and store new weights in the caller's write transaction, with their audit
    entry (the weights are shared by the whole deployment, like the categories)."""
    new = check(raw)
    old = weights(db)
    db.execute("INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key)"
               " DO UPDATE SET value = excluded.value", [SETTING_KEY, json.dumps(new)])
    before, after = audit.changed({name: old.get(name, 0) for name in assessable()},
                                  {name: new.get(name, 0) for name in assessable()})
    if after:
        audit.record(db, actor_id, "update", "settings", None, label=SETTING_KEY,
                     old=before, new=after)
    return new


@dataclass
class Assessed:
    row: metrics.Breakdown
    score: float | None  # 0..100; None when a weighted rate has no sample at all
    rank: int | None = None


@dataclass
class Assessment:
    weights: dict[str, int]
    min_sample: int
    ranked: list[Assessed]
    too_few: list[Assessed]  # 样本不足: listed, not ranked
    undispatched: Assessed | None  # 未交办: never ranked


def score(rates: dict[str, metrics.Rate], weights_: dict[str, int]) -> float | None:
    total = 0.0
    for name, weight in weights_.items():
        value = rates[name].value
        if value is None:
            return None
        if metrics.RATES[name].lower_is_better:
            value = 1 - value
        total += weight * value
    return total


def assess(units: list[metrics.Breakdown], weights_: dict[str, int],
           min_sample: int) -> Assessment:
    """The units of ``metrics.compute`` ranked by score, best first (ties: more problems
    accepted, then the name); those short of the minimum sample in any weighted rate
    after them, unranked; the problems with no lead unit apart."""
    ranked, too_few, undispatched = [], [], None
    for row in units:
        item = Assessed(row, score(row.rates, weights_))
        if row.key is None:
            undispatched = item
        elif all(row.rates[name].n >= min_sample for name in weights_):
            ranked.append(item)
        else:
            too_few.append(item)
    ranked.sort(key=lambda item: (-item.score, -item.row.counts["accepted"], item.row.label))
    for position, item in enumerate(ranked, start=1):
        item.rank = position
    too_few.sort(key=lambda item: (-item.row.counts["accepted"], item.row.label))
    return Assessment(weights_, min_sample, ranked, too_few, undispatched)
