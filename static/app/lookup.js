// 查台账: find, online, a problem outside what the phone holds (by ledger number
// or words, GET /api/problems/lookup), show it, and keep nothing.

import { h, t, field, when, clip } from './ui.js';
import * as db from './db.js';
import * as state from './state.js';

const MAX_QUERY = 100; // sync/lookup.py MAX_QUERY

async function search(q) {
  const token = await db.getMeta('token');
  const response = await fetch(`/api/problems/lookup?${new URLSearchParams({ q })}`, {
    headers: { Authorization: `Bearer ${token}` }, credentials: 'omit', cache: 'no-store',
    signal: AbortSignal.timeout(15000),
  });
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new Error((body && body.error && body.error.message) || t('lookup.failed'));
  return body;
}

function detail(p, areas, back) {
  const facts = [
    [t('problem.status'), t(`status.${p.status}`)],
    [t('area.ledger_no'), p.ledger_no || t('area.unnumbered')],
    [t('place.area'), areas.get(String(p.area_id))?.name || ''],
    [t('place.place'), p.place || ''],
    [t('area.deadline'), p.deadline || ''],
    [t('problem.resident_name'), [p.resident_name, p.resident_phone].filter(Boolean).join(' ')],
  ].filter(([, value]) => value);
  return h('div', { class: 'lookup-detail' },
    h('p', { class: 'muted' }, t('lookup.not_kept')),
    h('p', { class: 'lead' }, p.description),
    h('dl', { class: 'facts' }, facts.map(([k, v]) => h('div', null, h('dt', null, k), h('dd', null, v)))),
    h('h2', null, t('area.timeline')),
    (p.events || []).length ? h('ol', { class: 'timeline' }, p.events.map((event) => h('li', { class: 'event' },
      h('p', null, h('strong', null, t(`event.${event.kind}`)), ' ', h('span', { class: 'muted' }, `${when(event.at)} ${event.actor_name || ''}`)),
      event.note ? h('p', null, event.note) : null))) : h('p', { class: 'muted' }, t('area.no_events')),
    h('button', { type: 'button', class: 'btn', onclick: back }, t('lookup.back')));
}

export async function lookupScreen(view) {
  const areas = await state.lookup('area');
  const input = h('input', { name: 'q', type: 'search', maxlength: MAX_QUERY, autocomplete: 'off' });
  const results = h('div', { class: 'lookup-results', 'aria-live': 'polite' });
  let found = null;
  const list = () => {
    if (!found) return;
    results.replaceChildren(
      found.problems.length ? h('ul', { class: 'rows' }, found.problems.map((p) => h('li', { class: 'row' },
        h('button', { type: 'button', class: 'row-link', onclick: () => results.replaceChildren(detail(p, areas, list)) },
          h('span', { class: 'row-kind' }, p.ledger_no || t('area.unnumbered')),
          h('span', { class: 'row-text' }, clip(p.description, 60)),
          h('span', { class: 'row-meta' }, t(`status.${p.status}`), ' ', areas.get(String(p.area_id))?.name || ''))))) :
        h('p', { class: 'muted' }, t('lookup.none')),
      found.more ? h('p', { class: 'muted' }, t('lookup.more', { n: found.problems.length })) : null);
  };
  const form = h('form', { class: 'form', role: 'search', novalidate: true },
    field(t('lookup.query'), input),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'btn btn-primary' }, t('lookup.submit'))));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const q = input.value.trim();
    if (!q) return;
    if (navigator.onLine === false) {
      results.replaceChildren(h('p', { class: 'warning', role: 'alert' }, t('lookup.offline')));
      return;
    }
    try {
      found = await search(q);
      list();
    } catch (error) {
      found = null;
      results.replaceChildren(h('p', { class: 'warning', role: 'alert' },
        error.name === 'TypeError' || error.name === 'TimeoutError' ? t('lookup.failed') : error.message));
    }
  });
  view.replaceChildren(h('section', { class: 'card' },
    h('h1', null, t('lookup.title')),
    h('p', { class: 'muted' }, t('lookup.hint')),
    form, results));
}
