// Form parts used by several screens: the place (area, free text, GPS) and
// the photo picker.

import { h, t, field, select, button, toast } from './ui.js';
import { areaOptions, mayLocate, locate } from './state.js';
import { shrink, blobUrl, photoUrl } from './photos.js';
import * as db from './db.js';

// Area select + place + GPS. Position goes to hidden inputs lat/lng/accuracy.
export async function placeFields(values, { auto = true } = {}) {
  const areas = await areaOptions();
  const lat = h('input', { type: 'hidden', name: 'lat', value: values.lat ?? '' });
  const lng = h('input', { type: 'hidden', name: 'lng', value: values.lng ?? '' });
  const accuracy = h('input', { type: 'hidden', name: 'accuracy', value: values.accuracy_m ?? '' });
  const status = h('span', { class: 'gps-status', 'aria-live': 'polite' });
  const show = () => {
    status.textContent = lat.value
      ? t('place.gps_done', { accuracy: accuracy.value || '?' })
      : t('place.gps_none');
  };
  show();
  const find = async () => {
    status.textContent = t('place.gps_locating');
    const position = await locate();
    if (position) {
      lat.value = position.lat;
      lng.value = position.lng;
      accuracy.value = position.accuracy;
      lat.form?.dispatchEvent(new Event('change'));
    } else if (!lat.value) {
      toast(t('place.gps_failed'));
    }
    show();
  };
  if (auto && !lat.value && await mayLocate()) find();
  return h('div', { class: 'place' },
    field(t('place.area'), select('area_id', areas, values.area_id, t('place.area_none'))),
    field(t('place.place'), h('input', { name: 'place', value: values.place || '', maxlength: 200, autocomplete: 'off' })),
    h('div', { class: 'gps' }, status, button(t('place.gps_button'), find, 'btn btn-small')),
    lat, lng, accuracy);
}

export function positionOf(values) {
  const lat = values.lat === '' || values.lat == null ? null : Number(values.lat);
  const lng = values.lng === '' || values.lng == null ? null : Number(values.lng);
  const accuracy = values.accuracy === '' || values.accuracy == null ? null : Number(values.accuracy);
  return lat === null || lng === null ? { lat: null, lng: null, accuracy_m: null }
    : { lat, lng, accuracy_m: accuracy };
}

// A photo picker: camera and gallery buttons, thumbnails with remove.
// `photos` is the list held (objects with sha and blob); onChange(list).
export function photoPicker(legend, photos, onChange, token) {
  const list = [...photos];
  const thumbs = h('ul', { class: 'thumbs' });
  const status = h('p', { class: 'hint', 'aria-live': 'polite' });
  const render = async () => {
    thumbs.replaceChildren(...await Promise.all(list.map(async (photo, index) => {
      const url = photo.blob ? blobUrl(photo) : await photoUrl(photo.sha, token);
      return h('li', { class: 'thumb' },
        url ? h('img', { src: url, alt: t('photo.alt', { n: index + 1 }), width: 88, height: 88 }) : h('span', { class: 'thumb-missing' }, t('photo.missing')),
        button(t('photo.remove'), () => { list.splice(index, 1); render(); onChange(list); }, 'btn btn-small btn-plain'));
    })));
  };
  const pick = async (event) => {
    const files = [...event.target.files];
    event.target.value = '';
    if (!files.length) return;
    status.textContent = t('photo.processing');
    for (const file of files) {
      try {
        const photo = await shrink(file);
        if (!list.some((p) => p.sha === photo.sha)) list.push(photo);
      } catch {
        toast(t('photo.failed'));
      }
    }
    status.textContent = t('photo.count', { n: list.length });
    await render();
    onChange(list);
  };
  const input = (label, capture) => {
    const id = `photo-${Math.random().toString(36).slice(2, 9)}`;
    return [
      h('input', { type: 'file', id, class: 'file-input', accept: 'image/*', multiple: true, capture: capture ? 'environment' : null, onchange: pick }),
      h('label', { for: id, class: 'btn btn-photo' }, label),
    ];
  };
  render();
  status.textContent = list.length ? t('photo.count', { n: list.length }) : '';
  return h('fieldset', { class: 'photos' }, h('legend', null, legend),
    h('div', { class: 'photo-buttons' }, input(t('photo.camera'), true), input(t('photo.gallery'), false)),
    status, thumbs);
}

// Photos named by sha, as held on the phone (for editing a saved record).
export async function heldPhotos(shas) {
  const out = [];
  for (const sha of shas || []) out.push((await db.get('photos', sha)) || { sha });
  return out;
}
