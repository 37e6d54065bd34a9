// Boot: the router, the service worker and its updates, sync triggers.

import { h, t, toast } from './ui.js';
import * as db from './db.js';
import { syncNow, onChange, ensureClient, status as syncStatus } from './sync.js';
import * as state from './state.js';
import { homeScreen, rememberSignOut } from './home.js';
import { visitScreen, visitSummary, diaryScreen, problemScreen, openForms, leaveForms } from './capture.js';
import { recordsScreen, areaScreen, problemDetail } from './lists.js';
import { lookupScreen } from './lookup.js';
import { tidy } from './housekeeping.js';

const SYNC_EVERY_MS = 3 * 60 * 1000;
const view = document.getElementById('view');
const net = document.getElementById('net');
const banner = document.getElementById('banner');
let rendering = Promise.resolve();

const ROUTES = [
  [/^#?\/?$/, () => homeScreen(view), 'home'],
  [/^#\/visit$/, () => visitScreen(view), 'visit'],
  [/^#\/visit\/summary\/([\w-]+)$/, (m) => visitSummary(view, m[1]), 'summary'],
  [/^#\/diary$/, () => diaryScreen(view, null), 'diary'],
  [/^#\/diary\/([\w-]+)$/, (m) => diaryScreen(view, m[1]), 'diary'],
  [/^#\/problem$/, () => problemScreen(view), 'problem'],
  [/^#\/problem\/from\/([\w-]+)$/, (m) => problemScreen(view, { fromDiary: m[1] }), 'problem'],
  [/^#\/problem\/([\w-]+)$/, (m) => problemScreen(view, { id: m[1] }), 'problem'],
  [/^#\/records$/, () => recordsScreen(view), 'records'],
  [/^#\/area$/, () => areaScreen(view), 'area'],
  [/^#\/area\/([\w-]+)$/, (m) => problemDetail(view, m[1]), 'area'],
  [/^#\/lookup$/, () => lookupScreen(view), 'lookup'],
];

async function route() {
  leaveForms();
  const hash = location.hash || '#/';
  const signedIn = await db.getMeta('token');
  for (const [pattern, render, name] of ROUTES) {
    const match = pattern.exec(hash);
    if (!match) continue;
    if (!signedIn && name !== 'home') { location.hash = '#/'; return; }
    document.body.dataset.screen = name;
    await render(match);
    document.title = `${t(`title.${name}`)} · ${t('app.name')}`;
    if (name !== 'home' && !view.contains(document.activeElement)) view.focus({ preventScroll: true });
    window.scrollTo(0, 0);
    return;
  }
  location.hash = '#/';
}

// Render the current route after any render under way; `still` is asked
// again just before, as the screen may have changed meanwhile.
function render(still = () => true) {
  const step = () => (still() ? route() : undefined);
  rendering = rendering.then(step, step).catch((error) => {
    console.error(error);
    view.replaceChildren(h('p', { class: 'warning', role: 'alert' }, t('error.screen')));
  });
  return rendering;
}

// Home shows sync state: re-render it when anything changes, but never over
// a form (the sign-in form lives on Home) or a question being asked (data-hold).
let refreshTimer = null;
const homeIdle = () => document.body.dataset.screen === 'home' && /^#?\/?$/.test(location.hash)
  && !view.querySelector('form, [data-hold]');
function refreshHome() {
  if (!homeIdle()) return;
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => render(homeIdle), 100);
}

function showNetwork() {
  net.textContent = navigator.onLine ? t('net.online') : t('net.offline');
  net.className = navigator.onLine ? 'net online' : 'net offline';
}

// Service worker ------------------------------------------------------------------

let registration = null;
let applying = false;

function showUpdate() {
  if (banner.querySelector('.update')) return;
  const apply = h('button', { type: 'button', class: 'btn btn-primary' }, t('update.apply'));
  apply.addEventListener('click', async () => {
    apply.disabled = true;
    // Write every open form's draft first: the reload restores it.
    await state.flushDrafts([...openForms]);
    if (state.unsaved()) { apply.disabled = false; toast(t('update.wait')); return; }
    applying = true;
    const waiting = registration && registration.waiting;
    if (waiting) waiting.postMessage({ type: 'skip-waiting' });
    else location.reload();
  });
  banner.append(h('div', { class: 'banner update', role: 'status' }, h('span', null, t('update.available')), apply));
}

async function startServiceWorker() {
  if (!('serviceWorker' in navigator)) return;
  const module = 'SyncManager' in window;
  try {
    registration = await navigator.serviceWorker.register(module ? '/app/sw.js?module=1' : '/app/sw.js',
      { scope: '/app/', type: module ? 'module' : 'classic', updateViaCache: 'none' });
  } catch (error) {
    console.error(error);
    return;
  }
  const watch = (worker) => {
    worker.addEventListener('statechange', () => {
      if (worker.state === 'installed' && navigator.serviceWorker.controller) showUpdate();
    });
  };
  if (registration.waiting && navigator.serviceWorker.controller) showUpdate();
  if (registration.installing) watch(registration.installing);
  registration.addEventListener('updatefound', () => watch(registration.installing));
  navigator.serviceWorker.addEventListener('controllerchange', () => {
    if (applying) location.reload();
  });
  navigator.serviceWorker.addEventListener('message', (event) => {
    if (event.data && event.data.type === 'sync') syncNow();
  });
}

export function checkForUpdate() {
  return registration ? registration.update().catch(() => {}) : Promise.resolve();
}

function backgroundSync() {
  if (registration && registration.sync) registration.sync.register('fl-sync').catch(() => {});
}

// Boot ----------------------------------------------------------------------------

async function firstRun() {
  const fresh = !(await db.getMeta('client_id'));
  await ensureClient();
  if (fresh && navigator.storage && navigator.storage.persist) {
    try { await navigator.storage.persist(); } catch { /* not granted */ }
  }
}

let retryTimer = null;
async function sync() {
  clearTimeout(retryTimer);
  const result = await syncNow();
  if (result === 'error') {
    // Back off (with jitter) before trying again by ourselves.
    const failures = Math.min(8, syncStatus.failures);
    retryTimer = setTimeout(sync, Math.min(300000, 5000 * 2 ** failures) * (0.5 + Math.random() / 2));
  }
  return result;
}

async function boot() {
  await firstRun();
  showNetwork();
  window.addEventListener('hashchange', () => render());
  window.addEventListener('online', () => { showNetwork(); sync(); refreshHome(); });
  window.addEventListener('offline', () => { showNetwork(); refreshHome(); });
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') { sync(); checkForUpdate(); }
  });
  onChange((message) => {
    if (message.type === 'wiped') {
      try { localStorage.setItem('fl-wiped', '1'); } catch { /* private mode */ }
      rememberSignOut();
      location.hash = '#/';
      location.reload();
      return;
    }
    // After any successful sync (this page's, another tab's, the worker's).
    if (message.type === 'status' && message.result === 'ok') tidy({ online: true }).then(refreshHome);
    if (message.type === 'signed_out') {
      location.hash = '#/';
      render();
      return;
    }
    refreshHome();
  });
  await render();
  tidy().then(refreshHome);
  startServiceWorker();
  setInterval(sync, SYNC_EVERY_MS);
  sync();
}

// After each capture: sync now, and register a Background Sync in case the
// page closes before the network comes back.
onChange((message) => {
  if (message.type === 'changed' && message.local) { sync(); backgroundSync(); }
});

window.flApp = { sync, checkForUpdate, render, tidy };
boot();
