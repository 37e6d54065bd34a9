// A visit's 走访小结, composed offline from the records the phone holds: the same lines,
// from the same catalog keys (visit_summary.*, shared with the office pages), as
// server/visit_summary.py composes for the office. tests/test_visit_summary_browser.py
// checks that the two texts agree.

import { t } from './ui.js';

export const CHECKLIST = ['no_notice', 'no_greeting', 'no_briefing', 'no_escort', 'direct_grassroots', 'direct_scene'];
export const KINDS = ['resident', 'business', 'cadre', 'other'];
const DESCRIPTION_CLIP = 30;
// Visits are kept in local (Asia/Shanghai) time wherever the phone's clock is set.
const DAY = new Intl.DateTimeFormat('en-CA', { timeZone: 'Asia/Shanghai', year: 'numeric', month: '2-digit', day: '2-digit' });
const TIME = new Intl.DateTimeFormat('en-GB', { timeZone: 'Asia/Shanghai', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });

// server/masking.py mask_name: the first character kept, the rest hidden.
export function maskName(name) {
  const chars = Array.from((name || '').trim());
  if (!chars.length) return '';
  if (chars.length === 1) return '*';
  return chars[0] + '*'.repeat(chars.length - 1);
}

function clip(text, length = DESCRIPTION_CLIP) {
  const chars = Array.from((text || '').trim());
  return chars.length > length ? `${chars.slice(0, length).join('')}…` : chars.join('');
}

// facts: { method, place, started_at, ended_at, checklist: [...], people: [[kind, name]],
//          problems: [{ ledger_no, description, status, solved_on_spot }] } (status null: not synced)
export function summaryLines(facts) {
  const sep = t('visit_summary.separator');
  const out = [t('visit_summary.title')];
  const start = new Date(facts.started_at);
  const day = DAY.format(start);
  if (facts.ended_at) {
    const end = new Date(facts.ended_at);
    const minutes = Math.max(0, Math.floor((end - start) / 60000));
    out.push(t('visit_summary.when', { day, start: TIME.format(start), end: TIME.format(end), minutes }));
  } else {
    out.push(t('visit_summary.when_open', { day, start: TIME.format(start) }));
  }
  if (facts.place) out.push(t('visit_summary.where', { place: facts.place }));
  out.push(t('visit_summary.method', { method: t(`visit.method_${facts.method}`) }));
  const done = CHECKLIST.filter((item) => facts.checklist.includes(item)).map((item) => t(`visit.check_${item}`));
  const missing = CHECKLIST.filter((item) => !facts.checklist.includes(item)).map((item) => t(`visit.check_${item}`));
  if (!done.length) out.push(t('visit_summary.checklist_none'));
  else if (!missing.length) out.push(t('visit_summary.checklist_all', { done: done.join(sep) }));
  else out.push(t('visit_summary.checklist_some', { done: done.join(sep), missing: missing.join(sep) }));
  if (facts.people.length) {
    const count = (kind) => facts.people.filter(([k]) => k === kind).length;
    const kinds = KINDS.filter(count).map((kind) => t('visit_summary.kind_count', { kind: t(`diary.kind_${kind}`), count: count(kind) }));
    out.push(t('visit_summary.people', { count: facts.people.length, kinds: kinds.join(sep) }));
    const names = facts.people.map(([, name]) => name).filter((name) => (name || '').trim()).map(maskName);
    if (names.length) out.push(t('visit_summary.people_names', { names: names.join(sep) }));
  } else {
    out.push(t('visit_summary.people_none'));
  }
  if (facts.problems.length) {
    const solved = facts.problems.filter((p) => p.solved_on_spot).length;
    out.push(t('visit_summary.problems', { count: facts.problems.length, solved }));
    facts.problems.forEach((p, i) => {
      let status = p.status ? t(`status.${p.status}`) : t('visit_summary.not_synced');
      if (p.solved_on_spot) status = `${status}${sep}${t('visit_summary.solved_on_spot')}`;
      const label = p.ledger_no ? `${p.ledger_no} ` : '';
      out.push(t('visit_summary.problem_line', { n: i + 1, label, description: clip(p.description), status }));
    });
  } else {
    out.push(t('visit_summary.problems_none'));
  }
  return out;
}

export const summaryText = (facts) => summaryLines(facts).join('\n');
