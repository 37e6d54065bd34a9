// The capture screens: visit (走访), people's diary (记民情), problem (记问题).

import { h, t, field, choices, select, button, toast, when, clip, distanceText, refusedForLength } from './ui.js';
import { capture, uuid, nowIso } from './sync.js';
import * as state from './state.js';
import * as db from './db.js';
import { placeFields, positionOf, photoPicker, heldPhotos } from './widgets.js';
import { CHECKLIST, KINDS, summaryText } from './summary.js';
import { suggestions } from './similar.js';
import * as tracking from './tracking.js';

export const METHODS = ['sbls', 'dundian', 'xianchang', 'ruhu', 'jiefang', 'other'];
export const URGENCIES = ['normal', 'urgent', 'critical'];
const PHONE = /^[0-9+\-() ]*$/;

// Savers of the forms on screen, flushed before an update reloads the page.
export const openForms = new Set();

function idOrNull(value) {
  return value === '' || value == null ? null : Number(value);
}

function showError(input, message) {
  const id = `${input.id}-error`;
  let node = document.getElementById(id);
  if (!node) {
    node = h('p', { class: 'error', id });
    input.insertAdjacentElement('afterend', node);
  }
  node.textContent = message;
  input.setAttribute('aria-invalid', 'true');
  const described = (input.getAttribute('aria-describedby') || '').split(' ').filter(Boolean);
  if (!described.includes(id)) input.setAttribute('aria-describedby', [...described, id].join(' '));
  input.focus();
}

function clearErrors(form) {
  for (const node of form.querySelectorAll('.error')) node.remove();
  for (const input of form.querySelectorAll('[aria-invalid]')) input.removeAttribute('aria-invalid');
}

function phoneOk(form, name) {
  const input = form.elements[name];
  if (input && !PHONE.test(input.value)) {
    showError(input, t('form.bad_phone'));
    return false;
  }
  return true;
}

function track(saver) {
  openForms.add(saver);
  return saver;
}

export function leaveForms() {
  for (const saver of openForms) saver.cancel();
  openForms.clear();
}

function actions(...buttons) {
  return h('div', { class: 'actions' }, buttons);
}

// Visit ---------------------------------------------------------------------------

export async function visitScreen(view) {
  const current = await state.currentVisit();
  const draftKey = current ? `visit:${current.id}` : 'visit:new';
  const draft = await state.loadDraft(draftKey);
  // Nothing is ticked for the official: the checklist is their own statement.
  const args = current ? current.args : { method: 'sbls', checklist: [] };
  const checklist = choices(t('visit.checklist'), 'checklist', CHECKLIST.map((c) => [c, t(`visit.check_${c}`)]),
    { type: 'checkbox', checked: args.checklist || [] });
  checklist.append(h('p', { class: 'hint' }, t('visit.checklist_hint')), button(t('visit.check_all'), () => {
    for (const box of checklist.querySelectorAll('input[type="checkbox"]')) box.checked = true;
    form.dispatchEvent(new Event('change'));
  }, 'btn btn-small'));
  const form = h('form', { class: 'card form', novalidate: true },
    h('h1', null, current ? t('visit.in_progress') : t('visit.start_title')),
    current ? h('p', { class: 'muted' }, t('visit.started_at', { time: when(current.args.started_at) })) : null,
    choices(t('visit.method'), 'method', METHODS.map((m) => [m, t(`visit.method_${m}`)]), { checked: [args.method] }),
    await placeFields(args, { auto: true }),
    checklist,
    field(t('visit.companions'), h('input', { name: 'companions', value: args.companions || '', maxlength: 200, autocomplete: 'off' })),
    current
      ? actions(h('button', { type: 'submit', class: 'btn btn-primary' }, t('visit.save')),
        button(t('visit.end'), () => save(true), 'btn btn-warn'))
      : actions(h('button', { type: 'submit', class: 'btn btn-primary' }, t('visit.start'))));
  const saver = track(state.autosave(form, draftKey));
  if (draft) state.fill(form, draft.values);
  async function save(end) {
    if (refusedForLength(form)) return;
    const v = saver.values();
    const id = current ? current.id : uuid();
    const visit = {
      id, method: v.method || 'other', area_id: idOrNull(v.area_id), place: v.place.trim(),
      checklist: v.checklist, companions: v.companions.trim(),
      started_at: current ? current.args.started_at : nowIso(),
      ended_at: end ? nowIso() : null, ...positionOf(v),
    };
    saver.cancel();
    await capture('visit.save', visit, { draft: draftKey, meta: { current_visit: end ? null : id } });
    openForms.delete(saver);
    toast(end ? t('visit.ended') : t('saved'));
    location.hash = end ? `#/visit/summary/${id}` : '#/';
  }
  form.addEventListener('submit', (event) => { event.preventDefault(); save(false); });
  view.replaceChildren(form);
}

export async function visitSummary(view, id) {
  const visit = await state.record(`visit:${id}`);
  if (!visit) { location.hash = '#/'; return; }
  const a = visit.args;
  const diaries = (await state.records('diary')).filter((r) => r.args.visit_id === id);
  const held = (await state.records('problem')).filter((r) => r.args.visit_id === id);
  const areas = await state.lookup('area');
  const problems = await Promise.all(held.map(async (r) => {
    const pulled = await state.pulledRecord('problem', r.id);
    return { ledger_no: pulled?.data?.ledger_no || null, description: r.args.description,
      status: pulled?.data?.status || null, solved_on_spot: Boolean(r.args.solved_on_spot) };
  }));
  const text = summaryText({
    method: a.method,
    place: [areas.get(String(a.area_id))?.name, a.place].filter(Boolean).join(' · '),
    started_at: a.started_at, ended_at: a.ended_at || null, checklist: a.checklist || [],
    people: diaries.map((r) => [r.args.person_kind, r.args.person_name || '']),
    problems,
  });
  const status = h('p', { class: 'muted', role: 'status', 'aria-live': 'polite' });
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(text);
      status.textContent = t('visit_summary.copied');
    } catch {
      const range = document.createRange();
      range.selectNodeContents(document.getElementById('visit-summary'));
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      status.textContent = document.execCommand('copy') ? t('visit_summary.copied') : t('visit_summary.copy_failed');
    }
  };
  const share = async () => {
    try { await navigator.share({ title: t('visit_summary.title'), text }); } catch { /* cancelled */ }
  };
  view.replaceChildren(h('section', { class: 'card' },
    h('h1', null, t('visit_summary.title')),
    h('pre', { class: 'summary-text', id: 'visit-summary' }, text),
    actions(button(t('visit_summary.copy'), copy, 'btn btn-primary'),
      navigator.share ? button(t('visit_summary.share'), share, 'btn') : null,
      h('a', { class: 'btn', href: '#/' }, t('nav.home'))),
    status));
}

// People's diary --------------------------------------------------------------------

export async function diaryScreen(view, id) {
  const existing = id ? (await state.record(`diary:${id}`)) : null;
  const pulled = id && !existing ? await state.pulledRecord('diary', id) : null;
  const base = existing ? existing.args : pulled ? pulled.data : { person_kind: 'resident' };
  const current = await state.currentVisit();
  const diaryId = id || uuid();
  const draftKey = id ? `diary:${id}` : 'diary:new';
  const draft = await state.loadDraft(draftKey);
  const form = h('form', { class: 'card form', novalidate: true },
    h('h1', null, id ? t('diary.edit_title') : t('diary.title')),
    current ? h('p', { class: 'muted' }, t('form.in_visit')) : null,
    field(t('diary.person_name'), h('input', { name: 'person_name', value: base.person_name || '', maxlength: 50, autocomplete: 'off' })),
    choices(t('diary.person_kind'), 'person_kind', KINDS.map((k) => [k, t(`diary.kind_${k}`)]), { checked: [base.person_kind || 'resident'] }),
    field(t('diary.phone'), h('input', { name: 'phone', type: 'tel', inputmode: 'tel', value: base.phone || '', maxlength: 20, autocomplete: 'off' })),
    field(t('diary.address'), h('input', { name: 'address', value: base.address || '', maxlength: 200, autocomplete: 'off' })),
    field(t('diary.content'), h('textarea', { name: 'content', rows: 5, maxlength: 4000, required: true, 'aria-required': 'true' }, base.content || '')),
    actions(h('button', { type: 'submit', class: 'btn btn-primary' }, t('save')),
      button(t('diary.to_problem'), () => save(true), 'btn')));
  const saver = track(state.autosave(form, draftKey));
  if (draft) state.fill(form, draft.values);
  async function save(toProblem) {
    clearErrors(form);
    if (refusedForLength(form)) return;
    const v = saver.values();
    if (!v.content.trim()) { showError(form.elements.content, t('diary.content_required')); return; }
    if (!phoneOk(form, 'phone')) return;
    const args = {
      id: diaryId, visit_id: base.visit_id ?? (current ? current.id : null),
      area_id: base.area_id ?? (current ? current.args.area_id ?? null : null),
      person_name: v.person_name.trim(), person_kind: v.person_kind || 'other', phone: v.phone.trim(),
      address: v.address.trim(), content: v.content.trim(), recorded_at: base.recorded_at || nowIso(),
    };
    saver.cancel();
    await capture('diary.save', args, { draft: draftKey });
    openForms.delete(saver);
    toast(t('saved'));
    location.hash = toProblem ? `#/problem/from/${diaryId}` : '#/';
  }
  form.addEventListener('submit', (event) => { event.preventDefault(); save(false); });
  view.replaceChildren(form);
}

// Problem -------------------------------------------------------------------------

const PROBLEM_FIELDS = ['area_id', 'place', 'lat', 'lng', 'category_id', 'urgency', 'description',
  'resident_name', 'resident_phone', 'suggested_unit_id'];

export async function problemScreen(view, { id = null, fromDiary = null } = {}) {
  const token = await db.getMeta('token');
  const existing = id ? await state.record(`problem:${id}`) : null;
  const pulled = id ? await state.pulledRecord('problem', id) : null;
  const user = await db.getMeta('user');
  let mode = 'new';
  if (id) {
    if (existing && existing.name === 'problem.report' && (existing.state !== 'synced' || !pulled)) mode = 'local';
    else if (pulled && pulled.data.status === 'submitted' && user && pulled.data.reporter_id === user.id) mode = 'synced';
    else { location.hash = `#/area/${id}`; return; }
  }
  const current = await state.currentVisit();
  let base = {};
  if (mode === 'local') base = existing.args;
  else if (mode === 'synced') base = { ...pulled.data, ...(existing && existing.name === 'problem.edit' ? existing.args.changes : {}) };
  else if (fromDiary) {
    const diary = (await state.record(`diary:${fromDiary}`))?.args || (await state.pulledRecord('diary', fromDiary))?.data || {};
    base = { description: diary.content || '', resident_name: diary.person_name || '', resident_phone: diary.phone || '',
      place: diary.address || '', area_id: diary.area_id ?? null, visit_id: diary.visit_id ?? null };
  }
  if (mode === 'new' && current) {
    base.area_id = base.area_id ?? current.args.area_id ?? null;
    base.visit_id = base.visit_id ?? current.id;
  }
  const problemId = id || uuid();
  const draftKey = id ? `problem:${id}` : fromDiary ? `problem:from:${fromDiary}` : 'problem:new';
  const draft = await state.loadDraft(draftKey);
  let photos = draft?.photos || (mode === 'local' ? await heldPhotos(base.photos) : []);
  let solvedPhotos = draft?.solvedPhotos || (mode === 'local' ? await heldPhotos(base.solved_on_spot?.photos) : []);
  const categories = await state.lookup('category');
  const unitOptions = await state.activeOptions('unit');
  let unitTouched = Boolean(base.suggested_unit_id);

  const description = h('textarea', { name: 'description', rows: 4, maxlength: 2000, required: true, 'aria-required': 'true', autofocus: mode === 'new' && !fromDiary }, base.description || '');
  const solvedNote = h('textarea', { name: 'solved_note', rows: 3, maxlength: 2000 }, base.solved_on_spot?.note || '');
  const solvedBox = h('input', { type: 'checkbox', name: 'solved', value: 'yes', id: 'solved', checked: Boolean(base.solved_on_spot) });
  const solvedPart = h('div', { class: 'solved-part', hidden: !base.solved_on_spot },
    field(t('problem.solved_note'), solvedNote),
    photoPicker(t('problem.solved_photos'), solvedPhotos, (list) => { solvedPhotos = list; saver.save(); }, token));
  // 可能是同一问题: open problems the phone holds that match what is being typed, offline.
  const sameProblem = h('section', { class: 'same-problem', 'aria-live': 'polite', 'aria-labelledby': 'same-title', hidden: true });
  const form = h('form', { class: 'card form', novalidate: true },
    h('h1', null, mode === 'new' ? t('problem.title') : t('problem.edit_title')),
    current && mode === 'new' ? h('p', { class: 'muted' }, t('form.in_visit')) : null,
    field(t('problem.description'), description, t('problem.description_hint')),
    mode === 'new' ? sameProblem : null,
    mode !== 'synced' ? photoPicker(t('problem.photos'), photos, (list) => { photos = list; saver.save(); }, token) : null,
    choices(t('problem.urgency'), 'urgency', URGENCIES.map((u) => [u, t(`urgency.${u}`)]), { checked: [base.urgency || 'normal'] }),
    field(t('problem.category'), select('category_id', [...categories.values()].filter((c) => c.active !== 0).map((c) => [c.id, c.name]), base.category_id, t('form.none'))),
    await placeFields(base, { auto: mode === 'new' }),
    field(t('problem.resident_name'), h('input', { name: 'resident_name', value: base.resident_name || '', maxlength: 50, autocomplete: 'off' })),
    field(t('problem.resident_phone'), h('input', { name: 'resident_phone', type: 'tel', inputmode: 'tel', value: base.resident_phone || '', maxlength: 20, autocomplete: 'off' })),
    field(t('problem.unit'), select('suggested_unit_id', unitOptions, base.suggested_unit_id, t('form.none'))),
    mode !== 'synced' ? h('div', { class: 'choice solved-toggle' }, solvedBox, h('label', { for: 'solved' }, t('problem.solved'))) : null,
    mode !== 'synced' ? solvedPart : null,
    actions(h('button', { type: 'submit', class: 'btn btn-primary' }, t('save'))));
  const saver = track(state.autosave(form, draftKey, () => ({ photos, solvedPhotos })));
  if (draft) {
    state.fill(form, draft.values);
    solvedPart.hidden = !solvedBox.checked;
  }
  solvedBox.addEventListener('change', () => { solvedPart.hidden = !solvedBox.checked; });
  if (mode === 'new') {
    const held = (await state.pulledProblems()).filter((p) => p.id !== problemId);
    const areas = await state.lookup('area');
    // The report becomes a 补充 on that problem: the words and photos go there as a note.
    const addTo = async (p) => {
      const v = saver.values();
      saver.cancel();
      const where = positionOf(v);
      await capture('problem.note', { id: uuid(), problem_id: p.id, note: v.description.trim(),
        photos: photos.map((x) => x.sha), at: nowIso(), lat: where.lat, lng: where.lng },
      { draft: draftKey, photos: photos.filter((x) => x.blob) });
      openForms.delete(saver);
      toast(t('same.added'));
      location.hash = `#/area/${p.id}`;
    };
    let timer = null;
    const refresh = () => {
      const v = saver.values();
      const mine = { description: v.description, ...positionOf(v), category_id: v.category_id || null };
      const found = v.description.trim().length >= 2 || mine.lat !== null ? suggestions(mine, held) : [];
      sameProblem.hidden = !found.length;
      sameProblem.replaceChildren(...(found.length ? [
        h('h2', { id: 'same-title' }, t('same.title')),
        h('p', { class: 'hint' }, t('same.hint')),
        h('ul', { class: 'rows' }, found.map(({ p, distance, similarity }) => h('li', { class: 'row same-row' },
          h('p', { class: 'row-text' }, clip(p.description, 60)),
          h('p', { class: 'row-meta' }, [p.ledger_no || t('area.unnumbered'), t(`status.${p.status}`),
            areas.get(String(p.area_id))?.name,
            distance !== null ? distanceText(distance) : t('same.alike', { percent: Math.round(similarity * 100) })].filter(Boolean).join(' · ')),
          button(t('same.add_here'), () => addTo(p), 'btn btn-small')))),
      ] : []));
    };
    const later = () => { clearTimeout(timer); timer = setTimeout(refresh, 300); };
    description.addEventListener('input', later);
    form.addEventListener('change', later);
    refresh();
  }
  form.elements.suggested_unit_id.addEventListener('change', () => { unitTouched = true; });
  form.elements.category_id.addEventListener('change', (event) => {
    const category = categories.get(event.target.value);
    if (!unitTouched && category && category.default_unit_id) form.elements.suggested_unit_id.value = String(category.default_unit_id);
  });
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearErrors(form);
    if (refusedForLength(form)) return;
    const v = saver.values();
    if (!v.description.trim()) { showError(description, t('problem.description_required')); return; }
    if (!phoneOk(form, 'resident_phone')) return;
    const solved = mode !== 'synced' && solvedBox.checked;
    if (solved && !v.solved_note.trim()) { showError(solvedNote, t('problem.solved_note_required')); return; }
    const fields = {
      area_id: idOrNull(v.area_id), place: v.place.trim(), ...positionOf(v), category_id: idOrNull(v.category_id),
      urgency: v.urgency || 'normal', description: v.description.trim(), resident_name: v.resident_name.trim(),
      resident_phone: v.resident_phone.trim(), suggested_unit_id: idOrNull(v.suggested_unit_id),
    };
    saver.cancel();
    if (mode === 'synced') {
      const changes = {};
      for (const name of PROBLEM_FIELDS) {
        if ((fields[name] ?? null) !== (pulled.data[name] ?? null) && !(name === 'place' && !fields[name] && !pulled.data[name])) changes[name] = fields[name];
      }
      if (Object.keys(changes).length) {
        await capture('problem.edit', { problem_id: id, base_version: pulled.version, changes }, { draft: draftKey });
      } else {
        await state.dropDraft(draftKey);
      }
    } else {
      const args = {
        id: problemId, visit_id: base.visit_id ?? null, diary_id: base.diary_id ?? fromDiary ?? null, ...fields,
        found_at: base.found_at || nowIso(), photos: photos.map((p) => p.sha),
        solved_on_spot: solved ? { note: v.solved_note.trim(), photos: solvedPhotos.map((p) => p.sha) } : null,
      };
      const blobs = [...photos, ...solvedPhotos].filter((p) => p.blob);
      // A resident's report gets a tracking link; the token stays on the phone, its hash goes.
      const link = await tracking.forReport(problemId, Boolean(fields.resident_name || fields.resident_phone));
      if (link) args.tracking_hash = link.hash;
      await capture('problem.report', args, { draft: draftKey, photos: blobs,
        meta: link ? { [tracking.metaKey(problemId)]: link.token } : {} });
    }
    openForms.delete(saver);
    toast(t('saved'));
    location.hash = '#/';
  });
  view.replaceChildren(form);
  if (mode === 'local') {
    const receipt = await tracking.receipt(problemId);
    if (receipt) form.after(h('div', { class: 'card' }, receipt));
  }
  if (mode === 'new' && !fromDiary) description.focus();
}
