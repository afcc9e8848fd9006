// cfn live dashboard (issue 15). Plain script, no library, no network other than same-origin fetch and EventSource.
// Contract: DASHBOARD_CONTRACT.md (snapshot JSON, SSE events, admin endpoints, data-testid attributes).
// Safety: every value from the server (IDs come from Redis) goes into the page with textContent or setAttribute,
// never as HTML. CSP: no inline script/style; styles come from app.css classes (CSSOM only where needed).
(function () {
  'use strict';

  const SNAPSHOT_URL = '/api/dashboard/snapshot';
  const EVENTS_URL = '/api/dashboard/events';
  const TIMELINE_MAX = 500;
  const TOKEN_KEY = 'cfn.dashboard.adminToken';
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const RETRY_MIN_MS = 1000;
  const RETRY_MAX_MS = 15000;
  const collator = new Intl.Collator('en', { numeric: true, sensitivity: 'base' });

  // ---------------------------------------------------------------- helpers

  const arr = (v) => (Array.isArray(v) ? v : []);
  const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
  const str = (v) => (v === null || v === undefined ? '' : String(v));

  function byTestId(id) {
    return document.querySelector('[data-testid="' + id + '"]');
  }

  function h(tag, className, text) {
    const e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }

  function svg(tag, attrs) {
    const e = document.createElementNS(SVG_NS, tag);
    if (attrs) for (const k of Object.keys(attrs)) e.setAttribute(k, str(attrs[k]));
    return e;
  }

  // Writes only when the value changed: keeps text selections, hover and focus stable across snapshots.
  function setText(node, value) {
    const s = str(value);
    if (node._cfnText !== s) {
      node._cfnText = s;
      node.textContent = s;
    }
  }

  function setAttr(node, name, value) {
    const s = str(value);
    if (node.getAttribute(name) !== s) node.setAttribute(name, s);
  }

  function setClass(node, cls) {
    // works for HTML and SVG elements alike
    if (node.getAttribute('class') !== cls) node.setAttribute('class', cls);
  }

  function setHidden(node, hidden) {
    if (node.hidden !== hidden) node.hidden = hidden;
  }

  function pad2(n) {
    return n < 10 ? '0' + n : String(n);
  }

  function fmtDuration(ms) {
    const v = num(ms);
    if (v === null) return '–';
    const t = Math.max(0, v);
    if (t < 1000) return Math.round(t) + ' ms';
    const s = t / 1000;
    if (s < 10) return s.toFixed(1) + ' s';
    if (s < 60) return Math.floor(s) + ' s';
    const m = Math.floor(s / 60);
    if (m < 60) return m + ' m ' + pad2(Math.floor(s % 60)) + ' s';
    const hrs = Math.floor(m / 60);
    if (hrs < 48) return hrs + ' h ' + pad2(m % 60) + ' m';
    return Math.floor(hrs / 24) + ' d ' + (hrs % 24) + ' h';
  }

  function fmtClock(ms) {
    const v = num(ms);
    if (v === null) return '–';
    const d = new Date(v);
    const time = pad2(d.getHours()) + ':' + pad2(d.getMinutes()) + ':' + pad2(d.getSeconds());
    const today = new Date();
    if (d.getFullYear() === today.getFullYear() && d.getMonth() === today.getMonth() && d.getDate() === today.getDate()) {
      return time;
    }
    return d.getFullYear() + '-' + pad2(d.getMonth() + 1) + '-' + pad2(d.getDate()) + ' ' + time;
  }

  function isoTime(ms) {
    const v = num(ms);
    if (v === null) return '';
    try {
      return new Date(v).toISOString();
    } catch (e) {
      return '';
    }
  }

  function plural(n, one, many) {
    return n + ' ' + (n === 1 ? one : many);
  }

  // keeps both ends: generated IDs differ at the end (coordinator-1795846881763-ia97qhy2)
  function truncateMiddle(s, max) {
    if (s.length <= max) return s;
    const tail = Math.ceil((max - 1) / 2);
    return s.slice(0, max - 1 - tail) + '…' + s.slice(s.length - tail);
  }

  // only http(s) links (a runbook URL from the server must never become a javascript: link)
  function safeHref(u) {
    const s = str(u).trim();
    if (!s) return null;
    try {
      const url = new URL(s, window.location.href);
      if (url.protocol === 'http:' || url.protocol === 'https:') return url.href;
    } catch (e) {
      // not a URL: no link
    }
    return null;
  }

  // Keyed list rendering: one DOM element per key, updated in place; when the set or the order of keys changes,
  // the container is rebuilt once from a DocumentFragment (elements are moved, not recreated).
  function newCache() {
    return { map: new Map(), order: [] };
  }

  function reconcile(container, cache, items, keyOf, create, update) {
    const seen = new Set();
    const order = [];
    for (const item of items) {
      if (!item || typeof item !== 'object') continue;
      const key = keyOf(item);
      if (!key || seen.has(key)) continue;
      seen.add(key);
      let rec = cache.map.get(key);
      if (!rec) {
        rec = create(key, item);
        cache.map.set(key, rec);
      }
      update(rec, item);
      order.push(rec.el);
    }
    for (const key of cache.map.keys()) {
      if (!seen.has(key)) cache.map.delete(key);
    }
    let same = order.length === cache.order.length;
    for (let i = 0; same && i < order.length; i++) same = order[i] === cache.order[i];
    if (!same) {
      const active = document.activeElement;
      const hadFocus = active && active !== document.body && container.contains(active);
      const frag = document.createDocumentFragment();
      for (const el of order) frag.appendChild(el);
      container.replaceChildren(frag);
      if (hadFocus && active.isConnected) active.focus({ preventScroll: true });
    }
    cache.order = order;
    return order.length;
  }

  // ---------------------------------------------------------------- elements

  const els = {};

  function bindElements() {
    els.processId = byTestId('process-id');
    els.roles = byTestId('process-roles');
    els.spawning = byTestId('spawning-state');
    els.connection = byTestId('connection');
    els.snapshotTime = byTestId('snapshot-time');
    els.token = byTestId('admin-token');
    els.result = byTestId('action-result');
    els.alerts = byTestId('alerts');
    els.alertsEmpty = document.getElementById('alerts-empty');
    els.breakers = byTestId('breakers');
    els.breakersEmpty = document.getElementById('breakers-empty');
    els.swarmsBody = byTestId('swarms').tBodies[0];
    els.swarmsEmpty = document.getElementById('swarms-empty');
    els.spawnsBody = byTestId('spawn-requests').tBodies[0];
    els.spawnsEmpty = document.getElementById('spawns-empty');
    els.escalations = byTestId('escalations');
    els.escalationsEmpty = document.getElementById('escalations-empty');
    els.participantsBody = byTestId('participants').tBodies[0];
    els.participantsEmpty = document.getElementById('participants-empty');
    els.participantsSummary = byTestId('participants-summary');
    els.filter = byTestId('participant-filter');
    els.graphStatus = document.getElementById('graph-status');
    els.graphScroll = document.getElementById('graph-scroll');
    els.timeline = byTestId('timeline');
    els.timelineEmpty = document.getElementById('timeline-empty');
    els.dialog = byTestId('confirm-dialog');
    els.dialogTitle = document.getElementById('confirm-title');
    els.dialogText = document.getElementById('confirm-text');
    els.dialogRequest = document.getElementById('confirm-request');
    els.dialogAuth = document.getElementById('confirm-auth');
    els.confirmYes = byTestId('confirm-yes');
    els.confirmNo = byTestId('confirm-no');
  }

  // ---------------------------------------------------------------- snapshot intake and rendering

  const state = {
    snap: null, // last rendered (or about to be rendered) snapshot
    lastNow: -Infinity,
    frame: 0,
    dirty: false,
    renders: 0,
    filter: '',
  };

  function acceptSnapshot(s) {
    if (!s || typeof s !== 'object' || Array.isArray(s)) return;
    const now = num(s.now);
    if (now !== null) {
      if (now < state.lastNow) return; // an older snapshot (e.g. the initial fetch answered after the first SSE event)
      state.lastNow = now;
    }
    state.snap = s;
    scheduleRender();
  }

  function scheduleRender() {
    state.dirty = true;
    if (!state.frame) state.frame = window.requestAnimationFrame(flushRender);
  }

  function flushRender() {
    state.frame = 0;
    if (!state.dirty || !state.snap) return;
    state.dirty = false;
    const t0 = performance.now();
    render(state.snap);
    state.renders++;
    try {
      if (state.renders === 1) performance.mark('cfn:first-render');
      performance.clearMeasures('cfn:render');
      performance.measure('cfn:render', { start: t0, end: performance.now() });
    } catch (e) {
      // User Timing unavailable: no measurement
    }
  }

  function render(s) {
    const pmap = new Map();
    for (const p of arr(s.participants)) {
      if (p && typeof p === 'object' && str(p.id) && !pmap.has(str(p.id))) pmap.set(str(p.id), p);
    }
    renderHeader(s);
    const firing = renderAlerts(s);
    renderBreakers(s);
    renderSwarms(s);
    renderSpawns(s);
    renderEscalations(s);
    renderParticipants(s, pmap);
    const cycles = renderGraph(s, pmap);
    let title = 'cfn dashboard';
    if (firing > 0) title = '(' + firing + ' firing) ' + title;
    if (cycles > 0) title = 'deadlock · ' + title;
    if (document.title !== title) document.title = title;
  }

  // ---------------------------------------------------------------- header

  function renderHeader(s) {
    const p = s.process && typeof s.process === 'object' ? s.process : {};
    setText(els.processId, str(p.id) || '–');
    const roles = arr(p.roles).map(str).filter(Boolean);
    setText(els.roles, roles.length ? roles.join(', ') : '–');
    let spawning = 'unknown';
    if (s.spawningPaused === true) spawning = 'paused';
    else if (s.spawningPaused === false) spawning = 'active';
    setText(els.spawning, spawning);
    setClass(els.spawning, 'badge ' + (spawning === 'paused' ? 'badge-warn' : spawning === 'active' ? 'badge-ok' : 'badge-muted'));
    setText(els.snapshotTime, num(s.now) !== null ? fmtClock(s.now) : 'received');
    if (num(s.now) !== null) setAttr(els.snapshotTime, 'title', 'Redis clock ' + isoTime(s.now));
  }

  // ---------------------------------------------------------------- alerts and breakers

  const alertCache = newCache();

  function createAlert(key) {
    const li = h('li', 'alert');
    li.setAttribute('data-testid', 'alert');
    li.setAttribute('data-alert', key);
    const badge = h('span', 'badge alert-state');
    const head = h('span', 'alert-head');
    const name = h('strong', 'alert-name', key);
    const severity = h('span', 'severity');
    head.append(name, ' ', severity);
    const link = h('a', 'runbook-link', 'runbook');
    link.setAttribute('rel', 'noopener noreferrer');
    link.setAttribute('target', '_blank');
    link.setAttribute('aria-label', 'Runbook section for ' + key);
    const summary = h('span', 'alert-summary');
    li.append(badge, ' ', head, ' ', link, ' ', summary);
    return { el: li, badge, severity, summary, link };
  }

  function updateAlert(rec, a) {
    const st = ['ok', 'pending', 'firing'].includes(str(a.state)) ? str(a.state) : str(a.state) || 'unknown';
    setAttr(rec.el, 'data-state', st);
    setClass(rec.el, 'alert alert-' + (st === 'firing' || st === 'pending' || st === 'ok' ? st : 'unknown'));
    setText(rec.badge, st);
    setClass(rec.badge, 'badge alert-state ' + (st === 'firing' ? 'badge-bad' : st === 'pending' ? 'badge-warn' : st === 'ok' ? 'badge-ok' : 'badge-muted'));
    setText(rec.severity, str(a.severity));
    setText(rec.summary, str(a.summary));
    const href = safeHref(a.runbook);
    if (href) {
      setAttr(rec.link, 'href', href);
      setHidden(rec.link, false);
    } else {
      setHidden(rec.link, true);
    }
  }

  function renderAlerts(s) {
    const alerts = arr(s.alerts);
    const n = reconcile(els.alerts, alertCache, alerts, (a) => str(a.name), createAlert, updateAlert);
    setHidden(els.alertsEmpty, n > 0);
    let firing = 0;
    for (const a of alerts) if (a && a.state === 'firing') firing++;
    return firing;
  }

  const breakerCache = newCache();

  function createBreaker(key) {
    const li = h('li', 'breaker');
    li.setAttribute('data-testid', 'breaker');
    const name = h('span', 'mono');
    const badge = h('span', 'badge');
    const proc = h('span', 'muted');
    li.append(name, ' ', badge, ' ', proc);
    return { el: li, name, badge, proc };
  }

  function updateBreaker(rec, b) {
    const st = str(b.state) || 'unknown';
    setAttr(rec.el, 'data-state', st);
    setText(rec.name, str(b.name) || '?');
    setText(rec.badge, st);
    setClass(rec.badge, 'badge ' + (st === 'open' ? 'badge-bad' : st === 'half-open' ? 'badge-warn' : st === 'closed' ? 'badge-ok' : 'badge-muted'));
    setText(rec.proc, str(b.process) ? 'in ' + str(b.process) : '');
  }

  function renderBreakers(s) {
    const n = reconcile(els.breakers, breakerCache, arr(s.breakers), (b) => str(b.process) + '\u0000' + str(b.name), createBreaker, updateBreaker);
    setHidden(els.breakersEmpty, n > 0);
  }

  // ---------------------------------------------------------------- swarms

  const swarmCache = newCache();

  function createSwarm(key) {
    const tr = h('tr');
    tr.setAttribute('data-testid', 'swarm-row');
    tr.setAttribute('data-swarm', key);
    const th = h('th', 'mono', key);
    th.scope = 'row';
    const target = h('td', 'num');
    const live = h('td', 'num');
    const blocking = h('td', 'num');
    const stale = h('td', 'num');
    const scaleCell = h('td', 'scale-cell');
    const input = h('input', 'scale-input');
    input.type = 'number';
    input.min = '1';
    input.step = '1';
    input.inputMode = 'numeric';
    input.setAttribute('data-testid', 'scale-input');
    input.setAttribute('data-swarm', key);
    input.setAttribute('aria-label', 'Target size for ' + key);
    const button = h('button', 'btn btn-small', 'Scale');
    button.type = 'button';
    button.setAttribute('data-testid', 'action-scale');
    button.setAttribute('data-swarm', key);
    button.setAttribute('aria-label', 'Scale ' + key + ' to the size entered');
    scaleCell.append(input, ' ', button);
    tr.append(th, target, live, blocking, stale, scaleCell);
    const rec = { el: tr, target, live, blocking, stale, input, edited: false, swarm: null };
    input.addEventListener('input', () => {
      rec.edited = true;
    });
    input.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter') {
        ev.preventDefault();
        button.click();
      }
    });
    return rec;
  }

  function updateSwarm(rec, sw) {
    rec.swarm = sw;
    const target = num(sw.target);
    const live = num(sw.live);
    setText(rec.target, target === null ? '–' : target);
    const short = target !== null && live !== null && live < target ? target - live : 0;
    setText(rec.live, live === null ? '–' : short ? live + ' (' + short + ' short)' : live);
    setClass(rec.live, short ? 'num cell-warn' : 'num');
    setText(rec.blocking, num(sw.blocking) === null ? '–' : sw.blocking);
    const stale = num(sw.stale);
    setText(rec.stale, stale === null ? '–' : stale);
    setClass(rec.stale, stale ? 'num cell-bad' : 'num');
    // follow the target until the operator types a size of their own
    if (!rec.edited && document.activeElement !== rec.input && target !== null && rec.input.value !== String(target)) {
      rec.input.value = String(target);
    }
  }

  function renderSwarms(s) {
    const swarms = arr(s.swarms).slice().sort((a, b) => collator.compare(str(a && a.swarmId), str(b && b.swarmId)));
    const n = reconcile(els.swarmsBody, swarmCache, swarms, (w) => str(w.swarmId), createSwarm, updateSwarm);
    setHidden(els.swarmsEmpty, n > 0);
  }

  // ---------------------------------------------------------------- spawn requests

  const spawnCache = newCache();

  function createSpawn(key) {
    const tr = h('tr');
    tr.setAttribute('data-testid', 'spawn-row');
    tr.setAttribute('data-id', key);
    const th = h('th', 'mono', key);
    th.scope = 'row';
    const swarm = h('td', 'mono');
    const statusCell = h('td');
    const status = h('span', 'badge');
    statusCell.append(status);
    const replaces = h('td', 'mono');
    const age = h('td', 'num');
    tr.append(th, swarm, statusCell, replaces, age);
    return { el: tr, swarm, status, replaces, age };
  }

  function updateSpawn(rec, r) {
    const st = str(r.status) || 'unknown';
    setAttr(rec.el, 'data-status', st);
    setText(rec.swarm, str(r.swarmId) || '–');
    setText(rec.status, st);
    setClass(rec.status, 'badge ' + (st === 'failed' ? 'badge-bad' : st === 'ready' ? 'badge-ok' : st === 'pending' || st === 'spawning' ? 'badge-warn' : 'badge-muted'));
    setText(rec.replaces, str(r.replaces) || '–');
    setText(rec.age, fmtDuration(r.ageMs));
  }

  function renderSpawns(s) {
    const n = reconcile(els.spawnsBody, spawnCache, arr(s.spawnRequests), (r) => str(r.newCoordinatorId), createSpawn, updateSpawn);
    setHidden(els.spawnsEmpty, n > 0);
  }

  // ---------------------------------------------------------------- escalations

  const escalationCache = newCache();

  function createEscalation(key, e) {
    const li = h('li', 'escalation');
    li.setAttribute('data-testid', 'escalation-row');
    li.setAttribute('data-id', str(e.deadCoordinatorId));
    const head = h('div', 'escalation-head');
    const who = h('strong', 'mono', str(e.deadCoordinatorId) || '?');
    const swarm = h('span', 'muted');
    const badge = h('span', 'badge');
    head.append('Dead ', who, ' ', swarm, ' ', badge);
    const dl = h('dl', 'kv');
    const field = (label) => {
      const dt = h('dt', null, label);
      const dd = h('dd');
      dl.append(dt, dd);
      return dd;
    };
    const step = field('Step');
    const status = field('Status');
    const replacement = field('Replacement');
    const lease = field('Lease left');
    li.append(head, dl);
    return { el: li, swarm, badge, step, status, replacement, lease };
  }

  function updateEscalation(rec, e) {
    const st = str(e.state) || 'unknown';
    setAttr(rec.el, 'data-state', st);
    setText(rec.swarm, str(e.swarmId) ? 'in ' + str(e.swarmId) : '');
    setText(rec.badge, st);
    setClass(rec.badge, 'badge ' + (st === 'stuck' ? 'badge-bad' : st === 'running' ? 'badge-info' : 'badge-warn'));
    setText(rec.step, str(e.step) || '–');
    setText(rec.status, str(e.status) || '–');
    setText(rec.replacement, str(e.newCoordinatorId) || 'none yet');
    setText(rec.lease, fmtDuration(e.leaseLeftMs));
  }

  function renderEscalations(s) {
    const n = reconcile(els.escalations, escalationCache, arr(s.escalations),
      (e) => str(e.deadCoordinatorId) + '\u0000' + str(e.swarmId), createEscalation, updateEscalation);
    setHidden(els.escalationsEmpty, n > 0);
  }

  // ---------------------------------------------------------------- participants

  const participantCache = newCache();
  let participantOrder = null; // ids sorted, reused while the set of ids does not change

  function kindRank(k) {
    return k === 'coordinator' ? 0 : k === 'validator' ? 1 : 2;
  }

  function compareParticipants(a, b) {
    return collator.compare(str(a.swarmId), str(b.swarmId))
      || kindRank(str(a.kind)) - kindRank(str(b.kind))
      || collator.compare(str(a.id), str(b.id));
  }

  function isBlocking(p) {
    return p.status === 'blocking' || arr(p.waitingFor).length > 0;
  }

  function participantState(p, threshold) {
    if (p.healthState === 'dead') return 'dead';
    const age = num(p.heartbeatAgeMs);
    if (p.stale === true || (threshold && age !== null && age >= threshold)) return 'stale';
    if (p.healthState === 'warning' || (num(p.warnings) || 0) > 0) return 'warning';
    return 'live';
  }

  function heartbeatLevel(p, threshold) {
    const age = num(p.heartbeatAgeMs);
    if (age === null) return p.stale === true ? 'stale' : 'unknown';
    if (threshold) {
      if (age >= threshold) return 'stale';
      if (age >= threshold / 2) return 'late';
      return p.stale === true ? 'stale' : 'ok';
    }
    return p.stale === true ? 'stale' : 'ok';
  }

  function createParticipant(key) {
    const tr = h('tr');
    tr.setAttribute('data-testid', 'participant-row');
    tr.setAttribute('data-id', key);
    const idCell = h('th', 'mono id-cell', key);
    idCell.scope = 'row';
    const kind = h('td');
    const swarm = h('td', 'mono');
    const stateCell = h('td');
    const stateBadge = h('span', 'badge');
    stateCell.append(stateBadge);
    const hbCell = h('td', 'num');
    const hb = h('span', 'hb');
    hbCell.append(hb);
    const warnings = h('td', 'num');
    const epoch = h('td', 'num');
    const statusCell = h('td');
    const status = h('span', 'status-line');
    const waiting = h('span', 'wait-line mono small');
    statusCell.append(status, waiting);
    const items = h('td', 'mono small');
    const action = h('td', 'action-cell');
    tr.append(idCell, swarm, kind, stateCell, hbCell, warnings, epoch, statusCell, items, action);
    return { el: tr, id: key, kind, swarm, stateBadge, hb, warnings, epoch, status, waiting, items, action, button: null };
  }

  let participantCtx = { threshold: 0, maxWarnings: null };

  function updateParticipant(rec, p) {
    const threshold = participantCtx.threshold;
    const st = participantState(p, threshold);
    setAttr(rec.el, 'data-kind', str(p.kind));
    setAttr(rec.el, 'data-state', st);
    setClass(rec.el, 'row-' + st);
    setText(rec.kind, (str(p.kind) || '–') + (p.ts === true ? ' (TS)' : ''));
    setText(rec.swarm, str(p.swarmId) || '–');
    setText(rec.stateBadge, st);
    setClass(rec.stateBadge, 'badge ' + (st === 'live' ? 'badge-ok' : st === 'warning' ? 'badge-warn' : 'badge-bad'));

    const level = heartbeatLevel(p, threshold);
    const age = num(p.heartbeatAgeMs);
    let hbText = age === null ? '–' : fmtDuration(age);
    if (level === 'late') hbText += ' · late';
    else if (level === 'stale') hbText += ' · stale';
    setText(rec.hb, hbText);
    setClass(rec.hb, 'hb hb-' + level);

    const w = num(p.warnings);
    const max = participantCtx.maxWarnings;
    setText(rec.warnings, (w === null ? '–' : w) + '/' + (max === null ? '–' : max));
    setClass(rec.warnings, 'num' + (w ? (max !== null && w >= max ? ' cell-bad' : ' cell-warn') : ''));
    setText(rec.epoch, num(p.epoch) === null ? '–' : p.epoch);

    let statusText = str(p.status) || '–';
    if (str(p.phase)) statusText += ' · ' + str(p.phase);
    if (num(p.iteration) !== null) statusText += ' · #' + p.iteration;
    setText(rec.status, statusText);

    const waitingFor = arr(p.waitingFor).map(str);
    let waitText = '';
    if (waitingFor.length) {
      waitText = 'waits for ' + (waitingFor.length > 3 ? waitingFor.slice(0, 3).join(', ') + ' +' + (waitingFor.length - 3) + ' more' : waitingFor.join(', '));
      if (str(p.waitingForSignal)) waitText += ' · ' + str(p.waitingForSignal);
      if (num(p.blockingForMs) !== null) waitText += ' · ' + fmtDuration(p.blockingForMs);
    } else if (p.status === 'blocking' && num(p.blockingForMs) !== null) {
      waitText = 'blocking ' + fmtDuration(p.blockingForMs);
    }
    setText(rec.waiting, waitText);
    if (waitingFor.length > 3) setAttr(rec.waiting, 'title', waitingFor.join(', '));
    else if (rec.waiting.hasAttribute('title')) rec.waiting.removeAttribute('title');

    const owned = arr(p.ownedItems).map(str);
    let itemsText = '–';
    if (owned.length) itemsText = owned.length > 1 ? owned[0] + ' +' + (owned.length - 1) + ' more' : owned[0];
    setText(rec.items, itemsText);
    if (owned.length > 1) setAttr(rec.items, 'title', owned.slice(0, 50).join(', ') + (owned.length > 50 ? ', …' : ''));
    else if (rec.items.hasAttribute('title')) rec.items.removeAttribute('title');

    const blocking = isBlocking(p);
    if (blocking && !rec.button) {
      const b = h('button', 'btn btn-small btn-danger', 'Force-unblock');
      b.type = 'button';
      b.setAttribute('data-testid', 'action-force-unblock');
      b.setAttribute('data-id', rec.id);
      b.setAttribute('aria-label', 'Force-unblock ' + rec.id);
      rec.action.append(b);
      rec.button = b;
    } else if (!blocking && rec.button) {
      rec.button.remove();
      rec.button = null;
    }
  }

  function participantMatches(p, f) {
    if (!f) return true;
    const st = participantState(p, participantCtx.threshold);
    return str(p.id).toLowerCase().includes(f)
      || str(p.swarmId).toLowerCase().includes(f)
      || str(p.kind).toLowerCase().includes(f)
      || st.includes(f)
      || str(p.status).toLowerCase().includes(f)
      || str(p.phase).toLowerCase().includes(f);
  }

  function renderParticipants(s, pmap) {
    const thr = num(s.staleThresholdMs);
    participantCtx = { threshold: thr !== null && thr > 0 ? thr : 0, maxWarnings: num(s.maxWarnings) };

    // sort only when the set of ids changed (n log n once, O(n) afterwards)
    let sameSet = participantOrder !== null && participantOrder.length === pmap.size;
    if (sameSet) {
      for (const id of participantOrder) {
        if (!pmap.has(id)) {
          sameSet = false;
          break;
        }
      }
    }
    if (!sameSet) participantOrder = Array.from(pmap.values()).sort(compareParticipants).map((p) => str(p.id));

    let coordinators = 0;
    let validators = 0;
    let blocking = 0;
    let stale = 0;
    let dead = 0;
    const rows = [];
    const f = state.filter;
    for (const id of participantOrder) {
      const p = pmap.get(id);
      if (p.kind === 'coordinator') coordinators++;
      else if (p.kind === 'validator') validators++;
      if (isBlocking(p)) blocking++;
      const st = participantState(p, participantCtx.threshold);
      if (st === 'stale') stale++;
      else if (st === 'dead') dead++;
      if (participantMatches(p, f)) rows.push(p);
    }
    const shown = reconcile(els.participantsBody, participantCache, rows, (p) => str(p.id), createParticipant, updateParticipant);
    let summary = plural(coordinators, 'coordinator', 'coordinators') + ', ' + plural(validators, 'validator', 'validators')
      + ' · ' + blocking + ' blocking · ' + stale + ' stale · ' + dead + ' dead';
    if (participantCtx.threshold) summary += ' · stale after ' + fmtDuration(participantCtx.threshold);
    if (f) summary += ' · showing ' + shown + ' matching “' + f + '”';
    setText(els.participantsSummary, summary);
    setHidden(els.participantsEmpty, shown > 0);
    setText(els.participantsEmpty, f && pmap.size ? 'No participant matches the filter.' : 'No participants.');
  }

  // ---------------------------------------------------------------- wait-for graph

  // Layout in O(n) (plus one sort per column): only nodes in a wait are drawn, in up to three columns:
  // 0 = waits but nobody waits for it, 1 = waits and is waited for (chains, cycles), 2 = only waited for.
  // Arrows point from the waiter to the awaited; arrows inside column 1 are arcs (down on the right, up on the
  // left, so a cycle reads as a loop). Elements are kept per node/edge id and updated in place.
  const graph = {
    svg: null,
    title: null,
    edgeLayer: null,
    deadEdgeLayer: null,
    nodeLayer: null,
    nodes: new Map(),
    edges: new Map(),
    banner: null,
    empty: null,
    caption: null,
  };

  function initGraph() {
    const root = svg('svg', { class: 'graph-svg', role: 'img', 'aria-labelledby': 'wait-graph-title' });
    graph.title = svg('title', { id: 'wait-graph-title' });
    root.append(graph.title);
    const defs = svg('defs');
    for (const [id, cls] of [['cfn-arrow', 'arrowhead'], ['cfn-arrow-deadlock', 'arrowhead arrowhead-deadlock']]) {
      const marker = svg('marker', {
        id, viewBox: '0 0 10 10', refX: '10', refY: '5', markerWidth: '9', markerHeight: '9',
        markerUnits: 'userSpaceOnUse', orient: 'auto',
      });
      marker.append(svg('path', { d: 'M0,0 L10,5 L0,10 z', class: cls }));
      defs.append(marker);
    }
    root.append(defs);
    graph.edgeLayer = svg('g', { class: 'edges' });
    graph.deadEdgeLayer = svg('g', { class: 'edges edges-deadlock' });
    graph.nodeLayer = svg('g', { class: 'nodes' });
    root.append(graph.edgeLayer, graph.deadEdgeLayer, graph.nodeLayer);
    graph.svg = root;
    els.graphScroll.append(root);

    graph.banner = h('p', 'deadlock-banner');
    graph.banner.setAttribute('data-testid', 'deadlock-banner');
    graph.banner.setAttribute('role', 'alert');
    graph.empty = h('p', 'empty graph-empty', 'Nobody is waiting for anybody right now.');
    graph.empty.setAttribute('data-testid', 'wait-empty');
    graph.caption = h('p', 'graph-caption muted');
  }

  function createNode(id) {
    const g = svg('g', { 'data-testid': 'wait-node', 'data-id': id });
    const title = svg('title');
    const circle = svg('circle', { r: '9', cx: '0', cy: '0' });
    const label = svg('text', { class: 'node-label' });
    const sub = svg('text', { class: 'node-sub' });
    g.append(title, circle, label, sub);
    graph.nodeLayer.append(g);
    return { el: g, title, circle, label, sub };
  }

  function createEdge(from, to) {
    const g = svg('g', { 'data-testid': 'wait-edge', 'data-from': from, 'data-to': to });
    const title = svg('title');
    const hit = svg('path', { class: 'edge-hit' }); // wide transparent stroke: easier to hover
    const path = svg('path', { class: 'edge-line' });
    g.append(title, hit, path);
    return { el: g, title, hit, path, dead: null };
  }

  function renderGraph(s, pmap) {
    if (!graph.svg) initGraph();
    const waits = s.waits && typeof s.waits === 'object' ? s.waits : {};

    // edges, merged per (from, to)
    const edges = new Map();
    for (const e of arr(waits.edges)) {
      if (!e || typeof e !== 'object') continue;
      const from = str(e.from);
      const to = str(e.to);
      if (!from || !to) continue;
      const key = from + '\u0000' + to;
      let x = edges.get(key);
      if (!x) {
        x = { key, from, to, signals: [], forMs: null };
        edges.set(key, x);
      }
      const sig = str(e.signal);
      if (sig && !x.signals.includes(sig)) x.signals.push(sig);
      const f = num(e.forMs);
      if (f !== null && (x.forMs === null || f > x.forMs)) x.forMs = f;
    }

    // deadlock cycles
    const cycles = arr(waits.cycles).map((c) => arr(c).map(str).filter(Boolean)).filter((c) => c.length > 0);
    const deadNodes = new Set();
    const deadEdges = new Set();
    for (const c of cycles) {
      for (let i = 0; i < c.length; i++) {
        deadNodes.add(c[i]);
        deadEdges.add(c[i] + '\u0000' + c[(i + 1) % c.length]);
      }
    }

    // nodes
    const nodes = new Map();
    const node = (id) => {
      let n = nodes.get(id);
      if (!n) {
        const p = pmap.get(id);
        n = { id, p, out: [], ins: [], inCount: 0, maxFor: null, col: 0, x: 0, y: 0, rank: 0, want: null, placed: false };
        nodes.set(id, n);
      }
      return n;
    };
    for (const e of edges.values()) {
      const a = node(e.from);
      const b = node(e.to);
      a.out.push(e);
      b.inCount++;
      b.ins.push(a);
      if (e.forMs !== null && (a.maxFor === null || e.forMs > a.maxFor)) a.maxFor = e.forMs;
    }
    const cols = [[], [], []];
    for (const n of nodes.values()) {
      n.col = n.out.length && n.inCount ? 1 : n.out.length ? 0 : 2;
      cols[n.col].push(n);
    }
    const bySwarmId = (a, b) => collator.compare(str(a.p && a.p.swarmId), str(b.p && b.p.swarmId)) || collator.compare(a.id, b.id);
    cols[2].sort(bySwarmId);
    // column 1: each cycle's members together, in cycle order, then the rest
    const placed = new Set();
    const col1 = [];
    for (const c of cycles) {
      for (const id of c) {
        const n = nodes.get(id);
        if (n && n.col === 1 && !placed.has(id)) {
          placed.add(id);
          col1.push(n);
        }
      }
    }
    const rest1 = cols[1].filter((n) => !placed.has(n.id)).sort(bySwarmId);
    cols[1] = col1.concat(rest1);

    const hasMiddle = cols[1].length > 0;
    const rowH = hasMiddle ? 54 : 34;
    const top = hasMiddle ? 22 : 10;
    const active = [0, 1, 2].filter((c) => cols[c].length > 0);
    const labelSpace = 135;
    const gap = hasMiddle ? 170 : 190;
    const width = Math.max(2 * labelSpace + (active.length - 1) * gap, 360);
    const colX = [0, 0, 0];
    const span = (active.length - 1) * gap;
    active.forEach((c, i) => {
      colX[c] = Math.round(width / 2 - span / 2 + i * gap);
    });
    // column 0 grouped by what its nodes wait for (fewer crossings), evenly spaced from the top
    cols[1].forEach((n, i) => { n.rank = i; });
    cols[2].forEach((n, i) => { n.rank = cols[1].length + i; });
    for (const n of cols[0]) {
      let m = Infinity;
      for (const e of n.out) m = Math.min(m, nodes.get(e.to).rank);
      n.rank = m;
    }
    cols[0].sort((a, b) => a.rank - b.rank || bySwarmId(a, b));
    cols[0].forEach((n, i) => {
      n.y = Math.round(top + i * rowH + rowH / 2);
      n.placed = true;
    });
    // columns 1 and 2: each node beside the mean of its waiters, kept in order and a row apart
    const want = (n) => {
      let sum = 0;
      let count = 0;
      for (const w of n.ins) {
        if (w.placed) {
          sum += w.y;
          count++;
        }
      }
      return count ? sum / count : null;
    };
    const stack = (list) => {
      let prev = top + rowH / 2 - rowH;
      let i = 0;
      while (i < list.length) {
        const d = list[i].want;
        let j = i + 1;
        if (d !== null) while (j < list.length && list[j].want === d) j++;
        let y = d === null ? prev + rowH : Math.max(prev + rowH, d - ((j - i - 1) * rowH) / 2);
        for (let t = i; t < j; t++) {
          list[t].y = Math.round(y);
          list[t].placed = true;
          prev = y;
          y += rowH;
        }
        i = j;
      }
    };
    for (const n of cols[1]) n.want = want(n);
    stack(cols[1]); // cycle order kept
    for (const n of cols[2]) n.want = want(n);
    cols[2].sort((a, b) => (a.want === null ? Infinity : a.want) - (b.want === null ? Infinity : b.want) || a.rank - b.rank);
    stack(cols[2]);
    let maxY = 0;
    for (const c of active) {
      for (const n of cols[c]) {
        n.x = colX[c];
        if (n.y > maxY) maxY = n.y;
      }
    }
    const height = maxY + rowH / 2 + 10;

    // draw nodes
    const r = 9;
    for (const [id, rec] of graph.nodes) {
      if (!nodes.has(id)) {
        rec.el.remove();
        graph.nodes.delete(id);
      }
    }
    for (const n of nodes.values()) {
      let rec = graph.nodes.get(n.id);
      if (!rec) {
        rec = createNode(n.id);
        graph.nodes.set(n.id, rec);
      }
      const dead = deadNodes.has(n.id);
      const kind = n.p ? str(n.p.kind) : '';
      const pst = n.p ? participantState(n.p, participantCtx.threshold) : 'unknown';
      setAttr(rec.el, 'data-deadlock', dead ? 'true' : 'false');
      setAttr(rec.el, 'transform', 'translate(' + n.x + ' ' + n.y + ')');
      setClass(rec.el, 'node node-' + (kind === 'coordinator' || kind === 'validator' ? kind : 'other')
        + ' node-' + pst + (dead ? ' node-deadlock' : ''));
      setText(rec.label, truncateMiddle(n.id, n.col === 1 ? 26 : 19));
      const sub = n.maxFor !== null ? 'waits ' + fmtDuration(n.maxFor) : n.out.length ? 'waits' : '';
      setText(rec.sub, sub);
      if (n.col === 0) {
        setAttr(rec.label, 'x', -(r + 6)); setAttr(rec.label, 'y', sub ? -1 : 4); setAttr(rec.label, 'text-anchor', 'end');
        setAttr(rec.sub, 'x', -(r + 6)); setAttr(rec.sub, 'y', 11); setAttr(rec.sub, 'text-anchor', 'end');
      } else if (n.col === 2) {
        setAttr(rec.label, 'x', r + 6); setAttr(rec.label, 'y', 4); setAttr(rec.label, 'text-anchor', 'start');
        setAttr(rec.sub, 'x', r + 6); setAttr(rec.sub, 'y', 16); setAttr(rec.sub, 'text-anchor', 'start');
      } else {
        setAttr(rec.label, 'x', 0); setAttr(rec.label, 'y', -(r + 5)); setAttr(rec.label, 'text-anchor', 'middle');
        setAttr(rec.sub, 'x', 0); setAttr(rec.sub, 'y', r + 12); setAttr(rec.sub, 'text-anchor', 'middle');
      }
      let t = n.id + (kind ? ' (' + kind + (n.p && str(n.p.swarmId) ? ', ' + str(n.p.swarmId) : '') + ')' : '') + ', ' + pst;
      if (n.out.length) t += '\nwaits for ' + n.out.map((e) => e.to).join(', ');
      if (n.inCount) t += '\nwaited for by ' + plural(n.inCount, 'participant', 'participants');
      if (dead) t += '\nin a deadlock cycle';
      setText(rec.title, t);
    }

    // draw edges
    for (const [key, rec] of graph.edges) {
      if (!edges.has(key)) {
        rec.el.remove();
        graph.edges.delete(key);
      }
    }
    for (const e of edges.values()) {
      let rec = graph.edges.get(e.key);
      if (!rec) {
        rec = createEdge(e.from, e.to);
        graph.edges.set(e.key, rec);
      }
      const dead = deadEdges.has(e.key);
      if (rec.dead !== dead) {
        rec.dead = dead;
        (dead ? graph.deadEdgeLayer : graph.edgeLayer).append(rec.el);
        setAttr(rec.el, 'data-deadlock', dead ? 'true' : 'false');
        setClass(rec.el, 'edge' + (dead ? ' edge-deadlock' : ''));
        setAttr(rec.path, 'marker-end', dead ? 'url(#cfn-arrow-deadlock)' : 'url(#cfn-arrow)');
      }
      const a = nodes.get(e.from);
      const b = nodes.get(e.to);
      const d = edgePath(a, b, r);
      setAttr(rec.path, 'd', d);
      setAttr(rec.hit, 'd', d);
      let t = e.from + ' waits for ' + e.to + '\nsignal: ' + (e.signals.length ? e.signals.join(', ') : 'unknown')
        + '\nfor ' + fmtDuration(e.forMs);
      if (dead) t += '\npart of a deadlock cycle';
      setText(rec.title, t);
      setAttr(rec.el, 'data-signal', e.signals.join(','));
    }

    setAttr(graph.svg, 'viewBox', '0 0 ' + width + ' ' + height);
    setAttr(graph.svg, 'width', width);
    setAttr(graph.svg, 'height', height);
    setText(graph.title, edges.size
      ? 'Wait-for graph: ' + plural(edges.size, 'wait', 'waits') + ' between ' + plural(nodes.size, 'participant', 'participants')
        + (cycles.length ? ', ' + plural(cycles.length, 'deadlock cycle', 'deadlock cycles') : '')
      : 'Wait-for graph: nobody waits');

    // banner, caption, empty state (present in the DOM only when they apply)
    const status = [];
    if (cycles.length) {
      const shownCycles = cycles.slice(0, 3).map((c) => c.concat([c[0]]).join(' → '));
      let text = (cycles.length === 1 ? 'Deadlock: ' : cycles.length + ' deadlocks: ') + shownCycles.join('; ');
      if (cycles.length > 3) text += '; and ' + (cycles.length - 3) + ' more';
      setText(graph.banner, text);
      status.push(graph.banner);
    }
    if (edges.size) {
      setText(graph.caption, plural(edges.size, 'wait', 'waits') + ' between ' + plural(nodes.size, 'participant', 'participants')
        + ' (only participants in a wait are drawn).');
      status.push(graph.caption);
    } else {
      status.push(graph.empty);
    }
    let same = els.graphStatus.children.length === status.length;
    for (let i = 0; same && i < status.length; i++) same = els.graphStatus.children[i] === status[i];
    if (!same) els.graphStatus.replaceChildren(...status);
    setHidden(els.graphScroll, edges.size === 0);
    return cycles.length;
  }

  function edgePath(a, b, r) {
    const tip = r + 1; // the arrow's tip stops just outside the target circle
    if (a === b) {
      return 'M' + (a.x + r) + ',' + (a.y - 3) + ' C' + (a.x + 46) + ',' + (a.y - 34) + ' ' + (a.x + 46) + ',' + (a.y + 34) + ' '
        + (a.x + tip) + ',' + (a.y + 3);
    }
    if (a.x === b.x) {
      const dy = b.y - a.y;
      const bulge = Math.min(95, 26 + Math.abs(dy) * 0.3);
      const side = dy > 0 ? 1 : -1; // downwards on the right, upwards on the left
      const x0 = a.x + side * r;
      const x1 = a.x + side * (r + bulge);
      return 'M' + x0 + ',' + a.y + ' C' + x1 + ',' + a.y + ' ' + x1 + ',' + b.y + ' ' + (b.x + side * tip) + ',' + b.y;
    }
    const dir = b.x > a.x ? 1 : -1;
    const x0 = a.x + dir * r;
    const x3 = b.x - dir * tip;
    const mid = (x0 + x3) / 2;
    return 'M' + x0 + ',' + a.y + ' C' + mid + ',' + a.y + ' ' + mid + ',' + b.y + ' ' + x3 + ',' + b.y;
  }

  // ---------------------------------------------------------------- timeline

  const timeline = { items: [], keys: new Set() }; // newest first

  function addTimeline(ev) {
    if (!ev || typeof ev !== 'object') return;
    const at = num(ev.at) === null ? 0 : ev.at;
    const kind = str(ev.kind) || 'event';
    const text = str(ev.text);
    const ids = arr(ev.ids).map(str);
    // the server replays its recent timeline on every (re)connect: skip what is already shown
    const key = at + '\u0000' + kind + '\u0000' + text + '\u0000' + ids.join('\u0001');
    if (timeline.keys.has(key)) return;
    const items = timeline.items;
    if (items.length >= TIMELINE_MAX && at < items[items.length - 1].at) return;
    let i = 0;
    while (i < items.length && items[i].at > at) i++;

    const li = h('li', 'tl-item');
    li.setAttribute('data-testid', 'timeline-item');
    li.setAttribute('data-kind', kind);
    if (ids.length) li.setAttribute('data-ids', ids.join(' '));
    const time = h('time', 'mono', fmtClock(at));
    const iso = isoTime(at);
    if (iso) time.setAttribute('datetime', iso);
    const badge = h('span', 'badge tl-kind', kind.replace(/_/g, ' '));
    const body = h('span', 'tl-text', text || ids.join(', '));
    li.append(time, ' ', badge, ' ', body);

    const rec = { at, key, el: li };
    els.timeline.insertBefore(li, i < items.length ? items[i].el : null);
    items.splice(i, 0, rec);
    timeline.keys.add(key);
    while (items.length > TIMELINE_MAX) {
      const old = items.pop();
      old.el.remove();
      timeline.keys.delete(old.key);
    }
    setHidden(els.timelineEmpty, items.length > 0);
  }

  // ---------------------------------------------------------------- live connection

  let source = null;
  let retryMs = RETRY_MIN_MS;
  let retryTimer = 0;

  function setConnection(live) {
    setText(els.connection, live ? 'live' : 'reconnecting');
    setClass(els.connection, 'badge conn ' + (live ? 'conn-live' : 'conn-down'));
  }

  function parse(data) {
    try {
      return JSON.parse(data);
    } catch (e) {
      return null;
    }
  }

  function connect() {
    retryTimer = 0;
    if (typeof window.EventSource !== 'function') {
      setConnection(false);
      return;
    }
    const es = new EventSource(EVENTS_URL);
    source = es;
    es.addEventListener('open', () => {
      if (source !== es) return;
      retryMs = RETRY_MIN_MS;
      setConnection(true);
    });
    es.addEventListener('error', () => {
      if (source !== es) return;
      setConnection(false);
      // CONNECTING: the browser retries by itself. CLOSED (e.g. an answer that was not an event stream): retry here.
      if (es.readyState === EventSource.CLOSED) {
        es.close();
        source = null;
        if (!retryTimer) retryTimer = window.setTimeout(connect, retryMs);
        retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
      }
    });
    es.addEventListener('snapshot', (ev) => {
      if (source !== es) return;
      const s = parse(ev.data);
      if (s) acceptSnapshot(s);
    });
    es.addEventListener('timeline', (ev) => {
      if (source !== es) return;
      const t = parse(ev.data);
      if (t) addTimeline(t);
    });
  }

  async function loadInitialSnapshot() {
    try {
      const res = await fetch(SNAPSHOT_URL, { headers: { Accept: 'application/json' }, cache: 'no-store', credentials: 'same-origin' });
      if (!res.ok) {
        if (!state.snap) setText(els.snapshotTime, 'unavailable (' + res.status + ')');
        return;
      }
      const s = parse(await res.text());
      if (s) acceptSnapshot(s);
    } catch (e) {
      if (!state.snap) setText(els.snapshotTime, 'unavailable');
    }
  }

  // ---------------------------------------------------------------- admin token

  function readToken() {
    try {
      return window.sessionStorage.getItem(TOKEN_KEY) || '';
    } catch (e) {
      return '';
    }
  }

  function storeToken(value) {
    try {
      if (value) window.sessionStorage.setItem(TOKEN_KEY, value);
      else window.sessionStorage.removeItem(TOKEN_KEY);
    } catch (e) {
      // storage unavailable: the token lives in the input only
    }
  }

  function currentToken() {
    return els.token.value.trim();
  }

  // ---------------------------------------------------------------- actions

  function snapshotParticipant(id) {
    const s = state.snap;
    if (!s) return null;
    for (const p of arr(s.participants)) if (p && str(p.id) === id) return p;
    return null;
  }

  function snapshotSwarm(id) {
    const s = state.snap;
    if (!s) return null;
    for (const w of arr(s.swarms)) if (w && str(w.swarmId) === id) return w;
    return null;
  }

  function buildAction(button) {
    const testid = button.getAttribute('data-testid');
    if (testid === 'action-force-unblock-all') {
      let blocking = null;
      if (state.snap) {
        blocking = 0;
        for (const p of arr(state.snap.participants)) if (p && isBlocking(p)) blocking++;
      }
      return {
        title: 'Force-unblock every blocking coordinator?',
        text: 'Every wait running now ends at once: each blocked coordinator stops waiting and goes on without the ACKs '
          + 'still missing' + (blocking === null ? '.' : ' (' + plural(blocking, 'participant was', 'participants were')
          + ' blocking in the last snapshot).') + ' Nothing else changes: no one is stopped or replaced.',
        url: '/api/timeouts/force-unblock-all',
        body: {},
        confirm: 'Force-unblock all',
        danger: true,
        focus: '[data-testid="action-force-unblock-all"]',
      };
    }
    if (testid === 'action-force-unblock') {
      const id = str(button.getAttribute('data-id'));
      const p = snapshotParticipant(id);
      let detail = '';
      if (p) {
        const wf = arr(p.waitingFor).map(str);
        if (wf.length) detail += ' It is waiting for ' + wf.join(', ');
        if (str(p.waitingForSignal)) detail += (detail ? ' (signal ' : ' It is waiting on signal ') + str(p.waitingForSignal) + (detail ? ')' : '');
        if (num(p.blockingForMs) !== null) detail += (detail ? ' for ' : ' It has been blocking for ') + fmtDuration(p.blockingForMs);
        if (detail) detail += '.';
      }
      return {
        title: 'Force-unblock ' + id + '?',
        text: id + ' stops waiting at once and goes on without the ACKs still missing.' + detail
          + ' No other participant is touched.',
        url: '/api/coordinators/' + encodeURIComponent(id) + '/unblock',
        body: {},
        confirm: 'Force-unblock ' + id,
        danger: true,
        focus: '[data-testid="action-force-unblock"][data-id="' + CSS.escape(id) + '"]',
      };
    }
    if (testid === 'action-pause-spawning') {
      return {
        title: 'Pause spawning?',
        text: 'No new coordinator is spawned until you resume: spawn requests (including replacements of dead '
          + 'coordinators) stay pending and scale-ups are refused; scale-downs still work. The pause is kept in Redis, '
          + 'so restarting the swarm manager does not lift it.',
        url: '/api/spawning/pause',
        body: {},
        confirm: 'Pause spawning',
        danger: true,
        focus: '[data-testid="action-pause-spawning"]',
      };
    }
    if (testid === 'action-resume-spawning') {
      return {
        title: 'Resume spawning?',
        text: 'Spawning resumes: pending spawn requests (including replacements of dead coordinators) are carried out '
          + 'and scale-ups are accepted again.',
        url: '/api/spawning/resume',
        body: {},
        confirm: 'Resume spawning',
        danger: false,
        focus: '[data-testid="action-resume-spawning"]',
      };
    }
    if (testid === 'action-scale') {
      const id = str(button.getAttribute('data-swarm'));
      const input = document.querySelector('[data-testid="scale-input"][data-swarm="' + CSS.escape(id) + '"]');
      const raw = input ? input.value.trim() : '';
      const n = Number(raw);
      if (!raw || !Number.isInteger(n)) {
        showResult('Scale ' + id, 'invalid', 'enter a whole number as the target size of ' + id);
        if (input) input.focus();
        return null;
      }
      const sw = snapshotSwarm(id);
      const target = sw ? num(sw.target) : null;
      const live = sw ? num(sw.live) : null;
      let text = 'Sets the target size of ' + id + (target !== null ? ' from ' + target : '') + ' to ' + n
        + (live !== null ? ' (' + live + ' live now)' : '') + '. ';
      if (target !== null && n < target) text += 'Surplus coordinators are stopped gracefully.';
      else if (target !== null && n > target) text += 'New coordinators are spawned' + (state.snap && state.snap.spawningPaused === true
        ? '; spawning is paused, so the server will refuse this scale-up (409).' : '.');
      else text += 'Coordinators are spawned or stopped until the swarm has that size.';
      return {
        title: 'Scale ' + id + ' to ' + n + '?',
        text,
        url: '/api/swarms/' + encodeURIComponent(id) + '/scale',
        body: { targetSize: n },
        confirm: 'Scale to ' + n,
        danger: false,
        focus: '[data-testid="action-scale"][data-swarm="' + CSS.escape(id) + '"]',
        onSuccess: () => {
          const rec = swarmCache.map.get(id);
          if (rec) rec.edited = false;
        },
      };
    }
    return null;
  }

  let pendingAction = null;

  function openConfirm(action) {
    if (els.dialog.open) return;
    pendingAction = action;
    setText(els.dialogTitle, action.title);
    setText(els.dialogText, action.text);
    setText(els.dialogRequest, 'POST ' + action.url + ' ' + JSON.stringify(action.body));
    setText(els.dialogAuth, currentToken()
      ? 'Sent with the admin token you entered (Authorization: Bearer …).'
      : 'Sent without an admin token: the server accepts it only from a loopback connection and answers 401 otherwise.');
    setText(els.confirmYes, action.confirm);
    setClass(els.confirmYes, 'btn ' + (action.danger ? 'btn-danger' : 'btn-primary'));
    els.dialog.returnValue = '';
    els.dialog.showModal();
    els.confirmNo.focus();
  }

  function onDialogClose() {
    const action = pendingAction;
    pendingAction = null;
    if (action) {
      // focus back on the button that opened the dialog (it may have been redrawn meanwhile)
      const opener = document.querySelector(action.focus);
      if (opener && document.activeElement !== opener) opener.focus();
      else if (!opener) {
        const heading = document.getElementById('actions-heading');
        if (heading) heading.focus();
      }
    }
    if (els.dialog.returnValue === 'yes' && action) callApi(action);
  }

  function showResult(what, status, text) {
    setAttr(els.result, 'data-status', status);
    setText(els.result, text);
    const forEl = document.getElementById('action-result-for');
    if (forEl) setText(forEl, what);
  }

  async function callApi(action) {
    const what = 'POST ' + action.url;
    const headers = { 'Content-Type': 'application/json', Accept: 'application/json' };
    const token = currentToken();
    if (token) headers.Authorization = 'Bearer ' + token;
    showResult(what, 'pending', 'sending…');
    try {
      const res = await fetch(action.url, {
        method: 'POST',
        headers,
        body: JSON.stringify(action.body),
        credentials: 'same-origin',
        cache: 'no-store',
      });
      let body = '';
      try {
        body = await res.text();
      } catch (e) {
        body = '';
      }
      if (body.length > 4000) body = body.slice(0, 4000) + '…';
      showResult(what, String(res.status), (res.status + ' ' + body.trim()).trim());
      if (res.ok && action.onSuccess) action.onSuccess();
    } catch (e) {
      showResult(what, 'network-error', 'network error: ' + (e && e.message ? e.message : String(e)));
    }
  }

  function onClick(ev) {
    const target = ev.target instanceof Element ? ev.target.closest('button[data-testid^="action-"]') : null;
    if (!target || target.disabled) return;
    const action = buildAction(target);
    if (action) openConfirm(action);
  }

  // ---------------------------------------------------------------- start

  function start() {
    bindElements();
    setConnection(false);
    setHidden(els.timelineEmpty, false);

    els.token.value = readToken();
    document.getElementById('token-form').addEventListener('submit', (ev) => ev.preventDefault());
    els.token.addEventListener('input', () => storeToken(currentToken()));

    els.filter.addEventListener('input', () => {
      state.filter = els.filter.value.trim().toLowerCase();
      if (state.snap) scheduleRender();
    });

    document.addEventListener('click', onClick);
    els.confirmYes.addEventListener('click', () => els.dialog.close('yes'));
    els.confirmNo.addEventListener('click', () => els.dialog.close('no'));
    els.dialog.addEventListener('close', onDialogClose);

    loadInitialSnapshot();
    connect();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
