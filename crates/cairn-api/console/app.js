// Cairn's web console: plain JavaScript, no framework, no build step, nothing loaded from
// another site. It uses only the node's public API (the node that served this page), and
// puts what the API answers into the page with textContent only: never innerHTML.
'use strict';

(() => {
  const POLL_MS = 2000;
  // The longest any request of the page may take (SQL runs up to the API's own timeouts).
  const FETCH_TIMEOUT_MS = 60000;
  const AUTH_KEY = 'cairn.basic';

  const state = {
    // base64 of "user:password", from the login form; only in sessionStorage.
    auth: sessionStorage.getItem(AUTH_KEY),
    user: sessionStorage.getItem(AUTH_KEY + '.user'),
    db: 'main',
    table: null,
    columns: [],
    filters: [],
    offset: 0,
    pollTimer: null,
    polling: false,
    loginOpen: false,
    dbListKey: null,
  };

  const $ = (id) => document.getElementById(id);

  // An element with attributes and children; strings become text nodes.
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children) {
      if (c === undefined || c === null) continue;
      e.append(c instanceof Node ? c : String(c));
    }
    return e;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  // A link to another node's console, only for URLs the API gave with this page's own
  // scheme: an https console never sends its user to a plain-http login.
  function consoleLink(apiAddr, label) {
    const scheme = location.protocol + '//';
    if (typeof apiAddr !== 'string' || !apiAddr.toLowerCase().startsWith(scheme)) {
      return document.createTextNode(label || String(apiAddr || ''));
    }
    return el('a', { href: apiAddr.replace(/\/+$/, '') + '/console/' }, label || apiAddr);
  }

  function base64Utf8(text) {
    const bytes = new TextEncoder().encode(text);
    let bin = '';
    for (const b of bytes) bin += String.fromCharCode(b);
    return btoa(bin);
  }

  function ms(x) {
    return x.toFixed(x < 10 ? 1 : 0) + ' ms';
  }

  function level() {
    return $('level').value;
  }

  // One API call. Resolves (never rejects) to {ok, status, body, ms} and, when it failed,
  // {code, error, leader}: what the API reported, or a network error (status 0).
  async function api(method, path, body) {
    const headers = { 'X-Cairn-Console': '1', Accept: 'application/json' };
    if (state.auth) headers.Authorization = 'Basic ' + state.auth;
    const init = { method, headers, cache: 'no-store', credentials: 'omit', redirect: 'manual' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const t0 = performance.now();
    let resp;
    try {
      // A node that never answers must not hold the page (or the live view) forever.
      resp = await fetch(path, Object.assign({ signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) }, init));
    } catch (e) {
      return {
        ok: false, status: 0, code: 'network', ms: performance.now() - t0,
        error: 'the node did not answer: ' + e.message,
      };
    }
    const text = await resp.text().catch(() => '');
    const took = performance.now() - t0;
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch (_) {
      json = null;
    }
    const r = { ok: resp.ok, status: resp.status, body: json, text, ms: took };
    if (!resp.ok) {
      r.code = (json && json.code) || '';
      r.error = (json && json.error) || text.trim() || resp.statusText || 'request failed';
      r.leader = json && json.leader;
      if (resp.status === 401) needLogin(r.error);
    }
    return r;
  }

  // Shows an API error as the API reported it: status, code, message, and a link to the
  // leader when the request must go there.
  function showError(box, r, what) {
    clear(box);
    box.hidden = false;
    if (what) box.append(what + ': ');
    box.append(r.status ? 'HTTP ' + r.status + ' ' : '');
    if (r.code) box.append(el('span', { class: 'code' }, r.code), ': ');
    box.append(r.error || '');
    if (r.leader) box.append(' (leader: ', consoleLink(r.leader), ')');
  }

  function hideError(box) {
    clear(box);
    box.hidden = true;
  }

  function showText(box, text) {
    clear(box);
    box.hidden = false;
    box.append(text);
  }

  // ---- Login -------------------------------------------------------------------------

  function needLogin(message) {
    stopPolling();
    if (state.loginOpen) {
      $('login-message').textContent = message;
      return;
    }
    state.loginOpen = true;
    $('login-message').textContent = message;
    const d = $('login');
    if (typeof d.showModal === 'function') d.showModal();
    else d.setAttribute('open', '');
    $('login-user').focus();
  }

  function onLogin(ev) {
    ev.preventDefault();
    const user = $('login-user').value;
    const password = $('login-password').value;
    state.auth = base64Utf8(user + ':' + password);
    state.user = user;
    sessionStorage.setItem(AUTH_KEY, state.auth);
    sessionStorage.setItem(AUTH_KEY + '.user', user);
    $('login-password').value = '';
    state.loginOpen = false;
    $('login').close();
    showUser();
    refreshAll();
  }

  function onLogout() {
    sessionStorage.removeItem(AUTH_KEY);
    sessionStorage.removeItem(AUTH_KEY + '.user');
    state.auth = null;
    state.user = null;
    showUser();
    refreshAll();
  }

  function showUser() {
    $('who').textContent = state.user ? 'user: ' + state.user : '';
    $('logout').hidden = !state.user;
  }

  // ---- Cluster -----------------------------------------------------------------------

  function stopPolling() {
    if (state.pollTimer !== null) clearTimeout(state.pollTimer);
    state.pollTimer = null;
  }

  function schedulePoll() {
    stopPolling();
    state.pollTimer = setTimeout(pollCluster, POLL_MS);
  }

  async function pollCluster() {
    if (state.polling) return;
    state.polling = true;
    try {
      const [nodes, status] = await Promise.all([
        api('GET', '/nodes?ver=2&nonvoters'),
        api('GET', '/status'),
      ]);
      renderCluster(nodes, status);
      const dbs = await api('GET', '/v1/databases');
      if (dbs.ok) renderDatabases(dbs.body);
    } catch (e) {
      // An answer of an unexpected shape must not stop the live view for good.
      console.error('cluster refresh failed', e);
    } finally {
      state.polling = false;
      if (!state.loginOpen) schedulePoll();
    }
  }

  function cell(text, cls) {
    return el('td', { class: cls }, text === undefined || text === null ? '—' : String(text));
  }

  function renderCluster(nodes, status) {
    const box = $('cluster-error');
    if (!nodes.ok) showError(box, nodes, 'GET /nodes');
    else if (!status.ok) showError(box, status, 'GET /status');
    else hideError(box);
    $('cluster-updated').textContent = 'updated ' + new Date().toLocaleTimeString()
      + ' · every ' + POLL_MS / 1000 + ' s';

    const raft = (status.ok && status.body && status.body.raft) || {};
    const store = (status.ok && status.body && status.body.store) || {};
    const self = store.node_id !== undefined ? String(store.node_id) : null;
    const replication = Array.isArray(raft.replication) ? raft.replication : null;
    const byFollower = new Map((replication || []).map((r) => [String(r.node_id), r]));
    const list = nodes.ok && nodes.body && Array.isArray(nodes.body.nodes) ? nodes.body.nodes : [];

    const tbody = $('nodes').tBodies[0];
    clear(tbody);
    let leader = null;
    for (const n of list) {
      const id = String(n.id);
      const isSelf = id === self;
      let role = n.leader ? 'leader' : n.voter ? 'follower' : 'learner';
      if (isSelf && raft.state === 'Candidate') role = 'candidate';
      if (n.leader) leader = n;
      const rep = byFollower.get(id);
      const lag = rep ? rep.lag_entries : undefined;
      const tr = el('tr', {
        'data-node-id': id,
        'data-role': role,
        'data-reachable': n.reachable ? 'true' : 'false',
        class: [isSelf ? 'this-node' : '', n.reachable ? '' : 'unreachable'].join(' ').trim(),
      },
      cell(id),
      el('td', {}, consoleLink(n.api_addr)),
      cell(role, 'role role-' + role),
      cell(n.reachable ? 'yes' : 'no', 'reachable ' + (n.reachable ? 'yes' : 'no')),
      cell(n.voter ? 'yes' : 'no'),
      cell(typeof n.time === 'number' ? ms(n.time * 1000) : null, 'num'),
      cell(rep ? rep.matched_index : null, 'num matched'),
      cell(lag, 'num lag' + (lag > 100 ? ' lag-high' : '')),
      cell(rep && typeof rep.last_ack_ms === 'number' ? rep.last_ack_ms + ' ms ago' : null, 'num ack'),
      cell(n.error || '', 'small'));
      tbody.append(tr);
    }

    const summary = $('cluster-summary');
    clear(summary);
    if (leader) {
      summary.append('Leader: node ', el('strong', { id: 'leader-id' }, String(leader.id)), ' (',
        consoleLink(leader.api_addr), ')');
    } else {
      summary.append(el('strong', { class: 'no' }, 'No leader'));
    }
    if (status.ok) {
      summary.append(' · term ' + raft.term
        + ' · this node: ' + (self || '?') + ' ' + (raft.state || '')
        + ' · commit ' + (raft.commit_index ?? '—')
        + ' · applied ' + (raft.applied_index ?? '—')
        + ' · last log ' + (raft.last_log_index ?? '—')
        + ' · snapshot ' + (raft.snapshot_index ?? '—'));
      if (typeof raft.last_contact_ms === 'number') {
        summary.append(' · leader last heard ' + raft.last_contact_ms + ' ms ago');
      }
    }

    const note = $('replication-note');
    clear(note);
    if (raft.state === 'Leader' && !replication) {
      note.append('This node does not report replication progress (raft.replication) yet.');
    } else if (raft.state !== 'Leader' && leader) {
      note.append('Replication progress is reported by the leader: open ',
        consoleLink(leader.api_addr, "the leader's console"), ' to see it.');
    }
  }

  // ---- Databases and tables ----------------------------------------------------------

  function bytes(n) {
    if (typeof n !== 'number') return '—';
    if (n < 1024) return n + ' B';
    if (n < 1024 * 1024) return (n / 1024).toFixed(1) + ' KiB';
    return (n / 1024 / 1024).toFixed(1) + ' MiB';
  }

  function renderDatabases(body) {
    const list = (body && Array.isArray(body.databases)) ? body.databases : [];
    // Redrawn only when it changed: a row the user is about to click stays the same element.
    const key = JSON.stringify([list, state.db]);
    if (key === state.dbListKey) return;
    state.dbListKey = key;
    const tbody = $('db-list').tBodies[0];
    clear(tbody);
    for (const d of list) {
      const name = String(d.name);
      tbody.append(el('tr', { 'data-db': name, class: name === state.db ? 'selected' : '' },
        el('td', {}, name),
        cell(bytes(d.size_bytes), 'num'),
        el('td', {},
          el('button', { type: 'button', class: 'open-db', onclick: () => openDatabase(name) }, 'Open'),
          ' ',
          el('button', { type: 'button', class: 'drop-db danger', onclick: () => dropDatabase(name) }, 'Drop'))));
    }
  }

  async function loadDatabases() {
    const r = await api('GET', '/v1/databases');
    if (r.ok) {
      renderDatabases(r.body);
      hideError($('db-error'));
    } else {
      showError($('db-error'), r, 'GET /v1/databases');
    }
  }

  async function createDatabase(ev) {
    ev.preventDefault();
    const name = $('new-db-name').value.trim();
    const r = await api('POST', '/v1/databases', { name });
    if (!r.ok) return showError($('db-error'), r, 'create database');
    hideError($('db-error'));
    $('new-db-name').value = '';
    await loadDatabases();
    openDatabase(name);
  }

  async function dropDatabase(name) {
    if (!window.confirm('Drop database ' + name + ' and every table in it?')) return;
    const r = await api('DELETE', '/v1/databases/' + encodeURIComponent(name));
    if (!r.ok) return showError($('db-error'), r, 'drop database ' + name);
    hideError($('db-error'));
    if (state.db === name) openDatabase('main');
    await loadDatabases();
  }

  function openDatabase(name) {
    state.db = name;
    $('current-db').textContent = name;
    $('sql-db').textContent = name;
    for (const tr of $('db-list').tBodies[0].rows) {
      tr.classList.toggle('selected', tr.dataset.db === name);
    }
    selectTable(null, []);
    loadTables();
  }

  function dbPath() {
    return '/v1/databases/' + encodeURIComponent(state.db);
  }

  function describeColumn(c) {
    let s = c.name + (c.type ? ' ' + c.type : '');
    if (c.primary_key) s += ' PK';
    if (c.not_null) s += ' NOT NULL';
    if (c.unique) s += ' UNIQUE';
    return s;
  }

  async function loadTables() {
    const r = await api('GET', dbPath() + '/tables?level=' + encodeURIComponent(level()));
    const tbody = $('table-list').tBodies[0];
    clear(tbody);
    if (!r.ok) return showError($('table-error'), r, 'GET tables');
    hideError($('table-error'));
    const tables = (r.body && Array.isArray(r.body.tables)) ? r.body.tables : [];
    for (const t of tables) {
      const name = String(t.name);
      const cols = Array.isArray(t.columns) ? t.columns : [];
      tbody.append(el('tr', { 'data-table': name, class: name === state.table ? 'selected' : '' },
        el('td', {}, name),
        el('td', { class: 'small' }, cols.map(describeColumn).join(', ')),
        cell(t.rows, 'num'),
        el('td', {},
          el('button', { type: 'button', class: 'browse', onclick: () => { selectTable(name, cols); loadTables(); } }, 'Browse'),
          ' ',
          el('button', { type: 'button', class: 'drop-table danger', onclick: () => dropTable(name) }, 'Drop'))));
      if (name === state.table) state.columns = cols;
    }
  }

  // Splits at commas outside parentheses: "a DECIMAL(10, 2), b" -> ["a DECIMAL(10, 2)", " b"].
  function splitColumns(text) {
    const parts = [];
    let depth = 0;
    let cur = '';
    for (const ch of text) {
      if (ch === '(') depth += 1;
      if (ch === ')') depth = Math.max(0, depth - 1);
      if (ch === ',' && depth === 0) {
        parts.push(cur);
        cur = '';
      } else {
        cur += ch;
      }
    }
    parts.push(cur);
    return parts;
  }

  // "id INTEGER PRIMARY KEY, name TEXT NOT NULL" -> REST column specs.
  function parseColumns(text) {
    const specs = [];
    for (const part of splitColumns(text)) {
      let rest = part.trim();
      if (!rest) continue;
      const spec = { name: '', type: '', primary_key: false, not_null: false, unique: false };
      const m = /^(\S+)\s*(.*)$/.exec(rest);
      spec.name = m[1];
      rest = ' ' + m[2] + ' ';
      const flag = (re) => {
        if (re.test(rest)) {
          rest = rest.replace(re, ' ');
          return true;
        }
        return false;
      };
      spec.primary_key = flag(/\sprimary\s+key\s/i);
      spec.not_null = flag(/\snot\s+null\s/i);
      spec.unique = flag(/\sunique\s/i);
      spec.type = rest.trim().replace(/\s+/g, ' ');
      specs.push(spec);
    }
    return specs;
  }

  async function createTable(ev) {
    ev.preventDefault();
    const name = $('new-table-name').value.trim();
    const columns = parseColumns($('new-table-columns').value);
    const r = await api('POST', dbPath() + '/tables', { name, columns });
    if (!r.ok) return showError($('table-error'), r, 'create table');
    hideError($('table-error'));
    $('new-table-name').value = '';
    $('new-table-columns').value = '';
    await loadTables();
  }

  async function dropTable(name) {
    if (!window.confirm('Drop table ' + name + '?')) return;
    const r = await api('DELETE', dbPath() + '/tables/' + encodeURIComponent(name));
    if (!r.ok) return showError($('table-error'), r, 'drop table ' + name);
    hideError($('table-error'));
    if (state.table === name) selectTable(null, []);
    await loadTables();
  }

  // ---- Row browser -------------------------------------------------------------------

  function fillSelect(select, values, first) {
    clear(select);
    if (first !== undefined) select.append(el('option', { value: '' }, first));
    for (const v of values) select.append(el('option', { value: v }, v));
  }

  function selectTable(name, cols) {
    state.table = name;
    state.columns = cols;
    state.filters = [];
    state.offset = 0;
    $('browse-table').textContent = name || '(choose a table)';
    for (const tr of $('table-list').tBodies[0].rows) {
      tr.classList.toggle('selected', tr.dataset.table === name);
    }
    const names = cols.map((c) => c.name);
    fillSelect($('filter-column'), names);
    fillSelect($('order-by'), names, '(none)');
    renderFilters();
    clear($('rows').tHead);
    clear($('rows').tBodies[0]);
    $('page-info').textContent = '';
    $('rows-timing').textContent = '';
    hideError($('rows-error'));
    $('prev-page').disabled = true;
    $('next-page').disabled = true;
    if (name) loadRows();
  }

  function renderFilters() {
    const ul = $('filters');
    clear(ul);
    state.filters.forEach((f, i) => {
      ul.append(el('li', {}, f.column + ' ' + f.op + ' ' + f.value,
        el('button', {
          type: 'button', title: 'remove', 'aria-label': 'remove filter',
          onclick: () => {
            state.filters.splice(i, 1);
            state.offset = 0;
            renderFilters();
            loadRows();
          },
        }, '×')));
    });
  }

  function addFilter(ev) {
    ev.preventDefault();
    const column = $('filter-column').value;
    if (!state.table || !column) return;
    state.filters.push({ column, op: $('filter-op').value, value: $('filter-value').value });
    $('filter-value').value = '';
    state.offset = 0;
    renderFilters();
    loadRows();
  }

  function pageSize() {
    return Number($('page-size').value) || 25;
  }

  // The REST query string: filters col[op]=value, order_by, limit, offset, level.
  function rowsQuery() {
    const q = new URLSearchParams();
    for (const f of state.filters) q.append(f.column + '[' + f.op + ']', f.value);
    const order = $('order-by').value;
    if (order) q.set('order_by', ($('order-desc').checked ? '-' : '') + order);
    q.set('limit', String(pageSize()));
    q.set('offset', String(state.offset));
    q.set('level', level());
    return q.toString();
  }

  function renderValue(v) {
    if (v === null || v === undefined) return el('span', { class: 'null' }, 'NULL');
    if (typeof v === 'object') return document.createTextNode(JSON.stringify(v));
    return document.createTextNode(String(v));
  }

  function renderGrid(table, columns, rows) {
    clear(table.tHead);
    clear(table.tBodies[0]);
    table.tHead.append(el('tr', {}, ...columns.map((c) => el('th', {}, c))));
    for (const row of rows) {
      table.tBodies[0].append(el('tr', {}, ...row.map((v) => el('td', {}, renderValue(v)))));
    }
  }

  async function loadRows() {
    if (!state.table) return;
    const table = state.table;
    // Only the newest request draws: an older, slower one must not overwrite the page a
    // later filter or page asked for.
    const seq = (state.rowsSeq = (state.rowsSeq || 0) + 1);
    const path = dbPath() + '/tables/' + encodeURIComponent(table) + '/rows?' + rowsQuery();
    const r = await api('GET', path);
    if (state.table !== table || state.rowsSeq !== seq) return;
    $('rows-timing').textContent = ms(r.ms) + ' round trip';
    if (!r.ok) {
      showError($('rows-error'), r, 'GET rows');
      return;
    }
    hideError($('rows-error'));
    const rows = (r.body && Array.isArray(r.body.rows)) ? r.body.rows : [];
    let columns = state.columns.map((c) => c.name);
    if (columns.length === 0 && rows.length > 0) columns = Object.keys(rows[0]);
    renderGrid($('rows'), columns, rows.map((o) => columns.map((c) => o[c])));
    const first = rows.length ? state.offset + 1 : state.offset;
    $('page-info').textContent = rows.length
      ? 'rows ' + first + '–' + (state.offset + rows.length)
      : 'no rows' + (state.offset ? ' from ' + (state.offset + 1) : '');
    $('prev-page').disabled = state.offset === 0;
    $('next-page').disabled = !r.body || r.body.next === null || r.body.next === undefined;
  }

  // ---- SQL editor --------------------------------------------------------------------

  // Splits a script into statements at `;` outside quotes, brackets and comments.
  function splitStatements(text) {
    const out = [];
    let cur = '';
    let i = 0;
    while (i < text.length) {
      const c = text[i];
      const two = text.slice(i, i + 2);
      if (c === "'" || c === '"' || c === '`' || c === '[') {
        const close = c === '[' ? ']' : c;
        let j = i + 1;
        while (j < text.length) {
          if (text[j] === close) {
            if (close !== ']' && text[j + 1] === close) {
              j += 2;
              continue;
            }
            break;
          }
          j += 1;
        }
        cur += text.slice(i, j + 1);
        i = j + 1;
      } else if (two === '--') {
        let j = text.indexOf('\n', i);
        if (j < 0) j = text.length;
        cur += text.slice(i, j);
        i = j;
      } else if (two === '/*') {
        let j = text.indexOf('*/', i + 2);
        j = j < 0 ? text.length : j + 2;
        cur += text.slice(i, j);
        i = j;
      } else if (c === ';') {
        if (cur.trim()) out.push(cur.trim());
        cur = '';
        i += 1;
      } else {
        cur += c;
        i += 1;
      }
    }
    if (cur.trim()) out.push(cur.trim());
    // A statement that is only a comment is not sent.
    return out.filter((s) => s.replace(/--[^\n]*|\/\*[\s\S]*?\*\//g, '').trim());
  }

  function renderResult(sql, res, n) {
    const box = el('div', { class: 'result', 'data-statement': String(n) });
    const head = el('div', { class: 'stmt' }, (n + 1) + '. ' + (sql.length > 200 ? sql.slice(0, 200) + '…' : sql));
    if (typeof res.time === 'number') head.append(' · ' + ms(res.time * 1000));
    box.append(head);
    if (res.error) {
      const err = el('div', { class: 'error statement-error' });
      if (res.code) err.append(el('span', { class: 'code' }, res.code), ': ');
      err.append(res.error);
      box.append(err);
    } else if (Array.isArray(res.columns)) {
      const values = Array.isArray(res.values) ? res.values : [];
      const table = el('table', { class: 'grid' }, el('thead'), el('tbody'));
      renderGrid(table, res.columns, values);
      box.append(el('div', { class: 'scroll' }, table),
        el('div', { class: 'muted small' }, values.length + (values.length === 1 ? ' row' : ' rows')));
    } else {
      box.append(el('div', { class: 'write' },
        'rows affected ' + (res.rows_affected || 0)
        + (res.last_insert_id ? ' · last insert id ' + res.last_insert_id : '')));
    }
    return box;
  }

  async function runSql() {
    // One run at a time: a second Ctrl+Enter while a write batch runs must not send it
    // again (the disabled button stops clicks only).
    if (state.sqlRunning) return;
    state.sqlRunning = true;
    try {
      await runSqlOnce();
    } finally {
      state.sqlRunning = false;
      $('sql-run').disabled = false;
    }
  }

  async function runSqlOnce() {
    const stmts = splitStatements($('sql-text').value);
    const results = $('sql-results');
    clear(results);
    hideError($('sql-error'));
    if (stmts.length === 0) {
      showText($('sql-error'), 'nothing to run: write a statement first');
      return;
    }
    const q = new URLSearchParams({ db: state.db, level: level() });
    q.set('timings', '');
    if ($('sql-transaction').checked) q.set('transaction', '');
    $('sql-run').disabled = true;
    const r = await api('POST', '/db/request?' + q.toString(), stmts);
    $('sql-run').disabled = false;
    let timing = 'HTTP ' + r.status + ' · ' + ms(r.ms) + ' round trip';
    if (r.body && typeof r.body.time === 'number') timing += ' · API time ' + ms(r.body.time * 1000);
    $('sql-timing').textContent = timing;
    if (!r.ok) {
      showError($('sql-error'), r, 'POST /db/request');
      return;
    }
    const list = (r.body && Array.isArray(r.body.results)) ? r.body.results : [];
    list.forEach((res, n) => results.append(renderResult(stmts[n] || '', res || {}, n)));
    // A statement that changed something may have changed the tables shown.
    if (list.some((res) => res && !Array.isArray(res.columns))) {
      loadTables();
      loadRows();
    }
  }

  // ---- Start ---------------------------------------------------------------------------

  function refreshAll() {
    pollCluster();
    loadDatabases();
    openDatabase(state.db);
  }

  function start() {
    $('node-addr').textContent = window.location.host;
    showUser();
    $('login-form').addEventListener('submit', onLogin);
    $('login').addEventListener('cancel', (ev) => ev.preventDefault());
    $('logout').addEventListener('click', onLogout);
    $('create-db').addEventListener('submit', createDatabase);
    $('create-table').addEventListener('submit', createTable);
    $('refresh-databases').addEventListener('click', loadDatabases);
    $('refresh-tables').addEventListener('click', loadTables);
    $('filter-form').addEventListener('submit', addFilter);
    for (const id of ['order-by', 'order-desc', 'page-size']) {
      $(id).addEventListener('change', () => {
        state.offset = 0;
        loadRows();
      });
    }
    $('prev-page').addEventListener('click', () => {
      state.offset = Math.max(0, state.offset - pageSize());
      loadRows();
    });
    $('next-page').addEventListener('click', () => {
      state.offset += pageSize();
      loadRows();
    });
    $('level').addEventListener('change', () => {
      loadTables();
      loadRows();
    });
    $('sql-run').addEventListener('click', runSql);
    $('sql-text').addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) {
        ev.preventDefault();
        runSql();
      }
    });
    refreshAll();
  }

  document.addEventListener('DOMContentLoaded', start);
})();
