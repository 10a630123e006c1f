// The local console: what the local stack sent to each person, the clock, and each referral's
// timeline. It calls only the public API (with dev tokens from POST /_local/token) and the
// /_local/ endpoints, and posts telephony webhooks signed by POST /_local/sign, as Twilio would.
'use strict';

const POLL_MS = 1500;
const state = {
  outbox: [],
  now: null,
  // Texts sent from this page: the outbox holds only what the service sent.
  sent: load('sent', []),
  referrals: load('referrals', []),
  tokens: {},
  // The last TwiML each call answered, by call key: where the next digits go.
  twiml: {},
};

function load(key, fallback) {
  try { return JSON.parse(localStorage.getItem(`console.${key}`)) ?? fallback; } catch { return fallback; }
}
function save(key, value) { localStorage.setItem(`console.${key}`, JSON.stringify(value)); }

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (k === 'class') node.className = v;
    else node.setAttribute(k, v === true ? '' : v);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function call(method, path, { token, body, headers = {} } = {}) {
  const init = { method, headers: { ...headers } };
  if (token) init.headers.authorization = `Bearer ${token}`;
  if (body !== undefined) {
    init.headers['content-type'] = init.headers['content-type'] ?? 'application/json';
    init.body = typeof body === 'string' || body instanceof URLSearchParams ? body : JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* TwiML or empty */ }
  return { status: response.status, json, text };
}

// A dev token for sub and role, minted by the runner and reused while it is fresh.
async function tokenFor(sub, role, email) {
  const key = `${sub}|${role}|${email ?? ''}`;
  const cached = state.tokens[key];
  if (cached && cached.until > Date.now()) return cached.token;
  const answer = await call('POST', '/_local/token', { body: { sub, role, email: email || undefined } });
  if (answer.status !== 200) throw new Error(`token for ${sub}: ${answer.text}`);
  state.tokens[key] = { token: answer.json.token, until: Date.now() + 60 * 60 * 1000 };
  return answer.json.token;
}

function when(at) {
  if (!at) return '';
  const d = new Date(at);
  return Number.isNaN(d.getTime()) ? at : d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

// ------------------------------------------------------------------ clock

async function refreshClock() {
  const answer = await call('GET', '/_local/clock');
  if (answer.status === 200) {
    state.now = answer.json.now;
    document.getElementById('now').textContent = when(state.now);
  }
}

async function advance(by) {
  const out = document.getElementById('fired');
  out.textContent = `moving ${by}…`;
  const answer = await call('POST', '/_local/clock', { body: { advance: by } });
  if (answer.status !== 200) { out.textContent = answer.json?.error?.message ?? answer.text; return; }
  const fired = Array.isArray(answer.json.fired) ? answer.json.fired.length : 0;
  out.textContent = `+${by}: ${fired} fired`;
  await refreshClock();
}

// ------------------------------------------------------------------ people

// A card per address, made once, so what is typed in it survives each refresh.
function card(container, attr, address, build) {
  let node = container.querySelector(`[${attr}="${CSS.escape(address)}"]`);
  if (!node) {
    node = el('article', { class: 'card', [attr]: address }, el('h3', {}, address));
    build?.(node);
    container.append(node);
  }
  return node;
}

// Replaces a card's part only when what it shows changed.
function part(node, cls, signature, render) {
  let holder = node.querySelector(`:scope > .${cls}`);
  if (!holder) { holder = el('div', { class: cls }); node.insertBefore(holder, node.querySelector(':scope > form')); }
  if (holder.dataset.signature === signature) return;
  holder.dataset.signature = signature;
  holder.replaceChildren(...render());
  if (cls === 'thread') holder.scrollTop = holder.scrollHeight;
}

async function textService(from, body) {
  // Stamped with the service's time as it is sent, as the outbox stamps what the service sent.
  await refreshClock();
  const at = state.now ?? new Date().toISOString();
  const answer = await call('POST', '/_local/sms', { body: { from, body } });
  if (answer.status !== 202) throw new Error(answer.json?.error?.message ?? answer.text);
  state.sent.push({ from, body, at });
  save('sent', state.sent);
  renderPeople();
}

function phoneCard(number) {
  return card(document.getElementById('phones'), 'data-phone', number, (node) => {
    node.append(el('form', {
      class: 'text-service',
      onsubmit: async (e) => {
        e.preventDefault();
        const input = e.target.elements.body;
        try { await textService(number, input.value); input.value = ''; } catch (err) { alert(err.message); }
      },
    }, el('input', { name: 'body', placeholder: 'text the service', size: 30, required: true }), el('button', {}, 'Send')));
    node.append(el('form', {
      class: 'text-service dial',
      onsubmit: async (e) => {
        e.preventDefault();
        const f = e.target.elements;
        const params = { CallSid: newSid(), From: number, CallStatus: 'in-progress' };
        if (f.digits.value) params.Digits = f.digits.value;
        const answer = await webhook(f.line.value, params);
        e.target.querySelector('.twiml').textContent = `${answer.status} ${answer.text}`;
      },
    },
    el('select', { name: 'line' },
      el('option', { value: '/twilio/voice/pin' }, 'PIN line'),
      el('option', { value: '/twilio/voice/warm-transfer' }, 'warm-transfer line')),
    el('input', { name: 'digits', placeholder: 'digits', size: 8 }),
    el('button', {}, 'Dial'),
    el('div', { class: 'twiml' })));
  });
}

function newSid() {
  const hex = Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, '0')).join('');
  return `CA${hex}`;
}

// Posts a telephony webhook as Twilio would: form-encoded, signed over the full URL and the
// parameters by the runner (which holds the auth token), to this page's own origin.
async function webhook(url, params) {
  const signed = await call('POST', '/_local/sign', { body: { url, params } });
  if (signed.status !== 200) return signed;
  const target = new URL(signed.json.url);
  return call('POST', target.pathname + target.search, {
    body: new URLSearchParams(params),
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': signed.json.signature },
  });
}

// Where the digits of a call go: the action of the Gather its last TwiML asked for, else the call's URL.
function gatherAction(key, entry) {
  const twiml = state.twiml[key];
  const action = twiml && /<Gather[^>]*action="([^"]+)"/.exec(twiml);
  const decoded = action?.[1].replaceAll('&amp;', '&');
  return decoded ? new URL(decoded, entry.url).toString() : entry.url;
}

function callView(entry, index) {
  const key = `${entry.to}|${entry.at}|${index}`;
  const sid = entry.callSid ?? `CA${(index + 1).toString(16).padStart(32, '0')}`;
  const base = { CallSid: sid, From: entry.from ?? '', To: entry.to, Direction: 'outbound-api' };
  const out = el('div', { class: 'twiml' }, state.twiml[key] ?? '');
  const play = async (url, extra) => {
    const answer = await webhook(url, { ...base, ...extra });
    if (extra.CallStatus === 'in-progress' || extra.Digits) state.twiml[key] = answer.text;
    out.textContent = `${answer.status} ${answer.text}`;
  };
  const digits = el('input', { name: 'digits', placeholder: 'code or PIN', size: 8 });
  return el('div', { class: 'call', 'data-call': key },
    el('div', {}, `📞 call from ${entry.from ?? '?'} `, el('span', { class: 'meta' }, when(entry.at))),
    el('div', { class: 'meta' }, entry.url ?? ''),
    el('div', { class: 'buttons' },
      el('button', { onclick: () => play(entry.url, { CallStatus: 'in-progress' }) }, 'Answer'),
      el('button', { onclick: () => play(gatherAction(key, entry), { CallStatus: 'in-progress', Digits: '1' }) }, 'Press 1'),
      digits,
      el('button', { onclick: () => play(gatherAction(key, entry), { CallStatus: 'in-progress', Digits: digits.value }) }, 'Enter'),
      entry.statusCallback && ['no-answer', 'busy', 'completed'].map((status) =>
        el('button', { onclick: () => play(entry.statusCallback, { CallStatus: status }) }, status))),
    out);
}

function renderPeople() {
  const phones = new Map();
  const inboxes = new Map();
  const devices = new Map();
  const add = (map, key, item) => { if (!map.has(key)) map.set(key, []); map.get(key).push(item); };
  state.outbox.forEach((entry, index) => {
    if (entry.channel === 'sms') add(phones, entry.to, { kind: 'in', entry });
    else if (entry.channel === 'call') add(phones, entry.to, { kind: 'call', entry, index });
    else if (entry.channel === 'email') add(inboxes, entry.to, entry);
    else if (entry.channel === 'push') add(devices, entry.to, entry);
  });
  for (const text of state.sent) add(phones, text.from, { kind: 'sent', entry: text });

  for (const [number, items] of phones) {
    const node = phoneCard(number);
    const texts = items.filter((i) => i.kind !== 'call').sort((a, b) => (a.entry.at < b.entry.at ? -1 : a.entry.at > b.entry.at ? 1 : 0));
    part(node, 'thread', `${texts.length}`, () => texts.map(({ kind, entry }) => el('div', { class: kind === 'sent' ? 'sms sent' : 'sms' },
      entry.body,
      el('div', { class: 'meta' }, kind === 'sent' ? `to the service · ${when(entry.at)}` : `from ${entry.from ?? '?'} · ${when(entry.at)}`))));
    const calls = items.filter((i) => i.kind === 'call');
    part(node, 'calls', `${calls.length}`, () => calls.map(({ entry, index }) => callView(entry, index)));
  }
  for (const [address, mails] of inboxes) {
    const node = card(document.getElementById('inboxes'), 'data-inbox', address);
    part(node, 'mails', `${mails.length}`, () => mails.map((m) => el('details', { class: 'mail' },
      el('summary', {}, m.subject ?? '(no subject)', ' ', el('span', { class: 'meta' }, when(m.at))),
      el('pre', {}, m.body),
      (m.attachments ?? []).map((name, i) => m.attachmentUrls?.[i]
        ? el('a', { class: 'attachment', href: m.attachmentUrls[i], target: '_blank' }, `📎 ${name}`)
        : el('span', { class: 'attachment' }, `📎 ${name}`)))));
  }
  for (const [token, pushes] of devices) {
    const node = card(document.getElementById('devices'), 'data-device', token);
    part(node, 'pushes', `${pushes.length}`, () => pushes.map((p) => el('div', { class: 'sms' }, p.body, el('div', { class: 'meta' }, when(p.at)))));
  }
}

async function refreshOutbox() {
  const answer = await call('GET', '/_local/outbox');
  if (answer.status !== 200) return;
  state.outbox = answer.json;
  // Referrals the service called someone about are worth watching too.
  for (const entry of state.outbox) {
    const id = /[?&]referralId=([^&]+)/.exec(entry.url ?? '')?.[1];
    if (id) watch(decodeURIComponent(id));
  }
  renderPeople();
}

// ------------------------------------------------------------------ referrals

function watch(id) {
  if (!id || state.referrals.includes(id)) return;
  state.referrals.unshift(id);
  save('referrals', state.referrals);
}

async function createReferral(form) {
  const f = form.elements;
  const out = document.getElementById('created');
  const body = {
    program: f.program.value,
    client: { name: f.clientName.value, phone: f.clientPhone.value, email: f.clientEmail.value },
    clientType: f.clientType.value,
    zip: f.zip.value,
    priceRange: { min: f.min.value, max: f.max.value },
    timeline: f.timeline.value,
    briefing: f.briefing.value,
  };
  if (f.teamId.value && body.program === 'routing') body.teamId = f.teamId.value;
  if (f.advisorPhone.value) body.advisorPhone = f.advisorPhone.value;
  const sub = document.getElementById('advisor-sub').value;
  const token = await tokenFor(sub, 'advisor', document.getElementById('advisor-email').value);
  const answer = await call('POST', '/referrals', { token, body, headers: { 'idempotency-key': newSid() } });
  if (answer.status !== 201) { out.textContent = `${answer.status}: ${answer.json?.error?.message ?? answer.text}`; out.className = 'error'; return; }
  out.className = '';
  out.textContent = `created ${answer.json.id}`;
  watch(answer.json.id);
  await refreshReferrals();
}

function historyEntry(h) {
  const { type, at, by, ...rest } = h;
  const details = Object.entries(rest).map(([k, v]) => `${k}: ${typeof v === 'object' ? JSON.stringify(v) : v}`).join(' · ');
  return el('li', { 'data-type': type },
    el('span', { class: 'type' }, type), ' ',
    by ? el('span', { class: 'by' }, `by ${by} `) : null,
    el('span', { class: 'meta' }, when(at)),
    details ? el('div', { class: 'meta' }, details) : null);
}

async function refreshReferrals() {
  const container = document.getElementById('referrals');
  if (!state.referrals.length) {
    container.replaceChildren(el('p', { class: 'empty' }, 'Create a referral, or watch one by its id.'));
    return;
  }
  // Closings may read every referral with its history (GET /referrals/{id}).
  const token = await tokenFor('console-closings', 'closings');
  const views = await Promise.all(state.referrals.map((id) => call('GET', `/referrals/${encodeURIComponent(id)}`, { token })));
  container.querySelector('.empty')?.remove();
  state.referrals.forEach((id, i) => {
    const answer = views[i];
    const node = card(container, 'data-referral', id, (n) => n.classList.add('referral'));
    container.append(node); // newest first, as state.referrals is
    const signature = answer.text;
    part(node, 'view', signature, () => {
      if (answer.status !== 200) return [el('p', { class: 'error' }, `${answer.status}: ${answer.json?.error?.message ?? answer.text}`)];
      const r = answer.json;
      const history = (r.history ?? []).slice().sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0));
      return [
        el('div', { class: 'summary' },
          el('span', { class: 'badge' }, r.program),
          el('span', { class: 'badge' }, `${r.clientType} · ${r.zip}`),
          el('span', { class: 'badge stage' }, r.stage ?? 'unassigned'),
          r.assignedAgentId ? el('span', { class: 'badge assigned' }, `assigned to ${r.assignedAgentId}`) : null),
        el('ol', { class: 'timeline' }, history.map(historyEntry)),
      ];
    });
  });
}

// ------------------------------------------------------------------ wiring

async function poll() {
  try {
    await refreshClock();
    await refreshOutbox();
    await refreshReferrals();
  } catch (e) {
    console.error(e);
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

document.querySelectorAll('[data-advance]').forEach((b) => b.addEventListener('click', () => advance(b.dataset.advance)));
document.getElementById('advance-form').addEventListener('submit', (e) => { e.preventDefault(); advance(e.target.elements.by.value); });
document.getElementById('text-as').addEventListener('submit', async (e) => {
  e.preventDefault();
  const f = e.target.elements;
  try { await textService(f.from.value, f.body.value); f.body.value = ''; } catch (err) { alert(err.message); }
});
document.getElementById('new-referral').addEventListener('submit', (e) => { e.preventDefault(); createReferral(e.target); });
document.getElementById('watch-form').addEventListener('submit', (e) => {
  e.preventDefault();
  watch(e.target.elements.id.value.trim());
  e.target.elements.id.value = '';
  refreshReferrals();
});
document.getElementById('token-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const f = e.target.elements;
  document.getElementById('token').value = await tokenFor(f.sub.value, f.role.value);
});
poll();
