// The page-level message banner (request errors, busy/retry countdowns,
// the API-key prompt) and the polite live region for screen readers.

import { t } from './i18n.js';
import { h, byTestId } from './dom.js';
import { setApiKey } from './api.js';

const banner = byTestId('banner');
const announcer = document.getElementById('announcer');
let spec = null; // what is shown now, kept so a language switch can redraw it

/**
 * Show a message in the banner, replacing any previous one.
 *
 * Args: s.kind — 'error' | 'warning' | 'info'; s.key / s.vars — i18n
 * message; s.action — optional {key, run} button; s.keyPrompt — optional
 * {onSaved} to ask for an API key; s.quiet — update text without
 * re-announcing (countdowns).
 */
export function showBanner(s) {
  const hadFocus = banner.contains(document.activeElement) ? document.activeElement.name : null;
  spec = s;
  banner.hidden = false;
  banner.className = `banner banner-${s.kind || 'error'}`;
  banner.dataset.kind = s.kind || 'error';
  banner.dataset.message = s.key;

  const message = h('p', { class: 'banner-text', role: s.quiet ? null : (s.kind === 'info' ? 'status' : 'alert') }, t(s.key, s.vars));
  const main = [message];

  if (s.keyPrompt) {
    const input = h('input', {
      type: 'password', id: 'api-key-input', name: 'apikey', autocomplete: 'off',
      spellcheck: 'false', required: true, 'data-testid': 'api-key-input',
    });
    const form = h('form', { class: 'banner-form' },
      h('label', { for: 'api-key-input' }, t('key.label')),
      input,
      h('button', { type: 'submit', class: 'btn btn-primary btn-small', 'data-testid': 'api-key-save' }, t('key.save')));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const key = input.value.trim();
      if (!key) return;
      setApiKey(key);
      document.dispatchEvent(new CustomEvent('imgcls:key-saved'));
      showBanner({ kind: 'info', key: 'banner.keySaved' });
      s.keyPrompt.onSaved();
    });
    main.push(form);
  }
  if (s.action) {
    main.push(h('button', {
      type: 'button', class: 'btn btn-secondary btn-small', name: 'action',
      onclick: () => { hideBanner(); s.action.run(); },
    }, t(s.action.key)));
  }
  banner.replaceChildren(
    h('span', { class: 'banner-icon', 'aria-hidden': 'true' }, s.kind === 'info' ? 'i' : '!'),
    h('div', { class: 'banner-main' }, main),
    h('button', {
      type: 'button', class: 'banner-close', name: 'close',
      'aria-label': t('action.dismiss'), title: t('action.dismiss'), onclick: hideBanner,
    }, '×'));

  if (s.keyPrompt && !s.quiet) banner.querySelector('input').focus();
  else if (hadFocus) {
    const again = banner.querySelector(`[name="${hadFocus}"]`);
    if (again) again.focus();
  }
}

export function hideBanner() {
  const hadFocus = banner.contains(document.activeElement);
  spec = null;
  banner.hidden = true;
  banner.replaceChildren();
  if (hadFocus) byTestId('drop-zone').focus();
}

/** Redraw the current banner (after a language change). */
export function refreshBanner() {
  if (spec) showBanner({ ...spec, quiet: true });
}

/** Ask for an API key in the banner; call onSaved() once one is stored. */
export function promptForKey(messageKey, onSaved) {
  showBanner({ kind: 'warning', key: messageKey, keyPrompt: { onSaved } });
}

/** Say `text` through the polite live region. */
export function announce(text) {
  announcer.textContent = '';
  // A fresh text node after a tick makes screen readers announce repeats.
  setTimeout(() => { announcer.textContent = text; }, 50);
}
