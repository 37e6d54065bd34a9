// Home (工作台): the visit in progress, quick capture, sync status, rejected
// items, storage, password change, sign-out; the sign-in form when there is no token.

import { h, t, field, button, toast, when, megabytes, clip, haversine, distanceText } from './ui.js';
import * as db from './db.js';
import * as state from './state.js';
import { passwordCard } from './password.js';
import * as health from './health.js';
import { login, loginFromSession, status as syncStatus, syncNow, NetworkError, pendingCount, unsyncedCount, refusedPhotoCount, signOut } from './sync.js';

function deviceName() {
  const ua = navigator.userAgent;
  const model = (/Android [\d.]+; ([^;)]+)/.exec(ua) || [])[1] || (/iPhone|iPad/.exec(ua) || [])[0] || '';
  return `${t('app.short_name')} ${model}`.trim().slice(0, 60);
}

// When this phone last signed out or was wiped: a web session begun before
// then must not sign it back in (nor one begun in that same second, as the
// server keeps whole seconds).
const SIGNED_OUT_AT = 'fl-signed-out-at';
export function rememberSignOut() {
  try { localStorage.setItem(SIGNED_OUT_AT, new Date().toISOString()); } catch { /* private mode */ }
}

// Signed in on the office sign-in page already? Then the app signs in with
// that session (once per start, online only), not with the password again.
let triedSession = false;
async function signInFromSession(view) {
  if (triedSession || navigator.onLine === false) return false;
  triedSession = true;
  view.replaceChildren(h('p', { class: 'muted', role: 'status' }, t('login.from_session')));
  let notBefore = null;
  try { notBefore = localStorage.getItem(SIGNED_OUT_AT); } catch { /* private mode */ }
  try {
    if (!(await loginFromSession(deviceName(), notBefore))) return false;
  } catch {
    return false; // any failure: the sign-in form
  }
  try { localStorage.removeItem('fl-wiped'); } catch { /* private mode */ }
  syncNow();
  return true;
}

function signInForm(username, again) {
  const error = h('p', { class: 'error', role: 'alert', hidden: true });
  const user = h('input', { name: 'username', autocomplete: 'username', required: true, value: username || '', readonly: again, autocapitalize: 'none' });
  const pass = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary' }, t('login.submit'));
  const form = h('form', { class: 'card form', novalidate: true },
    h('h1', null, again ? t('login.again_title') : t('login.title')),
    h('p', { class: 'muted' }, again ? t('login.again_hint') : t('login.hint')),
    field(t('login.username'), user), field(t('login.password'), pass), error,
    h('div', { class: 'actions' }, submit));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.hidden = true;
    if (!user.value.trim() || !pass.value) {
      error.textContent = t('login.missing');
      error.hidden = false;
      return;
    }
    submit.disabled = true;
    try {
      await login(user.value.trim(), pass.value, deviceName());
      try { localStorage.removeItem('fl-wiped'); } catch { /* private mode */ }
      toast(t('login.done'));
      syncNow();
      location.hash = '#/';
      window.dispatchEvent(new HashChangeEvent('hashchange'));
    } catch (failure) {
      error.textContent = failure instanceof NetworkError ? t('login.offline')
        : failure.code === 'other_user' ? t('login.other_user') : failure.message;
      error.hidden = false;
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

// The day's local (Asia/Shanghai) date of a timestamp, as the office counts days.
const LOCAL_DAY = new Intl.DateTimeFormat('en-CA', { timeZone: 'Asia/Shanghai' });
const localDay = (iso) => (iso ? LOCAL_DAY.format(new Date(iso)) : '');

// The official's last known position, found in the background (home never waits for it).
let lastPosition = null;
function refreshPosition() {
  state.mayLocate().then((granted) => (granted ? state.locate() : null)).then((found) => {
    if (found) lastPosition = found;
  });
}

// Problems that wait on this official: the office's questions on their reports (请补充),
// and 回头看 due in their area; nearest first when the position is known (without asking
// for it here). Then what today's work came to.
async function workCard(user) {
  const today = localDay(new Date().toISOString());
  const notes = await state.records('note');
  const notedAfter = (id, day) => notes.some((n) => n.args.problem_id === id && localDay(n.args.at) >= day);
  const waiting = [];
  for (const p of await state.pulledProblems()) {
    if (p.info_request && user && p.reporter_id === user.id && ['submitted', 'accepted'].includes(p.status)
      && !notedAfter(p.id, localDay(p.accepted_at || p.found_at))) {
      waiting.push({ p, why: t('work.info_request'), detail: p.info_request });
    } else if (p.status === 'closed' && p.return_visit_due && !p.return_visit_result
      && p.return_visit_due <= today && !notedAfter(p.id, p.return_visit_due)) {
      waiting.push({ p, why: t('work.return_visit_due'), detail: p.return_visit_due });
    }
  }
  refreshPosition();
  const position = lastPosition;
  for (const item of waiting) {
    const { p } = item;
    item.d = position && p.lat != null && p.lng != null ? haversine(position.lat, position.lng, p.lat, p.lng) : null;
  }
  waiting.sort((a, b) => (a.d ?? Infinity) - (b.d ?? Infinity)
    || String(a.p.return_visit_due || a.p.found_at).localeCompare(String(b.p.return_visit_due || b.p.found_at)));
  const records = await state.records();
  const ofToday = (kind, field) => records.filter((r) => r.kind === kind && localDay(r.args[field]) === today).length;
  return h('section', { class: 'card work-card', 'aria-labelledby': 'work-title' },
    h('h2', { id: 'work-title' }, t('work.title')),
    waiting.length ? h('ul', { class: 'rows' }, waiting.map(({ p, why, detail, d }) => h('li', { class: 'row' },
      h('a', { href: `#/area/${p.id}`, class: 'row-link' },
        h('span', { class: 'row-kind' }, why),
        h('span', { class: 'row-text' }, clip(p.description, 40)),
        h('span', { class: 'row-meta' }, [p.ledger_no, clip(detail, 40), d !== null ? distanceText(d) : null].filter(Boolean).join(' · ')))))) :
      h('p', { class: 'muted' }, t('work.empty')),
    h('p', { class: 'today' }, h('strong', null, t('work.today')), ' ',
      t('work.today_counts', { visits: ofToday('visit', 'started_at'), people: ofToday('diary', 'recorded_at'), problems: ofToday('problem', 'found_at') })));
}

// What puts this phone's unsynced records at risk, in plain words (none: no card).
async function healthCard() {
  const found = health.risks(await health.collect());
  if (!found.length) return '';
  return h('section', { class: 'card health', 'aria-labelledby': 'health-title' },
    h('h2', { id: 'health-title' }, t('health.title')),
    found.map((risk) => h('p', { class: 'warning' }, t(`health.${risk.kind}`, risk.words))));
}

async function storageCard() {
  const part = h('section', { class: 'card storage', 'aria-labelledby': 'storage-title' }, h('h2', { id: 'storage-title' }, t('storage.title')));
  if (!navigator.storage) return part;
  const persisted = navigator.storage.persisted ? await navigator.storage.persisted() : false;
  // Not persisted is a risk, said in the health card above.
  if (persisted) part.append(h('p', null, t('storage.persistent')));
  if (navigator.storage.estimate) {
    const { usage = 0, quota = 0 } = await navigator.storage.estimate();
    part.append(h('p', null, t('storage.usage', { used: megabytes(usage), quota: megabytes(quota) })));
  }
  const ios = /iPad|iPhone|iPod/.test(navigator.userAgent);
  const standalone = navigator.standalone || matchMedia('(display-mode: standalone)').matches;
  if (ios && !standalone) part.append(h('p', { class: 'warning' }, t('storage.ios_hint')));
  return part;
}

const SIGN_OUT_SYNC_MS = 10000;

// Sign-out asks first. With anything unsynced it warns and keeps all data on
// the phone (for the next sign-in of this account); with everything synced it
// clears the phone.
function signOutCard() {
  const part = h('section', { class: 'card account', 'aria-labelledby': 'account-title' },
    h('h2', { id: 'account-title' }, t('signout.title')));
  const ask = async () => {
    part.dataset.hold = '1';
    start.disabled = true;
    if (navigator.onLine !== false) {
      // Give what was just captured a chance to leave, but do not wait long.
      const note = h('p', { class: 'muted', role: 'status' }, t('sync.running'));
      part.append(note);
      await Promise.race([syncNow(), new Promise((resolve) => setTimeout(resolve, SIGN_OUT_SYNC_MS))]);
      note.remove();
    }
    const unsynced = await unsyncedCount();
    // Refused photos never leave the phone: clearing it would lose them.
    const refused = unsynced ? 0 : await refusedPhotoCount();
    const confirm = button(unsynced ? t('signout.confirm_keep') : t('signout.confirm_clear'), async () => {
      confirm.disabled = true;
      rememberSignOut();
      await signOut({ clear: !unsynced });
      toast(t('signout.done'));
    }, 'btn btn-warn');
    const cancel = button(t('signout.cancel'), () => {
      question.remove();
      delete part.dataset.hold;
      start.disabled = false;
      start.focus();
    }, 'btn');
    const question = h('div', { class: 'confirm', role: 'alertdialog', 'aria-labelledby': 'signout-question' },
      h('p', { id: 'signout-question', class: unsynced ? 'warning' : null },
        unsynced ? t('signout.unsynced', { n: unsynced }) : t('signout.all_synced')),
      refused ? h('p', { class: 'warning refused-photos' }, t('signout.refused_photos', { n: refused })) : null,
      h('div', { class: 'actions' }, confirm, cancel));
    part.append(question);
    cancel.focus();
  };
  const start = button(t('signout.button'), ask, 'btn btn-plain');
  part.append(start);
  return part;
}

// A photo the server refused for good has a plain message of its own.
function rejectionText(item) {
  const kind = (item.key || 'x:').split(':')[0];
  if (kind === 'photo') {
    const known = ['image_too_large', 'not_an_image', 'too_large'].includes(item.code) ? item.code : 'other';
    return h('p', { class: 'photo-refused' }, h('strong', null, t(`photo_refused.${known}`)), ' ', t('photo_refused.kept'));
  }
  return h('p', null, h('strong', null, t(`records.kind_${kind}`)), ' ', item.message);
}

function authNotice(auth) {
  if (auth === 'device_revoked') return h('p', { class: 'warning', role: 'alert' }, t('auth.revoked'));
  if (auth === 'account_disabled') return h('p', { class: 'warning', role: 'alert' }, t('auth.disabled'));
  if (auth === 'client_owner') return h('p', { class: 'warning', role: 'alert' }, t('auth.client_owner'));
  return null;
}

export async function homeScreen(view) {
  const meta = await db.metaMany(['token', 'user', 'auth', 'username', 'last_sync', 'last_error', 'rejected']);
  if (!meta.token) {
    if (await signInFromSession(view)) { await homeScreen(view); return; }
    const wiped = localStorage.getItem('fl-wiped');
    view.replaceChildren(wiped ? h('p', { class: 'warning', role: 'alert' }, t('auth.wiped')) : '', signInForm('', false));
    return;
  }
  const pending = await pendingCount();
  const visit = await state.currentVisit();
  const rejected = meta.rejected || [];
  const visitCard = h('section', { class: 'card visit-card', 'aria-labelledby': 'visit-title' },
    h('h2', { id: 'visit-title' }, t('home.visit')),
    visit
      ? [h('p', null, t('home.visit_running', { method: t(`visit.method_${visit.args.method}`), time: when(visit.args.started_at) })),
        h('a', { class: 'btn btn-primary', href: '#/visit' }, t('home.visit_continue'))]
      : h('a', { class: 'btn btn-primary', href: '#/visit' }, t('home.visit_start')));
  const syncLine = syncStatus.running ? t('sync.running')
    : navigator.onLine === false ? t('sync.offline')
      : meta.last_error ? t('sync.failed') : '';
  const syncCard = h('section', { class: 'card sync-card', 'aria-labelledby': 'sync-title' },
    h('h2', { id: 'sync-title' }, t('sync.title')),
    h('p', { class: 'pending', dataset: { count: String(pending) } }, pending ? t('sync.pending', { n: pending }) : t('sync.nothing_pending')),
    h('p', { class: 'muted last-sync' }, meta.last_sync ? t('sync.last', { time: when(meta.last_sync) }) : t('sync.never')),
    syncLine ? h('p', { class: 'muted', role: 'status' }, syncLine) : null,
    authNotice(meta.auth),
    meta.auth === 'ok' ? button(t('sync.now'), async (event) => {
      event.target.disabled = true;
      const result = await syncNow();
      if (result === 'offline') toast(t('sync.offline'));
      else if (result === 'ok') toast(t('sync.done'));
      else if (result === 'error') toast(t('sync.failed'));
    }, 'btn') : null);
  const rejectedCard = rejected.length ? h('section', { class: 'card rejected', 'aria-labelledby': 'rejected-title' },
    h('h2', { id: 'rejected-title' }, t('rejected.title', { n: rejected.length })),
    h('ul', { class: 'rows' }, rejected.map((item, index) => h('li', { class: 'row' },
      rejectionText(item),
      h('div', { class: 'actions' },
        item.key && /^(diary|problem):/.test(item.key) ? h('a', { class: 'btn btn-small', href: `#/${item.key.replace(':', '/')}` }, t('rejected.edit')) : null,
        button(t('rejected.dismiss'), async () => {
          const list = (await db.getMeta('rejected')) || [];
          list.splice(index, 1);
          await db.setMeta('rejected', list);
          homeScreen(view);
        }, 'btn btn-small btn-plain'))))) ) : null;
  view.replaceChildren(
    meta.auth === 'invalid_token' ? signInForm(meta.username, true) : '',
    h('p', { class: 'hello' }, t('home.hello', { name: meta.user ? meta.user.display_name : '' })),
    visitCard,
    h('nav', { class: 'quick', 'aria-label': t('home.quick') },
      h('a', { class: 'btn btn-big', href: '#/diary' }, t('home.diary')),
      h('a', { class: 'btn btn-big', href: '#/problem' }, t('home.problem'))),
    syncCard,
    await healthCard(),
    meta.auth === 'ok' ? await workCard(meta.user) : '',
    rejectedCard || '',
    h('nav', { class: 'links', 'aria-label': t('home.more') },
      h('a', { class: 'btn', href: '#/records' }, t('home.records')),
      h('a', { class: 'btn', href: '#/area' }, t('home.area'))),
    await storageCard(),
    meta.auth === 'ok' ? passwordCard() : '',
    signOutCard());
}

