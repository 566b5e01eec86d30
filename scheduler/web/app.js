// Reverie — the browser front end.
//
// One plain ES2020 module: no framework, no build step, no external URLs. It is a client of the public
// HTTP API only (docs/web.md, docs/api.md). Everything that comes from the server or from the person
// reaches the page through createElement / textContent / attributes — never through innerHTML.

const TOKEN_KEY = 'reverie.token';
const IMPORT_KEY = 'reverie.import';
const ALBUM_RUN_KEY = 'reverie.albumRun';
const PAGE_SIZE = 60;
const MAX_STREAMS = 2; // live event streams at once; further generations are polled instead
const MAX_IMAGE_LOADS = 4; // concurrent image fetches (leaves HTTP/1.1 connections for streams and polls)
const FINAL_REPLIES = new Set(['done', 'failed', 'cancelled', 'rejected']);
const FINAL_STATES = new Set(['succeeded', 'failed', 'cancelled']);
const UNREACHABLE = 'The server is unreachable; retrying…';

const app = {
  token: null, // the bearer token in use (also in sessionStorage)
  me: null, // GET /v1/me
  page: null, // the current PageContext
  styles: null, // Promise of GET /v1/styles, shared by the pages
  signInAbort: null,
};

const $ = (id) => document.getElementById(id);
const enc = encodeURIComponent;

/* ------------------------------------------------------------------------------------------------ */
/* DOM helpers                                                                                       */
/* ------------------------------------------------------------------------------------------------ */

const PROPERTIES = new Set(['value', 'checked', 'selected', 'disabled', 'hidden', 'open']);

/** Builds an element. `props`: class, text, dataset, on<event>, DOM properties, or attributes. */
function h(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = String(value);
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') node.addEventListener(key.slice(2), value);
    else if (PROPERTIES.has(key)) node[key] = value;
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  return append(node, children);
}

/** Appends nodes and strings (as text nodes); skips null, undefined and false. */
function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : String(child));
  }
  return parent;
}

let lastId = 0;
const nextId = (prefix) => `${prefix}-${++lastId}`;

/** A labelled form field: <div class="field"><label>…</label>control<p class="hint">…</p></div>. */
function field(labelText, control, hint) {
  if (!control.id) control.id = nextId('field');
  const wrap = h('div', { class: 'field' }, h('label', { for: control.id, text: labelText }), control);
  if (hint) {
    const hintId = nextId('hint');
    control.setAttribute('aria-describedby', hintId);
    wrap.append(h('p', { class: 'hint', id: hintId, text: hint }));
  }
  return wrap;
}

const statusLine = (id, extraClass = '') =>
  h('p', { id, class: `status ${extraClass}`.trim(), role: 'status', 'aria-live': 'polite' });
const alertBox = (id, extraClass = '') => h('div', { id, class: `alert ${extraClass}`.trim(), role: 'alert' });

function plural(count, word, many = `${word}s`) {
  const n = Number(count) || 0;
  return `${n} ${n === 1 ? word : many}`;
}

/** Shows an error (ApiError, Error or text) in an alert box; clears it when `error` is empty. */
function showError(box, error) {
  box.replaceChildren();
  if (!error) return;
  const reasons = reasonsOf(error);
  const lines = reasons.map((reason) => {
    const parts = [reason.message];
    if (reason.suggestions && reason.suggestions.length) parts.push(` Suggestions: ${reason.suggestions.join(', ')}.`);
    return parts.join('');
  });
  if (lines.length === 1) box.append(h('p', { text: lines[0] }));
  else box.append(h('ul', {}, lines.map((line) => h('li', { text: line }))));
}

/* ------------------------------------------------------------------------------------------------ */
/* Formatting                                                                                        */
/* ------------------------------------------------------------------------------------------------ */

const DATE_PATTERN = /^(\d{4})-(\d{2})(?:-(\d{2}))?/;

/** A capture date ("2023-06-01T18:02:00", local time of the camera) as "1 Jun 2023". */
function formatDate(text) {
  const match = DATE_PATTERN.exec(String(text || ''));
  if (!match) return String(text || '');
  const date = new Date(Date.UTC(Number(match[1]), Number(match[2]) - 1, Number(match[3] || 1)));
  const options = { year: 'numeric', month: 'short', timeZone: 'UTC' };
  if (match[3]) options.day = 'numeric';
  return date.toLocaleDateString(undefined, options);
}

/** A moment in time (RFC 3339 with a zone) in the reader's own time zone. */
function formatInstant(text) {
  const date = new Date(text);
  return Number.isNaN(date.getTime()) ? String(text || '') : date.toLocaleString();
}

function monthOf(captured) {
  const match = DATE_PATTERN.exec(String(captured || ''));
  if (!match) return { key: 'undated', label: 'Undated' };
  const date = new Date(Date.UTC(Number(match[1]), Number(match[2]) - 1, 1));
  return {
    key: `${match[1]}-${match[2]}`,
    label: date.toLocaleDateString(undefined, { year: 'numeric', month: 'long', timeZone: 'UTC' }),
  };
}

function formatBytes(bytes) {
  const n = Number(bytes) || 0;
  if (n >= 1024 * 1024) return `${(n / (1024 * 1024)).toFixed(n >= 10 * 1024 * 1024 ? 0 : 1)} MB`;
  if (n >= 1024) return `${Math.round(n / 1024)} KB`;
  return `${n} bytes`;
}

const STATE_LABELS = {
  queued: 'Queued',
  running: 'Running',
  succeeded: 'Done',
  failed: 'Failed',
  cancelled: 'Cancelled',
  done: 'Done',
  rejected: 'Rejected',
};
const stateLabel = (state) => STATE_LABELS[state] || String(state || '');

/** "Anna: verified (0.41); Bob: missing", or why the identity check did not run. */
function identityText(identity) {
  if (!identity || typeof identity !== 'object') return '';
  const people = Array.isArray(identity.people) ? identity.people : [];
  if (people.length) return people.map(personVerdict).join('; ');
  if (identity.unchecked) return `Identity not checked: ${identity.unchecked}`;
  return '';
}

function personVerdict(person) {
  const distance = typeof person.distance === 'number' ? ` (${person.distance.toFixed(2)})` : '';
  return `${person.person}: ${person.verdict}${distance}`;
}

/* ------------------------------------------------------------------------------------------------ */
/* Small utilities: storage, keys, hashing                                                           */
/* ------------------------------------------------------------------------------------------------ */

const store = {
  get(key) {
    try {
      return sessionStorage.getItem(key);
    } catch {
      return null;
    }
  },
  set(key, value) {
    try {
      sessionStorage.setItem(key, value);
    } catch {
      /* storage disabled: the value lives only in memory */
    }
  },
  remove(key) {
    try {
      sessionStorage.removeItem(key);
    } catch {
      /* storage disabled */
    }
  },
};

/** A fresh idempotency key of [A-Za-z0-9._-] (randomUUID only exists in secure contexts). */
function randomKey(prefix) {
  let hex;
  if (window.crypto && typeof crypto.randomUUID === 'function') hex = crypto.randomUUID();
  else {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    hex = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }
  return `${prefix}-${hex}`.replace(/[^A-Za-z0-9._-]/g, '');
}

const SHA256_K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

/** SHA-256 of a string's UTF-8 bytes, as hex. Synchronous and usable outside secure contexts. */
function sha256Hex(text) {
  const bytes = new TextEncoder().encode(text);
  const padded = new Uint8Array(((bytes.length + 9 + 63) >> 6) << 6);
  padded.set(bytes);
  padded[bytes.length] = 0x80;
  const view = new DataView(padded.buffer);
  const bits = bytes.length * 8;
  view.setUint32(padded.length - 8, Math.floor(bits / 2 ** 32));
  view.setUint32(padded.length - 4, bits >>> 0);
  const hash = new Uint32Array([
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
  ]);
  const w = new Uint32Array(64);
  const rotr = (x, n) => (x >>> n) | (x << (32 - n));
  for (let offset = 0; offset < padded.length; offset += 64) {
    for (let i = 0; i < 16; i++) w[i] = view.getUint32(offset + i * 4);
    for (let i = 16; i < 64; i++) {
      const s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >>> 3);
      const s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >>> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    let [a, b, c, d, e, f, g, k] = hash;
    for (let i = 0; i < 64; i++) {
      const t1 = (k + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + SHA256_K[i] + w[i]) >>> 0;
      const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) >>> 0;
      k = g;
      g = f;
      f = e;
      e = (d + t1) >>> 0;
      d = c;
      c = b;
      b = a;
      a = (t1 + t2) >>> 0;
    }
    [a, b, c, d, e, f, g, k].forEach((value, i) => {
      hash[i] += value;
    });
  }
  return Array.from(hash, (x) => x.toString(16).padStart(8, '0')).join('');
}

/** The album run's id, as `reverie batch` makes it: the same album, style and destination resume it. */
function albumRunKey(tenant, album, style, to) {
  return `album-${sha256Hex(`${tenant}\n${album}\n${style}\n${to}`).slice(0, 24)}`;
}

/** An album name as one key segment, as the scheduler makes it ("Hawaii 2024 / best" → "hawaii-2024-best"). */
function albumSlug(name) {
  let slug = '';
  for (const c of String(name).trim().toLowerCase()) {
    if (/^[a-z0-9]$/.test(c)) slug += c;
    else if (slug && !slug.endsWith('-')) slug += '-';
  }
  slug = slug.replace(/-+$/, '');
  return slug || 'album';
}

/* ------------------------------------------------------------------------------------------------ */
/* The API client                                                                                    */
/* ------------------------------------------------------------------------------------------------ */

/** An error answer of the API: the HTTP status (0: no answer) and the reply's reasons. */
class ApiError extends Error {
  constructor(status, reasons) {
    super(reasons.map((r) => r.message).join(' '));
    this.name = 'ApiError';
    this.status = status;
    this.reasons = reasons;
  }
}

/** The token was refused (401): the app has already returned to the sign-in form. */
class AuthLost extends Error {
  constructor(message) {
    super(message);
    this.name = 'AuthLost';
  }
}

const abortError = () => new DOMException('The page was left.', 'AbortError');
const isAbort = (error) => Boolean(error) && error.name === 'AbortError';
/** Errors that need no message: the page was left, or the sign-in form already explains. */
const isQuiet = (error) => isAbort(error) || error instanceof AuthLost;

function reasonsOf(error) {
  if (error instanceof ApiError) return error.reasons;
  if (typeof error === 'string') return [{ code: '', message: error, suggestions: [] }];
  return [{ code: '', message: (error && error.message) || 'Something went wrong.', suggestions: [] }];
}

const messageOf = (error) => reasonsOf(error).map((r) => r.message).join(' ');

const STATUS_MESSAGES = {
  400: 'The server could not read that request.',
  403: 'That is not allowed: there is no consent for it, or the server does not allow that folder.',
  404: 'Not found. It may have been deleted.',
  413: 'That is too large for the server.',
  422: 'The server found the request invalid.',
  429: 'There is too much unfinished work; wait for some of it to finish.',
  500: 'The server had a problem.',
  502: 'The server is not reachable right now.',
  503: 'The server is not ready.',
};

function normaliseReason(reason) {
  const r = reason && typeof reason === 'object' ? reason : {};
  return {
    code: String(r.code || ''),
    message: String(r.message || r.code || 'Something went wrong.'),
    field: r.field ? String(r.field) : undefined,
    suggestions: Array.isArray(r.suggestions) ? r.suggestions.map(String) : [],
  };
}

/** The reasons of an error answer: a reply's `reasons`, a standby's `message`, or the status. */
async function readReasons(response) {
  let body = null;
  try {
    body = JSON.parse(await response.text());
  } catch {
    /* not JSON */
  }
  if (body && Array.isArray(body.reasons) && body.reasons.length) return body.reasons.map(normaliseReason);
  if (body && typeof body.message === 'string') return [normaliseReason({ code: body.error, message: body.message })];
  let message = STATUS_MESSAGES[response.status] || `The server answered ${response.status}.`;
  if (response.status === 413 && app.me && app.me.max_upload_bytes) {
    message = `That is too large for the server (the limit is ${formatBytes(app.me.max_upload_bytes)}).`;
  }
  return [{ code: `http_${response.status}`, message, suggestions: [] }];
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal && signal.aborted) {
      reject(abortError());
      return;
    }
    const timer = setTimeout(resolve, ms);
    if (signal) {
      signal.addEventListener(
        'abort',
        () => {
          clearTimeout(timer);
          reject(abortError());
        },
        { once: true },
      );
    }
  });
}

/** The banner that says the server cannot be reached. */
function netTrouble(message) {
  const banner = $('net-status');
  if (banner.textContent !== message) banner.textContent = message;
  banner.hidden = false;
}

function netFine() {
  const banner = $('net-status');
  if (!banner.hidden) {
    banner.hidden = true;
    banner.textContent = '';
  }
}

/**
 * fetch with the bearer token. Answers the Response when it is 2xx; throws ApiError otherwise, or
 * AuthLost after a 401 (having returned to the sign-in form). With `retry` (GETs, and POSTs that carry
 * an idempotency key) a network error or a 503 (standby) is retried with backoff until it works or
 * the page is left.
 */
async function apiFetch(path, options = {}) {
  const { method = 'GET', body, headers = {}, signal, cache = 'default' } = options;
  const retry = options.retry === undefined ? method === 'GET' : options.retry;
  const token = app.token;
  let delay = 1000;
  for (;;) {
    let response;
    try {
      response = await fetch(path, {
        method,
        body,
        signal,
        cache,
        credentials: 'omit',
        headers: { Authorization: `Bearer ${token}`, ...headers },
      });
    } catch (error) {
      if (isAbort(error) || (signal && signal.aborted)) throw isAbort(error) ? error : abortError();
      if (!retry) {
        throw new ApiError(0, [{ code: 'unreachable', message: 'The server is unreachable. Check the connection and try again.', suggestions: [] }]);
      }
      netTrouble(UNREACHABLE);
      await sleep(delay, signal);
      delay = Math.min(delay * 2, 10000);
      continue;
    }
    if (response.status === 503 && retry) {
      const reasons = await readReasons(response);
      netTrouble(`${reasons[0].message} Retrying…`);
      await sleep(delay, signal);
      delay = Math.min(delay * 2, 10000);
      continue;
    }
    netFine();
    if (response.status === 401) {
      const reasons = await readReasons(response);
      const message = reasons[0].message || 'Please sign in again.';
      if (app.token === token && token) signOut(message);
      throw new AuthLost(message);
    }
    if (!response.ok) throw new ApiError(response.status, await readReasons(response));
    return response;
  }
}

/** An API call answering JSON (null for an empty body). */
async function api(path, options = {}) {
  const response = await apiFetch(path, { cache: 'no-store', ...options });
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiError(response.status, [{ code: 'bad_answer', message: 'The server sent an answer this page cannot read.', suggestions: [] }]);
  }
}

function sendJson(method, path, value, options = {}) {
  return api(path, {
    ...options,
    method,
    body: JSON.stringify(value),
    headers: { 'Content-Type': 'application/json', ...(options.headers || {}) },
  });
}

const thumbPath = (photo, size = 256) => `/v1/photos/${enc(photo)}/thumbnail?size=${size}`;
const facePath = (photo, box, size = 128) =>
  `/v1/photos/${enc(photo)}/face?box=${(box || []).map((n) => Math.round(Number(n))).join(',')}&size=${size}`;
const outputPath = (key) => `/v1/outputs/${String(key).split('/').map(enc).join('/')}`;
const generationPath = (id) => `/v1/generations/${enc(id)}`;

/** The reply's kind: `type` in reply.v1.json (`status` accepted too, as docs/web.md writes it). */
const replyType = (reply) => String((reply && (reply.type || reply.status)) || '');

function loadStyles() {
  if (!app.styles) {
    app.styles = api('/v1/styles').then((styles) => (Array.isArray(styles) ? styles : []));
    app.styles.catch(() => {
      app.styles = null;
    });
  }
  return app.styles;
}

/* ------------------------------------------------------------------------------------------------ */
/* Images: fetched with the token, shown as blob URLs, revoked when the page is left                 */
/* ------------------------------------------------------------------------------------------------ */

const imageSlots = { active: 0, waiting: [] };
/** A transparent pixel shown until an image arrives (no broken-image icon, no alt text flashing). */
const PLACEHOLDER = 'data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7';

function markLoading(img) {
  img.classList.add('loading');
  if (!img.getAttribute('src')) img.src = PLACEHOLDER;
}

function withImageSlot(task) {
  return new Promise((resolve, reject) => {
    const run = () => {
      imageSlots.active += 1;
      task()
        .then(resolve, reject)
        .finally(() => {
          imageSlots.active -= 1;
          const next = imageSlots.waiting.shift();
          if (next) next();
        });
    };
    if (imageSlots.active < MAX_IMAGE_LOADS) run();
    else imageSlots.waiting.push(run);
  });
}

/** Everything a page holds: aborted, revoked and disconnected when the page is left. */
class PageContext {
  constructor() {
    this.controller = new AbortController();
    this.images = new Map(); // path -> Promise of an object URL
    this.madeUrls = [];
    this.timers = new Set();
    this.memos = new Map();
    this.pending = new WeakMap();
    this.observer =
      'IntersectionObserver' in window
        ? new IntersectionObserver((entries) => this.onVisible(entries), { rootMargin: '300px' })
        : null;
  }

  get signal() {
    return this.controller.signal;
  }

  get alive() {
    return !this.controller.signal.aborted;
  }

  sleep(ms) {
    return sleep(ms, this.signal);
  }

  /** Calls `fn` `ms` after the last call (cancelled when the page is left). */
  debounce(fn, ms) {
    let timer = null;
    const trigger = () => {
      if (timer) this.timers.delete(timer);
      clearTimeout(timer);
      timer = setTimeout(() => {
        this.timers.delete(timer);
        if (this.alive) fn();
      }, ms);
      this.timers.add(timer);
    };
    trigger.now = () => {
      clearTimeout(timer);
      if (this.alive) fn();
    };
    return trigger;
  }

  /** An AbortController that is also aborted when the page is left. */
  child() {
    const controller = new AbortController();
    if (!this.alive) controller.abort();
    else this.signal.addEventListener('abort', () => controller.abort(), { once: true });
    return controller;
  }

  /** One shared answer per key for this page (failures are forgotten so they can be tried again). */
  memo(key, load) {
    if (!this.memos.has(key)) {
      const promise = load();
      promise.catch(() => this.memos.delete(key));
      this.memos.set(key, promise);
    }
    return this.memos.get(key);
  }

  /** The object URL of an authenticated image, fetched once per page. */
  imageUrl(path) {
    if (!this.images.has(path)) {
      const promise = withImageSlot(async () => {
        const response = await apiFetch(path, { signal: this.signal });
        return response.blob();
      }).then((blob) => {
        const url = URL.createObjectURL(blob);
        if (!this.alive) {
          URL.revokeObjectURL(url);
          throw abortError();
        }
        this.madeUrls.push(url);
        return url;
      });
      promise.catch(() => this.images.delete(path));
      this.images.set(path, promise);
    }
    return this.images.get(path);
  }

  /** Loads an image now; `onUrl` gets the object URL (for download links). */
  showImage(img, path, onUrl) {
    markLoading(img);
    this.imageUrl(path).then(
      (url) => {
        img.src = url;
        img.classList.remove('loading');
        if (onUrl) onUrl(url);
      },
      (error) => {
        if (isQuiet(error)) return;
        img.classList.remove('loading');
        img.classList.add('broken');
        if (img.getAttribute('src') === PLACEHOLDER) img.removeAttribute('src'); // shows the alt text
        img.title = messageOf(error);
      },
    );
  }

  /** Loads an image when it comes near the viewport. */
  lazyImage(img, path, onUrl) {
    if (!this.observer) {
      this.showImage(img, path, onUrl);
      return;
    }
    markLoading(img);
    this.pending.set(img, { path, onUrl });
    this.observer.observe(img);
  }

  onVisible(entries) {
    for (const entry of entries) {
      if (!entry.isIntersecting) continue;
      this.observer.unobserve(entry.target);
      const wanted = this.pending.get(entry.target);
      if (wanted) this.showImage(entry.target, wanted.path, wanted.onUrl);
    }
  }

  dispose() {
    this.controller.abort();
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    if (this.observer) this.observer.disconnect();
    for (const url of this.madeUrls) URL.revokeObjectURL(url);
    this.madeUrls = [];
    this.images.clear();
    this.memos.clear();
  }
}

/* ------------------------------------------------------------------------------------------------ */
/* Server-sent events over fetch (EventSource cannot send the Authorization header)                  */
/* ------------------------------------------------------------------------------------------------ */

/**
 * A text/event-stream parser: `push` text as it arrives; `onEvent(data, eventName)` is called per
 * event and may answer true to stop. `:` lines are comments; a blank line ends an event.
 */
function createEventParser(onEvent) {
  let buffer = '';
  let data = [];
  let name = '';
  let stopped = false;
  const dispatch = () => {
    if (!data.length) {
      name = '';
      return false;
    }
    const text = data.join('\n');
    const event = name;
    data = [];
    name = '';
    return onEvent(text, event) === true;
  };
  const line = (text) => {
    if (text === '') return dispatch();
    if (text.startsWith(':')) return false;
    const colon = text.indexOf(':');
    const key = colon < 0 ? text : text.slice(0, colon);
    let value = colon < 0 ? '' : text.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (key === 'event') name = value;
    else if (key === 'data') data.push(value);
    return false;
  };
  return {
    /** Feeds text; answers true once `onEvent` asked to stop. */
    push(text) {
      if (stopped) return true;
      buffer += text;
      // A trailing CR may be the first half of CRLF: keep it until the next chunk.
      const cut = buffer.endsWith('\r') ? buffer.length - 1 : buffer.length;
      const lines = buffer.slice(0, cut).split(/\r\n|\r|\n/);
      buffer = lines.pop() + buffer.slice(cut);
      for (const text of lines) {
        if (line(text)) {
          stopped = true;
          return true;
        }
      }
      return false;
    },
    /** The stream ended: a last event without its blank line is still delivered. */
    end() {
      if (stopped) return true;
      if (buffer) line(buffer.replace(/\r$/, ''));
      buffer = '';
      stopped = dispatch();
      return stopped;
    },
  };
}

/** Reads `GET …/events` until it ends or `onReply` answers true; each data is a reply JSON. */
async function readEvents(path, signal, onReply) {
  const response = await apiFetch(path, { signal, cache: 'no-store', headers: { Accept: 'text/event-stream' } });
  if (!response.body || !response.body.getReader) {
    throw new ApiError(0, [{ code: 'no_streams', message: 'This browser cannot read event streams.', suggestions: [] }]);
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  const parser = createEventParser((text, event) => {
    let reply;
    try {
      reply = JSON.parse(text);
    } catch {
      return false; // not a reply: skip it
    }
    return onReply(reply, event) === true;
  });
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) {
        parser.push(decoder.decode());
        parser.end();
        return;
      }
      if (parser.push(decoder.decode(value, { stream: true }))) return;
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

const liveStreams = { open: 0 };

/**
 * Follows a generation until its final reply and answers it. Replies go to `onReply` as they come;
 * when too many streams are open the generation is polled and each status goes to `onStatus`.
 * A stream that drops before the final reply is reopened (the server starts with the current state).
 */
async function followGeneration(ctx, requestId, { onReply, onStatus }) {
  const path = `${generationPath(requestId)}/events`;
  let delay = 1000;
  while (ctx.alive) {
    if (liveStreams.open >= MAX_STREAMS) return pollGeneration(ctx, requestId, onStatus);
    let final = null;
    liveStreams.open += 1;
    try {
      await readEvents(path, ctx.signal, (reply) => {
        onReply(reply);
        if (FINAL_REPLIES.has(replyType(reply))) {
          final = reply;
          return true;
        }
        return false;
      });
    } catch (error) {
      if (isQuiet(error) || (error instanceof ApiError && error.status !== 0)) throw error;
      netTrouble(UNREACHABLE); // the stream broke off mid-way
    } finally {
      liveStreams.open -= 1;
    }
    if (final) return final;
    await ctx.sleep(delay);
    delay = Math.min(delay * 2, 10000);
  }
  throw abortError();
}

/** Polls `GET /v1/generations/{id}` until it is finished; answers a final reply made from it. */
async function pollGeneration(ctx, requestId, onStatus) {
  for (;;) {
    const status = await api(generationPath(requestId), { signal: ctx.signal });
    onStatus(status);
    if (FINAL_STATES.has(status.state)) return finalFromStatus(status);
    await ctx.sleep(1500);
  }
}

function finalFromStatus(status) {
  const jobs = Array.isArray(status.jobs) ? status.jobs : [];
  const type = { succeeded: 'done', failed: 'failed', cancelled: 'cancelled' }[status.state] || 'failed';
  const results = jobs.map((j) => ({ job: j.job, index: j.index, state: j.state, outputs: j.outputs || [], error: j.error }));
  const reasons = jobs
    .filter((j) => j.state === 'failed')
    .map((j) => ({ code: 'job_failed', message: `Variant ${Number(j.index) + 1} failed: ${j.error || 'no reason given'}`, suggestions: [] }));
  return { schema: 'reverie.reply.v1', type, request_id: status.request_id, results, reasons };
}

/* ------------------------------------------------------------------------------------------------ */
/* A generation card: plan, progress, live preview, then the images (Create, Results, refinements)   */
/* ------------------------------------------------------------------------------------------------ */

function jobFraction(reply) {
  if (FINAL_STATES.has(reply.state)) return 1;
  if (reply.state === 'running') {
    const total = Number(reply.total) || 0;
    return total > 0 ? Math.min(1, (Number(reply.step) || 0) / total) : 0.02;
  }
  return 0;
}

const variantOfJob = (job) => {
  const index = Number(String(job || '').split('.').pop());
  return Number.isFinite(index) ? index + 1 : null;
};

/**
 * Builds a card for one generation. `status` (GET /v1/generations/{id}) or the accepted reply's
 * `planLines`/`jobCount` fill it; `follow()` streams its events until the end.
 */
function generationCard(ctx, { requestId, prompt, planLines, jobCount = 0, status = null, planOpen = true }) {
  const title = prompt || 'Untitled';
  const headingId = nextId('gen');
  const heading = h('h2', { class: 'gen-prompt', id: headingId, tabindex: '-1', text: title });
  const meta = h('p', { class: 'gen-meta' });
  const state = h('p', { class: 'gen-state', role: 'status', 'aria-live': 'polite' });
  const step = h('p', { class: 'gen-step' });
  const progress = h('progress', { class: 'gen-progress', max: '1', value: '0', 'aria-labelledby': headingId });
  const preview = h('img', { class: 'preview', id: `preview-${requestId}`, alt: 'Live preview', hidden: true, width: '128', height: '128' });
  const error = h('div', { class: 'alert gen-error', role: 'alert' });
  const notes = h('div', { class: 'gen-notes' });
  const results = h('div', { class: 'results' });
  const planList = h('ul', { class: 'plan' });
  const plan = h('details', { class: 'plan-details', open: planOpen, hidden: true }, h('summary', { text: 'Plan' }), planList);
  const cancel = h('button', { type: 'button', class: 'gen-cancel secondary', text: 'Cancel', hidden: true });
  const actions = h('div', { class: 'actions' }, cancel);
  const node = h(
    'article',
    { class: 'generation-card', dataset: { requestId }, 'aria-labelledby': headingId },
    heading, meta, state, step, progress, preview, error, notes, results, plan, actions,
  );

  const jobs = new Map(); // job id -> fraction done
  let total = jobCount;
  let latest = status;
  let finalReply = null;
  const shown = new Set();

  const setProgress = () => {
    const count = Math.max(total, jobs.size);
    if (!count) {
      progress.removeAttribute('value');
      return;
    }
    progress.max = count;
    progress.value = Array.from(jobs.values()).reduce((sum, x) => sum + x, 0);
  };

  const setPlan = (lines) => {
    if (!Array.isArray(lines) || !lines.length || planList.childElementCount) return;
    planList.append(...lines.map((line) => h('li', { class: /^warning:/i.test(String(line)) ? 'warning' : null, text: line })));
    plan.hidden = false;
  };

  const setState = (text) => {
    if (state.textContent !== text) state.textContent = text;
  };

  /** A reply from the event stream. */
  const onReply = (reply) => {
    const type = replyType(reply);
    if (type !== 'progress') return;
    if (reply.job) {
      jobs.set(reply.job, jobFraction(reply));
      const variant = variantOfJob(reply.job);
      const where = variant ? `Variant ${variant}` : 'Job';
      step.textContent = reply.total ? `${where}: step ${reply.step || 0} of ${reply.total}` : `${where}: ${stateLabel(reply.state)}`;
    }
    if (reply.state === 'running' || reply.state === 'queued') setState(stateLabel(reply.state));
    const b64 = typeof reply.preview_png_base64 === 'string' ? reply.preview_png_base64 : '';
    if (b64 && /^[A-Za-z0-9+/=\s]+$/.test(b64)) {
      preview.src = `data:image/png;base64,${b64.replace(/\s+/g, '')}`;
      preview.alt = `Live preview${reply.total ? `, step ${reply.step || 0} of ${reply.total}` : ''}`;
      preview.hidden = false;
    }
    setProgress();
  };

  /** A status from GET /v1/generations/{id}. */
  const show = (next) => {
    latest = next;
    const list = Array.isArray(next.jobs) ? next.jobs : [];
    total = list.length;
    for (const job of list) jobs.set(job.job, FINAL_STATES.has(job.state) ? 1 : jobs.get(job.job) || 0);
    setProgress();
    setState(stateLabel(next.state));
    const parts = [`Request ${next.request_id || requestId}`];
    if (next.created_at) parts.push(formatInstant(next.created_at));
    if (next.parent) parts.push(`refinement of ${next.parent}`);
    meta.textContent = parts.join(' · ');
    setPlan(next.plan && next.plan.explanation);
    cancel.hidden = FINAL_STATES.has(next.state);
    if (FINAL_STATES.has(next.state)) {
      step.textContent = '';
      progress.hidden = true;
    }
    renderOutputs(list);
  };

  const identityOf = (jobId) => {
    const result = finalReply && Array.isArray(finalReply.results) ? finalReply.results.find((r) => r.job === jobId) : null;
    return result ? result.identity : null;
  };

  const renderOutputs = (list) => {
    for (const job of list) {
      const keys = (job.outputs || []).filter((key) => /\.png$/i.test(key));
      for (const key of keys) {
        if (shown.has(key)) continue;
        shown.add(key);
        results.append(outputFigure(ctx, key, job, title, identityOf(job.job)));
      }
      if (job.state === 'failed' && job.error && !shown.has(`error:${job.job}`)) {
        shown.add(`error:${job.job}`);
        notes.append(h('p', { class: 'warning', text: `Variant ${Number(job.index) + 1} failed: ${job.error}` }));
      }
    }
    if (shown.size) preview.hidden = true;
  };

  /** The final reply: say how it ended, then show the images from the full status. */
  const finish = async (reply) => {
    finalReply = reply;
    const type = replyType(reply);
    setState(stateLabel(type));
    cancel.hidden = true;
    step.textContent = '';
    if ((type === 'failed' || type === 'rejected') && Array.isArray(reply.reasons) && reply.reasons.length) {
      showError(error, new ApiError(0, reply.reasons.map(normaliseReason)));
    }
    try {
      show(await api(generationPath(requestId), { signal: ctx.signal }));
    } catch (e) {
      if (!isQuiet(e)) showError(error, e);
    }
  };

  const follow = async () => {
    cancel.hidden = false;
    if (!state.textContent) setState('Queued');
    try {
      const final = await followGeneration(ctx, requestId, { onReply, onStatus: show });
      await finish(final);
    } catch (e) {
      if (!isQuiet(e)) showError(error, e);
    }
  };

  cancel.addEventListener('click', async () => {
    cancel.disabled = true;
    try {
      show(await api(generationPath(requestId), { method: 'DELETE', signal: ctx.signal }));
      setState('Cancelled');
    } catch (e) {
      if (!isQuiet(e)) showError(error, e);
    } finally {
      cancel.disabled = false;
    }
  });

  setPlan(planLines);
  if (status) show(status);
  else meta.textContent = `Request ${requestId}`;
  setProgress();

  return {
    node,
    heading,
    actions,
    requestId,
    prompt: title,
    follow,
    show,
    note(text) {
      notes.append(h('p', { text }));
    },
    latest: () => latest,
  };
}

/** One output image with its variant, identity verdicts and a download link. */
function outputFigure(ctx, key, job, prompt, identity) {
  const variant = Number(job.index) + 1;
  const img = h('img', { class: 'result-image', alt: `Variant ${variant} of “${prompt}”`, width: '512', height: '512' });
  const name = `${String(key).split('/').slice(-3).join('-').replace(/[^A-Za-z0-9._-]/g, '_')}`;
  const download = h('a', { class: 'download', download: name, hidden: true, text: 'Download' });
  ctx.lazyImage(img, outputPath(key), (url) => {
    download.href = url;
    download.hidden = false;
  });
  const verdict = identityText(identity);
  return h(
    'figure',
    { class: 'result', dataset: { outputKey: key } },
    img,
    h('figcaption', {}, h('span', { text: `Variant ${variant}` }), verdict && h('span', { class: 'identity', text: verdict }), download),
  );
}

/* ------------------------------------------------------------------------------------------------ */
/* Sign-in, sign-out and routing                                                                     */
/* ------------------------------------------------------------------------------------------------ */

const ROUTES = {
  library: ['Library', renderLibrary],
  people: ['People', renderPeople],
  create: ['Create', renderCreate],
  results: ['Results', renderResults],
  albums: ['Albums', renderAlbums],
  privacy: ['Privacy', renderPrivacy],
};

function showSignIn(message) {
  $('sign-in-view').hidden = false;
  $('page').hidden = true;
  $('site-nav').hidden = true;
  $('account').hidden = true;
  $('sign-in-error').textContent = message || '';
  document.title = 'Sign in — Reverie';
  $('token').focus();
}

function showApp() {
  $('sign-in-view').hidden = true;
  $('page').hidden = false;
  $('site-nav').hidden = false;
  $('account').hidden = false;
  $('tenant-name').textContent = app.me.tenant;
}

async function signIn(token) {
  const error = $('sign-in-error');
  const button = $('sign-in');
  if (!token) {
    error.textContent = 'Enter your access token.';
    $('token').focus();
    return;
  }
  if (!/^[\x21-\x7e]+$/.test(token)) {
    error.textContent = 'An access token has no spaces or accented letters; it reads TENANT:SECRET.';
    $('token').focus();
    return;
  }
  if (app.signInAbort) app.signInAbort.abort();
  const controller = new AbortController();
  app.signInAbort = controller;
  error.textContent = '';
  button.disabled = true;
  button.textContent = 'Signing in…';
  app.token = token;
  try {
    const me = await api('/v1/me', { signal: controller.signal });
    app.me = {
      tenant: String((me && me.tenant) || ''),
      import_roots: Array.isArray(me && me.import_roots) ? me.import_roots.map(String) : [],
      max_upload_bytes: Number(me && me.max_upload_bytes) || 0,
      preview_interval_ms: Number(me && me.preview_interval_ms) || 0,
    };
    store.set(TOKEN_KEY, token);
    $('token').value = '';
    $('sign-in-notice').replaceChildren();
    showApp();
    route();
  } catch (e) {
    if (isQuiet(e)) return; // a 401 already put its message on the form
    app.token = null;
    showSignIn(messageOf(e));
  } finally {
    if (app.signInAbort === controller) app.signInAbort = null;
    button.disabled = false;
    button.textContent = 'Sign in';
  }
}

/** Back to the sign-in form: forgets the token and everything of the page. */
function signOut(message = '', notice = null) {
  app.token = null;
  app.me = null;
  app.styles = null;
  for (const key of [TOKEN_KEY, IMPORT_KEY, ALBUM_RUN_KEY]) store.remove(key);
  if (app.page) app.page.dispose();
  app.page = null;
  $('page').replaceChildren();
  $('sign-in-notice').replaceChildren(...(notice ? [notice] : []));
  netFine();
  showSignIn(message);
}

/** Style choices grouped by who paints them: the painterly renderer, or only a diffusion model. */
function styleOptions(styles) {
  const option = (s) => h('option', { value: String(s.name), text: String(s.name) });
  const painted = styles.filter((s) => s.painterly);
  const modelOnly = styles.filter((s) => !s.painterly);
  return [
    h('optgroup', { label: 'Painted by Reverie' }, ...painted.map(option)),
    h('optgroup', { label: 'Needs a diffusion model' }, ...modelOnly.map(option)),
  ].filter((group) => group.children.length);
}

function styleHintOf(style) {
  const phrases = Array.isArray(style.phrases) ? style.phrases : [];
  const who = style.painterly ? 'Painted by Reverie’s own painter.' : 'Drawn by the diffusion model (when the server has one).';
  return phrases.length ? `${who} A prompt can also say: ${phrases.join(', ')}.` : who;
}

/** Why the importer skipped a file, in words: its reason is `{kind, detail}` (detail text or numbers). */
function skipReason(reason) {
  if (typeof reason === 'string') return reason;
  if (!reason || typeof reason !== 'object') return 'skipped';
  const kind = String(reason.kind || 'skipped').replace(/_/g, ' ');
  const detail = reason.detail;
  if (detail === undefined || detail === null) return kind;
  if (typeof detail === 'object') {
    return `${kind}: ${Object.entries(detail).map(([k, v]) => `${k} ${v}`).join(', ')}`;
  }
  return `${kind}: ${detail}`;
}

/** Shows the page the hash names (#/library, #/people, …) in <main id="page">. */
function route() {
  if (!app.me) return;
  let name = (/^#\/([a-z]+)/.exec(location.hash) || [])[1];
  if (!ROUTES[name]) {
    name = 'library';
    history.replaceState(null, '', '#/library');
  }
  const [title, render] = ROUTES[name];
  if (app.page) app.page.dispose();
  const ctx = new PageContext();
  app.page = ctx;
  const page = $('page');
  page.replaceChildren();
  for (const link of document.querySelectorAll('#site-nav a')) {
    if (link.id === `nav-${name}`) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  document.title = `${title} — Reverie`;
  try {
    render(ctx, page);
  } catch (e) {
    const box = alertBox(nextId('page-error'));
    showError(box, e);
    page.append(box);
  }
  const heading = page.querySelector('h1');
  if (heading) heading.focus();
  window.scrollTo(0, 0);
}

const pageHeading = (text) => h('h1', { tabindex: '-1', text });

/* ------------------------------------------------------------------------------------------------ */
/* Library page: summary, import a folder, upload photos, browse photos by month                     */
/* ------------------------------------------------------------------------------------------------ */

function renderLibrary(ctx, page) {
  page.append(pageHeading('Library'));
  const summary = librarySummary();
  const browser = photoBrowser(ctx);
  const refresh = async () => {
    try {
      const library = await api('/v1/library', { signal: ctx.signal });
      summary.show(library);
      browser.setFilters(library);
    } catch (e) {
      if (!isQuiet(e)) summary.fail(e);
    }
    browser.reload();
  };
  page.append(summary.node, importSection(ctx, refresh), uploadSection(ctx, refresh), browser.node);
  refresh();
}

/** The counts of the library. */
function librarySummary() {
  const list = h('dl', { class: 'stats' });
  const error = alertBox('library-error');
  const empty = h('p', { class: 'hint', hidden: true, text: 'Your library is empty. Import a folder or upload photos to begin.' });
  const node = h('section', { class: 'panel', 'aria-labelledby': 'summary-title' }, h('h2', { id: 'summary-title', text: 'Summary' }), list, empty, error);
  const row = (term, value) => [h('div', {}, h('dt', { text: term }), h('dd', { text: value }))];
  return {
    node,
    show(library) {
      showError(error, null);
      const lib = library || {};
      const albums = Array.isArray(lib.albums) ? lib.albums : [];
      const places = Array.isArray(lib.places) ? lib.places : [];
      const people = Array.isArray(lib.people) ? lib.people : [];
      const light = lib.light && typeof lib.light === 'object' ? Object.entries(lib.light) : [];
      const items = [row('Photos', String(lib.photos || 0))];
      if (lib.first_capture || lib.last_capture) {
        items.push(row('Taken', [lib.first_capture, lib.last_capture].filter(Boolean).map(formatDate).join(' – ')));
      }
      items.push(row('Albums', String(albums.length)), row('Places', String(places.length)));
      items.push(row('People', people.length ? `${people.length}: ${people.join(', ')}` : '0'));
      if (light.length) items.push(row('Light', light.map(([k, v]) => `${k} ${v}`).join(', ')));
      list.replaceChildren(...items.flat());
      empty.hidden = Boolean(lib.photos);
    },
    fail(e) {
      showError(error, e);
    },
  };
}

/** "Import a folder": POST /v1/imports, then poll its status every 500 ms until it is finished. */
function importSection(ctx, refresh) {
  const roots = app.me.import_roots;
  const input = h('input', { id: 'import-path', type: 'text', name: 'path', value: roots[0] || '', autocomplete: 'off', spellcheck: 'false', required: true });
  const button = h('button', { id: 'import-start', type: 'submit', text: 'Import' });
  const progress = h('progress', { id: 'import-progress', max: '1', hidden: true, 'aria-label': 'Import progress' });
  const status = h('p', { id: 'import-status', class: 'status', role: 'status', 'aria-live': 'polite' });
  const error = alertBox('import-error');
  const report = h('div', { id: 'import-report', class: 'report' });
  const hint = roots.length ? `Folders the server may import from: ${roots.join(', ')}` : 'The server names no folders it may import from.';

  const show = (st) => {
    const done = Number(st.done) || 0;
    const total = Number(st.total) || 0;
    progress.hidden = false;
    if (st.state !== 'running') {
      progress.max = 1;
      progress.value = 1;
    } else if (total > 0) {
      progress.max = total;
      progress.value = Math.min(done, total);
    } else progress.removeAttribute('value');
    status.textContent = importPhaseText(st);
  };

  const follow = async (first) => {
    let st = first;
    while (st.state === 'running') {
      show(st);
      await ctx.sleep(500);
      st = await api(`/v1/imports/${enc(st.id)}`, { signal: ctx.signal });
    }
    show(st);
    store.remove(IMPORT_KEY);
    if (st.state === 'failed') showError(error, st.error || 'The import failed.');
    showImportReport(report, st);
    refresh();
  };

  const run = async (work) => {
    button.disabled = true;
    showError(error, null);
    try {
      await work();
    } catch (e) {
      if (isQuiet(e)) return;
      store.remove(IMPORT_KEY);
      showError(error, e);
      progress.hidden = true;
      status.textContent = 'The import did not finish.';
    } finally {
      button.disabled = false;
    }
  };

  const form = h(
    'form',
    {
      class: 'panel',
      'aria-labelledby': 'import-title',
      onsubmit: (event) => {
        event.preventDefault();
        const path = input.value.trim();
        if (!path) {
          showError(error, 'Name a folder on the server first.');
          input.focus();
          return;
        }
        report.replaceChildren();
        status.textContent = 'Starting the import…';
        run(async () => {
          const st = await sendJson('POST', '/v1/imports', { path }, { signal: ctx.signal });
          if (st && st.id) store.set(IMPORT_KEY, st.id);
          await follow(st);
        });
      },
    },
    h('h2', { id: 'import-title', text: 'Import a folder' }),
    h('div', { class: 'inline' }, field('Folder on the server', input, hint), button),
    h('div', { class: 'import-live' }, progress, status),
    error,
    report,
  );

  // An import started earlier in this session is still followed after leaving the page.
  const pending = store.get(IMPORT_KEY);
  if (pending) {
    status.textContent = 'Checking the import started earlier…';
    run(async () => follow(await api(`/v1/imports/${enc(pending)}`, { signal: ctx.signal })));
  }
  return form;
}

function importPhaseText(st) {
  const done = Number(st.done) || 0;
  const total = Number(st.total) || 0;
  if (st.state === 'failed') return 'The import failed.';
  if (st.state === 'done' || st.phase === 'done') return 'Import finished.';
  if (st.phase === 'analyse') return total ? `Finding faces and people: ${done} of ${total}` : 'Finding faces and people…';
  return total ? `Importing photos: ${done} of ${total}` : 'Looking for photos…';
}

function showImportReport(node, st) {
  const r = (st && st.report) || {};
  const skipped = Array.isArray(r.skipped) ? r.skipped : [];
  const counts = h(
    'ul',
    { class: 'report-counts' },
    h('li', { text: `Imported: ${Number(r.imported) || 0}` }),
    h('li', { text: `Already present: ${Number(r.already_present) || 0}` }),
    h('li', { text: `Skipped: ${skipped.length}` }),
    typeof st.people === 'number' && h('li', { text: `People: ${st.people}` }),
  );
  const list = skipped.length
    ? h(
        'details',
        { open: skipped.length <= 10 },
        h('summary', { text: 'Skipped files and why' }),
        h('ul', { class: 'skipped' }, skipped.map((s) => h('li', {}, h('span', { class: 'file', text: s.file }), ` — ${skipReason(s.reason)}`))),
      )
    : null;
  node.replaceChildren(h('h3', { text: 'Import report' }), counts, list);
}

/** Upload photos: POST /v1/uploads?name=… with the raw bytes, one file after another. */
function uploadSection(ctx, refresh) {
  const max = app.me.max_upload_bytes;
  const input = h('input', { id: 'upload-file', type: 'file', accept: 'image/*', multiple: true });
  const status = statusLine('upload-status');
  const error = alertBox('upload-error');
  const results = h('ul', { class: 'upload-results' });

  const upload = async (files) => {
    input.disabled = true;
    showError(error, null);
    results.replaceChildren();
    const problems = [];
    let added = 0;
    for (const [i, file] of files.entries()) {
      status.textContent = `Uploading ${i + 1} of ${files.length}: ${file.name}`;
      if (max && file.size > max) {
        problems.push(`${file.name}: ${formatBytes(file.size)} is more than the server takes (${formatBytes(max)}).`);
        continue;
      }
      try {
        const st = await api(`/v1/uploads?name=${enc(file.name)}`, {
          method: 'POST',
          body: file,
          headers: { 'Content-Type': file.type || 'application/octet-stream' },
          signal: ctx.signal,
          retry: false,
        });
        const outcome = uploadOutcome(st);
        if (outcome.problem) problems.push(`${file.name}: ${outcome.text}`);
        else results.append(h('li', {}, h('span', { class: 'file', text: file.name }), ` — ${outcome.text}`));
        if (outcome.added) added += 1;
      } catch (e) {
        if (isQuiet(e)) return;
        problems.push(`${file.name}: ${messageOf(e)}`);
      }
    }
    status.textContent = `Uploaded ${plural(files.length - problems.length, 'file')}: ${added} new${problems.length ? `, ${problems.length} not added` : ''}.`;
    if (problems.length) showError(error, new ApiError(0, problems.map((message) => ({ code: '', message, suggestions: [] }))));
    input.value = '';
    input.disabled = false;
    if (added) refresh();
  };

  input.addEventListener('change', () => {
    const files = Array.from(input.files || []);
    if (files.length) upload(files);
  });
  return h(
    'section',
    { class: 'panel', 'aria-labelledby': 'upload-title' },
    h('h2', { id: 'upload-title', text: 'Upload photos' }),
    field('Photos to upload', input, max ? `JPEG, PNG and other images, up to ${formatBytes(max)} each.` : null),
    status,
    error,
    results,
  );
}

function uploadOutcome(st) {
  const r = (st && st.report) || {};
  const skipped = Array.isArray(r.skipped) ? r.skipped : [];
  if (st && st.state === 'failed') return { problem: true, text: st.error || 'the upload failed' };
  if (Number(r.imported) > 0) return { added: true, text: 'added' };
  if (Number(r.already_present) > 0) return { text: 'already in your library' };
  if (skipped.length) return { problem: true, text: `skipped: ${skipped.map((s) => skipReason(s.reason)).join('; ')}` };
  return { text: 'done' };
}

/** Filters and the photo grid, grouped by month, paged with "Load more". */
function photoBrowser(ctx) {
  const album = h('select', { id: 'filter-album', name: 'album' }, h('option', { value: '', text: 'All albums' }));
  const place = h('select', { id: 'filter-place', name: 'place' }, h('option', { value: '', text: 'All places' }));
  const light = h('select', { id: 'filter-light', name: 'light' }, h('option', { value: '', text: 'Any light' }));
  const count = statusLine('photo-count');
  const error = alertBox('photo-error');
  const grid = h('div', { id: 'photo-grid', class: 'photo-grid' });
  const more = h('button', { id: 'load-more', type: 'button', class: 'secondary', text: 'Load more', hidden: true });
  let offset = 0;
  let total = 0;
  let generation = 0;
  const groups = new Map();

  const groupFor = (captured) => {
    const month = monthOf(captured);
    let group = groups.get(month.key);
    if (!group) {
      const headingId = nextId('month');
      group = { list: h('div', { class: 'thumb-grid' }) };
      group.section = h('section', { class: 'month', dataset: { month: month.key }, 'aria-labelledby': headingId }, h('h3', { id: headingId, text: month.label }), group.list);
      groups.set(month.key, group);
      grid.append(group.section);
    }
    return group;
  };

  const addPhotos = (photos) => {
    for (const photo of photos) groupFor(photo.captured).list.append(photoFigure(ctx, photo));
    if (groups.has('undated')) grid.append(groups.get('undated').section); // undated photos always last
  };

  const loadPage = async () => {
    const mine = generation;
    more.disabled = true;
    const params = new URLSearchParams();
    if (album.value) params.set('album', album.value);
    if (place.value) params.set('place', place.value);
    if (light.value) params.set('light', light.value);
    params.set('offset', String(offset));
    params.set('limit', String(PAGE_SIZE));
    try {
      const answer = await api(`/v1/photos?${params}`, { signal: ctx.signal });
      if (mine !== generation) return;
      const photos = Array.isArray(answer && answer.photos) ? answer.photos : [];
      total = Number(answer && answer.total) || 0;
      addPhotos(photos);
      offset += photos.length;
      showError(error, null);
      count.textContent = total ? `Showing ${offset} of ${plural(total, 'photo')}.` : 'No photos match.';
      more.hidden = offset >= total || !photos.length;
    } catch (e) {
      if (!isQuiet(e) && mine === generation) showError(error, e);
    } finally {
      more.disabled = false;
    }
  };

  const reload = () => {
    generation += 1;
    offset = 0;
    groups.clear();
    grid.replaceChildren();
    more.hidden = true;
    count.textContent = 'Loading photos…';
    loadPage();
  };

  for (const select of [album, place, light]) select.addEventListener('change', reload);
  more.addEventListener('click', loadPage);

  const fillSelect = (select, allLabel, options) => {
    const current = select.value;
    select.replaceChildren(h('option', { value: '', text: allLabel }), ...options.map((o) => h('option', { value: o.value, text: o.label })));
    select.value = options.some((o) => o.value === current) ? current : '';
  };

  return {
    node: h(
      'section',
      { class: 'photos', 'aria-labelledby': 'photos-title' },
      h('h2', { id: 'photos-title', text: 'Photos' }),
      h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter photos', onsubmit: (e) => e.preventDefault() },
        field('Album', album), field('Place', place), field('Light', light)),
      count,
      error,
      grid,
      more,
    ),
    reload,
    setFilters(library) {
      const lib = library || {};
      fillSelect(album, 'All albums', (lib.albums || []).map((a) => ({ value: String(a.name), label: `${a.name} (${a.photos})` })));
      fillSelect(place, 'All places', (lib.places || []).map((p) => ({ value: String(p.name), label: `${p.label || p.name} (${p.photos})` })));
      fillSelect(light, 'Any light', Object.entries(lib.light || {}).map(([k, v]) => ({ value: String(k), label: `${k} (${v})` })));
    },
  };
}

function photoFigure(ctx, photo) {
  const name = String(photo.name || 'Photo');
  const img = h('img', { class: 'thumb', alt: name, width: '256', height: '256', decoding: 'async' });
  ctx.lazyImage(img, thumbPath(photo.id, 256));
  const details = [photo.captured ? formatDate(photo.captured) : 'Undated', photo.place_label || photo.place].filter(Boolean).join(' · ');
  return h(
    'figure',
    { class: 'photo', dataset: { photoId: String(photo.id) } },
    img,
    h('figcaption', {}, h('span', { class: 'name', text: name }), h('span', { class: 'meta', text: details })),
  );
}

/* ------------------------------------------------------------------------------------------------ */
/* People page: name people, mark yourself, merge and split                                          */
/* ------------------------------------------------------------------------------------------------ */

const personLabel = (person) => (person.name ? String(person.name) : `Unnamed person #${person.id}`);

function renderPeople(ctx, page) {
  const status = statusLine('people-status');
  const error = alertBox('people-error');
  const list = h('div', { id: 'people-list', class: 'people-grid' });
  page.append(
    pageHeading('People'),
    h('p', { class: 'intro', text: 'Reverie groups the faces in your photos into people. Name them so prompts can say “Anna”, mark which one is you, and fix its mistakes.' }),
    status,
    error,
    list,
  );
  let people = [];

  const render = () => {
    list.replaceChildren(...people.map((person) => personCard(ctx, person, people, ui)));
    if (!people.length) list.append(h('p', { text: 'No people yet. Import photos with faces and Reverie will group them.' }));
  };

  const reload = async (message, focusSelector) => {
    try {
      const answer = await api('/v1/people', { signal: ctx.signal });
      people = Array.isArray(answer) ? answer : [];
      render();
      if (message) status.textContent = message;
      const target = focusSelector && list.querySelector(focusSelector);
      if (target) target.focus();
      else if (focusSelector) page.querySelector('h1').focus();
    } catch (e) {
      if (!isQuiet(e)) showError(error, e);
    }
  };

  const ui = {
    /** Runs an action, then re-fetches the people and says what happened. */
    async act(work, describe, focusSelector) {
      showError(error, null);
      status.textContent = 'Saving…';
      try {
        const result = await work();
        await reload(describe(result), focusSelector);
      } catch (e) {
        if (isQuiet(e)) return;
        status.textContent = '';
        showError(error, e);
      }
    },
    fail(message) {
      showError(error, message);
    },
    labelOf(id) {
      const person = people.find((p) => String(p.id) === String(id));
      return person ? personLabel(person) : `person #${id}`;
    },
  };
  reload();
}

function personCard(ctx, person, everyone, ui) {
  const id = person.id;
  const label = personLabel(person);
  const inCard = (selector) => `.person-card[data-person-id="${CSS.escape(String(id))}"] ${selector}`;
  const headingId = nextId('person');
  const face = h('img', { class: 'face', alt: `Face of ${label}`, width: '128', height: '128' });
  const rep = person.representative;
  if (rep && rep.photo_id) ctx.lazyImage(face, facePath(rep.photo_id, rep.box, 128));

  const nameInput = h('input', { class: 'person-name', type: 'text', id: `person-name-${id}`, value: person.name || '', autocomplete: 'off', maxlength: '200' });
  const nameForm = h(
    'form',
    {
      class: 'person-name-form inline',
      onsubmit: (event) => {
        event.preventDefault();
        const name = nameInput.value.trim();
        if (!name) {
          ui.fail(`Type a name for ${label} first.`);
          nameInput.focus();
          return;
        }
        ui.act(() => sendJson('PUT', `/v1/people/${enc(id)}/name`, { name }), () => `Saved the name “${name}”.`, inCard('.person-name'));
      },
    },
    h('div', { class: 'field' }, h('label', { for: nameInput.id, text: 'Name' }), nameInput),
    h('button', { class: 'person-save', type: 'submit', text: 'Save' }),
  );

  const me = h('button', {
    class: 'person-me secondary',
    type: 'button',
    'aria-pressed': String(Boolean(person.is_me)),
    text: 'This is me',
    onclick: () => ui.act(() => sendJson('PUT', `/v1/people/${enc(id)}/name`, { name: 'me' }), () => `Marked ${label} as you.`, inCard('.person-me')),
  });

  const others = everyone.filter((p) => p.id !== id);
  const target = h(
    'select',
    { class: 'person-merge-target', id: `person-merge-target-${id}` },
    h('option', { value: '', text: others.length ? 'Choose a person' : 'No one else yet' }),
    others.map((p) => h('option', { value: String(p.id), text: personLabel(p) })),
  );
  const merge = h('button', {
    class: 'person-merge secondary',
    type: 'button',
    text: 'Merge',
    disabled: !others.length,
    onclick: () => {
      if (!target.value) {
        ui.fail(`Choose who ${label} should be merged into.`);
        target.focus();
        return;
      }
      const into = target.value;
      const intoLabel = ui.labelOf(into);
      ui.act(
        () => sendJson('POST', `/v1/people/${enc(into)}/merge`, { from: id }),
        () => `Merged ${label} into ${intoLabel}.`,
        `.person-card[data-person-id="${CSS.escape(into)}"] .person-merge-target`,
      );
    },
  });

  const faces = Array.isArray(person.faces) ? person.faces : [];
  const picks = faces.map((f, i) => {
    const box = h('input', { type: 'checkbox', class: 'face-pick', id: `face-${id}-${i}` });
    const img = h('img', { class: 'face-thumb', alt: `Face in ${f.photo || 'a photo'}`, width: '96', height: '96' });
    ctx.lazyImage(img, facePath(f.photo_id, f.box, 128));
    const item = h('li', {}, h('label', { for: box.id, class: 'face-choice' }, box, img, h('span', { class: 'file', text: f.photo || '' })));
    return { box, face: f, item };
  });
  const split = h('button', {
    class: 'person-split secondary',
    type: 'button',
    text: 'Split selected into a new person',
    onclick: () => {
      const chosen = picks.filter((p) => p.box.checked).map((p) => ({ photo_id: p.face.photo_id, box: p.face.box }));
      if (!chosen.length) {
        ui.fail(`Tick the faces that are not ${label} first.`);
        return;
      }
      ui.act(
        () => sendJson('POST', `/v1/people/${enc(id)}/split`, { faces: chosen }),
        (r) => `Moved ${plural(chosen.length, 'face')} into a new person${r && r.new !== undefined ? ` (#${r.new})` : ''}.`,
        inCard('summary'),
      );
    },
  });

  return h(
    'article',
    { class: 'person-card', dataset: { personId: String(id) }, 'aria-labelledby': headingId },
    face,
    h('h2', { id: headingId }, person.name ? String(person.name) : 'Unnamed', person.is_me ? [' ', h('span', { class: 'badge', text: '(me)' })] : null),
    h('p', { class: 'meta', text: plural(person.face_count, 'face') }),
    nameForm,
    me,
    h('div', { class: 'inline merge-row' }, h('div', { class: 'field' }, h('label', { for: target.id, text: 'Merge into…' }), target), merge),
    h(
      'details',
      { class: 'faces' },
      h('summary', { text: `Faces (${faces.length})` }),
      faces.length ? h('ul', { class: 'face-grid' }, picks.map((p) => p.item)) : h('p', { text: 'No faces listed.' }),
      faces.length ? split : null,
    ),
  );
}

/* ------------------------------------------------------------------------------------------------ */
/* Create page: prompt with live resolution, style, variants; follows each request live              */
/* ------------------------------------------------------------------------------------------------ */

function renderCreate(ctx, page) {
  const prompt = h('textarea', { id: 'prompt', name: 'prompt', rows: '3', maxlength: '2000', required: true, placeholder: 'me at sunset in Honolulu' });
  const resolution = h('ul', { id: 'resolution', class: 'chips', 'aria-label': 'What Reverie understood' });
  const understood = h('p', { id: 'resolution-status', class: 'visually-hidden', role: 'status', 'aria-live': 'polite' });
  const style = h('select', { id: 'style', name: 'style' }, h('option', { value: '', text: 'From the prompt' }));
  const styleHint = h('p', { class: 'hint', id: 'style-description' });
  style.setAttribute('aria-describedby', styleHint.id);
  const variants = h('input', { id: 'variants', name: 'variants', type: 'number', min: '1', max: '4', step: '1', value: '1', inputmode: 'numeric' });
  const generate = h('button', { id: 'generate', type: 'submit', text: 'Generate' });
  const error = alertBox('create-error');
  const cards = h('div', { id: 'generation-cards', class: 'cards' });
  const session = h('section', { class: 'session', 'aria-labelledby': 'session-title', hidden: true }, h('h2', { id: 'session-title', text: 'Made on this visit' }), cards);

  const replaceInPrompt = (from, to) => {
    const value = prompt.value;
    let index = value.indexOf(from);
    if (index < 0) index = value.toLowerCase().indexOf(String(from).toLowerCase());
    if (index < 0) return;
    prompt.value = value.slice(0, index) + to + value.slice(index + from.length);
    prompt.focus();
    prompt.setSelectionRange(index + to.length, index + to.length);
    resolveSoon.now();
  };

  // What the prompt refers to, 300 ms after the last keystroke.
  let inflight = null;
  let asked = 0;
  const resolveNow = async () => {
    const text = prompt.value;
    const mine = ++asked;
    if (inflight) inflight.abort();
    if (!text.trim()) {
      resolution.replaceChildren();
      understood.textContent = '';
      return;
    }
    inflight = ctx.child();
    try {
      const [answer, people] = await Promise.all([
        sendJson('POST', '/v1/resolve', { prompt: text }, { signal: inflight.signal, retry: false }),
        ctx.memo('people', () => api('/v1/people', { signal: ctx.signal })).catch(() => []),
      ]);
      if (mine !== asked) return;
      renderResolution(ctx, resolution, understood, answer, people, replaceInPrompt);
    } catch (e) {
      if (isQuiet(e) || mine !== asked) return;
      resolution.replaceChildren(h('li', { class: 'chip warning', text: `The prompt could not be checked: ${messageOf(e)}` }));
    }
  };
  const resolveSoon = ctx.debounce(resolveNow, 300);
  prompt.addEventListener('input', resolveSoon);

  loadStyles().then(
    (styles) => {
      if (!ctx.alive) return;
      style.append(...styleOptions(styles));
      style.addEventListener('change', () => {
        const chosen = styles.find((s) => String(s.name) === style.value);
        styleHint.textContent = chosen ? styleHintOf(chosen) : 'The prompt’s own words choose the style.';
      });
      styleHint.textContent = 'The prompt’s own words choose the style.';
    },
    (e) => {
      if (!isQuiet(e)) styleHint.textContent = `Styles could not be loaded: ${messageOf(e)}`;
    },
  );

  const submit = async (event) => {
    event.preventDefault();
    showError(error, null);
    const text = prompt.value;
    const n = Number(variants.value);
    if (!text.trim()) {
      showError(error, 'Write what Reverie should make first.');
      prompt.focus();
      return;
    }
    if (!Number.isInteger(n) || n < 1 || n > 4) {
      showError(error, 'Variants must be a whole number from 1 to 4.');
      variants.focus();
      return;
    }
    const body = { schema_version: 1, tenant: app.me.tenant, prompt: text, n, priority: 'interactive', kind: 'generate' };
    if (style.value) body.style = style.value;
    const key = randomKey('web');
    generate.disabled = true;
    generate.textContent = 'Submitting…';
    try {
      // The idempotency key makes a retry after a network error safe: it cannot make a second request.
      const reply = await sendJson('POST', '/v1/generations', body, { signal: ctx.signal, retry: true, headers: { 'Idempotency-Key': key } });
      if (replyType(reply) === 'rejected') throw new ApiError(422, (reply.reasons || []).map(normaliseReason));
      const card = generationCard(ctx, {
        requestId: (reply && reply.request_id) || key,
        prompt: text,
        planLines: reply && reply.plan,
        jobCount: reply && Array.isArray(reply.jobs) ? reply.jobs.length : n,
      });
      if (reply && reply.duplicate) card.note('This request was already submitted; following it.');
      cards.prepend(card.node);
      session.hidden = false;
      card.follow();
    } catch (e) {
      if (!isQuiet(e)) showRejection(error, e, replaceInPrompt);
    } finally {
      generate.disabled = false;
      generate.textContent = 'Generate';
    }
  };

  page.append(
    pageHeading('Create'),
    h(
      'form',
      { id: 'create-form', class: 'panel', onsubmit: submit },
      field('What should Reverie make?', prompt, 'Name people, places, albums and light: “me and Anna at sunset in Honolulu”.'),
      resolution,
      understood,
      h('div', { class: 'inline top' }, h('div', { class: 'field' }, h('label', { for: 'style', text: 'Style' }), style, styleHint), field('Variants', variants)),
      generate,
      error,
    ),
    session,
  );
}

/** The chips under the prompt: each resolved reference, the style, and what was not understood. */
function renderResolution(ctx, list, understood, answer, people, replaceInPrompt) {
  const references = Array.isArray(answer && answer.references) ? answer.references : [];
  const unresolved = Array.isArray(answer && answer.unresolved) ? answer.unresolved : [];
  const byId = new Map((Array.isArray(people) ? people : []).map((p) => [String(p.id), p]));
  const chips = references.map((ref) => referenceChip(ctx, ref, byId));
  for (const style of Array.isArray(answer && answer.styles) ? answer.styles : []) {
    chips.push(h('li', { class: 'chip' }, h('span', { class: 'chip-kind', text: 'style' }), h('span', { text: String(style) })));
  }
  for (const artist of Array.isArray(answer && answer.artists) ? answer.artists : []) {
    chips.push(h('li', { class: 'chip' }, h('span', { class: 'chip-kind', text: 'artist' }), h('span', { text: String(artist) })));
  }
  for (const pair of Array.isArray(answer && answer.corrections) ? answer.corrections : []) {
    if (!Array.isArray(pair) || pair.length < 2) continue;
    chips.push(h('li', { class: 'chip' }, h('span', { class: 'chip-kind', text: 'read as' }), h('span', { text: `${pair[0]} → ${pair[1]}` })));
  }
  for (const item of unresolved) {
    const text = String(item.text || '');
    const suggestions = Array.isArray(item.suggestions) ? item.suggestions.map(String) : [];
    chips.push(
      h(
        'li',
        { class: 'chip warning' },
        h('span', { class: 'chip-kind', text: String(item.kind || 'unknown') }),
        h('span', { text: item.message ? String(item.message) : `“${text}” is not in your library.` }),
        suggestions.map((s) =>
          h('button', { type: 'button', class: 'suggestion', text: `Did you mean: ${s}?`, 'aria-label': `Did you mean ${s}? Replaces “${text}” in the prompt.`, onclick: () => replaceInPrompt(text, s) }),
        ),
      ),
    );
  }
  list.replaceChildren(...chips);
  const parts = [];
  if (references.length) parts.push(`Understood ${plural(references.length, 'reference')}.`);
  if (unresolved.length) parts.push(`${plural(unresolved.length, 'word')} not recognised.`);
  understood.textContent = parts.join(' ');
}

function referenceChip(ctx, ref, peopleById) {
  const kind = String(ref.kind || 'reference');
  const text = String(ref.text || '');
  const resolved = String(ref.resolved || text);
  const photos = Array.isArray(ref.photos) ? ref.photos.map(String) : [];
  const images = [];
  let label;
  if (kind === 'person' || kind === 'pet') {
    label = `${text} → ${resolved}`;
    const img = h('img', { class: 'chip-face', alt: `Face of ${resolved}`, width: '40', height: '40' });
    const face = ref.face && ref.face.photo ? ref.face : null;
    if (face) {
      ctx.showImage(img, facePath(face.photo, face.box, 128));
      images.push(img);
    } else if (photos.length) {
      ctx.showImage(img, thumbPath(photos[0], 128));
      images.push(img);
    }
  } else if (kind === 'light') {
    label = `light → ${resolved}`;
  } else {
    label = photos.length ? `${resolved} (${plural(photos.length, 'photo')})` : resolved;
    photos.slice(0, 3).forEach((photo, i) => {
      const img = h('img', { class: 'chip-thumb', alt: `${resolved}, photo ${i + 1}`, width: '40', height: '40' });
      ctx.showImage(img, thumbPath(photo, 128));
      images.push(img);
    });
  }
  return h('li', { class: `chip chip-${kind.replace(/[^a-z0-9-]/gi, '')}` }, h('span', { class: 'chip-kind', text: kind }), images, h('span', { text: label }));
}

/** A rejection: every reason's message, its field, and its suggestions ("Did you mean" buttons). */
function showRejection(box, error, replaceInPrompt) {
  box.replaceChildren();
  const reasons = reasonsOf(error);
  const items = reasons.map((reason) => {
    const item = h('li', {}, h('span', { text: reason.message }));
    if (reason.field) item.append(h('span', { class: 'field-name', text: ` (${reason.field})` }));
    const quoted = /[“"']([^”"']+)[”"']/.exec(reason.message);
    if (reason.suggestions && reason.suggestions.length) {
      if (reason.code === 'unresolved_reference' && quoted) {
        item.append(' ', ...reason.suggestions.map((s) => h('button', { type: 'button', class: 'suggestion', text: `Did you mean: ${s}?`, onclick: () => replaceInPrompt(quoted[1], s) })));
      } else item.append(h('span', { text: ` Suggestions: ${reason.suggestions.join(', ')}.` }));
    }
    return item;
  });
  box.append(h('p', { text: reasons.length > 1 ? 'Reverie could not make this, for these reasons:' : 'Reverie could not make this:' }), h('ul', {}, items));
}

/* ------------------------------------------------------------------------------------------------ */
/* Results page: recent generations, their sources (with identity verdicts), swaps and refinement   */
/* ------------------------------------------------------------------------------------------------ */

function renderResults(ctx, page) {
  const status = statusLine('results-status');
  const error = alertBox('results-error');
  const list = h('div', { id: 'generation-list', class: 'cards' });
  const refresh = h('button', { id: 'results-refresh', type: 'button', class: 'secondary', text: 'Refresh' });

  const load = async () => {
    refresh.disabled = true;
    status.textContent = 'Loading…';
    try {
      const answer = await api('/v1/generations?limit=30', { signal: ctx.signal });
      const generations = Array.isArray(answer) ? answer : [];
      list.replaceChildren(...generations.map((g) => resultCard(ctx, { status: g }, status).node));
      showError(error, null);
      status.textContent = generations.length ? `${plural(generations.length, 'generation')}.` : 'Nothing made yet. Start on the Create page.';
    } catch (e) {
      if (!isQuiet(e)) {
        showError(error, e);
        status.textContent = '';
      }
    } finally {
      refresh.disabled = false;
    }
  };
  refresh.addEventListener('click', load);
  page.append(pageHeading('Results'), h('div', { class: 'inline' }, status, refresh), error, list);
  load();
}

const promptOfStatus = (status) => {
  const run = status && status.plan && status.plan.album_run;
  if (status && status.prompt) return String(status.prompt);
  if (run) return `Album “${run.album}” in ${status.plan.style || 'a style'}`;
  return 'Untitled';
};

/** A generation card with a "Sources" panel; follows the generation while it runs. */
function resultCard(ctx, { status, requestId, prompt, reply }, announce) {
  const card = status
    ? generationCard(ctx, { requestId: status.request_id, prompt: promptOfStatus(status), status, planOpen: false })
    : generationCard(ctx, { requestId, prompt, planLines: reply && reply.plan, jobCount: reply && Array.isArray(reply.jobs) ? reply.jobs.length : 1 });
  const panelId = nextId('sources');
  const toggle = h('button', { type: 'button', class: 'sources-toggle secondary', 'aria-expanded': 'false', 'aria-controls': panelId, text: 'Sources' });
  const panel = h('div', { class: 'sources', id: panelId, hidden: true });
  let built = false;
  toggle.addEventListener('click', () => {
    const open = panel.hidden;
    panel.hidden = !open;
    toggle.setAttribute('aria-expanded', String(open));
    if (open && !built) {
      built = true;
      buildSources(ctx, panel, card, announce);
    }
  });
  card.actions.append(toggle);
  card.node.append(panel);
  if (!status || !FINAL_STATES.has(status.state)) card.follow();
  return card;
}

/** The Sources panel: the plan's reference photos, identity verdicts, swaps and the Refine form. */
async function buildSources(ctx, panel, card, announce) {
  panel.append(h('h3', { text: 'Sources' }));
  const loading = h('p', { class: 'hint', text: 'Loading…' });
  panel.append(loading);
  let status = card.latest();
  try {
    if (!status || !status.plan) status = await api(generationPath(card.requestId), { signal: ctx.signal });
  } catch (e) {
    if (isQuiet(e)) return;
    loading.remove();
    const box = alertBox(nextId('sources-error'));
    showError(box, e);
    panel.append(box);
    return;
  }
  loading.remove();
  const plan = status.plan || {};
  const refs = Array.isArray(plan.references) ? plan.references : [];
  const isAlbum = Boolean(plan.album_run);
  const shownRefs = isAlbum ? refs.slice(0, 60) : refs;
  const swaps = new Map(); // photo id -> its "Swap…" select
  const verdictSlots = []; // { label, node }

  const list = h('ul', { class: 'source-list' });
  for (const ref of shownRefs) {
    const item = sourceItem(ctx, ref, !isAlbum && !swaps.has(String(ref.photo)));
    if (item.swap) swaps.set(String(ref.photo), item.swap);
    verdictSlots.push({ label: ref.label ? String(ref.label) : '', node: item.verdicts });
    list.append(item.node);
  }
  if (!refs.length) panel.append(h('p', { text: 'Made from the prompt alone: no photos were used.' }));
  else panel.append(list);
  if (refs.length > shownRefs.length) panel.append(h('p', { class: 'hint', text: `…and ${refs.length - shownRefs.length} more photos.` }));

  const identity = h('div', { class: 'identity-check' });
  panel.append(identity);
  showIdentity(ctx, status, identity, verdictSlots);

  if (isAlbum) panel.append(h('p', { class: 'hint', text: 'Album runs are not refined; run the album again on the Albums page with another style.' }));
  else panel.append(refineForm(ctx, card, status, swaps, announce));
}

function sourceItem(ctx, ref, withSwap) {
  const role = String(ref.role || 'reference');
  const label = ref.label ? String(ref.label) : '';
  const img = h('img', { class: 'source-thumb', alt: `${role} photo${label ? ` of ${label}` : ''}`, width: '128', height: '128' });
  ctx.lazyImage(img, thumbPath(ref.photo, 256));
  const verdicts = h('ul', { class: 'verdicts' });
  const node = h(
    'li',
    { class: 'source', dataset: { photoId: String(ref.photo) } },
    img,
    h(
      'div',
      { class: 'source-text' },
      h('p', {}, h('span', { class: 'badge', text: role }), label ? ` ${label}` : ''),
      ref.face_box ? h('p', { class: 'meta', text: `Face box ${ref.face_box.join(', ')}` }) : null,
      verdicts,
    ),
  );
  if (!withSwap) return { node, verdicts };
  const swap = h('select', { class: 'swap-with', id: nextId('swap') }, h('option', { value: '', text: 'Keep this photo' }));
  const swapPreview = h('img', { class: 'swap-preview', alt: '', hidden: true, width: '64', height: '64' });
  swap.addEventListener('focus', () => fillSwapOptions(ctx, swap, String(ref.photo)), { once: true });
  swap.addEventListener('change', () => {
    if (!swap.value) {
      swapPreview.hidden = true;
      return;
    }
    swapPreview.alt = `Replacement: ${swap.selectedOptions[0].textContent}`;
    swapPreview.hidden = false;
    ctx.showImage(swapPreview, thumbPath(swap.value, 128));
  });
  node.querySelector('.source-text').append(h('div', { class: 'field swap' }, h('label', { for: swap.id, text: 'Swap…' }), swap, swapPreview));
  fillSwapOptions(ctx, swap, String(ref.photo));
  return { node, verdicts, swap };
}

/** Other library photos to swap a source with (the first 100, newest first). */
function fillSwapOptions(ctx, select, current) {
  if (select.dataset.filled) return;
  select.dataset.filled = 'pending';
  ctx
    .memo('swap-photos', () => api('/v1/photos?offset=0&limit=100', { signal: ctx.signal }))
    .then((answer) => {
      const photos = Array.isArray(answer && answer.photos) ? answer.photos : [];
      select.append(
        ...photos
          .filter((p) => String(p.id) !== current)
          .map((p) => h('option', { value: String(p.id), text: [p.name, p.captured ? formatDate(p.captured) : '', p.place_label || ''].filter(Boolean).join(' · ') })),
      );
      select.dataset.filled = 'yes';
    })
    .catch((e) => {
      select.dataset.filled = '';
      if (!isQuiet(e)) select.append(h('option', { value: '', disabled: true, text: `Photos could not be loaded: ${messageOf(e)}` }));
    });
}

/** The identity check of every output, from the provenance JSON beside each image. */
async function showIdentity(ctx, status, node, verdictSlots) {
  const outputs = (status.jobs || []).flatMap((job) => (job.outputs || []).filter((k) => /\.png$/i.test(k)).map((key) => ({ job, key })));
  if (!outputs.length) return;
  node.append(h('h4', { text: 'Identity check' }));
  const list = h('ul', {});
  node.append(list);
  for (const { job, key } of outputs) {
    const variant = `Variant ${Number(job.index) + 1}`;
    const line = h('li', { text: `${variant}: checking…` });
    list.append(line);
    try {
      const provenance = await api(outputPath(key.replace(/\.png$/i, '.json')), { signal: ctx.signal });
      const identity = provenance && provenance.identity;
      const text = identityText(identity);
      line.textContent = `${variant}: ${text || 'no people to check'}`;
      for (const person of (identity && Array.isArray(identity.people) ? identity.people : [])) {
        for (const slot of verdictSlots) {
          if (slot.label && slot.label === String(person.person) && !slot.node.dataset[`v${job.index}`]) {
            slot.node.dataset[`v${job.index}`] = 'shown';
            slot.node.append(h('li', { class: `verdict verdict-${person.verdict}`, text: `${outputs.length > 1 ? `${variant} — ` : ''}${personVerdict(person)}` }));
            break; // one line per person and variant, on its first reference
          }
        }
      }
    } catch (e) {
      if (isQuiet(e)) return;
      line.textContent = `${variant}: no provenance record (${messageOf(e)})`;
    }
  }
}

/** "Refine": a child request with a new prompt and the chosen swaps; followed like Create does. */
function refineForm(ctx, card, status, swaps, announce) {
  const textarea = h('textarea', { class: 'refine-prompt', id: nextId('refine'), rows: '2', maxlength: '2000' });
  textarea.value = String(status.prompt || '');
  const button = h('button', { type: 'submit', class: 'refine', text: 'Refine' });
  const error = h('div', { class: 'alert refine-error', role: 'alert' });
  const form = h(
    'form',
    { class: 'refine-form' },
    field('New prompt', textarea, 'Keeps the seeds and photos unless the new words or a swap change them.'),
    button,
    error,
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    showError(error, null);
    const text = textarea.value;
    if (!text.trim()) {
      showError(error, 'Write the new prompt first.');
      textarea.focus();
      return;
    }
    const parent = card.requestId;
    const body = { schema_version: 1, tenant: app.me.tenant, prompt: text, n: 1, priority: 'interactive', kind: 'generate', refine_of: parent };
    const replace = Array.from(swaps.entries())
      .filter(([, select]) => select.value)
      .map(([photo, select]) => ({ photo, with: select.value }));
    if (replace.length) body.replace_sources = replace;
    const key = randomKey('refine');
    button.disabled = true;
    try {
      const reply = await sendJson('POST', `${generationPath(parent)}/refine`, body, { signal: ctx.signal, retry: true, headers: { 'Idempotency-Key': key } });
      if (replyType(reply) === 'rejected') throw new ApiError(422, (reply.reasons || []).map(normaliseReason));
      const child = resultCard(ctx, { requestId: (reply && reply.request_id) || key, prompt: text, reply }, announce);
      if (reply && reply.duplicate) child.note('This refinement was already submitted; following it.');
      child.note(`A refinement of ${parent}.`);
      card.node.after(child.node);
      if (announce) announce.textContent = 'The refinement started; it is shown below the picture it refines.';
      child.heading.focus();
    } catch (e) {
      if (!isQuiet(e)) showRejection(error, e, (from, to) => {
        textarea.value = textarea.value.replace(from, to);
        textarea.focus();
      });
    } finally {
      button.disabled = false;
    }
  });
  return form;
}

/* ------------------------------------------------------------------------------------------------ */
/* Albums page: an album in a style; "Run again to resume"                                          */
/* ------------------------------------------------------------------------------------------------ */

function renderAlbums(ctx, page) {
  const album = h('select', { id: 'album-name', name: 'album' });
  const style = h('select', { id: 'album-style', name: 'style' });
  const to = h('input', { id: 'album-to', name: 'to', type: 'text', maxlength: '200', autocomplete: 'off' });
  const limit = h('input', { id: 'album-limit', name: 'limit', type: 'number', min: '1', max: '1000', step: '1', value: '50', inputmode: 'numeric' });
  const start = h('button', { id: 'album-start', type: 'submit', text: 'Start', disabled: true });
  const error = alertBox('album-error');
  const run = albumRunView(ctx);
  let albums = [];
  let toEdited = false;
  let limitEdited = false;

  const defaults = () => {
    if (!toEdited && album.value && style.value) to.value = `${album.value} in ${style.value}`;
    const chosen = albums.find((a) => String(a.name) === album.value);
    if (!limitEdited && chosen) limit.value = String(Math.min(1000, Math.max(1, Number(chosen.photos) || 1)));
  };
  album.addEventListener('change', defaults);
  style.addEventListener('change', defaults);
  to.addEventListener('input', () => {
    toEdited = to.value.trim() !== '';
  });
  limit.addEventListener('input', () => {
    limitEdited = true;
  });

  const submit = async (event) => {
    event.preventDefault();
    showError(error, null);
    const n = Number(limit.value);
    const destination = to.value.trim() || `${album.value} in ${style.value}`;
    if (!album.value || !style.value) return showError(error, 'Choose an album and a style first.');
    if (!Number.isInteger(n) || n < 1 || n > 1000) {
      limit.focus();
      return showError(error, 'The number of photos must be a whole number from 1 to 1000.');
    }
    const spec = { album: album.value, style: style.value, limit: n, to: destination };
    const key = albumRunKey(app.me.tenant, spec.album, spec.style, spec.to);
    start.disabled = true;
    try {
      const reply = await sendJson(
        'POST',
        '/v1/generations',
        { schema_version: 1, tenant: app.me.tenant, prompt: '', n: 1, priority: 'batch', kind: 'album_to_art', album_to_art: spec },
        { signal: ctx.signal, retry: true, headers: { 'Idempotency-Key': key } },
      );
      if (replyType(reply) === 'rejected') throw new ApiError(422, (reply.reasons || []).map(normaliseReason));
      const id = (reply && reply.request_id) || key;
      store.set(ALBUM_RUN_KEY, id);
      run.follow(id, { spec, resumed: Boolean(reply && reply.duplicate), plan: reply && reply.plan });
    } catch (e) {
      if (!isQuiet(e)) showError(error, e);
    } finally {
      start.disabled = !albums.length;
    }
  };

  page.append(
    pageHeading('Albums'),
    h('p', { class: 'intro', text: 'Paint every photo of an album in one style. The pictures go to a new album, with a contact sheet of them all.' }),
    h(
      'form',
      { id: 'album-form', class: 'panel', onsubmit: submit },
      h('div', { class: 'inline' }, field('Album', album), field('Style', style)),
      h('div', { class: 'inline' }, field('Save as album', to, 'Default: “<album> in <style>”.'), field('At most this many photos', limit)),
      start,
      h('p', { class: 'hint', id: 'album-resume-note', text: 'Run again to resume: starting the same album, style and destination again continues the same run, and photos already painted are not painted twice.' }),
      error,
    ),
    run.node,
  );

  Promise.all([api('/v1/library', { signal: ctx.signal }), loadStyles()]).then(
    ([library, styles]) => {
      if (!ctx.alive) return;
      albums = Array.isArray(library && library.albums) ? library.albums : [];
      album.replaceChildren(...albums.map((a) => h('option', { value: String(a.name), text: `${a.name} (${plural(a.photos, 'photo')})` })));
      style.replaceChildren(...styleOptions(styles));
      if (!albums.length) showError(error, 'Your library has no albums yet. Import a folder of albums first.');
      if (!styles.length) showError(error, 'The server lists no styles.');
      start.disabled = !albums.length || !styles.length;
      defaults();
    },
    (e) => {
      if (!isQuiet(e)) showError(error, e);
    },
  );

  // The run started earlier in this session is shown again (and followed while it runs).
  const earlier = store.get(ALBUM_RUN_KEY);
  if (earlier) run.follow(earlier, { earlier: true });
}

/** The running album: progress, finished images as they arrive, then the contact sheet. */
function albumRunView(ctx) {
  const title = h('h2', { id: 'album-run-title', tabindex: '-1', text: 'Album run' });
  const state = statusLine('album-state');
  const progress = h('progress', { id: 'album-progress', max: '1', value: '0', 'aria-labelledby': 'album-run-title' });
  const count = h('p', { id: 'album-count' });
  const note = h('p', { id: 'album-note', class: 'hint' });
  const error = alertBox('album-run-error');
  const outputs = h('div', { id: 'album-outputs', class: 'thumb-grid' });
  const sheet = h('img', { id: 'contact-sheet', class: 'contact-sheet', alt: 'Contact sheet of every painted photo', hidden: true });
  const sheetNote = h('p', { id: 'contact-sheet-note', class: 'hint' });
  const node = h(
    'section',
    { id: 'album-run', class: 'panel', 'aria-labelledby': 'album-run-title', hidden: true },
    title, state, progress, count, note, error, outputs,
    h('figure', { class: 'contact' }, h('figcaption', { text: 'Contact sheet' }), sheet, sheetNote),
  );
  const shown = new Set();
  let following = null;

  const update = (status) => {
    const jobs = Array.isArray(status.jobs) ? status.jobs : [];
    const done = jobs.filter((j) => j.state === 'succeeded').length;
    const failed = jobs.filter((j) => j.state === 'failed' || j.state === 'cancelled').length;
    progress.max = Math.max(1, jobs.length);
    progress.value = done;
    count.textContent = `${done} of ${plural(jobs.length, 'photo')} done${failed ? `, ${failed} failed or cancelled` : ''}.`;
    state.textContent = stateLabel(status.state);
    const styleName = (status.plan && status.plan.style) || 'the style';
    for (const job of jobs) {
      for (const key of (job.outputs || []).filter((k) => /\.png$/i.test(k) && !/contact-sheet\.png$/i.test(k))) {
        if (shown.has(key) || /^s3:\/\//i.test(key)) continue;
        shown.add(key);
        const img = h('img', { class: 'thumb', alt: `Photo ${Number(job.index) + 1} in ${styleName}`, width: '256', height: '256' });
        ctx.lazyImage(img, outputPath(key));
        outputs.append(h('figure', { class: 'photo' }, img, h('figcaption', { text: `Photo ${Number(job.index) + 1}` })));
      }
    }
  };

  /** SSE tells the state; GET every second shows the finished images as they arrive. */
  const follow = async (id, { spec, resumed, earlier } = {}) => {
    if (following) following.abort();
    const mine = ctx.child();
    following = mine;
    const signal = mine.signal;
    node.hidden = false;
    shown.clear();
    outputs.replaceChildren();
    sheet.hidden = true;
    sheet.removeAttribute('src');
    sheetNote.textContent = '';
    showError(error, null);
    title.textContent = spec ? `${spec.album} → ${spec.to}` : `Album run ${id}`;
    state.textContent = earlier ? 'Checking the run started earlier…' : 'Starting…';
    note.textContent = resumed ? 'This run was started before, so it is resumed: photos already painted are kept.' : '';
    if (!earlier) title.focus();
    let final = null;
    const streamCtx = {
      signal,
      get alive() {
        return !signal.aborted;
      },
      sleep: (ms) => sleep(ms, signal),
    };
    const events = followGeneration(streamCtx, id, {
      onReply: (reply) => {
        if (replyType(reply) === 'progress' && reply.state === 'running') state.textContent = 'Running';
      },
      onStatus: update,
    }).then(
      (reply) => {
        final = reply;
      },
      () => {}, // the polling below reports problems
    );
    try {
      let status;
      for (;;) {
        status = await api(generationPath(id), { signal });
        if (!spec && status.plan && status.plan.album_run) title.textContent = `${status.plan.album_run.album} → ${status.plan.album_run.to}`;
        update(status);
        if (FINAL_STATES.has(status.state)) break;
        await sleep(1000, signal);
      }
      await Promise.race([events, sleep(2000, signal)]);
      mine.abort(); // ends the event stream too
      if (FINAL_STATES.has(status.state)) {
        const failures = (status.jobs || []).filter((j) => j.state === 'failed' && j.error);
        if (failures.length) showError(error, new ApiError(0, failures.map((j) => ({ code: 'job_failed', message: `Photo ${Number(j.index) + 1}: ${j.error}`, suggestions: [] }))));
        await showContactSheet(ctx, status, final, sheet, sheetNote);
      }
    } catch (e) {
      if (isQuiet(e)) return;
      if (earlier && e instanceof ApiError && e.status === 404) {
        store.remove(ALBUM_RUN_KEY);
        node.hidden = true;
        return;
      }
      showError(error, e);
    }
  };

  return { node, follow };
}

/** The contact sheet's key: listed among the outputs or in the plan, else derived from the destination. */
function contactSheetKey(status, final) {
  const keys = [];
  for (const result of (final && final.results) || []) keys.push(...(result.outputs || []));
  for (const job of status.jobs || []) keys.push(...(job.outputs || []));
  const listed = keys.find((k) => /(^|\/)contact-sheet\.png$/.test(String(k)));
  if (listed) return String(listed);
  const found = [];
  const walk = (value) => {
    if (typeof value === 'string' && /(^|\/)contact-sheet\.png$/.test(value)) found.push(value);
    else if (value && typeof value === 'object') Object.values(value).forEach(walk);
  };
  walk(status.plan);
  if (found.length) return found[0];
  const run = (status.plan && status.plan.album_run) || {};
  if (typeof run.destination === 'string' && run.destination) return `${run.destination.replace(/\/*$/, '/')}contact-sheet.png`;
  if (typeof run.to !== 'string' || !run.to) return null;
  if (/^s3:\/\//i.test(run.to)) return `${run.to.replace(/\/+$/, '')}/contact-sheet.png`;
  return `tenants/${status.tenant || app.me.tenant}/albums/${albumSlug(run.to)}/contact-sheet.png`;
}

async function showContactSheet(ctx, status, final, img, note) {
  const painted = (status.jobs || []).some((j) => j.state === 'succeeded');
  const key = contactSheetKey(status, final);
  if (!painted || !key) {
    note.textContent = 'No contact sheet: no photo was painted.';
    return;
  }
  if (/^s3:\/\//i.test(key)) {
    note.textContent = `The pictures and the contact sheet were written to ${key.replace(/contact-sheet\.png$/, '')}; they are not shown here.`;
    return;
  }
  note.textContent = 'Loading the contact sheet…';
  // The sheet is written when the run ends; give it a few seconds to appear.
  for (let attempt = 0; attempt < 10; attempt++) {
    try {
      img.src = await ctx.imageUrl(outputPath(key));
      img.hidden = false;
      note.textContent = '';
      return;
    } catch (e) {
      if (isQuiet(e)) return;
      if (!(e instanceof ApiError && e.status === 404)) {
        note.textContent = `The contact sheet could not be loaded: ${messageOf(e)}`;
        return;
      }
      await ctx.sleep(1000);
    }
  }
  note.textContent = 'The contact sheet is not there yet; open this page again in a moment.';
}

/* ------------------------------------------------------------------------------------------------ */
/* Privacy page: consent per source, and "Forget me"                                                 */
/* ------------------------------------------------------------------------------------------------ */

function renderPrivacy(ctx, page) {
  const tenant = app.me.tenant;
  const list = h('ul', { id: 'consent-list', class: 'consent-list' });
  const status = statusLine('consent-status');
  const error = alertBox('consent-error');
  const source = h('input', { id: 'consent-source', type: 'text', autocomplete: 'off', spellcheck: 'false', list: 'consent-suggestions' });
  const suggestions = h('datalist', { id: 'consent-suggestions' }, h('option', { value: 'library' }));
  const grant = h('button', { id: 'consent-grant', type: 'submit', text: 'Grant' });

  const showConsents = (view) => {
    const granted = Array.isArray(view && view.granted) ? view.granted.map(String) : [];
    const revoked = Array.isArray(view && view.revoked) ? view.revoked.map(String) : [];
    const row = (name, isGranted) =>
      h(
        'li',
        { class: `consent ${isGranted ? 'granted' : 'revoked'}`, dataset: { source: name } },
        h('span', { class: 'source-name', text: name }),
        h('span', { class: 'badge', text: isGranted ? 'granted' : 'revoked' }),
        isGranted
          ? h('button', { type: 'button', class: 'consent-revoke secondary', text: 'Revoke', 'aria-label': `Revoke ${name}`, onclick: () => change('DELETE', name) })
          : h('button', { type: 'button', class: 'consent-regrant secondary', text: 'Grant again', 'aria-label': `Grant ${name} again`, onclick: () => change('PUT', name) }),
      );
    list.replaceChildren(...granted.map((s) => row(s, true)), ...revoked.filter((s) => !granted.includes(s)).map((s) => row(s, false)));
    if (!granted.length && !revoked.length) list.append(h('li', { class: 'hint', text: 'No consent given yet: Reverie uses none of your photos.' }));
  };

  const change = async (method, name) => {
    showError(error, null);
    status.textContent = method === 'PUT' ? `Granting ${name}…` : `Revoking ${name}…`;
    try {
      const view = await api(`/v1/consents/${enc(name)}`, { method, signal: ctx.signal, retry: false });
      showConsents(view);
      const cancelled = Number(view && view.jobs_cancelled) || 0;
      status.textContent =
        method === 'PUT'
          ? `Granted “${name}”.`
          : `Revoked “${name}”.${cancelled ? ` ${plural(cancelled, 'unfinished job')} ${cancelled === 1 ? 'was' : 'were'} cancelled.` : ''}`;
      const focus = list.querySelector(`li[data-source="${CSS.escape(name)}"] button`);
      if (focus) focus.focus();
      return true;
    } catch (e) {
      if (!isQuiet(e)) {
        status.textContent = '';
        showError(error, e);
      }
      return false;
    }
  };

  const grantForm = h(
    'form',
    {
      class: 'inline',
      onsubmit: (event) => {
        event.preventDefault();
        const name = source.value.trim();
        if (!(name === 'library' || /^album:.+/.test(name))) {
          showError(error, 'Write “library” or “album:” and the album’s name, for example album:Italy 2023.');
          source.focus();
          return;
        }
        change('PUT', name).then((done) => {
          if (done) source.value = '';
        });
      },
    },
    field('Source (library or album:NAME)', source),
    suggestions,
    grant,
  );

  page.append(
    pageHeading('Privacy'),
    h(
      'section',
      { class: 'panel', 'aria-labelledby': 'consent-title' },
      h('h2', { id: 'consent-title', text: 'Consent' }),
      h('p', { text: 'Reverie uses a photo only when you have granted a source that covers it: “library” covers every photo, “album:NAME” the photos of one album. Revoking cancels unfinished work that needs it.' }),
      list,
      status,
      error,
      grantForm,
    ),
    forgetSection(ctx, tenant),
  );

  api('/v1/consents', { signal: ctx.signal }).then(showConsents, (e) => {
    if (!isQuiet(e)) showError(error, e);
  });
  api('/v1/library', { signal: ctx.signal }).then(
    (library) => {
      for (const a of (library && library.albums) || []) suggestions.append(h('option', { value: `album:${a.name}` }));
    },
    () => {}, // suggestions only
  );
}

/** "Forget me": a dialog asks for the tenant's name, then DELETE /v1/tenant and sign out. */
function forgetSection(ctx, tenant) {
  const confirm = h('input', { id: 'forget-confirm', type: 'text', autocomplete: 'off', spellcheck: 'false' });
  const yes = h('button', { id: 'forget-yes', type: 'submit', class: 'danger', text: 'Forget everything', disabled: true });
  const cancel = h('button', { id: 'forget-cancel', type: 'button', class: 'secondary', text: 'Cancel' });
  const error = alertBox('forget-error');
  const open = h('button', { id: 'forget-open', type: 'button', class: 'danger', text: 'Forget me…' });
  const dialog = h(
    'dialog',
    { id: 'forget-dialog', 'aria-labelledby': 'forget-dialog-title', 'aria-describedby': 'forget-dialog-text' },
    h(
      'form',
      { class: 'dialog-form' },
      h('h2', { id: 'forget-dialog-title', text: 'Forget everything?' }),
      h('p', { id: 'forget-dialog-text', text: `This deletes every photo, person, picture, request and access token Reverie holds for “${tenant}”. It cannot be undone.` }),
      field(`Type “${tenant}” to confirm`, confirm),
      error,
      h('div', { class: 'actions' }, yes, cancel),
    ),
  );

  const close = () => {
    if (dialog.open) dialog.close();
    else dialog.removeAttribute('open');
  };
  dialog.addEventListener('close', () => open.focus());
  confirm.addEventListener('input', () => {
    yes.disabled = confirm.value.trim() !== tenant;
  });
  cancel.addEventListener('click', close);
  open.addEventListener('click', () => {
    confirm.value = '';
    yes.disabled = true;
    showError(error, null);
    if (typeof dialog.showModal === 'function') dialog.showModal();
    else dialog.setAttribute('open', '');
    confirm.focus();
  });
  dialog.querySelector('form').addEventListener('submit', async (event) => {
    event.preventDefault();
    if (confirm.value.trim() !== tenant) {
      showError(error, `Type “${tenant}” exactly to confirm.`);
      return;
    }
    yes.disabled = true;
    yes.textContent = 'Forgetting…';
    try {
      const report = await api('/v1/tenant', { method: 'DELETE', signal: ctx.signal, retry: false });
      close();
      signOut('', forgetReport(report, tenant));
    } catch (e) {
      if (isQuiet(e)) return;
      showError(error, e);
      yes.disabled = false;
      yes.textContent = 'Forget everything';
    }
  });

  return h(
    'section',
    { class: 'panel danger-zone', 'aria-labelledby': 'forget-title' },
    h('h2', { id: 'forget-title', text: 'Forget me' }),
    h('p', { text: 'Deletes everything Reverie has for you — photos, analyses, people, pictures, requests and tokens — and signs you out.' }),
    open,
    dialog,
  );
}

function forgetReport(report, tenant) {
  const r = report || {};
  return h(
    'section',
    { id: 'forget-report', class: 'panel', 'aria-labelledby': 'forget-report-title' },
    h('h2', { id: 'forget-report-title', text: `Everything of “${r.tenant || tenant}” was forgotten` }),
    h(
      'ul',
      {},
      h('li', { text: `Stored objects deleted: ${Number(r.store_objects_deleted) || 0}` }),
      h('li', { text: `Cache entries deleted: ${Number(r.cache_keys_deleted) || 0}` }),
      h('li', { text: `Unfinished jobs cancelled: ${Number(r.jobs_cancelled) || 0}` }),
    ),
  );
}

/* ------------------------------------------------------------------------------------------------ */
/* Start                                                                                             */
/* ------------------------------------------------------------------------------------------------ */

function start() {
  $('sign-in-form').addEventListener('submit', (event) => {
    event.preventDefault();
    signIn($('token').value.trim());
  });
  $('sign-out').addEventListener('click', () => signOut(''));
  window.addEventListener('hashchange', () => {
    if (!location.hash || location.hash.startsWith('#/')) route(); // "#page" (skip link) is not a route
  });
  window.addEventListener('unhandledrejection', (event) => {
    if (isQuiet(event.reason)) event.preventDefault();
  });
  // `reverie serve` prints a link with the token in the fragment (never sent to the server): take it once,
  // then drop it from the address bar and the history.
  const linked = /^#token=([^&]+)$/.exec(location.hash);
  if (linked) history.replaceState(null, '', '#/library');
  const saved = linked ? decodeURIComponent(linked[1]) : store.get(TOKEN_KEY);
  if (saved) signIn(saved);
  else showSignIn('');
}

if (typeof document !== 'undefined' && document.getElementById('sign-in-form')) start();
