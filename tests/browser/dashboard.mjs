#!/usr/bin/env node
// The dashboard's browser and security tests, against a running gateway: a real headless
// Chromium (Debian's, driven by playwright-core) logs in, mints and revokes keys, watches its
// usage change, brings a provider key and sees its access-log row, toggles the opt-in and
// deletes the account; plain HTTP checks cover the session cookie, CSRF, revocation and owner-
// only access. Every browser test also checks that the page asked no origin but the gateway's,
// that the page came with its Content-Security-Policy, and that the console shows no error.
//
//   node tests/browser/dashboard.mjs <gateway base URL> <admin token> [mock server URL]
//   (or GATEWAY_URL, ADMIN_TOKEN, MOCK_URL; CHROMIUM overrides /usr/bin/chromium;
//    ONLY=<substring> runs the tests whose names contain it)
// Screenshots go to target/screenshots/. Exits 1 naming each failed test.

import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const SHOTS = join(ROOT, 'target', 'screenshots');
const BASE = (process.argv[2] || process.env.GATEWAY_URL || '').replace(/\/+$/, '');
const ADMIN_TOKEN = process.argv[3] || process.env.ADMIN_TOKEN || '';
const MOCK = (process.argv[4] || process.env.MOCK_URL || '').replace(/\/+$/, '');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ONLY = process.env.ONLY || '';
if (!BASE || !ADMIN_TOKEN) {
  console.error('usage: node tests/browser/dashboard.mjs <gateway base URL> <admin token> [mock server URL]');
  process.exit(2);
}
const ORIGIN = new URL(BASE).origin;
const DASHBOARD = `${BASE}/dashboard`;
const CSP_DIRECTIVES = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
  "form-action 'self'",
];
const STEP_MS = 15_000; // the longest one UI step may wait
const USAGE_WAIT_MS = 20_000; // usage rows are written in batches, a little after each call

// ---- small helpers ----

class Failure extends Error {}

function check(cond, message) {
  if (!cond) throw new Failure(message);
}

function eq(actual, expected, what) {
  check(actual === expected, `${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let counter = 0;
function nonce() {
  counter += 1;
  return `d${Date.now().toString(36)}x${process.pid}x${counter}`;
}

/** Polls `probe` until it returns a truthy value, or fails with `what` after `ms`. */
async function until(what, probe, ms = USAGE_WAIT_MS, every = 400) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await probe();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Failure(`${what} (waited ${ms} ms; last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    }
    await sleep(every);
  }
}

/** One HTTP call with node's fetch; the body is read whole. */
async function http(method, path, { bearer, cookie, origin, body, ip, headers = {} } = {}) {
  const h = { ...headers };
  // The address the login throttle counts by (as Cloudflare's edge sets it).
  if (ip) h['CF-Connecting-IP'] = ip;
  if (bearer) h.Authorization = `Bearer ${bearer}`;
  if (cookie) h.Cookie = cookie;
  if (origin) h.Origin = origin;
  if (body !== undefined) h['Content-Type'] = 'application/json';
  const resp = await fetch(path.startsWith('http') ? path : `${BASE}${path}`, {
    method, headers: h, body: body === undefined ? undefined : JSON.stringify(body), redirect: 'manual',
  });
  const text = await resp.text();
  let json = null;
  try { json = JSON.parse(text); } catch { json = null; }
  return { status: resp.status, headers: resp.headers, text, json };
}

function expectStatus(r, status, what) {
  check(r.status === status, `${what}: expected HTTP ${status}, got ${r.status}: ${r.text.slice(0, 300)}`);
  return r;
}

async function admin(method, path, body) {
  return http(method, path, { bearer: ADMIN_TOKEN, body });
}

/** A new account with one key of `mode`; returns {account, key, prefix}. */
async function newAccount({ tier = 'pro', credits = 1_000_000, mode = 'live' } = {}) {
  const a = expectStatus(await admin('POST', '/admin/accounts', { tier, credits }), 201, 'admin: create account');
  const account = a.json.account_id;
  const k = await newKey(account, mode);
  return { account, ...k };
}

async function newKey(account, mode = 'live') {
  const k = expectStatus(await admin('POST', `/admin/accounts/${account}/keys`, { name: 'dashboard test', mode }), 201, 'admin: mint key');
  return { key: k.json.key, prefix: k.json.prefix };
}

async function ask(key, prompt) {
  const r = expectStatus(await http('POST', '/v1/ask', { bearer: key, body: { prompt, providers: ['openai'] } }), 200, 'POST /v1/ask');
  return r.headers.get('x-request-id');
}

// Logins are throttled per client address (a burst of 10, then one per 6 s): the HTTP tests
// log in as a client address of their own (a documentation range, random per run), so they
// and the browser (which has none) do not use up each other's logins; the throttle test has
// another. A 429 is waited out as its Retry-After says, as a person would.
const HTTP_CLIENT = `198.51.100.${1 + Math.floor(Math.random() * 250)}`;
const THROTTLE_CLIENT = `203.0.113.${1 + Math.floor(Math.random() * 250)}`;

async function loginAttempt(body, ip = HTTP_CLIENT) {
  for (let i = 0; ; i += 1) {
    const r = await http('POST', '/dashboard/api/login', { origin: ORIGIN, body, ip });
    if (r.status !== 429 || i === 4) return r;
    await sleep(1000 * Number(r.headers.get('retry-after') || 6));
  }
}

/** Logs in over plain HTTP as a browser would (with its Origin); returns the cookie pair. */
async function httpLogin(key) {
  const r = expectStatus(await loginAttempt({ key }), 200, 'POST /dashboard/api/login');
  const set = r.headers.getSetCookie().find((c) => c.startsWith('gw_session='));
  check(set, `login set no gw_session cookie: ${JSON.stringify(r.headers.getSetCookie())}`);
  return { cookie: set.split(';')[0], setCookie: set, body: r.json, resp: r };
}

// ---- the browser ----

let browser;

async function launch() {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // playwright-core starts each launch on a fresh profile (user-data) directory of its own.
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
}

/** A fresh browser context (no cookies) with its watchers; `t.finish()` reports what they saw.
 * The one console error a page may show is the browser's own line for an HTTP error the test
 * itself expects (a 401 from the session check while logged out, a 403 it provokes): each is
 * declared with `t.allowHttpError(status, pathPattern)`. */
async function session(name, { width = 1100, height = 900 } = {}) {
  const context = await browser.newContext({ viewport: { width, height }, serviceWorkers: 'block' });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_MS);
  const problems = [];
  const requests = [];
  const allowed = [{ status: 401, path: /^\/dashboard\/api\/session$/ }];
  let documents = 0;
  page.on('request', (req) => {
    requests.push(req.url());
    const u = new URL(req.url());
    if (u.protocol === 'data:') return;
    if (u.origin !== ORIGIN) problems.push(`request to another origin: ${req.method()} ${req.url()}`);
  });
  page.on('response', async (resp) => {
    if (resp.request().resourceType() !== 'document') return;
    documents += 1;
    const csp = resp.headers()['content-security-policy'];
    if (!csp) {
      problems.push(`no Content-Security-Policy on ${resp.url()}`);
      return;
    }
    for (const d of CSP_DIRECTIVES) {
      if (!csp.split(';').map((s) => s.trim()).includes(d)) problems.push(`CSP of ${resp.url()} lacks "${d}": ${csp}`);
    }
    if (/unsafe-inline|unsafe-eval/.test(csp)) problems.push(`CSP allows unsafe code: ${csp}`);
  });
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    const text = msg.text();
    const url = msg.location().url || '';
    const m = /^Failed to load resource: the server responded with a status of (\d+)/.exec(text);
    if (m && url.startsWith(ORIGIN)) {
      const status = Number(m[1]);
      const path = new URL(url).pathname;
      if (allowed.some((a) => a.status === status && a.path.test(path))) return;
    }
    problems.push(`console error: ${text}${url ? ` (${url})` : ''}`);
  });
  page.on('pageerror', (err) => problems.push(`uncaught exception: ${err.message}`));
  return {
    page,
    context,
    allowHttpError(status, path) { allowed.push({ status, path }); },
    async shot(file) {
      mkdirSync(SHOTS, { recursive: true });
      const path = join(SHOTS, file);
      await page.screenshot({ path, fullPage: true });
      shots.push(path);
    },
    async finish() {
      await sleep(150); // late console lines
      await context.close();
      check(documents > 0, `${name}: no page was loaded`);
      check(requests.length > 0, `${name}: the page made no request`);
      check(problems.length === 0, `${name}:\n  ${problems.join('\n  ')}`);
    },
  };
}

const shots = [];

async function openDashboard(t, hash = '') {
  const resp = await t.page.goto(`${DASHBOARD}${hash}`);
  expectStatus({ status: resp.status(), text: '' }, 200, `GET /dashboard${hash}`);
  return resp;
}

/** Logs in through the page's form; waits for the overview. Throttled (the page says when to
 * try again), it waits that long and tries again. */
async function uiLogin(t, key) {
  const { page } = t;
  t.allowHttpError(429, /^\/dashboard\/api\/login$/);
  await openDashboard(t);
  await page.getByRole('heading', { name: 'Log in', level: 1 }).waitFor();
  await page.getByLabel('API key').fill(key);
  for (let i = 0; ; i += 1) {
    await page.getByRole('button', { name: 'Log in' }).click();
    const overview = page.getByRole('heading', { name: 'Overview', level: 1 });
    await overview.or(page.locator('.notice.error')).first().waitFor();
    if (await overview.isVisible()) break;
    const said = await page.locator('.notice.error').innerText();
    const wait = /try again in (\d+) s/.exec(said);
    check(wait && i < 4, `login refused: ${said}`);
    await sleep(1000 * Number(wait[1]));
  }
  await waitLoaded(page);
}

/** Reloads the page. Under wrangler dev a file the gateway has already answered now and then
 * never reaches the browser: on 2026-12-07 the account page's reload timed out twice in five
 * full-suite runs, its `app.js` held 15 s by the local proxy while the gateway's own log put
 * its handling at 11 to 14 ms. One more reload then, reported on the test's output; a page that
 * does not load twice still fails the test. */
async function reload(page) {
  try {
    await page.reload();
  } catch (e) {
    if (!/Timeout/.test(String(e))) throw e;
    console.log(`warn  reload timed out once (${String(e).split('\n')[0]}); reloading again`);
    await page.reload();
  }
}

async function waitLoaded(page) {
  await page.waitForFunction(() => !document.querySelector('main [aria-busy="true"]') && !document.querySelector('main .loading'));
}

async function go(page, hash, title) {
  await page.evaluate((h) => { location.hash = h; }, hash);
  await page.getByRole('heading', { name: title, level: 1 }).waitFor();
  await waitLoaded(page);
}

async function text(page, selector) {
  return (await page.locator(selector).innerText()).trim();
}

function parseNum(s) {
  return Number(String(s).replace(/[^0-9.]/g, ''));
}

/** Every input and select of the page has a label (its own `<label for>` or an aria-label). */
async function assertLabelled(page, where) {
  const unlabelled = await page.evaluate(() => [...document.querySelectorAll('input, select, textarea')]
    .filter((el) => !el.hidden && el.type !== 'hidden' && !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
    .map((el) => el.outerHTML));
  check(unlabelled.length === 0, `${where}: inputs without a label: ${unlabelled.join(' ')}`);
}

async function assertNoStorage(page, secret, where) {
  const stored = await page.evaluate(() => JSON.stringify([{ ...localStorage }, { ...sessionStorage }, document.cookie, location.href]));
  check(!stored.includes(secret), `${where}: the key is in storage, a readable cookie or the URL: ${stored}`);
  const s = JSON.parse(stored);
  eq(Object.keys(s[0]).length + Object.keys(s[1]).length, 0, `${where}: entries in localStorage + sessionStorage`);
  check(!s[2].includes('gw_session'), `${where}: the session cookie is readable from script (not HttpOnly)`);
}

// ---- the browser tests ----

const tests = [];
function test(name, fn) { tests.push({ name, fn }); }

test('login page, keyboard login, overview with charts, footer commit, 360 px', async () => {
  const { key } = await newAccount({ credits: 123_456 });
  const t = await session('login');
  const { page } = t;
  const resp = await openDashboard(t);
  const headers = resp.headers();
  eq(headers['x-content-type-options'], 'nosniff', 'X-Content-Type-Options of /dashboard');
  check(headers['referrer-policy'], 'no Referrer-Policy on /dashboard');
  await page.getByRole('heading', { name: 'Log in', level: 1 }).waitFor();
  await assertLabelled(page, 'login page');
  await t.shot('login.png');

  // A wrong key: the one 401, said on the page.
  t.allowHttpError(401, /^\/dashboard\/api\/login$/);
  await page.getByLabel('API key').fill(`lvk_live_${'A'.repeat(43)}`);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.locator('.notice.error').waitFor();
  check(await page.getByRole('heading', { name: 'Log in', level: 1 }).isVisible(), 'a wrong key left the login page');

  // The keyboard alone: the key field has the focus, Enter submits.
  await page.getByLabel('API key').fill('');
  await page.getByLabel('API key').focus();
  eq(await page.evaluate(() => document.activeElement.id), 'login-key', 'focused element on the login page');
  await page.keyboard.type(key);
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'Overview', level: 1 }).waitFor();
  await waitLoaded(page);
  await assertNoStorage(page, key, 'after login');
  eq(parseNum(await text(page, '#stat-balance')), 123_456, 'overview balance');
  check(await page.locator('#chart-credits canvas').count() > 0, 'no credits chart drawn (uPlot canvas)');
  check(await page.locator('#chart-calls canvas').count() > 0, 'no calls chart drawn (uPlot canvas)');
  const version = expectStatus(await http('GET', '/version'), 200, 'GET /version').json.commit;
  eq(await text(page, '#commit'), version, 'footer commit');
  eq(await text(page, '#who-key'), `${key.slice(0, 12)}… (live key)`, 'who is logged in');
  await t.shot('overview.png');

  // Keyboard navigation: Tab reaches the nav's Keys link; Enter opens it.
  await page.evaluate(() => document.activeElement && document.activeElement.blur());
  let reached = false;
  for (let i = 0; i < 25 && !reached; i += 1) {
    await page.keyboard.press('Tab');
    reached = await page.evaluate(() => document.activeElement && document.activeElement.dataset.page === 'keys');
  }
  check(reached, 'Tab never reached the Keys link of the navigation');
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'Keys', level: 1 }).waitFor();
  eq(await page.evaluate(() => document.activeElement.id), 'page-title', 'focus after navigating (the page heading)');

  // 360 px wide: no page is wider than the screen (tables scroll inside their own box).
  await page.setViewportSize({ width: 360, height: 780 });
  for (const [hash, title] of [['#/overview', 'Overview'], ['#/keys', 'Keys'], ['#/usage', 'Usage'], ['#/provider-keys', 'Provider keys'], ['#/access-log', 'Key-access log'], ['#/account', 'Account']]) {
    await go(page, hash, title);
    await assertLabelled(page, title);
    const wide = await page.evaluate(() => document.documentElement.scrollWidth);
    check(wide <= 360, `${title} at 360 px: the page is ${wide} px wide`);
    if (hash === '#/overview') await t.shot('overview-360px.png');
  }
  expectStatus(await http('GET', '/v1/account', { bearer: key }), 200, 'the key still works');
  await t.finish();
});

test('keys: mint shows the plaintext once, gone after reload; revoke asks first', async () => {
  const { key } = await newAccount();
  const t = await session('keys');
  const { page } = t;
  await uiLogin(t, key);
  await go(page, '#/keys', 'Keys');
  await assertLabelled(page, 'keys page');
  const name = `minted ${nonce()}`;
  await page.getByLabel('Name (optional)').fill(name);
  await page.getByLabel('Mode').selectOption('live');
  await page.getByRole('button', { name: 'Mint key' }).click();
  const plaintext = (await page.locator('#minted-key').innerText()).trim();
  check(/^lvk_live_[A-Za-z0-9_-]{43}$/.test(plaintext), `minted key shown: ${plaintext}`);
  const prefix = plaintext.slice(0, 12);
  const row = page.locator('tr', { hasText: prefix });
  await row.waitFor();
  check((await row.innerText()).includes(name), 'the minted key\'s row has its name');
  expectStatus(await http('GET', '/v1/account', { bearer: plaintext }), 200, 'the minted key works');
  await assertNoStorage(page, plaintext, 'after minting');
  await t.shot('keys.png');

  await reload(page);
  await page.getByRole('heading', { name: 'Keys', level: 1 }).waitFor();
  await waitLoaded(page);
  const html = await page.content();
  check(!html.includes(plaintext), 'the plaintext is still on the page after a reload');
  eq(await page.locator('#minted-key').count(), 0, 'minted-key element after reload');
  await assertNoStorage(page, plaintext, 'after reload');
  const rowText = await page.locator('tr', { hasText: prefix }).innerText();
  check(rowText.includes('active'), `the key is listed by prefix after reload: ${rowText}`);

  // Revoke: Cancel keeps it, confirming revokes it.
  await page.getByRole('button', { name: `Revoke key ${prefix}` }).click();
  await page.getByRole('dialog').waitFor();
  await page.getByRole('dialog').getByRole('button', { name: 'Cancel' }).click();
  await page.getByRole('dialog').waitFor({ state: 'detached' });
  expectStatus(await http('GET', '/v1/account', { bearer: plaintext }), 200, 'the key after Cancel');
  await page.getByRole('button', { name: `Revoke key ${prefix}` }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Revoke key' }).click();
  await page.locator('.notice.info', { hasText: `Key ${prefix} is revoked` }).waitFor();
  const revokedRow = await page.locator('tr', { hasText: prefix }).innerText();
  check(revokedRow.includes('revoked') && !revokedRow.includes('Revoke'), `revoked row: ${revokedRow}`);
  expectStatus(await http('GET', '/v1/account', { bearer: plaintext }), 401, 'the revoked key');
  await t.finish();
});

test('usage table and overview numbers change with API calls; filters and pages', async () => {
  const { key } = await newAccount();
  const t = await session('usage');
  const { page } = t;
  await uiLogin(t, key);
  const calls0 = parseNum(await text(page, '#stat-calls'));
  const hits0 = parseNum(await text(page, '#stat-cache-hits'));
  const spent0 = parseNum(await text(page, '#stat-credits-spent'));
  const n = nonce();
  const ids = [];
  for (const p of [`usage one ${n}`, `usage two ${n}`, `usage three ${n}`]) ids.push(await ask(key, p));
  await sleep(300);
  ids.push(await ask(key, `usage one ${n}`)); // the same prompt again: a cache hit
  // Enough rows for more than one page of 10.
  for (let i = 0; i < 8; i += 1) expectStatus(await http('GET', '/v1/account', { bearer: key }), 200, 'GET /v1/account');

  await until('the overview shows the new calls', async () => {
    await reload(page);
    await page.getByRole('heading', { name: 'Overview', level: 1 }).waitFor();
    await waitLoaded(page);
    const calls = parseNum(await text(page, '#stat-calls'));
    const hits = parseNum(await text(page, '#stat-cache-hits'));
    const spent = parseNum(await text(page, '#stat-credits-spent'));
    return calls >= calls0 + 12 && hits >= hits0 + 1 && spent > spent0 && { calls, hits, spent };
  });
  await t.shot('overview-after-calls.png');
  const rate = await text(page, '#stat-hit-rate');
  check(/^\d+(\.\d)? %$/.test(rate) && parseNum(rate) > 0, `hit rate shown: ${rate}`);
  await page.locator('details summary').click();
  check((await page.locator('details table').innerText()).includes(new Date().toISOString().slice(0, 10)), 'today in the per-day table');

  await go(page, '#/usage', 'Usage');
  await assertLabelled(page, 'usage page');
  await page.getByLabel('Endpoint').selectOption('POST /v1/ask');
  await page.getByRole('button', { name: 'Show' }).click();
  await until('the usage table lists the four /v1/ask calls', async () => {
    await page.getByRole('button', { name: 'Show' }).click();
    await waitLoaded(page);
    const body = await page.locator('#usage-results').innerText();
    return ids.every((id) => body.includes(id)) && body;
  });
  const askTable = await page.locator('#usage-results').innerText();
  check(!askTable.includes('GET /v1/account'), 'the endpoint filter let other endpoints through');
  check(askTable.includes('hit'), `a cache hit in the table: ${askTable}`);
  await t.shot('usage.png');

  // Pages of 10 over every endpoint.
  await page.getByLabel('Endpoint').selectOption('');
  await page.getByLabel('Rows per page').selectOption('10');
  await page.getByRole('button', { name: 'Show' }).click();
  await page.locator('#usage-page', { hasText: 'Page 1' }).waitFor();
  await until('the Older button is enabled', () => page.getByRole('button', { name: 'Older →' }).isEnabled(), STEP_MS);
  // Each look at the usage is itself a call, recorded: page 1 grows between loads, so the
  // pages are compared by request id (the last column).
  const ids_on = async () => (await page.locator('#usage-results tbody tr td:last-child').allInnerTexts()).map((s) => s.trim());
  const page1 = await ids_on();
  eq(page1.length, 10, 'rows on page 1');
  await page.getByRole('button', { name: 'Older →' }).click();
  await page.locator('#usage-page', { hasText: 'Page 2' }).waitFor();
  await waitLoaded(page);
  const page2 = await ids_on();
  check(page2.length > 0 && page2.every((id) => !page1.includes(id)), `page 2 repeats rows of page 1: ${page1} / ${page2}`);
  check(await page.getByRole('button', { name: '← Newer' }).isEnabled(), 'Newer is disabled on page 2');
  await page.getByRole('button', { name: '← Newer' }).click();
  await page.locator('#usage-page', { hasText: 'Page 1' }).waitFor();
  await waitLoaded(page);
  check((await ids_on()).includes(page1[0]), 'page 1 again lacks its newest row');
  check(await page.getByRole('button', { name: '← Newer' }).isDisabled(), 'Newer is enabled on page 1');

  // A date range before the account existed: nothing.
  const yesterday = new Date(Date.now() - 86_400_000).toISOString().slice(0, 10);
  await page.getByLabel('From (UTC day)').fill(yesterday);
  await page.getByLabel('To (UTC day, included)').fill(yesterday);
  await page.getByRole('button', { name: 'Show' }).click();
  await page.locator('#usage-results', { hasText: 'No events match.' }).waitFor();
  check((await text(page, '#usage-totals')).startsWith('0 calls'), 'totals of an empty range');
  await t.finish();
});

test('provider keys: set one (last 4 only), a BYOK call shows in the key-access log, delete it', async () => {
  const { key } = await newAccount();
  const t = await session('byok');
  const { page } = t;
  await uiLogin(t, key);
  await go(page, '#/provider-keys', 'Provider keys');
  await assertLabelled(page, 'provider keys page');
  const n = nonce();
  const own = `sk-dash-${n}-0123456789abcdef`;
  await page.getByLabel('New OpenAI key').fill(own);
  await page.locator('#provider-openai').getByRole('button', { name: 'Save key' }).click();
  await page.locator('.notice.info', { hasText: 'ending in cdef' }).waitFor();
  eq(await text(page, '#provider-openai .last4'), 'cdef', 'last 4 shown');
  check(!(await page.content()).includes(own), 'the provider key is on the page');
  eq(await page.getByLabel('New OpenAI key').inputValue(), '', 'the key field after saving');
  const listed = expectStatus(await http('GET', '/v1/provider-keys', { bearer: key }), 200, 'GET /v1/provider-keys');
  eq(listed.json.provider_keys.map((k) => `${k.provider}:${k.last4}`).join(','), 'openai:cdef', 'provider keys listed');
  await t.shot('provider-keys.png');

  const prompt = `byok dashboard ${n}`;
  const r = expectStatus(await http('POST', '/v1/chat/completions', {
    bearer: key,
    body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: prompt }], max_completion_tokens: 32 },
  }), 200, 'BYOK POST /v1/chat/completions');
  const requestId = r.headers.get('x-request-id');
  check(requestId, 'the BYOK call has an x-request-id');
  if (MOCK) {
    const last = await http('GET', `${MOCK}/__mock/last?contains=${encodeURIComponent(prompt)}`);
    eq(last.status, 200, 'the mock saw the BYOK call');
    eq(last.json.headers.authorization, `Bearer ${own}`, 'the key the provider got');
  }

  await go(page, '#/access-log', 'Key-access log');
  await until('the access log lists the BYOK call', async () => {
    await page.getByRole('button', { name: 'Refresh' }).click();
    await page.getByRole('heading', { name: 'Key-access log', level: 1 }).waitFor();
    await waitLoaded(page);
    return page.locator('tr', { hasText: requestId }).count();
  }, STEP_MS);
  const row = await page.locator('tr', { hasText: requestId }).innerText();
  check(row.includes('openai') && row.includes('POST /v1/chat/completions'), `access-log row: ${row}`);
  await t.shot('access-log.png');

  await go(page, '#/provider-keys', 'Provider keys');
  await page.getByRole('button', { name: 'Delete the OpenAI key' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Delete key' }).click();
  await page.locator('.notice.info', { hasText: 'The OpenAI key is deleted' }).waitFor();
  check((await text(page, '#provider-openai')).includes('No key of yours'), 'the OpenAI card after deleting');
  eq(expectStatus(await http('GET', '/v1/provider-keys', { bearer: key }), 200, 'GET /v1/provider-keys').json.provider_keys.length, 0, 'provider keys after deleting');
  await t.finish();
});

test('account: the prompt-prefix opt-in toggles', async () => {
  const { key } = await newAccount();
  const t = await session('opt-in');
  const { page } = t;
  await uiLogin(t, key);
  await go(page, '#/account', 'Account');
  await assertLabelled(page, 'account page');
  const box = page.getByLabel('Store the first 200 characters of each prompt with its usage event');
  check(!(await box.isChecked()), 'the opt-in starts off');
  await box.check();
  await page.locator('.notice.info', { hasText: 'are stored' }).waitFor();
  await t.shot('account.png');
  const n = nonce();
  const prompt = `opted in ${n}`;
  const id = await ask(key, prompt);
  await until('the usage event holds the prompt prefix', async () => {
    const u = await http('GET', '/v1/usage?limit=50', { bearer: key });
    const e = (u.json && u.json.events || []).find((ev) => ev.request_id === id);
    return e && e.prompt_prefix === prompt;
  });
  // The page shows the setting as the account has it: GET /v1/account must say it.
  const acct = expectStatus(await http('GET', '/v1/account', { bearer: key }), 200, 'GET /v1/account');
  check('store_prompt_prefix' in acct.json, `GET /v1/account does not say store_prompt_prefix, so the page cannot show the current setting: ${acct.text}`);
  eq(acct.json.store_prompt_prefix, true, 'GET /v1/account store_prompt_prefix');
  await reload(page);
  await page.getByRole('heading', { name: 'Account', level: 1 }).waitFor();
  await waitLoaded(page);
  check(await box.isChecked(), 'the opt-in is off after reload');
  await box.uncheck();
  await page.locator('.notice.info', { hasText: 'no prompt text is stored' }).waitFor();
  const id2 = await ask(key, `opted out ${n}`);
  await until('the next usage event holds no prompt prefix', async () => {
    const u = await http('GET', '/v1/usage?limit=50', { bearer: key });
    const e = (u.json && u.json.events || []).find((ev) => ev.request_id === id2);
    return e && !('prompt_prefix' in e);
  });
  await t.finish();
});

test('a test key reads the dashboard but cannot change the account', async () => {
  const { account } = await newAccount();
  const { key } = await newKey(account, 'test');
  const t = await session('test key');
  const { page } = t;
  await uiLogin(t, key);
  eq(await text(page, '#who-key'), `${key.slice(0, 12)}… (test key): read only`, 'who is logged in');
  await go(page, '#/keys', 'Keys');
  t.allowHttpError(403, /^\/v1\/keys$/);
  await page.getByRole('button', { name: 'Mint key' }).click();
  const err = await page.locator('.notice.error').innerText();
  check(/test key can read the account but not change it/.test(err), `the 403 live_key_required message: ${err}`);
  await go(page, '#/account', 'Account');
  t.allowHttpError(403, /^\/v1\/account$/);
  const box = page.getByLabel('Store the first 200 characters of each prompt with its usage event');
  await box.click();
  await page.locator('.notice.error', { hasText: 'test key' }).waitFor();
  check(!(await box.isChecked()), 'the refused toggle went back');
  await t.finish();
});

test('delete the account with a typed confirmation, then logged out', async () => {
  const { account, key } = await newAccount();
  const t = await session('delete');
  const { page } = t;
  await uiLogin(t, key);
  await go(page, '#/account', 'Account');
  const del = page.getByRole('button', { name: 'Delete this account' });
  check(await del.isDisabled(), 'delete is enabled before the confirmation is typed');
  const confirm = page.getByLabel(/Type the account id/);
  await confirm.fill('acc_wrong');
  check(await del.isDisabled(), 'delete is enabled for a wrong confirmation');
  await confirm.fill(account);
  check(await del.isEnabled(), 'delete stays disabled with the right confirmation');
  await del.click();
  await page.getByRole('heading', { name: 'Log in', level: 1 }).waitFor();
  check((await text(page, '.notice')).includes('deleted'), 'the login page says the account is deleted');
  check(await page.locator('#nav').isHidden(), 'the navigation is shown while logged out');
  expectStatus(await http('GET', '/v1/account', { bearer: key }), 401, 'the deleted account\'s key');
  await reload(page);
  await page.getByRole('heading', { name: 'Log in', level: 1 }).waitFor();
  await t.finish();
});

// ---- security over plain HTTP ----

test('security: the session cookie\'s flags; logout ends the session', async () => {
  const { account, key } = await newAccount();
  const { cookie, setCookie, body, resp } = await httpLogin(key);
  const attrs = setCookie.split(';').slice(1).map((s) => s.trim().toLowerCase());
  check(attrs.includes('httponly'), `cookie not HttpOnly: ${setCookie}`);
  check(attrs.includes('samesite=strict'), `cookie not SameSite=Strict: ${setCookie}`);
  check(attrs.includes('path=/'), `cookie not Path=/: ${setCookie}`);
  const local = ['127.0.0.1', 'localhost'].includes(new URL(BASE).hostname);
  check(local || attrs.includes('secure'), `cookie not Secure on ${BASE}: ${setCookie}`);
  check(attrs.some((a) => a.startsWith('max-age=') || a.startsWith('expires=')), `cookie without an expiry: ${setCookie}`);
  const token = cookie.slice('gw_session='.length);
  check(token.length >= 32 && !token.includes(key) && !key.includes(token), `session token: ${token}`);
  eq(body.account_id, account, 'login body account_id');
  eq(body.key_prefix, key.slice(0, 12), 'login body key_prefix');
  eq(body.mode, 'live', 'login body mode');
  check(!JSON.stringify(body).includes(key), 'the login answer holds the key');
  check(/no-store/.test(resp.headers.get('cache-control') || ''), 'login answer without Cache-Control: no-store');

  const s = expectStatus(await http('GET', '/dashboard/api/session', { cookie }), 200, 'GET /dashboard/api/session');
  eq(s.json.account_id, account, 'session account_id');
  check(typeof s.json.commit === 'string' && s.json.commit.length > 0, 'session commit');
  check(/no-store/.test(s.headers.get('cache-control') || ''), 'session answer without Cache-Control: no-store');
  const a = expectStatus(await http('GET', '/v1/account', { cookie }), 200, 'GET /v1/account with the cookie');
  eq(a.json.account_id, account, '/v1/account with the cookie');
  check(/no-store/.test(a.headers.get('cache-control') || ''), '/v1/account without Cache-Control: no-store');

  const out = expectStatus(await http('POST', '/dashboard/api/logout', { cookie, origin: ORIGIN }), 204, 'POST /dashboard/api/logout');
  const cleared = out.headers.getSetCookie().find((c) => c.startsWith('gw_session='));
  check(cleared && /max-age=0|expires=thu, 01 jan 1970/i.test(cleared), `logout does not clear the cookie: ${cleared}`);
  expectStatus(await http('GET', '/dashboard/api/session', { cookie }), 401, 'the session after logout');
  expectStatus(await http('GET', '/v1/account', { cookie }), 401, '/v1/account with a logged-out cookie');
});

test('security: a cross-origin POST with the cookie is refused', async () => {
  const { key } = await newAccount();
  const { cookie } = await httpLogin(key);
  const before = expectStatus(await http('GET', '/v1/keys', { cookie }), 200, 'GET /v1/keys').json.keys.length;
  const evil = 'http://evil.example';
  for (const [method, path, body] of [
    ['POST', '/v1/keys', { name: 'csrf' }],
    ['PATCH', '/v1/account', { store_prompt_prefix: true }],
    ['PUT', '/v1/provider-keys/openai', { key: 'sk-csrf-0123456789abcdef' }],
    ['DELETE', '/v1/account', undefined],
  ]) {
    expectStatus(await http(method, path, { cookie, origin: evil, body }), 403, `${method} ${path} with the cookie from ${evil}`);
    expectStatus(await http(method, path, { cookie, body }), 403, `${method} ${path} with the cookie and no Origin`);
  }
  eq(expectStatus(await http('GET', '/v1/keys', { cookie }), 200, 'GET /v1/keys').json.keys.length, before, 'keys after the refused mints');
  eq(expectStatus(await http('GET', '/v1/provider-keys', { cookie }), 200, 'GET /v1/provider-keys').json.provider_keys.length, 0, 'provider keys after the refused PUT');
  expectStatus(await http('GET', '/v1/account', { bearer: key }), 200, 'the account after the refused DELETE');
  // The same call from the gateway's own origin goes through.
  expectStatus(await http('POST', '/v1/keys', { cookie, origin: ORIGIN, body: { name: 'same origin' } }), 201, 'POST /v1/keys with the cookie from the own origin');
});

test('security: a session reaches its own account only', async () => {
  const a = await newAccount();
  const b = await newAccount();
  const n = nonce();
  const bAsk = await ask(b.key, `other account ${n}`);
  expectStatus(await http('PUT', '/v1/provider-keys/openai', { bearer: b.key, body: { key: `sk-other-${n}-0123456789abcdef` } }), 200, 'B sets a provider key');
  const bByok = expectStatus(await http('POST', '/v1/chat/completions', {
    bearer: b.key, body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: `byok other ${n}` }], max_completion_tokens: 16 },
  }), 200, 'B makes a BYOK call').headers.get('x-request-id');
  const { cookie } = await httpLogin(a.key);

  expectStatus(await http('DELETE', `/v1/keys/${b.prefix}`, { cookie, origin: ORIGIN }), 404, 'A\'s session revoking B\'s key');
  expectStatus(await http('GET', '/v1/account', { bearer: b.key }), 200, 'B\'s key after A\'s attempt');
  const keys = expectStatus(await http('GET', '/v1/keys', { cookie }), 200, 'GET /v1/keys').json.keys;
  check(keys.every((k) => k.prefix !== b.prefix), 'A\'s key list shows B\'s key');
  eq(expectStatus(await http('GET', '/v1/account', { cookie }), 200, 'GET /v1/account').json.account_id, a.account, 'the session\'s account');
  await sleep(1500); // B's usage rows have landed by now
  const u = expectStatus(await http('GET', '/v1/usage?limit=500', { cookie }), 200, 'GET /v1/usage');
  eq(u.json.account_id, a.account, 'usage account_id');
  check(!u.text.includes(bAsk) && !u.text.includes(b.prefix), 'A\'s usage shows B\'s calls');
  const log = expectStatus(await http('GET', '/v1/provider-keys/access-log', { cookie }), 200, 'GET access log');
  check(!log.text.includes(bByok), 'A\'s access log shows B\'s BYOK call');
  eq(expectStatus(await http('GET', '/v1/provider-keys', { cookie }), 200, 'GET /v1/provider-keys').json.provider_keys.length, 0, 'A\'s provider keys');
  expectStatus(await http('DELETE', '/v1/provider-keys/openai', { cookie, origin: ORIGIN }), 404, 'A\'s session deleting "its" OpenAI key (B\'s)');
  eq(expectStatus(await http('GET', '/v1/provider-keys', { bearer: b.key }), 200, 'B\'s provider keys').json.provider_keys.length, 1, 'B\'s provider key after A\'s attempt');
  expectStatus(await http('GET', `/v1/ask/${bAsk}`, { cookie }), 404, 'A\'s session reading B\'s archived answer');
});

test('security: the dashboard\'s files and headers', async () => {
  const page = expectStatus(await http('GET', '/dashboard'), 200, 'GET /dashboard');
  check(/text\/html/.test(page.headers.get('content-type') || ''), `/dashboard content-type: ${page.headers.get('content-type')}`);
  const csp = page.headers.get('content-security-policy') || '';
  for (const d of CSP_DIRECTIVES) check(csp.split(';').map((s) => s.trim()).includes(d), `/dashboard CSP lacks "${d}": ${csp}`);
  eq(page.headers.get('x-content-type-options'), 'nosniff', '/dashboard X-Content-Type-Options');
  check(page.headers.get('referrer-policy'), '/dashboard without Referrer-Policy');
  check(!/<script(?![^>]*\bsrc=)[^>]*>/i.test(page.text), 'an inline <script> in index.html');
  check(!/\sstyle=|<style/i.test(page.text), 'inline style in index.html');
  check(!/https?:\/\//i.test(page.text.replace(/<!--[\s\S]*?-->/g, '')), 'index.html names another origin');
  for (const [path, type] of [
    ['/dashboard/app.js', /javascript/],
    ['/dashboard/app.css', /text\/css/],
    ['/dashboard/vendor/uPlot.esm.js', /javascript/],
    ['/dashboard/vendor/uPlot.min.css', /text\/css/],
    ['/dashboard/vendor/uPlot.LICENSE.txt', /text\/plain/],
  ]) {
    const r = expectStatus(await http('GET', path), 200, `GET ${path}`);
    check(type.test(r.headers.get('content-type') || ''), `${path} content-type: ${r.headers.get('content-type')}`);
    eq(r.headers.get('x-content-type-options'), 'nosniff', `${path} X-Content-Type-Options`);
  }
  check((await http('GET', '/dashboard/vendor/uPlot.LICENSE.txt')).text.includes('MIT License'), 'uPlot\'s licence is served');
  expectStatus(await http('GET', '/dashboard/api/session'), 401, 'the session without a cookie');
  const missing = await http('GET', '/dashboard/nope.js');
  check(missing.status === 404, `a missing dashboard file: ${missing.status}`);
});

test('security: a revoked key\'s session is refused at once', async () => {
  const { account, key, prefix } = await newAccount();
  const other = await newKey(account, 'live');
  const { cookie } = await httpLogin(key);
  expectStatus(await http('GET', '/v1/account', { cookie }), 200, 'the session before the revocation');
  expectStatus(await http('DELETE', `/v1/keys/${prefix}`, { bearer: other.key }), 200, 'revoking the session\'s key');
  expectStatus(await http('GET', '/v1/account', { cookie }), 401, 'GET /v1/account with the revoked key\'s session');
  expectStatus(await http('GET', '/dashboard/api/session', { cookie }), 401, 'the revoked key\'s session');
  expectStatus(await http('POST', '/v1/keys', { cookie, origin: ORIGIN, body: {} }), 401, 'minting with the revoked key\'s session');
  // A new login with the revoked key: the one 401.
  expectStatus(await loginAttempt({ key }), 401, 'logging in with a revoked key');
});


test('security: wrong keys get one identical 401', async () => {
  const { key } = await newAccount();
  const a = await loginAttempt({ key: `lvk_live_${'B'.repeat(43)}` });
  const b = await loginAttempt({ key: 'not a key' });
  const c = await loginAttempt({ key: `${key.slice(0, -1)}${key.endsWith('A') ? 'B' : 'A'}` });
  for (const [r, what] of [[a, 'unknown key'], [b, 'malformed key'], [c, 'a real prefix, wrong secret']]) {
    eq(r.status, 401, `login with ${what}`);
    check(!r.headers.getSetCookie().some((x) => x.startsWith('gw_session=') && !/max-age=0/i.test(x)), `login with ${what} set a session cookie`);
  }
  eq(b.text, a.text, 'the 401 bodies of two wrong keys');
  eq(c.text, a.text, 'the 401 bodies of a wrong secret and an unknown key');
});


// As a client address of its own: the others' logins go on.
test('security: repeated failed logins are throttled (429 with Retry-After)', async () => {
  let got = null;
  for (let i = 0; i < 30 && !got; i += 1) {
    const r = await http('POST', '/dashboard/api/login', { origin: ORIGIN, ip: THROTTLE_CLIENT, body: { key: `lvk_live_${nonce().padEnd(43, 'Z').slice(0, 43)}` } });
    if (r.status === 429) got = r;
    else eq(r.status, 401, `failed login ${i + 1}`);
  }
  check(got, 'no 429 after 30 failed logins');
  check(/^\d+$/.test(got.headers.get('retry-after') || ''), `429 without a Retry-After in seconds: ${got.headers.get('retry-after')}`);
  eq(got.json && got.json.error && typeof got.json.error.code, 'string', '429 error body');
});

// ---- run ----

async function main() {
  const selected = tests.filter((t) => t.name.includes(ONLY));
  const needsBrowser = selected.some((t) => !t.name.startsWith('security:'));
  if (needsBrowser) {
    try {
      await launch();
    } catch (e) {
      console.error(`FAIL: cannot start ${CHROMIUM} (scripts/setup.sh installs Debian's chromium): ${e.message}`);
      process.exit(1);
    }
    console.log(`browser: ${browser.version()} at ${CHROMIUM}`);
  }
  let passed = 0;
  const failed = [];
  for (const t of selected) {
    const started = Date.now();
    try {
      await t.fn();
      passed += 1;
      console.log(`ok   ${t.name} (${Date.now() - started} ms)`);
    } catch (e) {
      failed.push(t.name);
      console.log(`FAIL ${t.name} (${Date.now() - started} ms)\n     ${e instanceof Failure ? e.message : e.stack}`.replace(/\n/g, '\n     '));
    }
  }
  if (browser) await browser.close();
  if (shots.length) console.log(`screenshots:\n  ${[...new Set(shots)].join('\n  ')}`);
  console.log(`dashboard: ${passed} passed, ${failed.length} failed`);
  if (failed.length) {
    console.log(`failed:\n  ${failed.join('\n  ')}`);
    process.exit(1);
  }
}

main().catch((e) => {
  console.error(`FAIL: ${e.stack || e}`);
  process.exit(1);
});
