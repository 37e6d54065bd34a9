// The resident's tracking link (回执, server/ledger/tracking.py). When a problem with a resident
// is recorded, a random token of 16 bytes is made here, offline, and kept in IndexedDB (meta
// `tracking:<problem id>`); only its SHA-256 goes out with the report (docs/sync-protocol.md).
// The problem's page draws the QR code of <origin>/t/<token> with no signal, so the official
// can show it to the resident at the visit.

import { h, t } from './ui.js';
import * as db from './db.js';

const QUIET = 4; // modules of white around the code, as the standard asks
const SVG_NS = 'http://www.w3.org/2000/svg';

export const metaKey = (problemId) => `tracking:${problemId}`;

export function newToken() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

export async function hashToken(token) {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(token));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

// The link of a report: { token, hash }, the one already made for this problem if any; null
// without a resident (name or phone), or where the browser has no crypto.subtle (plain http).
export async function forReport(problemId, hasResident) {
  if (!hasResident || !globalThis.crypto?.subtle) return null;
  const token = (await db.getMeta(metaKey(problemId))) || newToken();
  return { token, hash: await hashToken(token) };
}

export const trackingUrl = (token) => `${location.origin}/t/${token}`;

function qrSvg(qrcode, text) {
  const qr = qrcode(0, 'M');
  qr.addData(text);
  qr.make();
  const n = qr.getModuleCount();
  let path = '';
  for (let row = 0; row < n; row += 1) {
    for (let col = 0; col < n; col += 1) {
      if (qr.isDark(row, col)) path += `M${col + QUIET} ${row + QUIET}h1v1h-1z`;
    }
  }
  const size = n + 2 * QUIET;
  const svg = document.createElementNS(SVG_NS, 'svg');
  for (const [name, value] of Object.entries({ viewBox: `0 0 ${size} ${size}`, class: 'qr', role: 'img',
    'aria-label': t('tracking.qr_alt'), 'shape-rendering': 'crispEdges' })) svg.setAttribute(name, value);
  const background = document.createElementNS(SVG_NS, 'rect');
  for (const [name, value] of Object.entries({ width: size, height: size, fill: '#fff' })) background.setAttribute(name, value);
  const dark = document.createElementNS(SVG_NS, 'path');
  dark.setAttribute('d', path);
  dark.setAttribute('fill', '#000');
  svg.append(background, dark);
  return svg;
}

// The receipt's section for the problem's page, or null when this phone holds no token for it.
export async function receipt(problemId) {
  const token = await db.getMeta(metaKey(problemId));
  if (!token) return null;
  const url = trackingUrl(token);
  const { default: qrcode } = await import('/static/vendor/qrcode-generator.js');
  return h('section', { class: 'receipt', 'aria-labelledby': 'receipt-h' },
    h('h2', { id: 'receipt-h' }, t('tracking.title')),
    qrSvg(qrcode, url),
    h('p', { class: 'muted' }, t('tracking.hint')),
    h('p', { class: 'qr-url' }, url));
}
