// Reading what the phone holds, drafts that autosave as the user types, and
// the position (never blocking).

import * as db from './db.js';

// Reference data ------------------------------------------------------------------

async function pulled(entity) {
  return (await db.byIndex('pulled', 'entity', entity)).map((row) => ({ ...row.data, _version: row.version }));
}

// Areas in tree order with their depth, for a select.
export async function areaOptions() {
  const areas = await pulled('area');
  const byParent = new Map();
  const ids = new Set(areas.map((a) => a.id));
  for (const area of areas) {
    const parent = ids.has(area.parent_id) ? area.parent_id : null;
    if (!byParent.has(parent)) byParent.set(parent, []);
    byParent.get(parent).push(area);
  }
  const out = [];
  const walk = (parent, depth) => {
    for (const area of (byParent.get(parent) || []).sort((a, b) => String(a.code).localeCompare(String(b.code)))) {
      if (area.active === 0) continue;
      out.push([area.id, `${'\u3000'.repeat(depth)}${area.name}`]);
      walk(area.id, depth + 1);
    }
  };
  walk(null, 0);
  return out;
}

export async function lookup(entity) {
  const map = new Map();
  for (const row of await pulled(entity)) map.set(String(row.id), row);
  return map;
}

export async function activeOptions(entity) {
  return (await pulled(entity)).filter((row) => row.active !== 0)
    .sort((a, b) => String(a.name).localeCompare(String(b.name), 'zh-CN'))
    .map((row) => [row.id, row.name]);
}

export const pulledProblems = () => pulled('problem');
export const pulledRecord = (entity, id) => db.get('pulled', `${entity}:${id}`);

// Captured records ----------------------------------------------------------------

export const record = (key) => db.get('records', key);
export const records = (kind) => (kind ? db.byIndex('records', 'kind', kind) : db.getAll('records'));

export async function currentVisit() {
  const id = await db.getMeta('current_visit');
  return id ? record(`visit:${id}`) : null;
}

// Drafts --------------------------------------------------------------------------

const timers = new Map();
const writes = new Set();

function valuesOf(form) {
  const values = {};
  for (const el of form.elements) {
    if (!el.name || el.type === 'file' || el.type === 'button' || el.type === 'submit') continue;
    if (el.type === 'checkbox') {
      values[el.name] = values[el.name] || [];
      if (el.checked) values[el.name].push(el.value);
    } else if (el.type === 'radio') {
      if (el.checked) values[el.name] = el.value;
    } else {
      values[el.name] = el.value;
    }
  }
  return values;
}

export function fill(form, values) {
  for (const el of form.elements) {
    if (!el.name || !(el.name in values) || el.type === 'file') continue;
    const value = values[el.name];
    if (el.type === 'checkbox') el.checked = Array.isArray(value) && value.includes(el.value);
    else if (el.type === 'radio') el.checked = el.value === value;
    else el.value = value ?? '';
    // Not bubbling: a field's own listeners (its length counter) see the new
    // value, the form's autosave does not.
    el.dispatchEvent(new Event('input'));
  }
}

function write(key, draft) {
  const promise = db.put('drafts', { form: key, ...draft, saved: Date.now() })
    .finally(() => writes.delete(promise));
  writes.add(promise);
  return promise;
}

// Autosave a form's input under `key`; extra() adds non-input state (photos).
export function autosave(form, key, extra = () => ({})) {
  const save = () => {
    clearTimeout(timers.get(key));
    timers.delete(key);
    return write(key, { values: valuesOf(form), ...extra() });
  };
  const later = () => {
    clearTimeout(timers.get(key));
    timers.set(key, setTimeout(save, 250));
  };
  form.addEventListener('input', later);
  form.addEventListener('change', later);
  return { save, values: () => valuesOf(form), cancel: () => { clearTimeout(timers.get(key)); timers.delete(key); } };
}

export const loadDraft = (key) => db.get('drafts', key);
export const dropDraft = (key) => db.del('drafts', key);

// Write every pending draft now (before a reload).
export async function flushDrafts(forms) {
  for (const saver of forms) await saver.save();
  await Promise.all([...writes]);
}

export function unsaved() {
  return timers.size > 0 || writes.size > 0;
}

// Position ------------------------------------------------------------------------

export async function mayLocate() {
  try {
    const permission = await navigator.permissions.query({ name: 'geolocation' });
    return permission.state === 'granted';
  } catch {
    return false;
  }
}

export function locate(timeout = 15000) {
  return new Promise((resolve) => {
    if (!navigator.geolocation) { resolve(null); return; }
    navigator.geolocation.getCurrentPosition(
      (position) => resolve({
        lat: Number(position.coords.latitude.toFixed(6)),
        lng: Number(position.coords.longitude.toFixed(6)),
        accuracy: Math.round(position.coords.accuracy),
      }),
      () => resolve(null),
      { enableHighAccuracy: true, timeout, maximumAge: 60000 },
    );
  });
}
