// Shrinks a photo off the main thread: at most MAX_SIDE px on the long side,
// re-encoded as JPEG (which drops EXIF, GPS included) at about TARGET bytes,
// and named by the SHA-256 of the result.
'use strict';

const MAX_SIDE = 1600;
const TARGET = 300 * 1024;

function hex(buffer) {
  return [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

async function shrink(file, maxSide, target) {
  const bitmap = await createImageBitmap(file, { imageOrientation: 'from-image' });
  const scale = Math.min(1, maxSide / Math.max(bitmap.width, bitmap.height));
  const width = Math.max(1, Math.round(bitmap.width * scale));
  const height = Math.max(1, Math.round(bitmap.height * scale));
  const canvas = new OffscreenCanvas(width, height);
  const context = canvas.getContext('2d');
  context.fillStyle = '#fff';
  context.fillRect(0, 0, width, height);
  context.drawImage(bitmap, 0, 0, width, height);
  bitmap.close();
  let quality = 0.82;
  let blob = await canvas.convertToBlob({ type: 'image/jpeg', quality });
  while (blob.size > target && quality > 0.45) {
    quality -= 0.1;
    blob = await canvas.convertToBlob({ type: 'image/jpeg', quality });
  }
  const sha = hex(await crypto.subtle.digest('SHA-256', await blob.arrayBuffer()));
  return { blob, sha, width, height, size: blob.size, type: 'image/jpeg' };
}

self.onmessage = async (event) => {
  const { id, file } = event.data;
  try {
    const photo = await shrink(file, event.data.maxSide || MAX_SIDE, event.data.target || TARGET);
    self.postMessage({ id, ok: true, photo });
  } catch (error) {
    self.postMessage({ id, ok: false, error: String(error && error.message || error) });
  }
};
