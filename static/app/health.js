// The phone's health, sent with every push and pull (X-Device-Health) so that the office's
// 设备 page sees phones at risk, and what the home screen says about this phone. The rule
// and its thresholds are server/device_health.py's; tests/test_device_health.py checks that
// the numbers here are the same.

import * as db from './db.js';

export const UNSYNCED_HOURS = 24;
export const STORAGE_RATIO = 0.8;

function appVersion() {
  return globalThis.document?.documentElement?.dataset.appVersion || globalThis.FL_APP_VERSION || '';
}

export async function collect() {
  const records = await db.getAll('records');
  const waiting = records.filter((r) => r.state === 'pending' || r.state === 'deferred');
  const times = waiting.map((r) => r.updated).filter(Boolean).sort();
  const photos = (await db.getAll('photos')).filter((p) => p.blob && !p.done && !p.refused);
  const health = {
    app_version: appVersion(),
    unsynced_mutations: Math.max(await db.count('outbox'), waiting.length),
    unsynced_photos: photos.length,
    oldest_unsynced_at: times[0] || null,
    storage_used: null,
    storage_quota: null,
    storage_persisted: null,
    last_sync_at: (await db.getMeta('last_sync')) || null,
  };
  const storage = globalThis.navigator?.storage;
  if (storage?.estimate) {
    const { usage, quota } = await storage.estimate();
    health.storage_used = Number.isFinite(usage) ? Math.round(usage) : null;
    health.storage_quota = Number.isFinite(quota) ? Math.round(quota) : null;
  }
  if (storage?.persisted) health.storage_persisted = await storage.persisted();
  return health;
}

export const header = async () => JSON.stringify(await collect());

// What puts this phone's records at risk, as server/device_health.py risks() says it
// (less the app version, which the update banner covers): [{kind, words}].
export function risks(health, now = Date.now()) {
  const found = [];
  const unsynced = health.unsynced_mutations + health.unsynced_photos;
  if (unsynced && health.oldest_unsynced_at) {
    const hours = (now - new Date(health.oldest_unsynced_at)) / 3600000;
    if (hours > UNSYNCED_HOURS) found.push({ kind: 'unsynced', words: { count: unsynced, hours: Math.floor(hours) } });
  }
  if (health.storage_persisted === false) found.push({ kind: 'not_persisted', words: {} });
  if (health.storage_used != null && health.storage_quota && health.storage_used / health.storage_quota > STORAGE_RATIO) {
    found.push({ kind: 'storage_full', words: { percent: Math.round((100 * health.storage_used) / health.storage_quota) } });
  }
  return found;
}
