// "Is this the same problem?": the rule of server/ledger/similar.py match(), ported for the
// phone, which runs it offline over the open problems it holds while one is recorded.
// tests/test_similar.py checks the numbers here are the same and that both give the same
// answers on the same pairs.

import { haversine } from './ui.js';

export const NEARBY_METRES = 300;
export const TEXT_THRESHOLD = 0.3;
export const NEARBY_TEXT_THRESHOLD = 0.1;
export const SUGGESTIONS = 3;
const OPEN = new Set(['submitted', 'accepted', 'dispatched', 'handling', 'returned', 'replied', 'callback']);
// Python's [^\W_]: letters and digits of any script.
const RUNS = /[\u3400-\u9fff]+|[\p{L}\p{N}]+/gu;

export function bigrams(text) {
  const grams = new Set();
  for (const run of (text || '').toLowerCase().match(RUNS) || []) {
    const chars = Array.from(run);
    for (let i = 0; i < Math.max(1, chars.length - 1); i += 1) grams.add(chars.slice(i, i + 2).join(''));
  }
  return grams;
}

export function textSimilarity(a, b) {
  const mine = bigrams(a);
  const theirs = bigrams(b);
  let common = 0;
  for (const gram of mine) if (theirs.has(gram)) common += 1;
  const union = mine.size + theirs.size - common;
  return union ? common / union : 0;
}

const known = (value) => value !== null && value !== undefined && value !== '';

// {distance (metres, or null), similarity (0..1)} if the two may be the same problem, else null.
export function match(mine, theirs) {
  const similarity = textSimilarity(mine.description, theirs.description);
  let distance = null;
  if ([mine.lat, mine.lng, theirs.lat, theirs.lng].every(known)) {
    distance = haversine(Number(mine.lat), Number(mine.lng), Number(theirs.lat), Number(theirs.lng));
  }
  const near = distance !== null && distance <= NEARBY_METRES;
  const sameCategory = known(mine.category_id) && String(mine.category_id) === String(theirs.category_id);
  if (similarity >= TEXT_THRESHOLD || (near && (sameCategory || similarity >= NEARBY_TEXT_THRESHOLD))) {
    return { distance: near ? distance : null, similarity };
  }
  return null;
}

// The open problems the phone holds that may be the one being recorded, nearest first.
export function suggestions(mine, problems, limit = SUGGESTIONS) {
  const found = [];
  for (const p of problems) {
    if (!OPEN.has(p.status) || p.id === mine.id) continue;
    const m = match(mine, p);
    if (m) found.push({ p, ...m });
  }
  found.sort((a, b) => (a.distance === null) - (b.distance === null)
    || (a.distance ?? 0) - (b.distance ?? 0) || b.similarity - a.similarity);
  return found.slice(0, limit);
}
