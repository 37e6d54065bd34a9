// Photos: shrink in a Worker (OffscreenCanvas), or on the main thread where
// workers cannot draw; hash with crypto.subtle.

import * as db from './db.js';

export const MAX_SIDE = 1600;
export const TARGET = 300 * 1024;
let worker = null;
let serial = 0;
const waiting = new Map();

function getWorker() {
  if (worker === null) {
    worker = typeof OffscreenCanvas === 'function' && typeof Worker === 'function'
      ? new Worker('/static/app/photo-worker.js') : false;
    if (worker) {
      worker.onmessage = (event) => {
        const pending = waiting.get(event.data.id);
        if (!pending) return;
        waiting.delete(event.data.id);
        if (event.data.ok) pending.resolve(event.data.photo);
        else pending.reject(new Error(event.data.error));
      };
    }
  }
  return worker;
}

async function hexSha256(blob) {
  const digest = await crypto.subtle.digest('SHA-256', await blob.arrayBuffer());
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

async function shrinkHere(file) {
  const bitmap = await createImageBitmap(file);
  const scale = Math.min(1, MAX_SIDE / Math.max(bitmap.width, bitmap.height));
  const canvas = document.createElement('canvas');
  canvas.width = Math.max(1, Math.round(bitmap.width * scale));
  canvas.height = Math.max(1, Math.round(bitmap.height * scale));
  const context = canvas.getContext('2d');
  context.fillStyle = '#fff';
  context.fillRect(0, 0, canvas.width, canvas.height);
  context.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  let quality = 0.82;
  const encode = () => new Promise((resolve) => canvas.toBlob(resolve, 'image/jpeg', quality));
  let blob = await encode();
  while (blob.size > TARGET && quality > 0.45) {
    quality -= 0.1;
    blob = await encode();
  }
  return { blob, sha: await hexSha256(blob), width: canvas.width, height: canvas.height,
    size: blob.size, type: 'image/jpeg' };
}

export async function shrink(file) {
  const w = getWorker();
  if (!w) return shrinkHere(file);
  serial += 1;
  const id = serial;
  try {
    return await new Promise((resolve, reject) => {
      waiting.set(id, { resolve, reject });
      w.postMessage({ id, file, maxSide: MAX_SIDE, target: TARGET });
    });
  } catch {
    return shrinkHere(file);
  }
}

// Object URLs for photos held on the phone, and for server photos (fetched
// with the device token, since an <img> cannot send it).
const urls = new Map();

export async function photoUrl(sha, token) {
  if (urls.has(sha)) return urls.get(sha);
  const local = await db.get('photos', sha);
  const blob = (local && (local.blob || local.thumb)) || await serverThumb(sha, token);
  if (!blob) return null;
  const url = URL.createObjectURL(blob);
  urls.set(sha, url);
  return url;
}

// Server thumbnails --------------------------------------------------------------
// Kept in a cache of their own (which app updates leave alone), so the
// problems of the official's area show their photos offline.

const thumbPath = (sha) => `/api/photos/${sha}/thumb`;

async function fetchThumb(cache, sha, token) {
  if (!token || navigator.onLine === false) return null;
  try {
    const response = await fetch(thumbPath(sha), {
      headers: { Authorization: `Bearer ${token}` }, credentials: 'omit' });
    if (!response.ok) return null;
    await cache.put(thumbPath(sha), response.clone());
    return response.blob();
  } catch {
    return null; // offline
  }
}

async function serverThumb(sha, token) {
  if (typeof caches === 'undefined') return null;
  const cache = await caches.open(db.THUMB_CACHE);
  const hit = await cache.match(thumbPath(sha));
  return hit ? hit.blob() : fetchThumb(cache, sha, token);
}

// Keep exactly the thumbnails of `shas` in the cache: fetch the missing ones,
// delete those no longer needed.
export async function keepThumbs(shas, token) {
  if (typeof caches === 'undefined') return;
  const cache = await caches.open(db.THUMB_CACHE);
  const wanted = new Set(shas.map(thumbPath));
  const held = new Set();
  for (const request of await cache.keys()) {
    const path = new URL(request.url).pathname;
    if (wanted.has(path)) held.add(path);
    else await cache.delete(request);
  }
  for (const sha of shas) {
    if (!held.has(thumbPath(sha)) && !(await fetchThumb(cache, sha, token)) && navigator.onLine === false) return;
  }
}

// A small JPEG of a photo, kept on the phone once its full size is pruned.
export async function thumbnail(blob, side = 320) {
  const bitmap = await createImageBitmap(blob);
  const scale = Math.min(1, side / Math.max(bitmap.width, bitmap.height));
  const canvas = document.createElement('canvas');
  canvas.width = Math.max(1, Math.round(bitmap.width * scale));
  canvas.height = Math.max(1, Math.round(bitmap.height * scale));
  canvas.getContext('2d').drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  bitmap.close();
  return new Promise((resolve) => canvas.toBlob(resolve, 'image/jpeg', 0.75));
}

export function blobUrl(photo) {
  if (!urls.has(photo.sha)) urls.set(photo.sha, URL.createObjectURL(photo.blob));
  return urls.get(photo.sha);
}
