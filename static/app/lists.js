// My records (我的记录) and return visits (回头看): problems in my area.

import { h, t, button, toast, when, clip, haversine, distanceText, field, refusedForLength } from './ui.js';
import { capture, uuid, nowIso } from './sync.js';
import * as state from './state.js';
import * as db from './db.js';
import { photoPicker } from './widgets.js';
import { photoUrl } from './photos.js';
import { openForms } from './capture.js';
import * as tracking from './tracking.js';

function syncBadge(record) {
  if (record.state === 'rejected') {
    return h('span', { class: 'badge badge-bad' }, t('records.rejected', { reason: record.error ? record.error.message : '' }));
  }
  return record.state === 'synced'
    ? h('span', { class: 'badge badge-ok' }, t('records.synced'))
    : h('span', { class: 'badge badge-wait' }, t('records.pending'));
}

function statusBadge(status) {
  return status ? h('span', { class: `badge status-${status}` }, t(`status.${status}`)) : null;
}

function summaryOf(record) {
  const a = record.args;
  switch (record.name) {
    case 'visit.save': return `${t(`visit.method_${a.method}`)} ${a.place || ''}`;
    case 'diary.save': return t('records.diary_line', { name: a.person_name || t('diary.anonymous'), text: clip(a.content, 40) });
    case 'problem.report': return clip(a.description, 50);
    case 'problem.edit': return clip(a.changes.description || t('records.edit_of_problem'), 50);
    case 'problem.note': return clip(a.note || t('area.photo_note'), 50);
    default: return record.key;
  }
}

function hrefOf(record) {
  switch (record.kind) {
    case 'visit': return record.args.ended_at ? `#/visit/summary/${record.id}` : '#/visit';
    case 'diary': return `#/diary/${record.id}`;
    case 'problem': return `#/problem/${record.id}`;
    case 'note': return `#/area/${record.args.problem_id}`;
    default: return '#/';
  }
}

export async function recordsScreen(view) {
  const held = (await state.records()).sort((a, b) => String(b.updated).localeCompare(String(a.updated)));
  const problems = await state.lookup('problem');
  const items = held.map((record) => {
    const pulled = record.kind === 'problem' ? problems.get(record.id) : null;
    return h('li', { class: 'row' },
      h('a', { href: hrefOf(record), class: 'row-link' },
        h('span', { class: 'row-kind' }, t(`records.kind_${record.kind}`)),
        h('span', { class: 'row-text' }, summaryOf(record)),
        h('span', { class: 'row-meta' }, when(record.updated), ' ', syncBadge(record), ' ', pulled ? statusBadge(pulled.status) : null)));
  });
  view.replaceChildren(h('section', { class: 'card' },
    h('h1', null, t('records.title')),
    items.length ? h('ul', { class: 'rows' }, items) : h('p', { class: 'muted' }, t('records.empty'))));
}

// 回头看 ----------------------------------------------------------------------------

let position = null;

export async function areaScreen(view) {
  const problems = await state.pulledProblems();
  const areas = await state.lookup('area');
  const locateButton = button(t('area.nearest'), async () => {
    locateButton.disabled = true;
    position = await state.locate();
    if (!position) toast(t('place.gps_failed'));
    locateButton.disabled = false;
    areaScreen(view);
  }, 'btn btn-small');
  if (!position && await state.mayLocate()) {
    state.locate().then((found) => { if (found) { position = found; areaScreen(view); } });
  }
  const withDistance = problems.map((p) => ({
    p, d: position && p.lat != null && p.lng != null ? haversine(position.lat, position.lng, p.lat, p.lng) : null,
  }));
  withDistance.sort((a, b) => {
    if (a.d !== null || b.d !== null) return (a.d ?? Infinity) - (b.d ?? Infinity);
    return String(b.p.found_at).localeCompare(String(a.p.found_at));
  });
  view.replaceChildren(h('section', { class: 'card' },
    h('h1', null, t('area.title')),
    h('div', { class: 'gps' }, h('span', null, position ? t('area.sorted_by_distance') : t('area.sorted_by_time')), locateButton),
    withDistance.length ? h('ul', { class: 'rows' }, withDistance.map(({ p, d }) => h('li', { class: 'row' },
      h('a', { href: `#/area/${p.id}`, class: 'row-link' },
        h('span', { class: 'row-kind' }, p.ledger_no || t('area.unnumbered')),
        h('span', { class: 'row-text' }, clip(p.description, 60)),
        h('span', { class: 'row-meta' }, statusBadge(p.status), ' ', areas.get(String(p.area_id))?.name || '', d !== null ? ` · ${distanceText(d)}` : ''))))) :
      h('p', { class: 'muted' }, t('area.empty')),
    h('p', null, h('a', { href: '#/lookup', class: 'btn btn-small' }, t('lookup.link')))));
}

// A deadline, with 暂定 when it runs through a year whose holidays the server does not know yet.
function deadline(p) {
  if (!p.deadline) return '';
  return p.deadline_provisional ? [p.deadline, ' ', h('span', { class: 'badge badge-wait' }, t('area.provisional'))] : p.deadline;
}

export async function problemDetail(view, id) {
  const row = await state.pulledRecord('problem', id);
  const held = await state.record(`problem:${id}`);
  if (!row && !held) { location.hash = '#/area'; return; }
  const p = row ? row.data : { ...held.args, events: [], status: null };
  const token = await db.getMeta('token');
  const areas = await state.lookup('area');
  const units = await state.lookup('unit');
  const categories = await state.lookup('category');
  const notes = (await state.records('note')).filter((n) => n.args.problem_id === id && n.state !== 'synced');
  const draftKey = `note:${id}`;
  const draft = await state.loadDraft(draftKey);
  let photos = draft?.photos || [];
  const noteText = h('textarea', { name: 'note', rows: 3, maxlength: 2000 });
  const form = h('form', { class: 'form', novalidate: true },
    h('h2', null, t('area.add_note')),
    field(t('area.note'), noteText),
    photoPicker(t('area.note_photos'), photos, (list) => { photos = list; saver.save(); }, token),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'btn btn-primary' }, t('area.save_note'))));
  const saver = state.autosave(form, draftKey, () => ({ photos }));
  openForms.add(saver);
  if (draft) state.fill(form, draft.values);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (refusedForLength(form)) return;
    const note = noteText.value.trim();
    if (!note && !photos.length) { toast(t('area.note_empty')); return; }
    saver.cancel();
    const where = await state.mayLocate() ? await state.locate(5000) : null;
    await capture('problem.note', { id: uuid(), problem_id: id, note, photos: photos.map((x) => x.sha), at: nowIso(),
      lat: where ? where.lat : null, lng: where ? where.lng : null }, { draft: draftKey, photos: photos.filter((x) => x.blob) });
    openForms.delete(saver);
    toast(t('saved'));
    problemDetail(view, id);
  });
  const photoList = async (shas) => {
    const images = [];
    for (const [index, sha] of (shas || []).entries()) {
      const url = await photoUrl(sha, token);
      images.push(h('li', { class: 'thumb' }, url ? h('img', { src: url, alt: t('photo.alt', { n: index + 1 }), width: 88, height: 88 }) : h('span', { class: 'thumb-missing' }, t('photo.missing'))));
    }
    return images.length ? h('ul', { class: 'thumbs' }, images) : null;
  };
  const events = [];
  for (const event of p.events || []) {
    events.push(h('li', { class: 'event' },
      h('p', null, h('strong', null, t(`event.${event.kind}`)), ' ', h('span', { class: 'muted' }, `${when(event.at)} ${event.actor_name || ''}`)),
      event.note ? h('p', null, event.note) : null,
      await photoList(event.photos)));
  }
  for (const note of notes) {
    events.push(h('li', { class: 'event' },
      h('p', null, h('strong', null, t('event.note')), ' ', h('span', { class: 'muted' }, when(note.args.at)), ' ', syncBadge(note)),
      note.args.note ? h('p', null, note.args.note) : null));
  }
  const facts = [
    [t('problem.status'), p.status ? statusBadge(p.status) : syncBadge(held)],
    [t('area.ledger_no'), p.ledger_no || t('area.unnumbered')],
    [t('place.area'), areas.get(String(p.area_id))?.name || ''],
    [t('place.place'), p.place || ''],
    [t('problem.category'), categories.get(String(p.category_id))?.name || ''],
    [t('problem.urgency'), p.urgency ? t(`urgency.${p.urgency}`) : ''],
    [t('area.lead_unit'), units.get(String(p.lead_unit_id))?.name || ''],
    [t('area.deadline'), deadline(p)],
    [t('problem.resident_name'), [p.resident_name, p.resident_phone].filter(Boolean).join(' ')],
  ].filter(([, value]) => value);
  const asked = p.info_request && ['submitted', 'accepted'].includes(p.status)
    ? h('div', { class: 'notice', role: 'note' }, h('p', null, h('strong', null, t('area.info_request', { question: p.info_request }))),
      h('p', null, t('area.info_request_hint'))) : null;
  view.replaceChildren(h('section', { class: 'card' },
    h('h1', null, t('area.detail_title')),
    asked,
    h('p', { class: 'lead' }, p.description),
    h('dl', { class: 'facts' }, facts.map(([k, v]) => h('div', null, h('dt', null, k), h('dd', null, v)))),
    await tracking.receipt(id),
    await photoList(p.photos),
    h('h2', null, t('area.timeline')),
    events.length ? h('ol', { class: 'timeline' }, events) : h('p', { class: 'muted' }, t('area.no_events')),
    form));
}
