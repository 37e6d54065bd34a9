// DOM helpers, strings and formatting shared by the screens.

import strings from '/app/strings.js';

// A user-visible string from the catalog (server/locale/zh-CN: "app_ui.*"
// without the prefix, and the shared "event.*"), with {name} placeholders filled.
export function t(key, params) {
  const text = strings[key];
  if (text === undefined) {
    console.error(`missing string ${key}`);
    return key;
  }
  return params ? text.replace(/\{(\w+)\}/g, (m, name) => (name in params ? String(params[name]) : m)) : text;
}

// h('div', {class: 'x', onclick: fn}, child, ...) — children may be strings,
// nodes, arrays, null or false.
export function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else if (name === 'class') node.className = value;
    else if (name === 'dataset') Object.assign(node.dataset, value);
    else if (name in node && typeof value !== 'string') node[name] = value;
    else node.setAttribute(name, value === true ? '' : value);
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else node.append(child instanceof Node ? child : String(child));
  }
}

let ids = 0;
export const nextId = (prefix = 'f') => `${prefix}-${(ids += 1)}`;

// A labelled input: <div class="field"><label for>…</label><input id>…</div>
// An input given a maxlength gets a length counter instead (see limit).
export function field(label, input, hint) {
  if (!input.id) input.id = nextId();
  const hintNode = hint ? h('p', { class: 'hint', id: `${input.id}-hint` }, hint) : null;
  if (hintNode) input.setAttribute('aria-describedby', hintNode.id);
  const counter = input.hasAttribute('maxlength') ? limit(input, Number(input.getAttribute('maxlength'))) : null;
  return h('div', { class: 'field' }, h('label', { for: input.id }, label), input, counter, hintNode);
}

// Text is never cut: the browser's maxlength (which drops what goes past it
// without a word) gives way to a counter shown from 90% of the limit, and a
// message once past it; refusedForLength() then refuses the save. Lengths
// count characters as the server's schema does (code points, not UTF-16 units).
// The counter is not a live region (it would speak at every keystroke): it
// describes the field, and the refusal is announced by the toast.
const NUMBER = new Intl.NumberFormat('zh-CN');
const COUNTER_FROM = 0.9;

const textLength = (value) => [...value].length;

function limit(input, max) {
  input.removeAttribute('maxlength');
  input.dataset.max = String(max);
  const counter = h('p', { class: 'counter', id: `${input.id}-count`, hidden: true });
  input.setAttribute('aria-describedby', [input.getAttribute('aria-describedby'), counter.id].filter(Boolean).join(' '));
  // A value set by script (a restored draft) fires no input event: fill() sends one.
  input.addEventListener('input', () => count(input, counter));
  count(input, counter);
  return counter;
}

function count(input, counter) {
  const max = Number(input.dataset.max);
  const length = textLength(input.value);
  const over = length > max;
  counter.hidden = length < max * COUNTER_FROM;
  counter.classList.toggle('over', over);
  counter.textContent = over
    ? t('limit.over', { over: NUMBER.format(length - max), max: NUMBER.format(max) })
    : t('limit.counter', { count: NUMBER.format(length), max: NUMBER.format(max) });
  if (over) input.setAttribute('aria-invalid', 'true');
  else if (!input.parentNode?.querySelector('.error')) input.removeAttribute('aria-invalid');
  return over;
}

// Before a save: is a field of the form past its limit? Then say so (beside
// the field and in a toast), focus it, and keep everything as typed.
export function refusedForLength(form) {
  let first = null;
  for (const input of form.querySelectorAll('[data-max]')) {
    if (input.closest('[hidden]')) continue; // not shown, not sent
    const counter = document.getElementById(`${input.id}-count`);
    if (counter && count(input, counter) && !first) first = input;
  }
  if (!first) return false;
  toast(t('limit.refused'));
  first.focus();
  return true;
}

// A group of radio buttons or checkboxes in a fieldset with a legend.
export function choices(legend, name, options, { type = 'radio', checked = [] } = {}) {
  return h('fieldset', { class: 'choices' }, h('legend', null, legend),
    options.map(([value, label]) => {
      const id = nextId(name);
      return h('div', { class: 'choice' },
        h('input', { type, name, id, value, checked: checked.includes(value) }),
        h('label', { for: id }, label));
    }));
}

export function select(name, options, value, empty) {
  return h('select', { name },
    empty ? h('option', { value: '' }, empty) : null,
    options.map(([v, label]) => h('option', { value: String(v), selected: String(v) === String(value ?? '') }, label)));
}

export function button(label, onclick, cls = 'btn') {
  return h('button', { type: 'button', class: cls, onclick }, label);
}

const DATE_TIME = new Intl.DateTimeFormat('zh-CN', {
  timeZone: 'Asia/Shanghai', month: 'numeric', day: 'numeric', hour: '2-digit', minute: '2-digit', hour12: false,
});

export function when(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? '' : DATE_TIME.format(date);
}

export function minutesBetween(a, b) {
  return Math.max(0, Math.round((new Date(b) - new Date(a)) / 60000));
}

export function megabytes(bytes) {
  return (bytes / (1024 * 1024)).toFixed(1);
}

export function clip(text, length = 60) {
  const value = (text || '').trim();
  return value.length > length ? `${value.slice(0, length)}…` : value;
}

export function toast(message) {
  const slot = document.getElementById('toast') || document.body.appendChild(
    h('div', { id: 'toast', class: 'toast', role: 'status', 'aria-live': 'polite' }));
  slot.textContent = message;
  slot.classList.add('show');
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => slot.classList.remove('show'), 3000);
}

// Great-circle distance in metres.
export function haversine(lat1, lng1, lat2, lng2) {
  const rad = Math.PI / 180;
  const dLat = (lat2 - lat1) * rad;
  const dLng = (lng2 - lng1) * rad;
  const a = Math.sin(dLat / 2) ** 2 + Math.cos(lat1 * rad) * Math.cos(lat2 * rad) * Math.sin(dLng / 2) ** 2;
  return 2 * 6371000 * Math.asin(Math.sqrt(a));
}

export function distanceText(metres) {
  return metres < 1000 ? t('area.metres', { n: Math.round(metres) }) : t('area.kilometres', { n: (metres / 1000).toFixed(1) });
}
