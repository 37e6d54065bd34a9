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
  let blob = local && local.blob;
  if (!blob && token && navigator.onLine !== false) {
    try {
      const response = await fetch(`/api/photos/${sha}/thumb`, {
        headers: { Authorization: `Bearer ${token}` }, credentials: 'omit' });
      if (response.ok) blob = await response.blob();
    } catch { /* offline */ }
  }
  if (!blob) return null;
  const url = URL.createObjectURL(blob);
  urls.set(sha, url);
  return url;
}

export function blobUrl(photo) {
  if (!urls.has(photo.sha)) urls.set(photo.sha, URL.createObjectURL(photo.blob));
  return urls.get(photo.sha);
}
