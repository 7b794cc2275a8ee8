// The dashboard's single page: hash routes, each page built from the gateway's JSON API on the
// same origin with the session cookie. No framework; the DOM is built with `h` (text nodes,
// never HTML strings, so no value from the API is ever parsed as markup) and no element gets a
// `style` attribute (the CSP allows none). Charts are uPlot's, vendored from npm.

import uPlot from '/dashboard/vendor/uPlot.esm.js';

const DAY_MS = 86_400_000;
const OVERVIEW_DAYS = 30;
const PROVIDERS = [
  { id: 'openai', name: 'OpenAI' },
  { id: 'anthropic', name: 'Anthropic' },
];
// The names usage rows record for their endpoint (gateway-core's V1Route::endpoint).
const ENDPOINTS = [
  'POST /v1/ask',
  'GET /v1/ask/:id',
  'POST /v1/chat/completions',
  'POST /v1/messages',
  'GET /v1/usage',
  'GET /v1/account',
  'PATCH /v1/account',
  'DELETE /v1/account',
  'GET /v1/keys',
  'POST /v1/keys',
  'DELETE /v1/keys/:prefix',
  'GET /v1/provider-keys',
  'GET /v1/provider-keys/access-log',
  'PUT /v1/provider-keys/:provider',
  'DELETE /v1/provider-keys/:provider',
  'GET /v1/models',
  'GET /v1/models/:id',
  'other',
];
const PAGE_TITLES = {
  overview: 'Overview',
  keys: 'Keys',
  usage: 'Usage',
  'provider-keys': 'Provider keys',
  'access-log': 'Key-access log',
  account: 'Account',
};

// ---- DOM helpers ----

/** An element: `props` are attributes (`class`, `for`, `aria-*`...), `on*` listeners, or
 * boolean properties (`hidden`, `disabled`, `checked`, `required`); children are nodes or text. */
function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') {
      el.addEventListener(k.slice(2), v);
    } else if (k === 'value') {
      el.value = v;
    } else if (v === true) {
      el.setAttribute(k, '');
    } else {
      el.setAttribute(k, String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function clear(el) {
  el.replaceChildren();
  return el;
}

/** A message line that screen readers announce: `role="status"` for news, `alert` for errors. */
function notice() {
  const el = h('p', { class: 'notice', role: 'status', hidden: true });
  return {
    el,
    info(text) { show(el, 'info', 'status', text); },
    error(err) { show(el, 'error', 'alert', errorText(err)); },
    hide() { el.hidden = true; clear(el); },
  };
}

function show(el, kind, role, text) {
  el.className = `notice ${kind}`;
  el.setAttribute('role', role);
  clear(el).append(text);
  el.hidden = false;
}

/** A table in a horizontally scrollable, keyboard-focusable region. */
function table(caption, headers, rows, empty) {
  if (rows.length === 0) return h('p', { class: 'empty' }, empty);
  const t = h('table', {},
    h('caption', { class: 'sr-only' }, caption),
    h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col' }, x)))),
    h('tbody', {}, rows.map((cells) => h('tr', {}, cells.map((c) => h('td', {}, c))))));
  return h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': caption }, t);
}

function field(id, label, input, hint) {
  input.id = id;
  if (hint) input.setAttribute('aria-describedby', `${id}-hint`);
  return h('div', { class: 'field' },
    h('label', { for: id }, label),
    input,
    hint && h('small', { id: `${id}-hint`, class: 'hint' }, hint));
}

/** Asks for a confirmation in a modal `<dialog>` (Escape or Cancel: no). */
function confirmDialog({ title, text, confirm }) {
  return new Promise((resolve) => {
    const cancelBtn = h('button', { type: 'button', class: 'secondary', value: 'cancel' }, 'Cancel');
    const okBtn = h('button', { type: 'button', class: 'danger', value: 'ok' }, confirm);
    const dlg = h('dialog', { 'aria-labelledby': 'dlg-title', 'aria-describedby': 'dlg-text' },
      h('h2', { id: 'dlg-title' }, title),
      h('p', { id: 'dlg-text' }, text),
      h('div', { class: 'actions' }, cancelBtn, okBtn));
    let answer = false;
    cancelBtn.addEventListener('click', () => dlg.close());
    okBtn.addEventListener('click', () => { answer = true; dlg.close(); });
    dlg.addEventListener('close', () => { dlg.remove(); resolve(answer); });
    document.body.append(dlg);
    dlg.showModal();
    cancelBtn.focus();
  });
}

// ---- formatting ----

const numberFmt = new Intl.NumberFormat('en-US');

function num(n) {
  return typeof n === 'number' ? numberFmt.format(n) : '–';
}

/** An ISO-8601 instant as `YYYY-MM-DD HH:MM:SS UTC` in a `<time>` element. */
function when(iso) {
  if (!iso) return 'never';
  const text = String(iso).replace('T', ' ').replace(/(\.\d+)?Z$/, ' UTC');
  return h('time', { datetime: iso }, text);
}

function utcDay(ms) {
  return new Date(ms).toISOString().slice(0, 10);
}

function dayStart(ms) {
  return Math.floor(ms / DAY_MS) * DAY_MS;
}

function percent(part, whole) {
  return whole > 0 ? `${((100 * part) / whole).toFixed(1)} %` : '–';
}

// ---- the API ----

class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message || `HTTP ${status}`);
    this.status = status;
    this.code = code || 'http_error';
    this.retryAfter = retryAfter;
  }
}

function errorText(err) {
  if (err instanceof ApiError) {
    if (err.status === 429 && err.retryAfter) {
      return `${err.message} (try again in ${err.retryAfter} s)`;
    }
    return err.message;
  }
  return `The gateway could not be reached: ${err && err.message ? err.message : err}`;
}

/** One call to the gateway with the session cookie. A 401 on any call but the login means the
 * session ended (logout elsewhere, expiry, the key revoked, the account deleted): back to the
 * login page. Errors come as `{"error": {"code", "message"}}`. */
async function api(method, path, body, { loginCall = false } = {}) {
  const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' }, cache: 'no-store' };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  const text = await resp.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (!resp.ok) {
    const e = data && data.error ? data.error : {};
    const err = new ApiError(resp.status, e.code, e.message, resp.headers.get('Retry-After'));
    if (resp.status === 401 && !loginCall && session) {
      sessionEnded('Your session has ended: log in again.');
    }
    throw err;
  }
  return data;
}

// ---- session and routing ----

let session = null; // {account_id, key_prefix, mode, commit} while logged in
let renderToken = 0; // the newest render; an older one that finishes late draws nothing
let charts = []; // uPlot instances of the page shown

const main = () => document.getElementById('main');

function setCommit(commit) {
  document.getElementById('commit').textContent = commit || 'unknown';
}

function setChrome() {
  const nav = document.getElementById('nav');
  const who = document.getElementById('who');
  nav.hidden = !session;
  who.hidden = !session;
  if (session) {
    const label = `${session.key_prefix}… (${session.mode} key)`;
    document.getElementById('who-key').textContent = session.mode === 'test'
      ? `${label}: read only`
      : label;
  }
}

function currentPage() {
  const name = location.hash.replace(/^#\/?/, '').split('?')[0];
  return Object.hasOwn(PAGE_TITLES, name) ? name : 'overview';
}

function markNav(page) {
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.page === page) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

function dropCharts() {
  for (const c of charts) c.destroy();
  charts = [];
}

/** Draws the page the hash names (the login page while logged out). */
async function render({ focus = false } = {}) {
  const token = ++renderToken;
  dropCharts();
  setChrome();
  if (!session) {
    loginPage();
    return;
  }
  const page = currentPage();
  markNav(page);
  document.title = `${PAGE_TITLES[page]} · Gateway dashboard`;
  const view = h('section', { class: 'page', 'aria-labelledby': 'page-title' },
    h('h1', { id: 'page-title', tabindex: '-1' }, PAGE_TITLES[page]));
  const body = h('div', { 'aria-busy': 'true' }, h('p', { class: 'loading' }, 'Loading…'));
  view.append(body);
  clear(main()).append(view);
  if (focus) view.querySelector('h1').focus();
  const stale = () => token !== renderToken;
  try {
    const content = await PAGES[page](stale);
    if (stale()) return;
    body.removeAttribute('aria-busy');
    clear(body).append(content);
    if (typeof content.mounted === 'function') content.mounted();
  } catch (err) {
    if (stale()) return;
    if (err instanceof ApiError && err.status === 401) return; // sessionEnded redrew
    body.removeAttribute('aria-busy');
    const n = notice();
    n.error(err);
    clear(body).append(n.el, h('button', { type: 'button', onclick: () => render() }, 'Try again'));
  }
}

function sessionEnded(message) {
  session = null;
  loginMessage = message;
  if (!location.hash.startsWith('#/login')) history.replaceState(null, '', '#/login');
  render();
}

let loginMessage = null;

function loginPage() {
  document.title = 'Log in · Gateway dashboard';
  const input = h('input', {
    type: 'password', name: 'key', autocomplete: 'off', spellcheck: 'false',
    required: true, placeholder: 'lvk_live_…',
  });
  const button = h('button', { type: 'submit' }, 'Log in');
  const n = notice();
  if (loginMessage) n.info(loginMessage);
  loginMessage = null;
  const form = h('form', { class: 'card', id: 'login-form', novalidate: true },
    field('login-key', 'API key', input,
      'A live or test key of your account. It is sent once, exchanged for a session cookie, and not kept by this page.'),
    button);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const key = input.value.trim();
    if (!key) {
      n.error(new ApiError(400, 'invalid_request', 'Paste an API key first.'));
      input.focus();
      return;
    }
    button.disabled = true;
    try {
      const s = await api('POST', '/dashboard/api/login', { key }, { loginCall: true });
      input.value = '';
      // The session's own view of itself, with the running commit.
      session = await api('GET', '/dashboard/api/session', undefined, { loginCall: true }).catch(() => s);
      setCommit(session.commit);
      if (!location.hash || location.hash.startsWith('#/login')) history.replaceState(null, '', '#/overview');
      await render({ focus: true });
    } catch (err) {
      button.disabled = false;
      n.error(err);
      input.select();
    }
  });
  clear(main()).append(h('section', { class: 'page login', 'aria-labelledby': 'page-title' },
    h('h1', { id: 'page-title', tabindex: '-1' }, 'Log in'),
    n.el, form));
  input.focus();
}

async function logout() {
  try {
    await api('POST', '/dashboard/api/logout', undefined, { loginCall: true });
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) {
      alertBox(errorText(err));
      return;
    }
  }
  sessionEnded('You are logged out.');
}

/** Drops the cookie of a session the gateway already ended (logout answers 204 for it too). */
async function clearCookie() {
  await api('POST', '/dashboard/api/logout', undefined, { loginCall: true }).catch(() => {});
}

function alertBox(text) {
  const n = notice();
  n.error(text);
  main().prepend(n.el);
}

// ---- pages ----

/** Overview: balance, calls and the cache hit rate over 30 days, and two per-day charts. */
async function overviewPage() {
  const now = Date.now();
  const from = dayStart(now) - (OVERVIEW_DAYS - 1) * DAY_MS;
  const [account, usage] = await Promise.all([
    api('GET', '/v1/account'),
    api('GET', `/v1/usage?from=${from}&limit=1`),
  ]);
  const t = usage.totals || {};
  const stats = h('dl', { class: 'stats' },
    stat('balance', 'Credit balance', num(account.credits_balance)),
    stat('calls', `Calls, last ${OVERVIEW_DAYS} days`, num(t.calls)),
    stat('cache-hits', 'Cache hits', num(t.cache_hits)),
    stat('hit-rate', 'Cache hit rate', percent(t.cache_hits || 0, t.calls || 0)),
    stat('credits-spent', 'Credits spent', num(t.credits)));
  const wrap = h('div', {}, stats);
  if (!Array.isArray(usage.days)) {
    wrap.append(h('p', { class: 'empty' }, 'Per-day figures are not available from this gateway.'));
    return wrap;
  }
  // Every day of the window, zero where the gateway has no row.
  const byDay = new Map(usage.days.map((d) => [d.day, d]));
  const days = [];
  for (let ms = from; ms <= now; ms += DAY_MS) {
    const d = byDay.get(utcDay(ms)) || {};
    days.push({ day: utcDay(ms), x: ms / 1000, calls: d.calls || 0, cache_hits: d.cache_hits || 0, credits: d.credits || 0 });
  }
  const creditsBox = h('div', { class: 'chart', id: 'chart-credits', role: 'img', 'aria-label': `Credits spent per day over the last ${OVERVIEW_DAYS} days (UTC)` });
  const callsBox = h('div', { class: 'chart', id: 'chart-calls', role: 'img', 'aria-label': `Calls and cache hits per day over the last ${OVERVIEW_DAYS} days (UTC)` });
  wrap.append(
    h('h2', {}, 'Credits spent per day'), creditsBox,
    h('h2', {}, 'Calls and cache hits per day'), callsBox,
    h('details', {},
      h('summary', {}, 'The charts\u2019 figures as a table'),
      table('Per-day usage (UTC)', ['Day (UTC)', 'Calls', 'Cache hits', 'Hit rate', 'Credits'],
        days.filter((d) => d.calls > 0).reverse().map((d) => [d.day, num(d.calls), num(d.cache_hits), percent(d.cache_hits, d.calls), num(d.credits)]),
        'No calls in this window.')));
  wrap.mounted = () => {
    const xs = days.map((d) => d.x);
    // A day with nothing spent has no bar.
    charts.push(chart(creditsBox, [xs, days.map((d) => d.credits || null)], [
      { label: 'Credits', stroke: '#1d4ed8', fill: 'rgba(29, 78, 216, 0.35)', paths: uPlot.paths.bars({ size: [0.7, 28] }), points: { show: false } },
    ]));
    charts.push(chart(callsBox, [xs, days.map((d) => d.calls), days.map((d) => d.cache_hits)], [
      { label: 'Calls', stroke: '#0f766e', width: 2, points: { size: 5 } },
      { label: 'Cache hits', stroke: '#b45309', width: 2, dash: [6, 4], points: { size: 5 } },
    ]));
  };
  return wrap;
}

function stat(id, label, value) {
  return h('div', { class: 'stat' }, h('dt', {}, label), h('dd', { id: `stat-${id}` }, value));
}

function chart(box, data, series) {
  const width = () => Math.max(240, box.clientWidth || 320);
  const u = new uPlot({
    width: width(),
    height: 200,
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'),
    scales: {
      // Half a day either side: the first and last days' bars are drawn whole.
      x: { time: true, range: (_u, min, max) => [min - 43_200, max + 43_200] },
      y: { range: (_u, _min, max) => [0, Math.max(1, max) * 1.1] },
    },
    axes: [
      { values: (_u, splits) => splits.map((s) => new Date(s * 1000).toISOString().slice(5, 10)) },
      { size: 56 },
    ],
    series: [{ label: 'Day', value: '{YYYY}-{MM}-{DD}' }, ...series],
  }, data, box);
  u.fitWidth = () => u.setSize({ width: width(), height: 200 });
  return u;
}

window.addEventListener('resize', () => {
  for (const c of charts) c.fitWidth();
});

/** Keys: the account's keys by prefix; mint (plaintext shown once); revoke with confirmation. */
async function keysPage(stale) {
  const { keys } = await api('GET', '/v1/keys');
  const n = notice();
  const once = h('div', { class: 'once', id: 'minted', hidden: true });
  const listBox = h('div', {});
  const drawList = (rows) => {
    clear(listBox).append(table('Keys of this account',
      ['Prefix', 'Name', 'Mode', 'Status', 'Created', 'Last used', ''],
      rows.map((k) => [
        h('code', {}, k.prefix),
        k.name || h('span', { class: 'muted' }, '(no name)'),
        k.mode,
        h('span', { class: `badge ${k.status}` }, k.status),
        when(k.created_at),
        when(k.last_used_at),
        k.status === 'active'
          ? h('button', { type: 'button', class: 'danger small', 'aria-label': `Revoke key ${k.prefix}`, onclick: () => revoke(k) }, 'Revoke')
          : '',
      ]), 'This account has no keys.'));
  };
  const reload = async () => {
    const fresh = await api('GET', '/v1/keys');
    if (!stale()) drawList(fresh.keys);
  };
  const revoke = async (k) => {
    const own = session && k.prefix === session.key_prefix;
    const ok = await confirmDialog({
      title: `Revoke key ${k.prefix}?`,
      text: `Calls with this key are refused from now on. This cannot be undone.${own ? ' It is the key of this session: you will be logged out.' : ''}`,
      confirm: 'Revoke key',
    });
    if (!ok) return;
    try {
      await api('DELETE', `/v1/keys/${encodeURIComponent(k.prefix)}`);
      if (own) {
        await clearCookie();
        sessionEnded(`Key ${k.prefix} is revoked; it was the key of this session.`);
        return;
      }
      await reload();
      n.info(`Key ${k.prefix} is revoked.`);
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 401)) n.error(err);
    }
  };

  const name = h('input', { type: 'text', name: 'name', maxlength: '100', autocomplete: 'off' });
  const mode = h('select', { name: 'mode' },
    h('option', { value: 'live' }, 'live'),
    h('option', { value: 'test' }, 'test (reads the account, cannot change it)'));
  const mintBtn = h('button', { type: 'submit' }, 'Mint key');
  const form = h('form', { class: 'card inline', id: 'mint-form' },
    h('h2', {}, 'Mint a key'),
    field('mint-name', 'Name (optional)', name),
    field('mint-mode', 'Mode', mode),
    mintBtn);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    mintBtn.disabled = true;
    n.hide();
    try {
      const body = { mode: mode.value };
      if (name.value.trim()) body.name = name.value.trim();
      const minted = await api('POST', '/v1/keys', body);
      name.value = '';
      showOnce(minted);
      await reload();
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 401)) n.error(err);
    } finally {
      mintBtn.disabled = false;
    }
  });
  // The plaintext lives in this element only: not in storage, not in the URL; a reload or
  // leaving the page drops it.
  const showOnce = (minted) => {
    const value = h('code', { id: 'minted-key', class: 'secret' }, minted.key);
    const copyNote = h('span', { class: 'muted', role: 'status' });
    const copy = h('button', { type: 'button', class: 'secondary' }, 'Copy');
    copy.addEventListener('click', async () => {
      try {
        await navigator.clipboard.writeText(minted.key);
        copyNote.textContent = 'Copied.';
      } catch {
        const range = document.createRange();
        range.selectNodeContents(value);
        const sel = window.getSelection();
        sel.removeAllRanges();
        sel.addRange(range);
        copyNote.textContent = 'Selected: copy it with your keyboard.';
      }
    });
    const done = h('button', { type: 'button' }, 'I have saved it');
    done.addEventListener('click', () => { clear(once).hidden = true; form.querySelector('input').focus(); });
    clear(once).append(
      h('h2', {}, `New ${minted.mode} key ${minted.prefix}`),
      h('p', {}, 'Copy it now: it is shown this once only. The gateway keeps only its hash, and this page keeps no copy.'),
      value,
      h('div', { class: 'actions' }, copy, done, copyNote));
    once.hidden = false;
    done.focus();
  };
  drawList(keys);
  return h('div', {}, n.el, once, form, h('h2', {}, 'Keys'), listBox);
}

/** Usage: the events of a date range and endpoint, newest first, a page at a time. */
async function usagePage(stale) {
  const today = utcDay(Date.now());
  const fromIn = h('input', { type: 'date', name: 'from', value: utcDay(Date.now() - (OVERVIEW_DAYS - 1) * DAY_MS), max: today });
  const toIn = h('input', { type: 'date', name: 'to', value: today });
  const endpointIn = h('select', { name: 'endpoint' },
    h('option', { value: '' }, 'All endpoints'),
    ENDPOINTS.map((e) => h('option', { value: e }, e)));
  const limitIn = h('select', { name: 'limit' }, [10, 25, 50, 100].map((l) => h('option', { value: String(l), selected: l === 25 }, String(l))));
  const n = notice();
  const totals = h('p', { class: 'totals', id: 'usage-totals', role: 'status' });
  const results = h('div', { id: 'usage-results' });
  const newer = h('button', { type: 'button', class: 'secondary', disabled: true }, '← Newer');
  const older = h('button', { type: 'button', class: 'secondary', disabled: true }, 'Older →');
  const pageNo = h('span', { class: 'muted', id: 'usage-page' });
  // cursors[i] is the cursor of page i (page 0 has none).
  let cursors = [null];
  let page = 0;
  let query = null;

  const readFilters = () => {
    const f = Date.parse(`${fromIn.value}T00:00:00Z`);
    const t = Date.parse(`${toIn.value}T00:00:00Z`);
    if (!Number.isFinite(f) || !Number.isFinite(t)) throw new ApiError(400, 'invalid_request', 'Pick both dates.');
    if (f > t) throw new ApiError(400, 'invalid_request', 'The first day is after the last day.');
    const q = new URLSearchParams({ from: String(f), to: String(t + DAY_MS), limit: limitIn.value });
    if (endpointIn.value) q.set('endpoint', endpointIn.value);
    return q;
  };
  const load = async () => {
    const q = new URLSearchParams(query);
    if (cursors[page]) q.set('cursor', cursors[page]);
    results.setAttribute('aria-busy', 'true');
    try {
      const u = await api('GET', `/v1/usage?${q}`);
      if (stale()) return;
      n.hide();
      const t = u.totals || {};
      totals.textContent = `${num(t.calls)} calls, ${num(t.cache_hits)} cache hits (${percent(t.cache_hits || 0, t.calls || 0)}), ${num(t.credits)} credits in this range.`;
      clear(results).append(table('Usage events, newest first',
        ['Time', 'Endpoint', 'Key', 'Providers', 'Cache', 'Status', 'Tokens in / out', 'Credits', 'Latency', 'Request id'],
        u.events.map((e) => [
          when(e.created_at),
          e.endpoint,
          h('code', {}, e.key_prefix),
          (e.providers || []).join(', ') || '–',
          e.cache && e.cache.status ? `${e.cache.status}${e.cache.tier ? ` (${e.cache.tier})` : ''}` : '–',
          String(e.status),
          `${num(e.tokens && e.tokens.input)} / ${num(e.tokens && e.tokens.output)}`,
          num(e.credits),
          `${num(e.latency_ms)} ms`,
          h('code', {}, e.request_id),
        ]), 'No events match.'));
      cursors[page + 1] = u.next_cursor || null;
      newer.disabled = page === 0;
      older.disabled = !u.next_cursor;
      pageNo.textContent = `Page ${page + 1}`;
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 401)) n.error(err);
    } finally {
      results.removeAttribute('aria-busy');
    }
  };
  const form = h('form', { class: 'card filters', id: 'usage-filters' },
    field('usage-from', 'From (UTC day)', fromIn),
    field('usage-to', 'To (UTC day, included)', toIn),
    field('usage-endpoint', 'Endpoint', endpointIn),
    field('usage-limit', 'Rows per page', limitIn),
    h('button', { type: 'submit' }, 'Show'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    try {
      query = readFilters();
    } catch (err) {
      n.error(err);
      return;
    }
    cursors = [null];
    page = 0;
    load();
  });
  newer.addEventListener('click', () => { if (page > 0) { page -= 1; load(); } });
  older.addEventListener('click', () => { if (cursors[page + 1]) { page += 1; load(); } });
  query = readFilters();
  await load();
  return h('div', {}, form, n.el, totals, results,
    h('nav', { class: 'pager', 'aria-label': 'Usage pages' }, newer, pageNo, older));
}

/** Provider keys: one card per provider, its key's last 4 characters only; set and delete. */
async function providerKeysPage(stale) {
  const n = notice();
  const cards = h('div', { class: 'cards' });
  const draw = (list) => {
    const byProvider = new Map(list.map((k) => [k.provider, k]));
    append(clear(cards), PROVIDERS.map((p) => providerCard(p, byProvider.get(p.id), n, reload)));
  };
  const reload = async () => {
    const fresh = await api('GET', '/v1/provider-keys');
    if (!stale()) draw(fresh.provider_keys);
  };
  const { provider_keys: list } = await api('GET', '/v1/provider-keys');
  draw(list);
  return h('div', {},
    h('p', {}, 'A key of your own for a provider is used for your calls to it instead of the gateway\u2019s. It is sealed by the provider\u2019s broker at once; the gateway stores the ciphertext and shows only its last 4 characters. Every use is in the key-access log.'),
    n.el, cards);
}

function providerCard(p, current, n, reload) {
  const input = h('input', { type: 'password', name: 'key', autocomplete: 'off', spellcheck: 'false', required: true });
  const save = h('button', { type: 'submit' }, current ? 'Replace key' : 'Save key');
  const actions = h('div', { class: 'actions' }, save);
  const form = h('form', { class: 'provider-form' },
    field(`pk-${p.id}`, `New ${p.name} key`, input), actions);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (!input.value) { input.focus(); return; }
    save.disabled = true;
    try {
      const r = await api('PUT', `/v1/provider-keys/${p.id}`, { key: input.value });
      input.value = '';
      await reload();
      n.info(`${p.name} key ending in ${r.last4} is saved.`);
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 401)) n.error(err);
      save.disabled = false;
    }
  });
  const del = current && h('button', { type: 'button', class: 'danger', 'aria-label': `Delete the ${p.name} key` }, 'Delete key');
  if (del) {
    actions.append(del);
    del.addEventListener('click', async () => {
      const ok = await confirmDialog({
        title: `Delete the ${p.name} key?`,
        text: `The key ending in ${current.last4} is deleted; your calls to ${p.name} use the gateway\u2019s key again.`,
        confirm: 'Delete key',
      });
      if (!ok) return;
      try {
        await api('DELETE', `/v1/provider-keys/${p.id}`);
        await reload();
        n.info(`The ${p.name} key is deleted.`);
      } catch (err) {
        if (!(err instanceof ApiError && err.status === 401)) n.error(err);
      }
    });
  }
  return h('section', { class: 'card', id: `provider-${p.id}`, 'aria-labelledby': `provider-${p.id}-title` },
    h('h2', { id: `provider-${p.id}-title` }, p.name),
    current
      ? h('p', { class: 'current' }, 'Key ending in ', h('code', { class: 'last4' }, current.last4), ', set ', when(current.created_at), '.')
      : h('p', { class: 'current muted' }, 'No key of yours: calls use the gateway\u2019s key.'),
    form);
}

/** Key-access log: the last 100 decryptions of the account's provider keys. */
async function accessLogPage() {
  const { entries } = await api('GET', '/v1/provider-keys/access-log');
  return h('div', {},
    h('p', {}, 'Each time a broker decrypts one of your provider keys for a call, it is written here: the last 100 entries, newest first.'),
    table('Key-access log, newest first', ['Time', 'Provider', 'Purpose', 'Request id'],
      entries.map((e) => [when(e.created_at), e.provider, e.purpose, h('code', {}, e.request_id)]),
      'No provider key of this account has been used.'),
    h('button', { type: 'button', class: 'secondary', onclick: () => render() }, 'Refresh'));
}

/** Account: tier, balance, the prompt-prefix opt-in, and deleting the account. */
async function accountPage() {
  const account = await api('GET', '/v1/account');
  const n = notice();
  const known = typeof account.store_prompt_prefix === 'boolean';
  const toggle = h('input', { type: 'checkbox', id: 'optin', name: 'store_prompt_prefix', checked: account.store_prompt_prefix === true });
  toggle.addEventListener('change', async () => {
    const want = toggle.checked;
    toggle.disabled = true;
    try {
      const r = await api('PATCH', '/v1/account', { store_prompt_prefix: want });
      toggle.checked = r.store_prompt_prefix;
      n.info(r.store_prompt_prefix
        ? 'From now on the first 200 characters of each prompt are stored with its usage event.'
        : 'From now on no prompt text is stored.');
    } catch (err) {
      toggle.checked = !want;
      if (!(err instanceof ApiError && err.status === 401)) n.error(err);
    } finally {
      toggle.disabled = false;
    }
  });
  const optIn = h('section', { class: 'card', 'aria-labelledby': 'optin-title' },
    h('h2', { id: 'optin-title' }, 'Prompt prefix'),
    h('div', { class: 'check' }, toggle,
      h('label', { for: 'optin' }, 'Store the first 200 characters of each prompt with its usage event')),
    h('p', { class: 'hint' }, known
      ? 'Off by default: usage events hold no prompt or response text.'
      : 'This gateway does not say whether it is on now.'));

  const confirmIn = h('input', { type: 'text', name: 'confirm', autocomplete: 'off', spellcheck: 'false' });
  const delBtn = h('button', { type: 'submit', class: 'danger', disabled: true }, 'Delete this account');
  confirmIn.addEventListener('input', () => { delBtn.disabled = confirmIn.value.trim() !== account.account_id; });
  const delForm = h('form', { id: 'delete-form' },
    field('delete-confirm', `Type the account id, ${account.account_id}, to confirm`, confirmIn),
    delBtn);
  delForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (confirmIn.value.trim() !== account.account_id) return;
    delBtn.disabled = true;
    try {
      await api('DELETE', '/v1/account');
      await clearCookie();
      sessionEnded(`Account ${account.account_id} is deleted, with all it held. Its keys no longer work.`);
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 401)) n.error(err);
      delBtn.disabled = false;
    }
  });
  return h('div', {},
    n.el,
    h('dl', { class: 'facts' },
      h('dt', {}, 'Account id'), h('dd', {}, h('code', { id: 'account-id' }, account.account_id)),
      h('dt', {}, 'Tier'), h('dd', { id: 'account-tier' }, account.tier),
      h('dt', {}, 'Credit balance'), h('dd', {}, num(account.credits_balance)),
      h('dt', {}, 'Logged in with'), h('dd', {}, h('code', {}, session.key_prefix), ` (${session.mode} key)`)),
    optIn,
    h('section', { class: 'card danger-zone', 'aria-labelledby': 'delete-title' },
      h('h2', { id: 'delete-title' }, 'Delete the account'),
      h('p', {}, 'Deletes the account at once with everything it holds: its keys, usage events, archived answers, provider keys and key-access log. This cannot be undone.'),
      delForm));
}

const PAGES = {
  overview: overviewPage,
  keys: keysPage,
  usage: usagePage,
  'provider-keys': providerKeysPage,
  'access-log': accessLogPage,
  account: accountPage,
};

// ---- start ----

async function start() {
  document.getElementById('logout').addEventListener('click', logout);
  window.addEventListener('hashchange', () => render({ focus: true }));
  try {
    const resp = await fetch('/dashboard/api/session', { credentials: 'same-origin', cache: 'no-store' });
    if (resp.ok) {
      session = await resp.json();
      setCommit(session.commit);
    } else if (resp.status !== 401) {
      const body = await resp.json().catch(() => ({}));
      throw new ApiError(resp.status, body.error && body.error.code, body.error && body.error.message);
    }
  } catch (err) {
    clear(main()).append(h('p', { class: 'notice error', role: 'alert' }, errorText(err)),
      h('button', { type: 'button', onclick: () => location.reload() }, 'Try again'));
    return;
  }
  if (!session) {
    fetch('/version', { cache: 'no-store' }).then((r) => r.json()).then((v) => setCommit(v.commit)).catch(() => setCommit(null));
  }
  if (session && (!location.hash || location.hash.startsWith('#/login'))) history.replaceState(null, '', '#/overview');
  render();
}

start();
