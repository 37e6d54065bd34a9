// Changing one's own password from the phone: POST /api/account/password with
// the device token (online only). The server checks the current password as
// a sign-in does and refuses common ones; its messages are shown beside the
// fields. The phone stays signed in; the user's web sessions end.

import { h, t, field, button, toast } from './ui.js';
import * as db from './db.js';

const TIMEOUT_MS = 15000;
const LABELS = { current_password: 'password.current', new_password: 'password.new', new_password_repeat: 'password.repeat' };
const FIELDS = Object.keys(LABELS);

export class PasswordError extends Error {
  constructor(message, code, fields = {}) {
    super(message);
    this.code = code;
    this.fields = fields;
  }
}

export async function changePassword(values) {
  const token = await db.getMeta('token');
  let response;
  try {
    response = await fetch('/api/account/password', {
      method: 'POST', credentials: 'omit', cache: 'no-store', signal: AbortSignal.timeout(TIMEOUT_MS),
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
      body: JSON.stringify(values),
    });
  } catch {
    throw new PasswordError(t('password.offline'), 'network');
  }
  if (response.ok) return;
  let body = null;
  try { body = await response.json(); } catch { /* not JSON */ }
  const error = (body && body.error) || {};
  throw new PasswordError(error.message || `HTTP ${response.status}`, error.code, error.fields || {});
}

// A button that opens the form; the form goes away when done or cancelled
// (Home is not re-rendered while a form is open).
export function passwordCard() {
  const part = h('section', { class: 'card password', 'aria-labelledby': 'password-title' },
    h('h2', { id: 'password-title' }, t('password.title')));
  const open = button(t('password.title'), () => {
    open.hidden = true;
    part.append(passwordForm(() => { open.hidden = false; open.focus(); }));
  }, 'btn btn-plain');
  part.append(open);
  return part;
}

function passwordForm(close) {
  const inputs = {};
  const errors = {};
  const fields = FIELDS.map((name) => {
    inputs[name] = h('input', { name, type: 'password', required: true, maxlength: '128',
      autocomplete: name === 'current_password' ? 'current-password' : 'new-password' });
    errors[name] = h('p', { class: 'error', id: `password-${name}-error`, hidden: true });
    const wrapper = field(t(LABELS[name]), inputs[name]);
    wrapper.append(errors[name]);
    return wrapper;
  });
  const message = h('p', { class: 'error', role: 'alert', hidden: true });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary' }, t('password.submit'));
  const cancel = button(t('signout.cancel'), () => { form.remove(); close(); }, 'btn');
  const form = h('form', { class: 'form', novalidate: true },
    h('p', { class: 'muted' }, t('password.hint')), fields, message,
    h('div', { class: 'actions' }, submit, cancel));
  const show = (name, text) => {
    errors[name].textContent = text;
    errors[name].hidden = false;
    inputs[name].setAttribute('aria-invalid', 'true');
    inputs[name].setAttribute('aria-describedby', errors[name].id);
  };
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    message.hidden = true;
    for (const name of FIELDS) {
      errors[name].hidden = true;
      inputs[name].removeAttribute('aria-invalid');
    }
    const values = Object.fromEntries(FIELDS.map((name) => [name, inputs[name].value]));
    if (FIELDS.some((name) => !values[name])) {
      for (const name of FIELDS) if (!values[name]) show(name, t('password.missing'));
      return;
    }
    if (values.new_password !== values.new_password_repeat) {
      show('new_password_repeat', t('password.mismatch'));
      return;
    }
    submit.disabled = true;
    try {
      await changePassword(values);
      form.remove();
      close();
      toast(t('password.done'));
    } catch (failure) {
      const named = Object.entries(failure.fields || {}).filter(([name]) => FIELDS.includes(name));
      for (const [name, text] of named) show(name, text);
      if (!named.length) {
        message.textContent = failure.message;
        message.hidden = false;
      }
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}
