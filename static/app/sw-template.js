// The service worker's body. The server prepends CONFIG (version = a hash of
// every file of the app, assets = their URLs) — see server/views/field_app.py.
//
// Static files: cache first, in a cache named by the version.
// The shell (/app/): network first with a short timeout, cached copy as fallback.
// /api/*: never cached, never touched.

const CACHE = `fl-app-${CONFIG.version}`;
const ASSETS = new Set(CONFIG.assets);
// The app's version, for the health the sync client reports from this worker.
self.FL_APP_VERSION = CONFIG.version;
const SHELL_TIMEOUT_MS = 3000;

self.addEventListener('install', (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    await cache.addAll([CONFIG.shell, ...CONFIG.assets].map((url) => new Request(url, { cache: 'reload' })));
  })());
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) {
      if (name.startsWith('fl-app-') && name !== CACHE) await caches.delete(name);
    }
    await self.clients.claim();
  })());
});

self.addEventListener('message', (event) => {
  if (event.data && event.data.type === 'skip-waiting') self.skipWaiting();
  if (event.data && event.data.type === 'version' && event.ports[0]) {
    event.ports[0].postMessage(CONFIG.version);
  }
});

async function cacheFirst(request) {
  const cache = await caches.open(CACHE);
  const hit = await cache.match(request, { ignoreSearch: false });
  if (hit) return hit;
  const response = await fetch(request);
  if (response.ok) await cache.put(request, response.clone());
  return response;
}

async function networkFirstShell(request) {
  const cache = await caches.open(CACHE);
  if (self.navigator.onLine === false) {
    const cached = await cache.match(CONFIG.shell);
    if (cached) return cached;
  }
  const network = fetch(request).then(async (response) => {
    if (response.ok) await cache.put(CONFIG.shell, response.clone());
    return response;
  });
  const timeout = new Promise((resolve) => setTimeout(resolve, SHELL_TIMEOUT_MS, null));
  try {
    const first = await Promise.race([network, timeout]);
    if (first) return first;
  } catch {
    // offline: fall through to the cached copy
  }
  const cached = await cache.match(CONFIG.shell);
  if (cached) {
    network.catch(() => {});
    return cached;
  }
  return network;
}

self.addEventListener('fetch', (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== 'GET' || url.origin !== self.location.origin) return;
  if (url.pathname.startsWith('/api/')) return;
  if (url.pathname === CONFIG.shell || (request.mode === 'navigate' && url.pathname.startsWith('/app/')
      && !ASSETS.has(url.pathname) && url.pathname !== '/app/sw.js')) {
    event.respondWith(networkFirstShell(request));
    return;
  }
  if (ASSETS.has(url.pathname)) event.respondWith(cacheFirst(request));
});

// Background Sync: the module variant of this worker imports the sync client.
self.addEventListener('sync', (event) => {
  if (event.tag !== 'fl-sync') return;
  event.waitUntil((async () => {
    // The worker syncs even when a window is listed: that window may be
    // closing. A sync already running elsewhere makes this one fail ("busy"),
    // and the browser tries again later.
    if (self.flBackgroundSync) await self.flBackgroundSync();
    // Open windows sync too (or, after the worker's sync, just show its result).
    const windows = await self.clients.matchAll({ type: 'window' });
    for (const client of windows) client.postMessage({ type: 'sync' });
  })());
});
