// A small promise wrapper over IndexedDB. Works in pages, workers and the
// service worker (no DOM use).
//
// Stores:
//   meta    {k, v}                     client_id, next_mutation_id, cursor, epoch, token, ...
//   records {key: "kind:id", ...}      what this phone captured, with its sync state
//   outbox  {id, name, args, key}      mutations not yet acknowledged by the server
//   photos  {sha, blob, thumb, ...}    shrunk photos, their upload state; blob pruned once acknowledged
//   pulled  {key: "entity:id", ...}    records pulled from the server
//   drafts  {form, values, photos}     unsaved form input, saved as the user types

const DB_NAME = 'fieldledger';
const DB_VERSION = 1;
let opening = null;

function promisify(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

export function openDb() {
  if (opening) return opening;
  opening = new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, DB_VERSION);
    request.onupgradeneeded = () => {
      const db = request.result;
      db.createObjectStore('meta', { keyPath: 'k' });
      const records = db.createObjectStore('records', { keyPath: 'key' });
      records.createIndex('kind', 'kind');
      db.createObjectStore('outbox', { keyPath: 'id' });
      db.createObjectStore('photos', { keyPath: 'sha' });
      const pulled = db.createObjectStore('pulled', { keyPath: 'key' });
      pulled.createIndex('entity', 'entity');
      db.createObjectStore('drafts', { keyPath: 'form' });
    };
    request.onsuccess = () => {
      const db = request.result;
      // Another tab or the service worker wants to delete or upgrade: let it.
      db.onversionchange = () => { db.close(); opening = null; };
      resolve(db);
    };
    request.onerror = () => { opening = null; reject(request.error); };
    request.onblocked = () => {};
  });
  return opening;
}

function wrapStore(store) {
  return {
    get: (key) => promisify(store.get(key)),
    getAll: (query, count) => promisify(store.getAll(query, count)),
    byIndex: (index, query) => promisify(store.index(index).getAll(query)),
    put: (value) => promisify(store.put(value)),
    delete: (key) => promisify(store.delete(key)),
    clear: () => promisify(store.clear()),
    count: (query) => promisify(store.count(query)),
  };
}

// Run fn(stores) in one transaction; resolves with fn's result once committed.
// fn may only await requests of this transaction.
export async function tx(names, mode, fn) {
  const db = await openDb();
  const list = [].concat(names);
  return new Promise((resolve, reject) => {
    const transaction = db.transaction(list, mode);
    const stores = {};
    for (const name of list) stores[name] = wrapStore(transaction.objectStore(name));
    let result;
    transaction.oncomplete = () => resolve(result);
    transaction.onerror = () => reject(transaction.error);
    transaction.onabort = () => reject(transaction.error || new Error('transaction aborted'));
    Promise.resolve()
      .then(() => fn(stores))
      .then((value) => { result = value; }, (error) => {
        try { transaction.abort(); } catch { /* already finished */ }
        reject(error);
      });
  });
}

export const get = (store, key) => tx(store, 'readonly', (s) => s[store].get(key));
export const getAll = (store) => tx(store, 'readonly', (s) => s[store].getAll());
export const byIndex = (store, index, query) =>
  tx(store, 'readonly', (s) => s[store].byIndex(index, query));
export const put = (store, value) => tx(store, 'readwrite', (s) => s[store].put(value));
export const del = (store, key) => tx(store, 'readwrite', (s) => s[store].delete(key));
export const count = (store) => tx(store, 'readonly', (s) => s[store].count());

export async function getMeta(key, fallback = null) {
  const row = await get('meta', key);
  return row === undefined ? fallback : row.v;
}

export async function metaMany(keys) {
  return tx('meta', 'readonly', async (s) => {
    const out = {};
    for (const key of keys) {
      const row = await s.meta.get(key);
      out[key] = row === undefined ? null : row.v;
    }
    return out;
  });
}

export const setMeta = (key, value) => put('meta', { k: key, v: value });

export async function setMetaMany(values) {
  return tx('meta', 'readwrite', async (s) => {
    for (const [k, v] of Object.entries(values)) await s.meta.put({ k, v });
  });
}

// Thumbnails of server photos (回头看), in the Cache API: see photos.js.
export const THUMB_CACHE = 'fl-thumbs';

export async function deleteThumbs() {
  if (typeof caches !== 'undefined') await caches.delete(THUMB_CACHE);
}

// Delete everything on this phone (a wiped device, a sign-out).
export async function destroy() {
  await deleteThumbs();
  if (opening) {
    try { (await opening).close(); } catch { /* not open */ }
  }
  opening = null;
  await new Promise((resolve) => {
    const request = indexedDB.deleteDatabase(DB_NAME);
    request.onsuccess = request.onerror = request.onblocked = () => resolve();
  });
}
