// The sync protocol client (docs/sync-protocol.md), a port of sync/client.py.
//
// It runs in the page and, for Background Sync, in the service worker, so it
// uses no DOM. Only one sync runs at a time (a Web Lock across the page and
// the worker, and a promise within one context). Listeners learn of changes
// through a BroadcastChannel ("fl-sync"): {type: "changed" | "status" | "wiped"}.

import * as db from './db.js';
import * as health from './health.js';

export const SCHEMA_VERSION = 1;
// Pull answers: a snapshot of the working set from cursor 0, then the log; compact pages.
const PAGE_FORMAT = 2;
const PUSH_BATCH = 100;
const CHUNK_SIZE = 256 * 1024;
const MAX_ATTEMPTS = 5;
const REQUEST_TIMEOUT_MS = 30000;
// Rejections a server restored from a backup can give although the phone is
// right: a photo announced after the backup, or a note whose problem another
// phone has not sent again yet. The record is set aside ("deferred") and sent
// again after a later pull, a few times, before the rejection counts.
const RETRIED_REJECTIONS = new Set(['unknown_photo', 'problem_not_found']);
const MAX_RETRIES = 10;
// Answers by which the server refuses a photo for good (too many pixels, not an
// image, over 10 MB, or an upload that already ended so): the photo stays on
// the phone, marked refused, and is not sent again.
const REFUSED_UPLOAD = new Set([410, 413, 415]);
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

// Record ids are UUIDv7 (RFC 9562): they start with the time in milliseconds,
// so the server's indexes on them grow at their end rather than at random
// pages (pushes are about 2.5 times faster on a ledger of a million problems).
export function uuid(now = Date.now()) {
  const b = crypto.getRandomValues(new Uint8Array(16));
  let ms = now;
  for (let i = 5; i >= 0; i -= 1) { b[i] = ms % 256; ms = Math.floor(ms / 256); }
  b[6] = (b[6] & 0x0f) | 0x70;
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

// The photos a mutation's args name.
export function photosNamed(args) {
  return [...(args.photos || []), ...((args.solved_on_spot && args.solved_on_spot.photos) || [])];
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

// Queue `record` again as a new mutation. Runs inside the caller's tx.
async function requeue(s, record, id) {
  await s.outbox.put({ id, name: record.name, args: record.args, key: record.key });
  Object.assign(record, { mid: id, state: 'pending', error: null });
  await s.records.put(record);
}

// The server was restored from a backup: queue every record this phone holds
// again, numbered from serverLast + 1, announce every photo again (the server
// may have forgotten the uploads), and pull again from cursor 0, dropping
// what was pulled from the old timeline. Runs inside the caller's tx, which
// must cover outbox, records, meta, pulled and photos.
async function resendAll(s, serverLast) {
  await s.outbox.clear();
  let next = serverLast + 1;
  const records = (await s.records.getAll()).sort((a, b) => (a.mid || 0) - (b.mid || 0));
  for (const record of records) {
    await requeue(s, record, next);
    next += 1;
  }
  for (const photo of await s.photos.getAll()) {
    await s.photos.put({ ...photo, upload: null, done: false, acked_at: null });
  }
  await s.pulled.clear();
  await s.meta.put({ k: 'cursor', v: 0 });
  await s.meta.put({ k: 'next_mutation_id', v: next });
  await s.meta.put({ k: 'acked', v: serverLast });
}

// Queue again the records set aside by a retried rejection. Python's
// reference client does so after a pull brought news, or when one of them
// waits for a photo (re-announced meanwhile) rather than for a problem.
async function requeueDeferred(pulledNews) {
  const requeued = await db.tx(['outbox', 'records', 'meta'], 'readwrite', async (s) => {
    const deferred = (await s.records.getAll()).filter((r) => r.state === 'deferred');
    if (!deferred.length || !(pulledNews || deferred.some((r) => r.name !== 'problem.note'))) return 0;
    let next = (await s.meta.get('next_mutation_id'))?.v || 1;
    for (const record of deferred.sort((a, b) => a.mid - b.mid)) {
      await requeue(s, record, next);
      next += 1;
    }
    await s.meta.put({ k: 'next_mutation_id', v: next });
    return deferred.length;
  });
  if (requeued) emit({ type: 'changed' });
  return requeued > 0;
}

// What is still to reach the server: queued mutations and deferred records.
export async function pendingCount() {
  return db.tx(['outbox', 'records'], 'readonly', async (s) =>
    (await s.outbox.count()) + (await s.records.getAll()).filter((r) => r.state === 'deferred').length);
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
    // A busy server says when to come back; phones refused together spread out over
    // up to twice that, so they do not all come back together.
    const retryAfter = response && Number(response.headers.get('Retry-After'));
    await sleep(retryAfter ? retryAfter * 1000 * (1 + Math.random()) : backoff(attempt));
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
  return adopt(await response.json());
}

const SESSION_TIMEOUT_MS = 8000;

// Sign in with the web session this browser holds (the office sign-in page),
// without asking for the password again; null when there is none, or when it
// began before `notBefore` (a sign-out or wipe on this phone since then: that
// session must not sign the phone back in). The answer is the same as
// login()'s. The CSRF token comes from a same-origin GET that other sites
// cannot read, and goes back in a header (docs/sync-protocol.md).
export async function loginFromSession(deviceName, notBefore) {
  const options = { credentials: 'same-origin', cache: 'no-store' };
  const session = await fetch('/api/session', { ...options, signal: AbortSignal.timeout(SESSION_TIMEOUT_MS) });
  if (session.status !== 200) return null;
  const { csrf_token: csrf, signed_in_at: since } = await session.json();
  if (!since || (notBefore && Date.parse(since) < Date.parse(notBefore))) return null;
  const response = await fetch('/api/session/device', {
    ...options, method: 'POST', signal: AbortSignal.timeout(SESSION_TIMEOUT_MS),
    headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
    body: JSON.stringify({ device_name: deviceName }),
  });
  if (response.status !== 201) return null;
  return adopt(await response.json());
}

// Keep a new device token and its user.
async function adopt(body) {
  const previous = await db.getMeta('user');
  if (previous && previous.id !== body.user.id) {
    // Another person on this phone: never send their records under this account.
    if ((await unsyncedCount()) > 0) throw new HttpError(409, { error: { code: 'other_user' } });
    await db.tx(['records', 'outbox', 'photos', 'pulled', 'meta', 'drafts'], 'readwrite', async (s) => {
      for (const name of ['records', 'outbox', 'photos', 'pulled', 'meta', 'drafts']) await s[name].clear();
    });
    await db.deleteThumbs();
  }
  await ensureClient();
  await db.setMetaMany({ token: body.token, user: body.user, auth: 'ok', username: body.user.username });
  emit({ type: 'changed' });
  return body.user;
}

// What only this phone holds: mutations not yet acknowledged, deferred
// records, photos whose bytes the server has not received (their record may
// be synced already) and form drafts. Signing out never deletes these.
// A photo the server refused for good is not counted: it can never leave, and
// must not keep the phone from being cleared (sign-out warns of it instead).
export async function unsyncedCount() {
  const unsentPhotos = (await db.getAll('photos')).filter((photo) => photo.blob && !photo.done && !photo.refused);
  return (await pendingCount()) + unsentPhotos.length + (await db.count('drafts'));
}

// Photos only this phone holds because the server refused them.
export async function refusedPhotoCount() {
  return (await db.getAll('photos')).filter((photo) => photo.blob && photo.refused).length;
}

// Sign this phone out: the server forgets its token (when it can be reached)
// and the phone drops it. With `clear`, everything held on the phone is
// deleted too (once no sync is running), but only if nothing is unsynced;
// else the data stays for the next sign-in of the same account.
export async function signOut({ clear = false } = {}) {
  if (clear) await idle();
  const token = await db.getMeta('token');
  if (token && (typeof navigator === 'undefined' || navigator.onLine !== false)) {
    try {
      await fetch('/api/logout', { method: 'POST', headers: { Authorization: `Bearer ${token}` },
        credentials: 'omit', signal: AbortSignal.timeout(5000) });
    } catch { /* offline: the token stays valid on the server until revoked there */ }
  }
  // Checked and deleted under the sync lock: a sync of the service worker
  // may be running although this page's is not.
  const cleared = clear && await exclusively(async () => {
    if ((await unsyncedCount()) !== 0) return false;
    await db.destroy();
    return true;
  });
  if (!cleared) await db.setMetaMany({ token: null, auth: null });
  emit({ type: 'signed_out', cleared });
  return cleared;
}

// The rounds -------------------------------------------------------------------

async function announcePhotos(token) {
  const photos = await db.getAll('photos');
  for (const photo of photos) {
    if (photo.upload || photo.done || photo.refused) continue;
    const metadata = [`sha256 ${btoa(photo.sha)}`, `filetype ${btoa(photo.type || 'image/jpeg')}`].join(',');
    const answer = await send('POST', '/api/uploads', {
      token, headers: { 'Tus-Resumable': '1.0.0', 'Upload-Length': String(photo.size), 'Upload-Metadata': metadata },
    });
    if (REFUSED_UPLOAD.has(answer.status)) {
      await refusePhoto(photo.sha, answer);
      continue;
    }
    const response = await check(answer, 201);
    const location = response.headers.get('Location');
    await db.tx('photos', 'readwrite', async (s) => {
      const current = await s.photos.get(photo.sha);
      if (current) await s.photos.put({ ...current, upload: location });
    });
  }
}

// Add a rejection to the list shown on Home, once per record: a rejection the
// server repeats (a retried push, or a record sent again after a restore)
// replaces the earlier one.
function noteRejection(list, mutation, id, error) {
  const key = mutation ? mutation.key : null;
  const kept = list.filter((item) => (key ? item.key !== key : item.id !== id));
  kept.push({ id, key, name: mutation ? mutation.name : '', code: error.code, message: error.message, at: nowIso() });
  return kept.slice(-50);
}

// A retried rejection sets the record aside (true); photos it names are
// announced again in case the server forgot them.
async function deferRejected(s, record, error) {
  if (!RETRIED_REJECTIONS.has(error.code) || (record.retries || 0) >= MAX_RETRIES) return false;
  if (error.code === 'unknown_photo') {
    // A photo refused before it was announced stays unknown: retrying cannot help.
    for (const sha of photosNamed(record.args)) if ((await s.photos.get(sha))?.refused) return false;
  }
  Object.assign(record, { state: 'deferred', error: null, retries: (record.retries || 0) + 1 });
  await s.records.put(record);
  if (error.code === 'unknown_photo') {
    for (const sha of photosNamed(record.args)) {
      const photo = await s.photos.get(sha);
      if (photo) await s.photos.put({ ...photo, upload: null, done: false, acked_at: null });
    }
  }
  return true;
}

// Settle one mutation the server acknowledged (applied, skipped or rejected).
async function settle(s, mutation, error, rejectedList) {
  const record = await s.records.get(mutation.key);
  const current = record && record.mid === mutation.id;
  if (error && current && await deferRejected(s, record, error)) return rejectedList;
  if (!current) return error && !RETRIED_REJECTIONS.has(error.code)
    ? noteRejection(rejectedList, mutation, mutation.id, error) : rejectedList;
  Object.assign(record, { state: error ? 'rejected' : 'synced', error: error || null });
  await s.records.put(record);
  return error ? noteRejection(rejectedList, mutation, mutation.id, error) : rejectedList;
}

// A record applied while the visit or diary entry it names was set aside lost
// that link on the server: it is set aside too, so it is sent again after what
// it names, and the server then fills the link in.
async function deferDependents(s, batch, results) {
  const applied = new Set(results.filter((r) => r.status === 'applied').map((r) => r.id));
  for (const mutation of batch) {
    if (!applied.has(mutation.id)) continue;
    const { visit_id: visitId, diary_id: diaryId } = mutation.args;
    let waiting = false;
    for (const key of [visitId && `visit:${visitId}`, diaryId && `diary:${diaryId}`]) {
      if (key && (await s.records.get(key))?.state === 'deferred') waiting = true;
    }
    const record = waiting ? await s.records.get(mutation.key) : null;
    if (record && record.mid === mutation.id) await s.records.put({ ...record, state: 'deferred' });
  }
}

async function applyPushResult(batch, body) {
  return db.tx(['outbox', 'records', 'meta', 'pulled', 'photos'], 'readwrite', async (s) => {
    const epoch = (await s.meta.get('epoch'))?.v;
    const acked = (await s.meta.get('acked'))?.v || 0;
    let rejectedList = (await s.meta.get('rejected'))?.v || [];
    const last = body.last_mutation_id;
    await s.meta.put({ k: 'epoch', v: body.epoch });
    const errors = new Map(body.results.filter((r) => r.status === 'rejected').map((r) => [r.id, r.error]));
    for (const mutation of batch) {
      if (mutation.id <= last) rejectedList = await settle(s, mutation, errors.get(mutation.id), rejectedList);
    }
    await deferDependents(s, batch, body.results);
    await s.meta.put({ k: 'rejected', v: rejectedList });
    await s.outbox.delete(IDBKeyRange.upperBound(last));
    const remaining = await s.outbox.getAll(undefined, 1);
    const epochChanged = epoch && epoch !== body.epoch;
    const forgotten = body.gap || last < acked || epochChanged ||
      (remaining.length && remaining[0].id !== last + 1);
    if (forgotten) {
      await resendAll(s, last);
      return true;
    }
    await s.meta.put({ k: 'acked', v: Math.max(acked, last) });
    return false;
  });
}

// The phone's health goes with the first push and the first pull of a round.
const healthHeaders = async () => ({ 'X-Device-Health': await health.header() });

async function push(token, clientId) {
  let resent = false;
  for (let round = 0; round < 1000; round += 1) {
    const batch = await db.tx('outbox', 'readonly', (s) => s.outbox.getAll(undefined, PUSH_BATCH));
    if (!batch.length) break;
    const response = await check(await send('POST', '/api/sync/push', {
      token, headers: round === 0 ? await healthHeaders() : {},
      json: { client_id: clientId, schema_version: SCHEMA_VERSION,
        mutations: batch.map(({ id, name, args }) => ({ id, name, args })) },
    }), 200);
    const body = await response.json();
    if (await applyPushResult(batch, body)) {
      // Everything is queued again; its photos must be known before it is pushed.
      await announcePhotos(token);
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

// Keep a photo the server refused for good (its bytes stay on the phone), stop
// sending it, and list the refusal with the rejections shown on Home.
async function refusePhoto(sha, response) {
  const { code, message } = await errorOf(response);
  await db.tx(['photos', 'meta'], 'readwrite', async (s) => {
    const current = await s.photos.get(sha);
    if (current) await s.photos.put({ ...current, refused: { code, message } });
    const list = (await s.meta.get('rejected'))?.v || [];
    await s.meta.put({ k: 'rejected', v: noteRejection(list, { key: `photo:${sha}`, name: 'photo' }, null, { code, message }) });
  });
  emit({ type: 'changed' });
}

async function uploadOne(token, photo) {
  const tus = { 'Tus-Resumable': '1.0.0' };
  const patchHeaders = (offset) => ({ ...tus, 'Upload-Offset': String(offset), 'Content-Type': 'application/offset+octet-stream' });
  const head = await send('HEAD', photo.upload, { token, headers: tus });
  if (REFUSED_UPLOAD.has(head.status)) {
    // A HEAD has no body: an empty PATCH is answered with the refusal's code.
    await refusePhoto(photo.sha, await send('PATCH', photo.upload, { token, body: new ArrayBuffer(0), headers: patchHeaders(0) }));
    return;
  }
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
  let busy = 0;
  while (offset < photo.size) {
    const chunk = await photo.blob.slice(offset, offset + CHUNK_SIZE).arrayBuffer();
    const response = await send('PATCH', photo.upload, {
      token, body: chunk, timeout: 60000,
      headers: { ...patchHeaders(offset), 'Upload-Checksum': `sha1 ${await sha1Base64(chunk)}` },
    });
    if (REFUSED_UPLOAD.has(response.status)) {
      await refusePhoto(photo.sha, response);
      return;
    }
    if (response.status === 409) {
      // Another PATCH of this upload is still running (one this phone gave up on, on
      // any server process): give it time to end before asking where to resume.
      if ((await errorOf(response)).code === 'busy_upload') {
        if (busy >= MAX_ATTEMPTS - 1) throw new NetworkError('busy_upload');
        await sleep(backoff(busy));
        busy += 1;
      }
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
    if (!photo.done && photo.upload && photo.blob && !photo.refused) await uploadOne(token, photo);
  }
}

// The highest mutation id the server acknowledged to this phone. Runs inside
// the caller's tx (outbox, meta).
async function acknowledged(s) {
  const first = await s.outbox.getAll(undefined, 1);
  if (first.length) return first[0].id - 1;
  return ((await s.meta.get('next_mutation_id'))?.v || 1) - 1;
}

// The changes of a pull's answer in the compact page format (docs/sync-protocol.md,
// Pull): per entity the column names once, then rows; and the ids to remove.
export function pageChanges(body) {
  const changes = [];
  for (const [entity, page] of Object.entries(body.records || {})) {
    page.rows.forEach((row, i) => {
      const data = Object.fromEntries(page.columns.map((column, j) => [column, row[j]]));
      changes.push({ entity, id: String(data.id), version: page.versions[i], data });
    });
  }
  for (const [entity, ids] of Object.entries(body.deleted || {})) {
    for (const id of ids) changes.push({ entity, id: String(id), deleted: true });
  }
  return changes;
}

// Pull until up to date. Resolves with {resent, applied}: whether the server
// turned out restored (everything queued again), and how many changes came.
async function pull(token, clientId) {
  let resent = false;
  let applied = 0;
  for (let round = 0; round < 10000; round += 1) {
    const cursor = (await db.getMeta('cursor')) || 0;
    const query = new URLSearchParams({ client_id: clientId, cursor: String(cursor), limit: '500',
      format: String(PAGE_FORMAT) });
    const headers = round === 0 ? await healthHeaders() : {};
    const response = await check(await send('GET', `/api/sync/pull?${query}`, { token, headers }), 200);
    const body = await response.json();
    const changes = pageChanges(body);
    const restart = await db.tx(['pulled', 'meta', 'outbox', 'records', 'photos'], 'readwrite', async (s) => {
      const epoch = (await s.meta.get('epoch'))?.v;
      await s.meta.put({ k: 'epoch', v: body.epoch });
      // A new epoch (this page is from the new timeline, read against an old
      // cursor), a cursor from the future, or acknowledged mutations
      // forgotten: the server was restored. Discard the page and start over.
      if (body.reset || (epoch && epoch !== body.epoch) || body.last_mutation_id < await acknowledged(s)) {
        await resendAll(s, body.last_mutation_id);
        return true;
      }
      // A snapshot (from cursor 0) is the whole working set: what was held before goes.
      if (String(cursor) === '0') await s.pulled.clear();
      for (const change of changes) {
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
    applied += changes.length;
    if (changes.length) emit({ type: 'changed' });
    if (!body.has_more) break;
  }
  return { resent, applied };
}

async function round() {
  const meta = await db.metaMany(['token', 'auth', 'client_id']);
  if (!meta.token || meta.auth !== 'ok') return 'signed_out';
  if (typeof navigator !== 'undefined' && navigator.onLine === false) return 'offline';
  const clientId = meta.client_id || await ensureClient();
  const sendQueued = async () => {
    await announcePhotos(meta.token);
    await push(meta.token, clientId);
    await uploadPhotos(meta.token);
  };
  let news = 0;
  for (let pass = 0; pass < 3; pass += 1) {
    await sendQueued();
    const { resent, applied } = await pull(meta.token, clientId);
    news += applied;
    if (!resent && (await db.count('outbox')) === 0) break;
  }
  // Deferred records get one more try per round (so their retries last).
  if (await requeueDeferred(news > 0)) await sendQueued();
  await db.setMetaMany({ last_sync: nowIso(), last_error: null });
  return 'ok';
}

// Run fn once no sync holds the lock, holding it meanwhile.
function exclusively(fn) {
  if (typeof navigator !== 'undefined' && navigator.locks) {
    return navigator.locks.request('fieldledger-sync', fn);
  }
  return fn();
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

// Resolves once no sync of this context is running.
export async function idle() {
  while (running) {
    try { await running; } catch { /* reported by syncNow */ }
  }
}

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
