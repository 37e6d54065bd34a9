// Local housekeeping, run by the page at start and after each sync:
// - problems closed more than 90 days ago, and the user's visits and diary
//   entries older than that, leave the phone, by the rule of the server's
//   working set (docs/sync-protocol.md, Pull);
// - full-size photos the server acknowledged are pruned after a grace
//   period, keeping a thumbnail for display;
// - the thumbnails of the area's problems are cached for 回头看 offline.

import * as db from './db.js';
import { photosNamed } from './sync.js';
import { keepThumbs, thumbnail } from './photos.js';

const DAY_MS = 24 * 60 * 60 * 1000;
const RECENTLY_CLOSED_DAYS = 90; // sync/working_set.py RECENTLY_CLOSED
// Long enough to outlive the database backups an administrator might restore
// (docs/deployment.md): after a restore the phone uploads its photos again,
// which needs their bytes.
const PHOTO_GRACE_DAYS = 14;
const FINISHED = new Set(['closed', 'rejected', 'merged']);

// The server's rule (sync/working_set.py): a phone holds problems while open or
// closed in the last 90 days, and its user's visits and diary entries of the last
// 90 days. The server also sends their tombstones; this drops them offline too.
const RECENT = { problem: 'closed_at', visit: 'started_at', diary: 'recorded_at' };

function stillHeld(entity, data, now) {
  const recent = (iso) => Boolean(iso) && now - Date.parse(iso) <= RECENTLY_CLOSED_DAYS * DAY_MS;
  if (entity === 'problem' && !FINISHED.has(data.status)) return true;
  return recent(data[RECENT[entity]]);
}

async function dropExpired(now) {
  await db.tx('pulled', 'readwrite', async (s) => {
    for (const entity of Object.keys(RECENT)) {
      for (const row of await s.pulled.byIndex('entity', entity)) {
        if (!stillHeld(entity, row.data, now)) await s.pulled.delete(row.key);
      }
    }
  });
}

// Photos the server acknowledged: uploaded, and every record naming them applied.
function acknowledgedPhotos(photos, records) {
  const naming = new Map();
  for (const record of records) {
    for (const sha of photosNamed(record.args)) naming.set(sha, [...(naming.get(sha) || []), record]);
  }
  return new Set(photos.filter((photo) => photo.done && naming.has(photo.sha)
    && naming.get(photo.sha).every((record) => record.state === 'synced')).map((photo) => photo.sha));
}

// Stamp when each photo was first seen acknowledged (and unstamp any that no
// longer is); resolves with the photos whose grace period is over.
async function stampAcknowledged(now) {
  return db.tx(['photos', 'records'], 'readwrite', async (s) => {
    const photos = (await s.photos.getAll()).filter((photo) => photo.blob);
    const acknowledged = acknowledgedPhotos(photos, await s.records.getAll());
    const due = [];
    for (const photo of photos) {
      const isAcknowledged = acknowledged.has(photo.sha);
      if (isAcknowledged && !photo.acked_at) await s.photos.put({ ...photo, acked_at: now });
      else if (!isAcknowledged && photo.acked_at) await s.photos.put({ ...photo, acked_at: null });
      else if (isAcknowledged && now - photo.acked_at >= PHOTO_GRACE_DAYS * DAY_MS) due.push(photo);
    }
    return due;
  });
}

async function prunePhotos(now) {
  for (const photo of await stampAcknowledged(now)) {
    const thumb = photo.thumb || await thumbnail(photo.blob);
    if (!thumb) continue;
    await db.tx('photos', 'readwrite', async (s) => {
      const current = await s.photos.get(photo.sha);
      // A restore or a rejection since the stamp unstamps it: keep the bytes.
      if (current && current.blob && current.done && current.acked_at) {
        await s.photos.put({ ...current, blob: null, thumb });
      }
    });
  }
}

async function cacheAreaThumbs() {
  const token = await db.getMeta('token');
  const local = new Set((await db.getAll('photos')).map((photo) => photo.sha));
  const shas = new Set();
  for (const row of await db.byIndex('pulled', 'entity', 'problem')) {
    const problem = row.data;
    for (const sha of [...(problem.photos || []), ...(problem.events || []).flatMap((e) => e.photos || [])]) {
      if (!local.has(sha)) shas.add(sha);
    }
  }
  await keepThumbs([...shas], token);
}

let running = Promise.resolve();

// Run the housekeeping (one run at a time); `online` also refreshes the
// cached thumbnails. Never throws: housekeeping must not stop the app.
export function tidy({ online = false } = {}) {
  running = running.then(async () => {
    const now = Date.now();
    await dropExpired(now);
    await prunePhotos(now);
    if (online) await cacheAreaThumbs();
  }).catch((error) => console.error(error));
  return running;
}
