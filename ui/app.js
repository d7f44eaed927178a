/* meshzero dashboard: a client of the node's local API over WebSocket.
 * Two connections: one for calls and the resource.* / peer.* events that
 * keep the model current, one subscribed to '*' for the event stream (the
 * node does not say which subscription an event matched, so one connection
 * per purpose keeps them apart). All text from the mesh is set with
 * textContent: records are other nodes' data. */
'use strict';
(function () {
  const QUERY_LIMIT = 2000;      /* records fetched at once */
  const MAX_EVENTS = 200;        /* event stream lines kept */
  const STATUS_MS = 1000;        /* status poll: counters, calls/s */
  const MEMBERS_MS = 2000;       /* members (or peers) poll: remote nodes and links */
  const RECONCILE_MS = 15000;    /* full directory re-query */
  const HEALTH_MS = 5000;
  const CALL_TIMEOUT_MS = 10000;
  const RENDER_MS = 150;         /* directory renders coalesced */
  const LAYOUT_WORK = 3e6;       /* pair steps one layout may take (large meshes: fewer steps) */
  const RATE_SAMPLES = 61;       /* one minute of status samples */
  const NO_METHOD = -32601;
  const SVG = 'http://www.w3.org/2000/svg';

  const $ = (id) => document.getElementById(id);
  const token = new URLSearchParams(location.search).get('token');

  const S = {
    status: null,                /* the connected node's status */
    source: '',                  /* 'members' or 'peers' (a node without members) */
    hasMembers: true,
    hasHealth: true,
    peers: [],                   /* the connected node's peers (without members) */
    nodes: new Map(),            /* id -> member-shaped object */
    links: [],                   /* [a, b, direct] with a < b */
    records: new Map(),          /* resource_id -> record */
    truncated: false,
    samples: [],                 /* {t, calls, served, msgs} */
    pos: new Map(),              /* id -> {x, y}: kept across re-layouts */
    shape: '',                   /* node and link ids of the last layout */
    pickedRid: null,
    pickedNode: null,
  };

  /* ---- JSON-RPC over WebSocket ------------------------------------------ */

  function apiUrl() {
    const u = new URL('/', location.href);
    u.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
    if (token) u.searchParams.set('token', token);
    return u.href;
  }

  class Api {
    constructor(onEvent, onOpen, onClose) {
      this.next = 1;
      this.wait = new Map();
      this.ws = new WebSocket(apiUrl());
      this.ws.onopen = onOpen;
      this.ws.onclose = () => {
        for (const w of this.wait.values()) {
          clearTimeout(w.timer);
          w.reject(new Error('connection closed'));
        }
        this.wait.clear();
        onClose();
      };
      this.ws.onmessage = (ev) => {
        let m;
        try { m = JSON.parse(ev.data); } catch (e) { return; }
        if (m.method === 'event' && m.params) { onEvent(m.params); return; }
        const w = this.wait.get(m.id);
        if (!w) return;
        this.wait.delete(m.id);
        clearTimeout(w.timer);
        if (m.error) {
          const e = new Error(m.error.message || 'error');
          e.code = m.error.code;
          w.reject(e);
        } else {
          w.resolve(m.result);
        }
      };
    }

    call(method, params) {
      return new Promise((resolve, reject) => {
        if (this.ws.readyState !== WebSocket.OPEN) {
          reject(new Error('not connected'));
          return;
        }
        const id = this.next++;
        const timer = setTimeout(() => {
          this.wait.delete(id);
          reject(new Error(method + ': no answer in ' + CALL_TIMEOUT_MS + ' ms'));
        }, CALL_TIMEOUT_MS);
        this.wait.set(id, { resolve, reject, timer });
        const req = { jsonrpc: '2.0', id, method };
        if (params) req.params = params;
        this.ws.send(JSON.stringify(req));
      });
    }

    close() { this.ws.close(); }
  }

  /* ---- small helpers ------------------------------------------------------ */

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function svg(tag, attrs) {
    const e = document.createElementNS(SVG, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    return e;
  }

  const short = (id) => (typeof id === 'string' ? id.slice(0, 8) : '');
  const hostOf = (url) => {
    const m = /^[a-z]+:\/\/([^/]+)/.exec(url || '');
    return m ? m[1] : (url || '');
  };

  function ago(ms) {
    if (typeof ms !== 'number') return '';
    if (ms < 1000) return ms + ' ms';
    if (ms < 120000) return (ms / 1000).toFixed(1) + ' s';
    return Math.round(ms / 60000) + ' min';
  }

  function clock(d) {
    const p = (n, w) => String(n).padStart(w, '0');
    return p(d.getHours(), 2) + ':' + p(d.getMinutes(), 2) + ':' + p(d.getSeconds(), 2) + '.' +
      p(d.getMilliseconds(), 3);
  }

  function replaceRows(tbody, rows) {
    tbody.replaceChildren(...rows);
  }

  /* ---- the model: nodes and links ----------------------------------------- */

  function linkList(nodes, selfId, selfPeers) {
    const seen = new Map();
    for (const n of nodes.values()) {
      for (const p of n.peers || []) {
        if (!nodes.has(p) || p === n.id) continue;
        const [a, b] = n.id < p ? [n.id, p] : [p, n.id];
        seen.set(a + ' ' + b, [a, b, false]);
      }
    }
    for (const p of selfPeers) {
      const [a, b] = selfId < p ? [selfId, p] : [p, selfId];
      if (nodes.has(p)) seen.set(a + ' ' + b, [a, b, true]);
    }
    return [...seen.values()];
  }

  function fromMembers(list) {
    const nodes = new Map();
    for (const m of list) nodes.set(m.id, Object.assign({}, m));
    const me = list.find((m) => m.self);
    return { nodes, selfId: me ? me.id : '', selfPeers: me ? me.peers || [] : [] };
  }

  /* A node without the members method: itself, its direct peers, and every
   * host named by a record. Links are only those of the connected node. */
  function fromPeers(status, peers) {
    const nodes = new Map();
    const ids = peers.map((p) => p.id);
    nodes.set(status.id, { id: status.id, self: true, listen: status.listen || '', state: 'alive',
      hops: 0, next_hop: null, peers: ids });
    for (const p of peers) {
      nodes.set(p.id, { id: p.id, self: false, listen: p.listen || '', state: 'alive', hops: 1,
        next_hop: p.id, peers: [status.id] });
    }
    for (const r of S.records.values()) {
      if (r.node && !nodes.has(r.node)) {
        nodes.set(r.node, { id: r.node, self: false, listen: '', state: 'alive', hops: null,
          next_hop: null, peers: [] });
      }
    }
    return { nodes, selfId: status.id, selfPeers: ids };
  }

  function setTopology(t, source) {
    S.source = source;
    S.nodes = t.nodes;
    S.links = linkList(t.nodes, t.selfId, t.selfPeers);
    renderTopology();
    renderNodes();
    renderHostFilter();
  }

  /* ---- layout: a few hundred steps of a spring model from the last places -- */

  /* Depth-first order from the connected node: neighbours end up next to
   * each other on the starting circle, so a ring starts untangled. */
  function ringOrder(ids, links) {
    const adj = new Map(ids.map((id) => [id, []]));
    for (const [a, b] of links) { adj.get(a).push(b); adj.get(b).push(a); }
    const start = ids.filter((id) => S.nodes.get(id).self).concat(ids);
    const seen = new Set(), out = [];
    const visit = (id) => {
      if (seen.has(id)) return;
      seen.add(id);
      out.push(id);
      for (const nb of adj.get(id).sort()) visit(nb);
    };
    for (const id of start) visit(id);
    return out;
  }

  function layout(ids, links) {
    const W = 640, H = 400, cx = W / 2, cy = H / 2;
    const n = ids.length;
    const k = Math.max(60, Math.min(170, Math.sqrt((W * H) / Math.max(n, 1)) * 0.75));
    const p = new Map();
    ringOrder(ids, links).forEach((id, i) => {
      const old = S.pos.get(id);
      const a = (2 * Math.PI * i) / Math.max(n, 1) - Math.PI / 2;
      p.set(id, old ? { x: old.x, y: old.y } : { x: cx + 150 * Math.cos(a), y: cy + 130 * Math.sin(a) });
    });
    let temp = 40;
    const steps = Math.max(20, Math.min(300, Math.floor(LAYOUT_WORK / Math.max(n * n, 1))));
    for (let step = 0; step < steps; step++) {
      const d = new Map(ids.map((id) => [id, { x: 0, y: 0 }]));
      for (let i = 0; i < n; i++) {
        for (let j = i + 1; j < n; j++) {
          const a = p.get(ids[i]), b = p.get(ids[j]);
          let dx = a.x - b.x, dy = a.y - b.y;
          let dist = Math.hypot(dx, dy);
          if (dist < 0.01) { dx = 0.1 * (i - j); dy = 0.1; dist = Math.hypot(dx, dy); }
          const f = (k * k) / dist;
          const fx = (dx / dist) * f, fy = (dy / dist) * f;
          d.get(ids[i]).x += fx; d.get(ids[i]).y += fy;
          d.get(ids[j]).x -= fx; d.get(ids[j]).y -= fy;
        }
      }
      for (const [a, b] of links) {
        const pa = p.get(a), pb = p.get(b);
        const dx = pa.x - pb.x, dy = pa.y - pb.y;
        const dist = Math.max(Math.hypot(dx, dy), 0.01);
        const f = (dist * dist) / k;
        const fx = (dx / dist) * f, fy = (dy / dist) * f;
        d.get(a).x -= fx; d.get(a).y -= fy;
        d.get(b).x += fx; d.get(b).y += fy;
      }
      for (const id of ids) {
        const q = p.get(id), v = d.get(id);
        v.x += (cx - q.x) * 0.02 * k / 10;
        v.y += (cy - q.y) * 0.02 * k / 10;
        const len = Math.max(Math.hypot(v.x, v.y), 0.01);
        q.x = Math.min(W - 60, Math.max(60, q.x + (v.x / len) * Math.min(len, temp)));
        q.y = Math.min(H - 52, Math.max(54, q.y + (v.y / len) * Math.min(len, temp)));
      }
      temp = Math.max(0.5, temp * 0.98);
    }
    S.pos = p;
  }

  function renderTopology() {
    const box = $('topo');
    const ids = [...S.nodes.keys()].sort();
    const shape = ids.join(',') + '|' + S.links.map((l) => l[0] + l[1]).sort().join(',');
    if (shape !== S.shape) {
      layout(ids, S.links);
      S.shape = shape;
    }
    box.dataset.source = S.source;
    const out = [];
    for (const [a, b, direct] of S.links) {
      const pa = S.pos.get(a), pb = S.pos.get(b);
      const line = svg('line', { x1: pa.x, y1: pa.y, x2: pb.x, y2: pb.y,
        class: 'link' + (direct ? ' direct' : '') });
      line.dataset.a = a;
      line.dataset.b = b;
      out.push(line);
    }
    const counts = recordsPerHost();
    for (const id of ids) {
      const n = S.nodes.get(id), q = S.pos.get(id);
      const g = svg('g', { transform: 'translate(' + q.x.toFixed(1) + ',' + q.y.toFixed(1) + ')',
        class: 'node ' + (n.state || 'alive') + (n.self ? ' self' : '') +
          (S.pickedNode === id ? ' picked' : '') });
      g.dataset.id = id;
      const title = svg('title', {});
      title.textContent = id + (n.listen ? '\n' + n.listen : '') + '\n' + (n.state || '');
      g.append(title, svg('circle', { r: 30 }));
      const label = svg('text', { y: 4 });
      label.textContent = short(id);
      const sub = svg('text', { y: 46, class: 'sub' });
      sub.textContent = (n.self ? 'this node ' : '') + hostOf(n.listen);
      const res = typeof n.resources === 'number' ? n.resources : (counts.get(id) || 0);
      const cnt = svg('text', { y: -36, class: 'count' });
      cnt.textContent = res + (res === 1 ? ' resource' : ' resources');
      g.append(label, sub, cnt);
      g.addEventListener('click', () => pickNode(id));
      out.push(g);
    }
    box.replaceChildren(...out);
    $('topo-note').textContent = ids.length + ' nodes, ' + S.links.length + ' links' +
      (S.source === 'peers' ? ' (this node has no members method: links of this node only)' : '');
  }

  function recordsPerHost() {
    const c = new Map();
    for (const r of S.records.values()) c.set(r.node, (c.get(r.node) || 0) + 1);
    return c;
  }

  function pickNode(id) {
    S.pickedNode = S.pickedNode === id ? null : id;
    $('f-host').value = S.pickedNode || '';
    renderTopology();
    renderDirectory();
  }

  function renderNodes() {
    const counts = recordsPerHost();
    const rows = [];
    const ids = [...S.nodes.keys()].sort((a, b) => {
      const na = S.nodes.get(a), nb = S.nodes.get(b);
      return (nb.self - na.self) || ((na.hops ?? 99) - (nb.hops ?? 99)) || (a < b ? -1 : 1);
    });
    for (const id of ids) {
      const n = S.nodes.get(id);
      const tr = el('tr');
      tr.dataset.id = id;
      const links = S.links.filter((l) => l[0] === id || l[1] === id).length;
      const res = typeof n.resources === 'number' ? n.resources : (counts.get(id) || 0);
      const cells = [
        [id.slice(0, 16) + (n.self ? ' (this node)' : ''), ''],
        [n.listen || '', ''],
        [n.state || '', 'state-' + (n.state || 'alive')],
        [n.hops ?? '', ''],
        [n.next_hop ? short(n.next_hop) : '', ''],
        [n.self ? '' : ago(n.last_heard_ms), ''],
        [n.self ? '' : ago(n.lease_left_ms), ''],
        [res, ''],
        [links, ''],
      ];
      for (const [text, cls] of cells) tr.append(el('td', cls, text));
      tr.title = id;
      tr.addEventListener('click', () => pickNode(id));
      rows.push(tr);
    }
    replaceRows($('nodes').tBodies[0], rows);
    $('nodes-note').textContent = S.source === 'members'
      ? 'every node this node knows (members)'
      : 'this node, its peers and the hosts of its records (peers)';
  }

  /* ---- the directory -------------------------------------------------------- */

  function fillSelect(sel, values, label) {
    const keep = sel.value;
    const opts = [el('option', '', 'all')];
    opts[0].value = '';
    for (const v of values) {
      const o = el('option', '', label ? label(v) : v);
      o.value = v;
      opts.push(o);
    }
    sel.replaceChildren(...opts);
    sel.value = values.includes(keep) ? keep : '';
  }

  function renderFilters() {
    const types = new Set(), caps = new Set();
    for (const r of S.records.values()) {
      types.add(r.resource_type);
      for (const c of r.capabilities || []) caps.add(c);
    }
    fillSelect($('f-type'), [...types].sort());
    fillSelect($('f-cap'), [...caps].sort());
  }

  function renderHostFilter() {
    fillSelect($('f-host'), [...S.nodes.keys()].sort(), (id) => short(id) +
      (S.nodes.get(id).self ? ' (this node)' : ''));
    if (S.pickedNode && !S.nodes.has(S.pickedNode)) S.pickedNode = null;
    $('f-host').value = S.pickedNode || '';
  }

  function matches(r) {
    const type = $('f-type').value, cap = $('f-cap').value, text = $('f-text').value.trim();
    const host = $('f-host').value;
    if (type && r.resource_type !== type) return false;
    if (cap && !(r.capabilities || []).includes(cap)) return false;
    if (host && r.node !== host) return false;
    if (text && !(r.resource_id.includes(text) || (r.owner || '').includes(text))) return false;
    return true;
  }

  function renderDirectory() {
    const rows = [];
    const all = [...S.records.values()].sort((a, b) => (a.resource_id < b.resource_id ? -1 : 1));
    let shown = 0;
    for (const r of all) {
      if (!matches(r)) continue;
      shown++;
      const tr = el('tr', S.pickedRid === r.resource_id ? 'picked' : '');
      tr.dataset.rid = r.resource_id;
      tr.dataset.node = r.node || '';
      tr.append(el('td', '', r.resource_id), el('td', '', r.resource_type));
      const caps = el('td');
      for (const c of r.capabilities || []) caps.append(el('span', 'cap', c));
      const self = S.status && r.node === S.status.id;
      tr.append(caps, el('td', '', short(r.node) + (self ? ' (here)' : '')),
        el('td', '', r.owner || ''), el('td', '', r.version));
      tr.title = r.resource_id + ' on ' + r.node;
      tr.addEventListener('click', () => pickRecord(r.resource_id));
      rows.push(tr);
    }
    replaceRows($('resources').tBodies[0], rows);
    $('dir-count').textContent = shown + ' of ' + S.records.size + ' records' +
      (S.truncated ? ' (first ' + QUERY_LIMIT + ' only)' : '');
    renderRecord();
  }

  function pickRecord(rid) {
    S.pickedRid = S.pickedRid === rid ? null : rid;
    renderDirectory();
  }

  function renderRecord() {
    const r = S.pickedRid ? S.records.get(S.pickedRid) : null;
    $('record-box').hidden = !r;
    if (!r) return;
    const host = S.nodes.get(r.node);
    $('record-host').textContent = 'hosted by ' + r.node +
      (host && host.listen ? ' at ' + host.listen : '') +
      (host && typeof host.hops === 'number' ? ', ' + host.hops + ' hops away' : '');
    $('record').textContent = JSON.stringify(r, null, 2);
  }

  /* Directory events come in bursts (a node joining brings all its
   * records): one render per RENDER_MS however many arrived. */
  let renderTimer = null;

  function directoryChanged() {
    if (renderTimer !== null) return;
    renderTimer = setTimeout(() => {
      renderTimer = null;
      renderFilters();
      renderDirectory();
      if (S.source === 'peers' && S.status) {
        setTopology(fromPeers(S.status, S.peers), 'peers');   /* record hosts are nodes too */
      } else {
        renderTopology();
        renderNodes();
      }
    }, RENDER_MS);
  }

  /* ---- this node: status, counters, calls per second ------------------------- */

  function rate(key) {
    const s = S.samples;
    if (s.length < 2) return 0;
    const a = s[s.length - 2], b = s[s.length - 1];
    const dt = (b.t - a.t) / 1000;
    return dt > 0 ? Math.max(0, (b[key] - a[key]) / dt) : 0;
  }

  function renderSpark() {
    const s = S.samples, pts = [];
    let max = 1;
    const rates = [];
    for (let i = 1; i < s.length; i++) {
      const dt = (s[i].t - s[i - 1].t) / 1000;
      const v = dt > 0 ? (s[i].calls + s[i].served - s[i - 1].calls - s[i - 1].served) / dt : 0;
      rates.push(Math.max(0, v));
      max = Math.max(max, v);
    }
    rates.forEach((v, i) => {
      pts.push(((300 * (i + RATE_SAMPLES - rates.length)) / (RATE_SAMPLES - 1)).toFixed(1) +
        ',' + (56 - (52 * v) / max).toFixed(1));
    });
    const kids = [svg('line', { x1: 0, y1: 56, x2: 300, y2: 56 })];
    if (pts.length > 1) kids.push(svg('polyline', { points: pts.join(' ') }));
    const t = svg('title', {});
    t.textContent = 'calls per second (made + served), last minute; peak ' + max.toFixed(1);
    kids.push(t);
    $('spark').replaceChildren(...kids);
  }

  function renderStatus() {
    const st = S.status;
    const fmt = (v) => (v >= 10 ? v.toFixed(0) : v.toFixed(1));
    $('self').textContent = st.id;
    $('uptime').textContent = 'up ' + st.uptime_s + ' s';
    $('rate-calls').textContent = fmt(rate('calls'));
    $('rate-served').textContent = fmt(rate('served'));
    $('rate-msgs').textContent = fmt(rate('msgs'));
    renderSpark();
    const res = st.resources || {};
    const kv = [['listen', st.listen], ['api', st.api], ['peers', st.peers],
      ['resources here', res.local], ['resources elsewhere', res.remote],
      ['nodes known', st.nodes_known], ['routes', st.routes]];
    const out = [];
    for (const [k, v] of kv) out.push(el('span', '', k), el('span', '', v ?? ''));
    $('summary').replaceChildren(...out);
    const c = st.counters || {};
    const keys = Object.keys(c).sort((a, b) => ((c[b] !== 0) - (c[a] !== 0)) || (a < b ? -1 : 1));
    const cs = [];
    for (const k of keys) {
      const zero = c[k] === 0 ? 'zero' : '';
      const name = el('span', zero, k), val = el('span', zero, c[k]);
      name.dataset.counter = k;
      cs.push(name, val);
    }
    $('counters').replaceChildren(...cs);
  }

  /* ---- the event stream ----------------------------------------------------- */

  function summary(topic, data) {
    if (data && typeof data === 'object' && topic.startsWith('resource.')) {
      return data.resource_id + ' (' + data.resource_type + ') on ' + short(data.node);
    }
    if (data && typeof data === 'object' && topic.startsWith('peer.')) {
      return short(data.id) + ' ' + (data.listen || '');
    }
    const s = JSON.stringify(data);
    return s === undefined ? '' : (s.length > 160 ? s.slice(0, 160) + '...' : s);
  }

  function logEvent(topic, data, source, cls) {
    const li = el('li', cls || '');
    li.dataset.topic = topic;
    li.append(el('time', '', clock(new Date())), el('span', 'topic', topic),
      el('span', 'src', source ? short(source) : ''), el('span', 'sum', summary(topic, data)));
    const list = $('events');
    list.prepend(li);
    while (list.children.length > MAX_EVENTS) list.lastChild.remove();
  }

  /* ---- talking to the node ---------------------------------------------------- */

  let ctl = null, stream = null, timers = [], backoff = 1000, generation = 0;

  function setConn(state, text) {
    $('conn').dataset.state = state;
    $('conn').textContent = text;
  }

  async function refreshStatus() {
    const st = await ctl.call('status');
    S.status = st;
    const c = st.counters || {};
    S.samples.push({ t: performance.now(), calls: c.exec_calls || 0, served: c.exec_served || 0,
      msgs: c.messages_handled || 0 });
    while (S.samples.length > RATE_SAMPLES) S.samples.shift();
    renderStatus();
  }

  async function refreshTopology() {
    if (S.hasMembers) {
      try {
        const r = await ctl.call('members');
        setTopology(fromMembers(r.members || []), 'members');
        return;
      } catch (e) {
        if (e.code !== NO_METHOD) throw e;
        S.hasMembers = false;
      }
    }
    S.peers = await ctl.call('peers');
    setTopology(fromPeers(S.status, S.peers), 'peers');
  }

  async function refreshRecords() {
    const rs = await ctl.call('query_resources', { limit: QUERY_LIMIT });
    S.records = new Map(rs.map((r) => [r.resource_id, r]));
    S.truncated = rs.length >= QUERY_LIMIT;
    renderFilters();
    renderDirectory();
    if (S.source) directoryChanged();   /* counts per host, the peers view's hosts */
  }

  async function refreshHealth() {
    const h = $('health');
    if (!S.hasHealth) return;
    try {
      const r = await fetch('/health' + (token ? '?token=' + encodeURIComponent(token) : ''),
        { cache: 'no-store' });
      if (r.status === 404) {
        /* a node without /health: asked once per connection */
        S.hasHealth = false;
        h.dataset.state = 'unknown';
        h.textContent = 'health: not served';
      } else {
        h.dataset.state = r.ok ? 'healthy' : 'unhealthy';
        h.textContent = 'health: ' + (r.ok ? 'ok' : r.status);
      }
    } catch (e) {
      h.dataset.state = 'unhealthy';
      h.textContent = 'health: unreachable';
    }
  }

  function onModelEvent(ev) {
    const r = ev.data;
    if (ev.topic === 'resource.added' || ev.topic === 'resource.updated') {
      if (r && r.resource_id) S.records.set(r.resource_id, r);
      directoryChanged();
    } else if (ev.topic === 'resource.removed') {
      if (r && r.resource_id) S.records.delete(r.resource_id);
      directoryChanged();
    } else if (ev.topic.startsWith('peer.')) {
      guard(refreshTopology());
    }
  }

  function guard(p) {
    p.catch((e) => {
      if (ctl && ctl.ws.readyState === WebSocket.OPEN) logEvent('dashboard', e.message, '', 'sys');
    });
  }

  /* A poll that is still waiting for its answer is not asked again. */
  function every(ms, fn) {
    let busy = false;
    timers.push(setInterval(() => {
      if (busy) return;
      busy = true;
      guard(fn().finally(() => { busy = false; }));
    }, ms));
  }

  function stop() {
    for (const t of timers) clearInterval(t);
    timers = [];
    generation++;
    if (stream) stream.close();
    if (ctl) ctl.close();
    ctl = stream = null;
  }

  function retry(why) {
    const gen = generation;
    stop();
    setConn('closed', 'disconnected (' + why + '), retrying in ' + backoff / 1000 + ' s');
    logEvent('dashboard', 'disconnected: ' + why, '', 'sys');
    setTimeout(() => { if (gen + 1 === generation) connect(); }, backoff);
    backoff = Math.min(backoff * 2, 10000);
  }

  async function start(gen) {
    await ctl.call('subscribe', { topic: 'resource.*' });
    await ctl.call('subscribe', { topic: 'peer.*' });
    await refreshStatus();
    await refreshRecords();
    await refreshTopology();
    if (gen !== generation) return;
    every(STATUS_MS, refreshStatus);
    every(MEMBERS_MS, refreshTopology);
    every(RECONCILE_MS, refreshRecords);
    every(HEALTH_MS, refreshHealth);
    guard(refreshHealth());
    backoff = 1000;
    setConn('open', 'live');
    document.body.dataset.ready = '1';
  }

  function connect() {
    const gen = generation;
    S.hasMembers = true;
    S.hasHealth = true;
    setConn('connecting', 'connecting');
    let closed = false;
    const lost = (why) => {
      if (closed || gen !== generation) return;
      closed = true;
      retry(why);
    };
    ctl = new Api(onModelEvent, () => {
      start(gen).catch((e) => lost(e.message));
    }, () => lost('API connection closed'));
    stream = new Api((ev) => logEvent(ev.topic, ev.data, ev.source), () => {
      stream.call('subscribe', { topic: '*' }).catch((e) => lost(e.message));
    }, () => lost('event connection closed'));
  }

  for (const id of ['f-type', 'f-cap', 'f-text']) $(id).addEventListener('input', renderDirectory);
  $('f-host').addEventListener('input', () => {
    S.pickedNode = $('f-host').value || null;
    renderTopology();
    renderDirectory();
  });
  connect();
})();
