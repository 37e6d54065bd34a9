// The sync protocol client (docs/sync-protocol.md), a port of sync/client.py.
//
// It runs in the page and, for Background Sync, in the service worker, so it
// uses no DOM. Only one sync runs at a time (a Web Lock across the page and
// the worker, and a promise within one context). Listeners learn of changes
// through a BroadcastChannel ("fl-sync"): {type: "changed" | "status" | "wiped"}.

import * as db from './db.js';

export const SCHEMA_VERSION = 1;
const PUSH_BATCH = 100;
const CHUNK_SIZE = 256 * 1024;
const MAX_ATTEMPTS = 5;
const REQUEST_TIMEOUT_MS = 30000;
const channel = typeof BroadcastChannel === 'function' ? new BroadcastChannel('fl-sync') : null;
const listeners = new Set();

// Status of the current context's sync, for the UI.
export const status = { running: false, error: null, failures: 0 };

export function onChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function emit(message) {
  for (const fn of listeners) {
    try { fn(message); } catch (error) { console.error(error); }
  }
  if (channel) channel.postMessage(message);
}

if (channel) {
  channel.onmessage = (event) => {
    for (const fn of listeners) fn(event.data);
  };
}

export class NetworkError extends Error {}
export class HttpError extends Error {
  constructor(status, body) {
    super((body && body.error && body.error.message) || `HTTP ${status}`);
    this.status = status;
    this.code = (body && body.error && body.error.code) || `http_${status}`;
  }
}
// The server refused this device or token: syncing stops until the user acts.
export class AuthStop extends Error {
  constructor(code, message) { super(message || code); this.code = code; }
}

export function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

// An ISO-8601 timestamp with this phone's UTC offset.
export function nowIso(date = new Date()) {
  const pad = (n) => String(Math.abs(n)).padStart(2, '0');
  const offset = -date.getTimezoneOffset();
  const sign = offset >= 0 ? '+' : '-';
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:` +
    `${pad(date.getMinutes())}:${pad(date.getSeconds())}${sign}${pad(Math.trunc(offset / 60))}:${pad(offset % 60)}`;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
export const backoff = (attempt, cap = 30000) =>
  Math.min(cap, 200 * 2 ** attempt) * (0.5 + Math.random() / 2);

// Local state ------------------------------------------------------------------

export async function ensureClient() {
  return db.tx('meta', 'readwrite', async (s) => {
    let row = await s.meta.get('client_id');
    if (!row) {
      row = { k: 'client_id', v: uuid() };
      await s.meta.put(row);
      await s.meta.put({ k: 'next_mutation_id', v: 1 });
      await s.meta.put({ k: 'cursor', v: 0 });
      await s.meta.put({ k: 'acked', v: 0 });
      await s.meta.put({ k: 'rejected', v: [] });
    }
    return row.v;
  });
}

export function recordKey(name, args) {
  if (name === 'problem.edit') return `problem:${args.problem_id}`;
  if (name === 'problem.note') return `note:${args.id}`;
  return `${name.split('.')[0]}:${args.id}`;
}

// Record a local change: the record, its outbox entry, its photos (and the
// removal of its draft, and any meta changes) in ONE transaction.
export async function capture(name, args, { photos = [], draft = null, meta = {} } = {}) {
  const key = recordKey(name, args);
  const now = nowIso();
  const id = await db.tx(['records', 'outbox', 'photos', 'meta', 'drafts'], 'readwrite', async (s) => {
    const next = (await s.meta.get('next_mutation_id'))?.v || 1;
    await s.meta.put({ k: 'next_mutation_id', v: next + 1 });
    await s.outbox.put({ id: next, name, args, key });
    let record = await s.records.get(key);
    if (name === 'problem.edit' && record) {
      if (record.name === 'problem.edit') {
        record.args = { ...args, changes: { ...record.args.changes, ...args.changes } };
      } else {
        record.args = { ...record.args, ...args.changes };
      }
    } else {
      record = { key, kind: key.split(':')[0], id: key.split(':')[1], name, args,
        created: record ? record.created : now };
    }
    Object.assign(record, { mid: next, state: 'pending', error: null, updated: now });
    await s.records.put(record);
    for (const photo of photos) {
      if (!(await s.photos.get(photo.sha))) {
        await s.photos.put({ ...photo, upload: null, done: false, created: now });
      }
    }
    if (draft) await s.drafts.delete(draft);
    for (const [k, v] of Object.entries(meta)) await s.meta.put({ k, v });
    return next;
  });
  emit({ type: 'changed', local: true });
  return id;
}

// Queue every record this phone holds again, numbered from serverLast + 1
// (after a restore of the server from backup). Runs inside the caller's tx.
async function resendAll(s, serverLast) {
  await s.outbox.clear();
  let next = serverLast + 1;
  const records = (await s.records.getAll()).sort((a, b) => (a.mid || 0) - (b.mid || 0));
  for (const record of records) {
    await s.outbox.put({ id: next, name: record.name, args: record.args, key: record.key });
    Object.assign(record, { mid: next, state: 'pending', error: null });
    await s.records.put(record);
    next += 1;
  }
  await s.meta.put({ k: 'next_mutation_id', v: next });
  await s.meta.put({ k: 'acked', v: serverLast });
}

// HTTP --------------------------------------------------------------------------

async function send(method, path, { json, body, headers = {}, token, timeout = REQUEST_TIMEOUT_MS }) {
  const all = { ...headers };
  if (token) all.Authorization = `Bearer ${token}`;
  let payload = body;
  if (json !== undefined) {
    all['Content-Type'] = 'application/json';
    payload = JSON.stringify(json);
  }
  for (let attempt = 0; ; attempt += 1) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), timeout);
    let response = null;
    try {
      response = await fetch(path, { method, headers: all, body: payload, cache: 'no-store',
        credentials: 'omit', signal: controller.signal });
    } catch {
      response = null;
    } finally {
      clearTimeout(timer);
    }
    if (response && response.status !== 503) return response;
    if (attempt >= MAX_ATTEMPTS - 1) {
      if (response) return response;
      throw new NetworkError('network');
    }
    const retryAfter = response && Number(response.headers.get('Retry-After'));
    await sleep(retryAfter ? retryAfter * 1000 : backoff(attempt));
  }
}

async function errorOf(response) {
  let body = null;
  try { body = await response.json(); } catch { /* not JSON */ }
  return new HttpError(response.status, body);
}

async function check(response, ...ok) {
  if (ok.includes(response.status)) return response;
  const error = await errorOf(response);
  if (response.status === 401) {
    if (error.code === 'device_wiped') {
      await wipe();
      throw new AuthStop('device_wiped', error.message);
    }
    const code = ['device_revoked', 'account_disabled'].includes(error.code) ? error.code : 'invalid_token';
    await db.setMeta('auth', code);
    throw new AuthStop(code, error.message);
  }
  if (response.status === 403 && error.code === 'client_owner') {
    await db.setMeta('auth', 'client_owner');
    throw new AuthStop('client_owner', error.message);
  }
  throw error;
}

export async function wipe() {
  await db.destroy();
  try { localStorage.clear(); } catch { /* not in a page */ }
  emit({ type: 'wiped' });
}

// Signing in --------------------------------------------------------------------

export async function login(username, password, deviceName) {
  let response;
  try {
    response = await fetch('/api/login', {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, credentials: 'omit',
      body: JSON.stringify({ username, password, device_name: deviceName }),
    });
  } catch {
    throw new NetworkError('network');
  }
  if (response.status !== 201) throw await errorOf(response);
  const body = await response.json();
  const previous = await db.getMeta('user');
  if (previous && previous.id !== body.user.id) {
    // Another person on this phone: never send their records under this account.
    if ((await db.count('outbox')) > 0) throw new HttpError(409, { error: { code: 'other_user' } });
    await db.tx(['records', 'outbox', 'photos', 'pulled', 'meta', 'drafts'], 'readwrite', async (s) => {
      for (const name of ['records', 'outbox', 'photos', 'pulled', 'meta', 'drafts']) await s[name].clear();
    });
  }
  await ensureClient();
  await db.setMetaMany({ token: body.token, user: body.user, auth: 'ok', username });
  emit({ type: 'changed' });
  return body.user;
}

// The rounds -------------------------------------------------------------------

async function announcePhotos(token) {
  const photos = await db.getAll('photos');
  for (const photo of photos) {
    if (photo.upload || photo.done) continue;
    const metadata = [`sha256 ${btoa(photo.sha)}`, `filetype ${btoa(photo.type || 'image/jpeg')}`].join(',');
    const response = await check(await send('POST', '/api/uploads', {
      token, headers: { 'Tus-Resumable': '1.0.0', 'Upload-Length': String(photo.size), 'Upload-Metadata': metadata },
    }), 201);
    const location = response.headers.get('Location');
    await db.tx('photos', 'readwrite', async (s) => {
      const current = await s.photos.get(photo.sha);
      if (current) await s.photos.put({ ...current, upload: location });
    });
  }
}

async function applyPushResult(batch, body) {
  return db.tx(['outbox', 'records', 'meta', 'pulled'], 'readwrite', async (s) => {
    const epoch = (await s.meta.get('epoch'))?.v;
    const acked = (await s.meta.get('acked'))?.v || 0;
    const rejectedList = (await s.meta.get('rejected'))?.v || [];
    const last = body.last_mutation_id;
    await s.meta.put({ k: 'epoch', v: body.epoch });
    const byId = new Map(batch.map((m) => [m.id, m]));
    const rejected = new Map();
    for (const result of body.results) {
      if (result.status !== 'rejected') continue;
      const mutation = byId.get(result.id);
      rejected.set(result.id, result.error);
      rejectedList.push({ id: result.id, key: mutation ? mutation.key : null, name: mutation ? mutation.name : '',
        code: result.error.code, message: result.error.message, at: nowIso() });
    }
    await s.meta.put({ k: 'rejected', v: rejectedList.slice(-50) });
    for (const mutation of batch) {
      if (mutation.id > last) continue;
      const record = await s.records.get(mutation.key);
      if (record && record.mid === mutation.id) {
        const error = rejected.get(mutation.id);
        Object.assign(record, { state: error ? 'rejected' : 'synced', error: error || null });
        await s.records.put(record);
      }
    }
    await s.outbox.delete(IDBKeyRange.upperBound(last));
    const remaining = await s.outbox.getAll(undefined, 1);
    const epochChanged = epoch && epoch !== body.epoch;
    const forgotten = body.gap || last < acked || epochChanged ||
      (remaining.length && remaining[0].id !== last + 1);
    if (epochChanged) {
      await s.pulled.clear();
      await s.meta.put({ k: 'cursor', v: 0 });
    }
    if (forgotten) {
      await resendAll(s, last);
      return true;
    }
    await s.meta.put({ k: 'acked', v: Math.max(acked, last) });
    return false;
  });
}

async function push(token, clientId) {
  let resent = false;
  for (let round = 0; round < 1000; round += 1) {
    const batch = await db.tx('outbox', 'readonly', (s) => s.outbox.getAll(undefined, PUSH_BATCH));
    if (!batch.length) break;
    const response = await check(await send('POST', '/api/sync/push', {
      token,
      json: { client_id: clientId, schema_version: SCHEMA_VERSION,
        mutations: batch.map(({ id, name, args }) => ({ id, name, args })) },
    }), 200);
    const body = await response.json();
    if (await applyPushResult(batch, body)) {
      if (resent) break; // at most one re-send per round; the next sync goes on
      resent = true;
    }
    emit({ type: 'changed' });
  }
}

async function sha1Base64(buffer) {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-1', buffer));
  return btoa(String.fromCharCode(...digest));
}

async function uploadOne(token, photo) {
  const tus = { 'Tus-Resumable': '1.0.0' };
  const head = await send('HEAD', photo.upload, { token, headers: tus });
  if (head.status === 404) {
    // The server lost or refused this upload: announce it again next round.
    await db.tx('photos', 'readwrite', async (s) => {
      const current = await s.photos.get(photo.sha);
      if (current) await s.photos.put({ ...current, upload: null });
    });
    return;
  }
  await check(head, 200);
  let offset = Number(head.headers.get('Upload-Offset'));
  let mismatches = 0;
  while (offset < photo.size) {
    const chunk = await photo.blob.slice(offset, offset + CHUNK_SIZE).arrayBuffer();
    const response = await send('PATCH', photo.upload, {
      token, body: chunk, timeout: 60000,
      headers: { ...tus, 'Upload-Offset': String(offset), 'Content-Type': 'application/offset+octet-stream',
        'Upload-Checksum': `sha1 ${await sha1Base64(chunk)}` },
    });
    if (response.status === 409) {
      const again = await check(await send('HEAD', photo.upload, { token, headers: tus }), 200);
      offset = Number(again.headers.get('Upload-Offset'));
      continue;
    }
    if (response.status === 460 && mismatches < 3) {
      mismatches += 1;
      continue;
    }
    await check(response, 204);
    offset = Number(response.headers.get('Upload-Offset'));
  }
  await db.tx('photos', 'readwrite', async (s) => {
    const current = await s.photos.get(photo.sha);
    if (current) await s.photos.put({ ...current, done: true });
  });
}

async function uploadPhotos(token) {
  const photos = await db.getAll('photos');
  for (const photo of photos) {
    if (!photo.done && photo.upload && photo.blob) await uploadOne(token, photo);
  }
}

async function pull(token, clientId) {
  let resent = false;
  for (let round = 0; round < 10000; round += 1) {
    const cursor = (await db.getMeta('cursor')) || 0;
    const query = new URLSearchParams({ client_id: clientId, cursor: String(cursor), limit: '500' });
    const response = await check(await send('GET', `/api/sync/pull?${query}`, { token }), 200);
    const body = await response.json();
    const restart = await db.tx(['pulled', 'meta', 'outbox', 'records'], 'readwrite', async (s) => {
      const epoch = (await s.meta.get('epoch'))?.v;
      await s.meta.put({ k: 'epoch', v: body.epoch });
      if (body.reset || (epoch && epoch !== body.epoch)) {
        await s.pulled.clear();
        await s.meta.put({ k: 'cursor', v: 0 });
        await resendAll(s, body.last_mutation_id);
        return true;
      }
      for (const change of body.changes) {
        const key = `${change.entity}:${change.id}`;
        if (change.deleted) await s.pulled.delete(key);
        else await s.pulled.put({ key, entity: change.entity, id: change.id, version: change.version, data: change.data });
      }
      await s.meta.put({ k: 'cursor', v: body.cursor });
      return false;
    });
    if (restart) {
      resent = true;
      continue;
    }
    if (body.changes.length) emit({ type: 'changed' });
    if (!body.has_more) return resent;
  }
  return resent;
}

async function round() {
  const meta = await db.metaMany(['token', 'auth', 'client_id']);
  if (!meta.token || meta.auth !== 'ok') return 'signed_out';
  if (typeof navigator !== 'undefined' && navigator.onLine === false) return 'offline';
  const clientId = meta.client_id || await ensureClient();
  for (let pass = 0; pass < 3; pass += 1) {
    await announcePhotos(meta.token);
    await push(meta.token, clientId);
    await uploadPhotos(meta.token);
    const resent = await pull(meta.token, clientId);
    if (!resent && (await db.count('outbox')) === 0) break;
  }
  await db.setMetaMany({ last_sync: nowIso(), last_error: null });
  return 'ok';
}

async function locked(fn) {
  if (typeof navigator !== 'undefined' && navigator.locks) {
    return navigator.locks.request('fieldledger-sync', { ifAvailable: true },
      (lock) => (lock ? fn() : 'busy'));
  }
  return fn();
}

let running = null;
let again = false;

// Sync now (or right after the sync that is running). Resolves with
// "ok" | "offline" | "signed_out" | "busy" | "error" | an AuthStop code.
export function syncNow() {
  if (running) {
    again = true;
    return running;
  }
  status.running = true;
  emit({ type: 'status' });
  running = (async () => {
    let result;
    try {
      result = await locked(round);
      if (result === 'ok') { status.failures = 0; status.error = null; }
    } catch (error) {
      if (error instanceof AuthStop) {
        result = error.code;
      } else {
        status.failures += 1;
        status.error = error instanceof NetworkError ? 'network' : (error.message || 'error');
        try { await db.setMeta('last_error', status.error); } catch { /* wiped */ }
        result = 'error';
      }
    } finally {
      status.running = false;
      running = null;
    }
    emit({ type: 'status', result });
    if (again) {
      again = false;
      if (result === 'ok') return syncNow();
    }
    return result;
  })();
  return running;
}

// Background Sync in the service worker: throws so that the browser retries.
export async function syncFromWorker() {
  const result = await syncNow();
  if (result === 'error' || result === 'busy') throw new Error(`sync ${result}`);
  return result;
}
