// omni-metrics HTML report: tables, timeline and figures from the JSON in #omni-data.
// No network: everything the page needs is in this file and the data blob.
(function () {
  'use strict';

  var body = document.body;
  var errorCount = 0;

  // Errors are said on the page (and in the DOM, for tests) as well as on the console.
  function recordError(text) {
    errorCount += 1;
    body.setAttribute('data-errors', String(errorCount));
    var box = document.getElementById('errors');
    if (box) {
      box.hidden = false;
      box.textContent += text + '\n';
    }
  }
  body.setAttribute('data-errors', '0');
  window.addEventListener('error', function (e) {
    recordError('error: ' + (e && e.message ? e.message : String(e)));
  });
  window.addEventListener('unhandledrejection', function (e) {
    recordError('unhandled rejection: ' + String(e && e.reason));
  });

  // ---- Number formatting, exactly as the console's (report::table::format_int/float) ----

  // Thousands separators on a string of digits.
  function group(digits) {
    var n = digits.length;
    var out = '';
    for (var i = 0; i < n; i++) {
      if (i > 0 && (n - i) % 3 === 0) out += ',';
      out += digits.charAt(i);
    }
    return out;
  }

  // An integer (a number, or a string of digits for values above 2^53).
  function fmtInt(v) {
    return group(typeof v === 'string' ? v : String(Math.round(v)));
  }

  // Three decimals, thousands separators, never -0.000. Rust's `{:.3}` rounds the exact
  // value of the double, ties to even; toFixed rounds the exact value too, ties up. A tie
  // at the fourth decimal happens exactly when 16 * v is an odd integer: done with BigInt.
  function fmtFloat(v) {
    if (v !== v) return 'NaN';
    if (v === Infinity) return 'inf';
    if (v === -Infinity) return '-inf';
    var a = Math.abs(v);
    var text;
    if (a >= 1e21) {
      text = BigInt(a).toString() + '.000';
    } else if (Number.isInteger(a * 16) && !Number.isInteger(a * 8)) {
      var m = BigInt(a * 16); // odd: a = m / 16, a * 1000 = m * 125 / 2 = k + 1/2
      var k = (m * BigInt(125) - BigInt(1)) / BigInt(2);
      if (k % BigInt(2) === BigInt(1)) k += BigInt(1);
      var s = k.toString();
      while (s.length < 4) s = '0' + s;
      text = s.slice(0, s.length - 3) + '.' + s.slice(s.length - 3);
    } else {
      text = a.toFixed(3);
    }
    var dot = text.indexOf('.');
    var intPart = dot < 0 ? text : text.slice(0, dot);
    var frac = dot < 0 ? '000' : text.slice(dot + 1);
    var sign = v < 0 && /[1-9]/.test(intPart + frac) ? '-' : '';
    return sign + group(intPart) + '.' + frac;
  }

  // Axis labels: a time in ms with as many decimals as the tick step needs.
  function fmtTick(ms, step) {
    var unit = ' ms';
    var v = ms;
    var st = step;
    if (step >= 1000) {
      unit = ' s';
      v = ms / 1000;
      st = step / 1000;
    }
    var decimals = Math.max(0, Math.min(6, -Math.floor(Math.log10(st) + 1e-9)));
    var text = Math.abs(v).toFixed(decimals);
    var dot = text.indexOf('.');
    var intPart = dot < 0 ? text : text.slice(0, dot);
    var frac = dot < 0 ? '' : text.slice(dot);
    var sign = v < 0 && /[1-9]/.test(text) ? '-' : '';
    return sign + group(intPart) + frac + unit;
  }

  function fmtMs(v) {
    return fmtFloat(v) + ' ms';
  }

  // ---- DOM helpers ----

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    if (attrs) {
      for (var key in attrs) {
        if (Object.prototype.hasOwnProperty.call(attrs, key)) node.setAttribute(key, attrs[key]);
      }
    }
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  // ---- The console's tables (report::table), as DOM tables ----

  var BLANK = { text: '', blank: true };
  // A figure the trace cannot give (null: a record of another trace source): its row is
  // left out, even where a zero is shown.
  var ABSENT = { text: '', blank: true, absent: true };

  function isZeroInt(v) {
    return typeof v === 'string' ? /^0*$/.test(v) : v === 0;
  }
  function cInt(v) {
    if (v === null || v === undefined) return ABSENT;
    return { text: fmtInt(v), blank: isZeroInt(v) };
  }
  function cFloat(v) {
    if (v === null || v === undefined) return ABSENT;
    return { text: fmtFloat(v), blank: v === 0 };
  }
  function cOptInt(v) {
    return v === null || v === undefined ? BLANK : cInt(v);
  }
  function cOptFloat(v) {
    return v === null || v === undefined ? BLANK : { text: fmtFloat(v), blank: false };
  }
  function cText(v) {
    return { text: v === null || v === undefined ? '' : v, blank: v === null || v === undefined || v === '' };
  }

  // Adds [label, cells] unless every cell is blank (when elide is set).
  function pushRow(rows, label, cells, elide) {
    if (cells.length > 0 && cells.every(function (c) { return c.absent; })) return;
    if (elide && cells.every(function (c) { return c.blank; })) return;
    rows.push([label, cells.map(function (c) { return c.text; })]);
  }

  function tableNode(kind, header, rows) {
    var table = el('table', { 'class': 'omni', 'data-table': kind });
    var head = el('thead');
    var tr = el('tr');
    header.forEach(function (h) { tr.appendChild(el('th', null, h)); });
    head.appendChild(tr);
    table.appendChild(head);
    var tbody = el('tbody');
    rows.forEach(function (row) {
      var r = el('tr', { 'data-field': row[0] });
      r.appendChild(el('td', null, row[0]));
      row[1].forEach(function (text) { r.appendChild(el('td', null, text)); });
      tbody.appendChild(r);
    });
    table.appendChild(tbody);
    return table;
  }

  function block(title, table) {
    var div = el('div', { 'class': 'block' });
    div.appendChild(el('h3', null, title));
    div.appendChild(table);
    return div;
  }

  function summaryTable(s) {
    var rows = [];
    pushRow(rows, 'e2e_requests', [cInt(s.e2e_requests)], false);
    pushRow(rows, 'e2e_wall_time_ms', [cFloat(s.e2e_wall_time_ms)], false);
    pushRow(rows, 'e2e_total_tokens', [cInt(s.e2e_total_tokens)], false);
    pushRow(rows, 'e2e_avg_time_per_request_ms', [cFloat(s.e2e_avg_time_per_request_ms)], false);
    pushRow(rows, 'e2e_avg_tokens_per_s', [cFloat(s.e2e_avg_tokens_per_s)], false);
    s.stage_wall_time_ms.forEach(function (pair) {
      pushRow(rows, 'e2e_stage_' + String(pair[0]) + '_wall_time_ms', [cFloat(pair[1])], false);
    });
    // Rows beyond the seed's, formatted as the console prints them (report::table).
    (s.extra || []).forEach(function (row) { rows.push([row[0], [row[1]]]); });
    pushRow(rows, 'e2e_requests_error', [cInt(s.e2e_requests_error)], true);
    pushRow(rows, 'e2e_requests_aborted', [cInt(s.e2e_requests_aborted)], true);
    pushRow(rows, 'invalid_spans', [cInt(s.invalid_spans)], true);
    return tableNode('summary', ['Field', 'Value'], rows);
  }

  function distributionTable(dist) {
    var rows = [];
    dist.forEach(function (d) {
      pushRow(rows, d[0], [cInt(d[1]), cFloat(d[2]), cFloat(d[3]), cFloat(d[4]), cFloat(d[5]), cFloat(d[6])], false);
    });
    return tableNode('distributions', ['Field', 'count', 'mean', 'p50', 'p90', 'p99', 'max'], rows);
  }

  function requestTable(r) {
    var rows = [];
    pushRow(rows, 'e2e_total_ms', [cFloat(r[RQ.e2e_total_ms])], false);
    pushRow(rows, 'e2e_total_tokens', [cInt(r[RQ.e2e_total_tokens])], false);
    pushRow(rows, 'transfers_total_time_ms', [cFloat(r[RQ.transfers_total_time_ms])], false);
    pushRow(rows, 'transfers_total_kbytes', [cFloat(r[RQ.transfers_total_kbytes])], false);
    ['time_to_first_output_ms', 'time_to_first_audio_ms', 'audio_duration_ms', 'audio_e2e_rtf'].forEach(function (name) {
      pushRow(rows, name, [cOptFloat(r[RQ[name]])], true);
    });
    pushRow(rows, 'invalid_spans', [cInt(r[RQ.invalid_spans])], true);
    return tableNode('request', ['Field', 'Value'], rows);
  }

  function stageHeading(s) {
    var name = s[ST.stage_name];
    return name === null || name === undefined ? String(s[ST.stage_id]) : String(s[ST.stage_id]) + ' ' + name;
  }

  var STAGE_ROWS = [
    ['audio_generated_frames', function (s) { return cInt(s[ST.audio_generated_frames]); }],
    ['batch_id', function (s) { return s[ST.batch_id] === null ? BLANK : { text: fmtInt(s[ST.batch_id]), blank: false }; }],
    ['batch_size', function (s) { return cInt(s[ST.batch_size]); }],
    ['image_num', function (s) { return cOptInt(s[ST.image_num]); }],
    ['num_tokens_in', function (s) { return cInt(s[ST.num_tokens_in]); }],
    ['num_tokens_out', function (s) { return cInt(s[ST.num_tokens_out]); }],
    ['postprocess_time_ms', function (s) { return cFloat(s[ST.postprocess_time_ms]); }],
    ['resolution', function (s) { return cText(s[ST.resolution]); }],
    ['stage_gen_time_ms', function (s) { return cFloat(s[ST.stage_gen_time_ms]); }],
    ['queue_time_ms', function (s) { return cFloat(s[ST.queue_time_ms]); }],
    ['output_chunks', function (s) { return cInt(s[ST.output_chunks]); }],
    ['output_units', function (s) { return cInt(s[ST.output_units]); }],
    ['time_to_first_output_ms', function (s) { return cOptFloat(s[ST.time_to_first_output_ms]); }],
    ['inter_output_ms', function (s) { return cOptFloat(s[ST.inter_output_ms]); }],
    ['audio_duration_ms', function (s) { return cOptFloat(s[ST.audio_duration_ms]); }],
    ['audio_rtf', function (s) { return cOptFloat(s[ST.audio_rtf]); }]
  ];

  function stageTable(stages, extra) {
    var rows = [];
    STAGE_ROWS.forEach(function (def) {
      pushRow(rows, def[0], stages.map(def[1]), true);
    });
    (extra || []).forEach(function (row) { rows.push([row[0], row[1]]); });
    return tableNode('stages', ['Field'].concat(stages.map(stageHeading)), rows);
  }

  var EDGE_ROWS = ['size_kbytes', 'tx_time_ms', 'rx_decode_time_ms', 'in_flight_time_ms'];

  function edgeName(e) {
    return String(e[ED.from_stage]) + '->' + String(e[ED.to_stage]);
  }

  function transferTable(edges, extra) {
    var rows = [];
    EDGE_ROWS.forEach(function (name) {
      pushRow(rows, name, edges.map(function (e) { return cFloat(e[ED[name]]); }), true);
    });
    (extra || []).forEach(function (row) { rows.push([row[0], row[1]]); });
    return tableNode('transfers', ['Field'].concat(edges.map(edgeName)), rows);
  }

  function requestTitle(r) {
    var scope = r[RQ.scope];
    return 'RequestE2EStats (request ' + r[RQ.request_id] + ', status ' + r[RQ.status] +
      ', scope ' + (scope === null || scope === undefined ? data.scope : scope) + ')';
  }

  function requestBlock(r) {
    var div = el('div', { 'class': 'request-block', 'data-request': r[RQ.request_id] });
    var tables = el('div', { 'class': 'tables' });
    tables.appendChild(block(requestTitle(r), requestTable(r)));
    var stages = r[RQ.stages];
    var edges = r[RQ.transfers];
    if (stages.length > 0) tables.appendChild(block('StageRequestStats', stageTable(stages, r[RQ.stage_extra])));
    if (edges.length > 0) tables.appendChild(block('TransferEdgeStats', transferTable(edges, r[RQ.edge_extra])));
    div.appendChild(tables);
    return div;
  }

  // ---- Data ----

  var data = JSON.parse(document.getElementById('omni-data').textContent);
  function indexOf(columns) {
    var m = {};
    columns.forEach(function (c, i) { m[c] = i; });
    return m;
  }
  var RQ = indexOf(data.columns.request);
  var ST = indexOf(data.columns.stage);
  var ED = indexOf(data.columns.edge);
  var reqs = data.requests;
  var n = reqs.length;

  var PALETTE = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#8cd17d'];
  function rgb(hex) {
    return [parseInt(hex.slice(1, 3), 16), parseInt(hex.slice(3, 5), 16), parseInt(hex.slice(5, 7), 16)];
  }
  function mix(c, to, f) {
    return [Math.round(c[0] + (to[0] - c[0]) * f), Math.round(c[1] + (to[1] - c[1]) * f), Math.round(c[2] + (to[2] - c[2]) * f)];
  }
  function css(c) {
    return 'rgb(' + c[0] + ',' + c[1] + ',' + c[2] + ')';
  }
  // A pixel of an ImageData's Uint32Array (little-endian RGBA).
  function pixel(c) {
    return ((255 << 24) | (c[2] << 16) | (c[1] << 8) | c[0]) >>> 0;
  }

  // Stage ids in order, with names and colors.
  // Keyed lookups have no prototype (or are Maps): no id can be `constructor` or `__proto__`.
  var stageIndex = Object.create(null);
  var stageKeys = [];
  var stageNames = Object.create(null);
  reqs.forEach(function (r) {
    r[RQ.stages].forEach(function (s) {
      var key = String(s[ST.stage_id]);
      if (!(key in stageIndex)) {
        stageIndex[key] = -1;
        stageKeys.push(key);
      }
      if (s[ST.stage_name] !== null && !(key in stageNames)) stageNames[key] = s[ST.stage_name];
    });
  });
  stageKeys.sort(function (a, b) { return Number(a) - Number(b) || (a < b ? -1 : a > b ? 1 : 0); });
  stageKeys.forEach(function (key, i) { stageIndex[key] = i; });
  function stageLabel(key) {
    return 'stage ' + key + (key in stageNames ? ' ' + stageNames[key] : '');
  }
  var stageColors = stageKeys.map(function (key, i) {
    var base = rgb(PALETTE[i % PALETTE.length]);
    return { base: base, queue: mix(base, [255, 255, 255], 0.62), post: mix(base, [0, 0, 0], 0.42) };
  });
  var EDGE_DARK = [85, 90, 102];
  var EDGE_PALE = [186, 190, 200];
  var stagePx = stageColors.map(function (c) { return { base: pixel(c.base), queue: pixel(c.queue), post: pixel(c.post) }; });
  var edgeDarkPx = pixel(EDGE_DARK);
  var edgePalePx = pixel(EDGE_PALE);

  // Bars, flat: per request its edges first, then its stages.
  var nb = 0;
  reqs.forEach(function (r) { nb += r[RQ.stages].length + r[RQ.transfers].length; });
  var bStart = new Float64Array(nb);
  var bEnd = new Float64Array(nb);
  var bHead = new Float64Array(nb); // queue (stage) or tx (edge) ms at the start
  var bTail = new Float64Array(nb); // postprocess (stage) or rx_decode (edge) ms at the end
  var bKind = new Uint8Array(nb); // 0 stage, 1 edge
  var bColor = new Int32Array(nb); // stage index (stages)
  var bBatch = new Int32Array(nb); // batch index, -1 for none
  var bSub = new Int32Array(nb); // index in the request's stages or transfers
  var rowBars = new Int32Array(n + 1);
  // Audio playback gaps, per bar of a stage that has some: [[start_ms, end_ms], ...].
  var bGaps = Object.create(null);
  var audioGaps = 0;
  var gapsDrawn = 0;
  var batchIndex = Object.create(null);
  var batches = []; // {stage, id, size, start, end, members}
  var maxT = 0;
  var okLatency = [];
  var genByStage = stageKeys.map(function () { return []; });
  var transferPoints = Object.create(null); // edge name -> [[kbytes, ms]]
  var b = 0;
  function positive(v) {
    return v > 0 ? v : 0;
  }
  reqs.forEach(function (r, i) {
    rowBars[i] = b;
    maxT = Math.max(maxT, r[RQ.end_ms]);
    var ok = r[RQ.status] === 'ok';
    if (ok) okLatency.push(r[RQ.e2e_total_ms]);
    r[RQ.transfers].forEach(function (e, j) {
      bStart[b] = e[ED.start_ms];
      bEnd[b] = Math.max(e[ED.end_ms], e[ED.start_ms]);
      bHead[b] = positive(e[ED.tx_time_ms]);
      bTail[b] = positive(e[ED.rx_decode_time_ms]);
      bKind[b] = 1;
      bBatch[b] = -1;
      bSub[b] = j;
      maxT = Math.max(maxT, bEnd[b]);
      if (ok) {
        var name = edgeName(e);
        (transferPoints[name] = transferPoints[name] || []).push([e[ED.size_kbytes], e[ED.tx_time_ms] + e[ED.rx_decode_time_ms] + e[ED.in_flight_time_ms]]);
      }
      b += 1;
    });
    r[RQ.stages].forEach(function (s, j) {
      var key = String(s[ST.stage_id]);
      var k = stageIndex[key];
      bStart[b] = s[ST.start_ms];
      bEnd[b] = Math.max(s[ST.end_ms], s[ST.start_ms]);
      bHead[b] = positive(s[ST.queue_time_ms]);
      bTail[b] = positive(s[ST.postprocess_time_ms]);
      bKind[b] = 0;
      bColor[b] = k;
      bSub[b] = j;
      var gaps = s[ST.audio_gaps];
      if (gaps && gaps.length > 0) {
        bGaps[b] = gaps;
        audioGaps += gaps.length;
      }
      bBatch[b] = -1;
      maxT = Math.max(maxT, bEnd[b]);
      if (ok) genByStage[k].push(s[ST.stage_gen_time_ms]);
      if (s[ST.batch_id] !== null) {
        var bkey = key + '/' + String(s[ST.batch_id]);
        var bi = batchIndex[bkey];
        var computeStart = Math.min(bEnd[b], bStart[b] + bHead[b]);
        var computeEnd = Math.max(computeStart, bEnd[b] - bTail[b]);
        if (bi === undefined) {
          bi = batches.length;
          batchIndex[bkey] = bi;
          batches.push({ stage: k, id: s[ST.batch_id], size: s[ST.batch_size], start: computeStart, end: computeEnd, members: 0 });
        }
        var batch = batches[bi];
        batch.start = Math.min(batch.start, computeStart);
        batch.end = Math.max(batch.end, computeEnd);
        batch.members += 1;
        bBatch[b] = bi;
      }
      b += 1;
    });
  });
  rowBars[n] = b;
  if (!(maxT > 0)) maxT = 1;
  var batchesByStage = stageKeys.map(function () { return []; });
  batches.forEach(function (bt, i) { batchesByStage[bt.stage].push(i); });
  var laneStages = [];
  stageKeys.forEach(function (key, k) { if (batchesByStage[k].length > 0) laneStages.push(k); });

  // ---- Header, notes, summary ----

  document.getElementById('title').textContent = 'omni-metrics report: scope ' + data.scope;
  document.getElementById('meta').textContent = fmtInt(n) + (n === 1 ? ' request, ' : ' requests, ') +
    fmtInt(nb) + ' bars (stages and transfers), ' + fmtInt(batches.length) + ' batches; ' + data.generator;
  var notes = [];
  if (data.left_out !== 0 && data.left_out !== '0') {
    notes.push(fmtInt(data.left_out) + ' requests of this scope are not in this report (the live report keeps at most ' +
      'a set number of requests a run, and drops records its queue could not take); the summary counts them.');
  }
  if (!data.timed && n > 0) {
    notes.push('These records carry no times: the timeline lays each request from 0, its stages one after another ' +
      '(queue, compute, post-processing) and each transfer after its sending stage.');
  }
  if (notes.length > 0) {
    var notesBox = document.getElementById('notes');
    notesBox.hidden = false;
    notesBox.textContent = notes.join(' ');
  }
  var summaryBox = document.getElementById('summary');
  var summaryTables = el('div', { 'class': 'tables' });
  summaryTables.appendChild(block('Overall Summary (scope ' + data.scope + ')', summaryTable(data.summary)));
  if (data.distributions.length > 0) summaryTables.appendChild(block('Distributions', distributionTable(data.distributions)));
  summaryBox.appendChild(summaryTables);

  // ---- Legend ----

  var legend = document.getElementById('legend');
  function swatch(color, label) {
    var span = el('span');
    var sw = el('span', { 'class': 'swatch' });
    sw.style.background = css(color);
    span.appendChild(sw);
    span.appendChild(document.createTextNode(label));
    legend.appendChild(span);
  }
  stageKeys.forEach(function (key, k) { swatch(stageColors[k].base, stageLabel(key)); });
  if (stageColors.length > 0) {
    swatch(stageColors[0].queue, 'queue (pale, at a stage\u2019s start)');
    swatch(stageColors[0].post, 'post-processing (dark, at its end)');
  }
  swatch(EDGE_DARK, 'transfer: tx, rx_decode');
  swatch(EDGE_PALE, 'in flight');

  // ---- Timeline ----

  var canvas = document.getElementById('timeline');
  var boxEl = document.getElementById('timeline-box');
  var tooltip = document.getElementById('tooltip');
  var ctx = canvas.getContext('2d');
  var GUTTER = 160;
  var AXIS_H = 22;
  var LANE_H = 16;
  var lanesTop = AXIS_H + 2;
  var lanesH = laneStages.length * LANE_H;
  var rowsTop = lanesTop + lanesH + (lanesH > 0 ? 6 : 2);
  var rowsH = Math.max(44, Math.min(600, n * 22));
  var H = rowsTop + rowsH + 6;
  var W = 800;
  var dpr = 1;
  var view = { t0: 0, t1: 1, r0: 0, rv: 1 };
  var hover = { req: -1, bar: -1, batch: -1 };
  var selected = -1;
  var image = null;
  var pixels = null;

  function plotW() {
    return Math.max(10, W - GUTTER - 10);
  }
  function rowH() {
    return rowsH / view.rv;
  }
  function xOf(t) {
    return GUTTER + (t - view.t0) / (view.t1 - view.t0) * plotW();
  }
  function tOf(x) {
    return view.t0 + (x - GUTTER) / plotW() * (view.t1 - view.t0);
  }
  function fullSpan() {
    return maxT * 1.02;
  }
  function fit() {
    view.t0 = 0;
    view.t1 = fullSpan();
    view.r0 = 0;
    view.rv = Math.max(1, n);
  }
  function clampView() {
    var full = fullSpan();
    var span = view.t1 - view.t0;
    var minSpan = Math.max(full * 1e-7, 1e-6);
    if (!(span >= minSpan)) span = minSpan;
    if (span > full * 4) span = full * 4;
    if (!isFinite(view.t0)) view.t0 = 0;
    view.t1 = view.t0 + span;
    var total = Math.max(1, n);
    view.rv = Math.min(total, Math.max(Math.min(total, 3), view.rv));
    view.r0 = Math.min(Math.max(0, view.r0), total - view.rv);
  }

  function resize() {
    dpr = window.devicePixelRatio || 1;
    W = Math.max(320, boxEl.clientWidth || 800);
    canvas.width = Math.round(W * dpr);
    canvas.height = Math.round(H * dpr);
    canvas.style.height = H + 'px';
    image = null;
  }

  function niceStep(raw) {
    var p = Math.pow(10, Math.floor(Math.log10(raw)));
    var f = raw / p;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
  }

  // Stage bar segments: queue at the start, post-processing at the end, compute between.
  function segments(i) {
    var s = bStart[i];
    var e = bEnd[i];
    var headEnd = Math.min(e, s + bHead[i]);
    var tailStart = Math.max(headEnd, e - bTail[i]);
    return [s, headEnd, tailStart, e];
  }

  var drawPending = false;
  function requestDraw() {
    // What will be drawn, at once (tests and tools read it without waiting for a frame).
    canvas.setAttribute('data-view', [view.t0, view.t1, view.r0, view.rv].join(','));
    if (drawPending) return;
    drawPending = true;
    window.requestAnimationFrame(function () {
      drawPending = false;
      draw();
    });
  }

  function draw() {
    gapsDrawn = 0;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, W, H);
    ctx.fillStyle = '#ffffff';
    ctx.fillRect(0, 0, W, H);
    var pw = plotW();
    var span = view.t1 - view.t0;
    // Axis and grid.
    var step = niceStep(span / Math.max(2, Math.floor(pw / 110)));
    ctx.font = '11px system-ui, sans-serif';
    ctx.textBaseline = 'middle';
    ctx.lineWidth = 1;
    var first = Math.ceil(view.t0 / step) * step;
    for (var t = first, ticks = 0; t <= view.t1 && ticks < 200; t += step, ticks++) {
      var x = Math.round(xOf(t)) + 0.5;
      ctx.strokeStyle = '#eceef3';
      ctx.beginPath();
      ctx.moveTo(x, AXIS_H);
      ctx.lineTo(x, H);
      ctx.stroke();
      ctx.fillStyle = '#5c6577';
      ctx.fillText(fmtTick(t, step), x + 3, AXIS_H / 2);
    }
    ctx.fillStyle = '#5c6577';
    ctx.fillText(data.timed ? 'time since the first request' : 'time in each request', 6, AXIS_H / 2);
    // Batch lanes.
    laneStages.forEach(function (k, li) {
      var y = lanesTop + li * LANE_H;
      ctx.fillStyle = '#f6f7fa';
      ctx.fillRect(GUTTER, y, pw, LANE_H - 2);
      ctx.fillStyle = '#5c6577';
      ctx.fillText(clipText(stageLabel(stageKeys[k]) + ' batches', GUTTER - 8), 6, y + LANE_H / 2 - 1);
      var c = stageColors[k];
      batchesByStage[k].forEach(function (bi) {
        var bt = batches[bi];
        if (bt.end < view.t0 || bt.start > view.t1) return;
        var x0 = Math.max(GUTTER, xOf(bt.start));
        var x1 = Math.min(GUTTER + pw, xOf(bt.end));
        var w = Math.max(1, x1 - x0);
        ctx.fillStyle = bi === hover.batch ? css(c.post) : css(c.base);
        ctx.globalAlpha = bi === hover.batch ? 0.95 : 0.6;
        ctx.fillRect(x0, y + 1, w, LANE_H - 4);
        ctx.globalAlpha = 1;
        if (w > 46) {
          ctx.fillStyle = '#ffffff';
          ctx.fillText(clipText('#' + String(bt.id) + ' \u00d7' + String(bt.size), w - 4), x0 + 3, y + LANE_H / 2 - 1);
        }
      });
    });
    // Rows.
    var rh = rowH();
    var firstRow = Math.max(0, Math.floor(view.r0));
    var lastRow = Math.min(n - 1, Math.floor(view.r0 + view.rv));
    var drawn = 0;
    ctx.save();
    ctx.beginPath();
    ctx.rect(GUTTER, rowsTop, pw, rowsH);
    ctx.clip();
    var lod = rh >= 2 ? 'bars' : 'pixels';
    if (n === 0) {
      ctx.fillStyle = '#5c6577';
      ctx.fillText('no request in this report', GUTTER + 8, rowsTop + 16);
    } else if (lod === 'bars') {
      drawn = drawBars(firstRow, lastRow, rh);
    } else {
      drawn = drawPixels(firstRow, lastRow, rh);
    }
    if (selected >= 0 && selected >= firstRow && selected <= lastRow) {
      var ys = rowsTop + (selected - view.r0) * rh;
      ctx.strokeStyle = '#1f5fd1';
      ctx.lineWidth = 1.5;
      ctx.strokeRect(GUTTER + 0.5, ys, pw - 1, Math.max(1, rh));
    }
    ctx.restore();
    // Request ids in the gutter, when the rows are tall enough to read them.
    ctx.fillStyle = '#1d2330';
    ctx.font = '11px ui-monospace, monospace';
    if (rh >= 11) {
      for (var i = firstRow; i <= lastRow; i++) {
        var yMid = rowsTop + (i - view.r0 + 0.5) * rh;
        if (yMid < rowsTop || yMid > rowsTop + rowsH) continue;
        var status = reqs[i][RQ.status];
        ctx.fillStyle = status === 'ok' ? '#1d2330' : status === 'error' ? '#c62828' : '#b26a00';
        ctx.fillText(clipText(reqs[i][RQ.request_id] + (status === 'ok' ? '' : ' (' + status + ')'), GUTTER - 10), 6, yMid);
      }
    } else if (n > 0) {
      ctx.fillStyle = '#5c6577';
      ctx.fillText('rows ' + fmtInt(firstRow + 1) + '\u2013' + fmtInt(lastRow + 1), 6, rowsTop + 10);
      ctx.fillText('of ' + fmtInt(n) + ' requests', 6, rowsTop + 24);
    }
    ctx.strokeStyle = '#d5d9e2';
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(GUTTER - 0.5, AXIS_H);
    ctx.lineTo(GUTTER - 0.5, H);
    ctx.moveTo(0, AXIS_H + 0.5);
    ctx.lineTo(W, AXIS_H + 0.5);
    ctx.stroke();
    // The view and the geometry, for tests and for reading positions off the canvas.
    canvas.setAttribute('data-view', [view.t0, view.t1, view.r0, view.rv].join(','));
    canvas.setAttribute('data-geometry', [GUTTER, rowsTop, rh, pw, lanesTop, LANE_H].join(','));
    body.setAttribute('data-bars-drawn', String(drawn));
    body.setAttribute('data-audio-gaps', String(audioGaps));
    body.setAttribute('data-audio-gaps-drawn', String(gapsDrawn));
    body.setAttribute('data-lod', lod);
    body.setAttribute('data-rows-visible', String(n === 0 ? 0 : lastRow - firstRow + 1));
    document.getElementById('view-info').textContent = (n === 0 ? 'no rows' : 'rows ' + fmtInt(firstRow + 1) + '\u2013' + fmtInt(lastRow + 1) + ' of ' + fmtInt(n)) +
      ', ' + fmtTick(view.t0, step) + ' to ' + fmtTick(view.t1, step) + ', ' + fmtInt(drawn) + ' bars drawn' +
      (lod === 'pixels' ? ' as pixels (rows thinner than 2 px; zoom the rows with shift+wheel to see each bar)' : '');
  }

  function clipText(text, width) {
    if (ctx.measureText(text).width <= width) return text;
    var lo = 0;
    var hi = text.length;
    while (lo < hi) {
      var mid = (lo + hi + 1) >> 1;
      if (ctx.measureText(text.slice(0, mid) + '\u2026').width <= width) lo = mid;
      else hi = mid - 1;
    }
    return text.slice(0, lo) + '\u2026';
  }

  function drawBars(firstRow, lastRow, rh) {
    var drawn = 0;
    gapsDrawn = 0;
    var tall = rh >= 6;
    var stageY = tall ? 0.08 : 0;
    var stageH = tall ? 0.58 : 1;
    var edgeY = tall ? 0.7 : 0;
    var edgeH = tall ? 0.22 : 1;
    var gap = rh >= 4 ? 1 : 0;
    var left = GUTTER - 2;
    var right = GUTTER + plotW() + 2;
    for (var i = firstRow; i <= lastRow; i++) {
      var top = rowsTop + (i - view.r0) * rh;
      if (i === hover.req) {
        ctx.fillStyle = '#f1f4fb';
        ctx.fillRect(GUTTER, top, plotW(), rh);
      }
      for (var j = rowBars[i]; j < rowBars[i + 1]; j++) {
        if (bEnd[j] < view.t0 || bStart[j] > view.t1) continue;
        var seg = segments(j);
        var xs = [xOf(seg[0]), xOf(seg[1]), xOf(seg[2]), xOf(seg[3])].map(function (x) { return Math.min(right, Math.max(left, x)); });
        var y;
        var h;
        var colors;
        if (bKind[j] === 0) {
          y = top + rh * stageY;
          h = Math.max(1, rh * stageH - gap);
          var c = stageColors[bColor[j]];
          colors = [c.queue, c.base, c.post];
        } else {
          y = top + rh * edgeY;
          h = Math.max(1, rh * edgeH - gap);
          colors = [EDGE_DARK, EDGE_PALE, EDGE_DARK];
        }
        if (xs[3] - xs[0] < 3) {
          ctx.fillStyle = css(colors[1]);
          ctx.fillRect(xs[0], y, Math.max(1, xs[3] - xs[0]), h);
        } else {
          for (var k = 0; k < 3; k++) {
            if (xs[k + 1] - xs[k] <= 0) continue;
            ctx.fillStyle = css(colors[k]);
            ctx.fillRect(xs[k], y, xs[k + 1] - xs[k], h);
          }
        }
        if (bKind[j] === 0 && bGaps[j]) {
          // Where a listener heard silence: the audio had run out before the next packet.
          ctx.fillStyle = '#d32f2f';
          bGaps[j].forEach(function (g) {
            if (g[1] < view.t0 || g[0] > view.t1) return;
            var gx0 = Math.min(right, Math.max(left, xOf(g[0])));
            var gx1 = Math.min(right, Math.max(left, xOf(g[1])));
            ctx.fillRect(gx0, y + h - Math.max(2, h / 3), Math.max(1, gx1 - gx0), Math.max(2, h / 3));
            gapsDrawn += 1;
          });
        }
        if (bKind[j] === 0 && bBatch[j] >= 0) {
          if (bBatch[j] === hover.batch) {
            ctx.strokeStyle = '#111111';
            ctx.lineWidth = 1.5;
            ctx.strokeRect(xs[0], y, Math.max(1, xs[3] - xs[0]), h);
          } else if (rh >= 12) {
            // A strip on top, colored by batch: bars of one batch share it.
            ctx.fillStyle = 'hsl(' + ((bBatch[j] * 137.508) % 360).toFixed(1) + ',70%,38%)';
            ctx.fillRect(xs[0], y, Math.max(1, xs[3] - xs[0]), 2);
          }
        }
        drawn += 1;
      }
    }
    return drawn;
  }

  // Level of detail: rows thinner than 2 px are painted into an ImageData, one pixel row
  // per request (several requests share a pixel row when thinner than a pixel).
  function drawPixels(firstRow, lastRow, rh) {
    var pw = Math.max(1, Math.round(plotW() * dpr));
    var ph = Math.max(1, Math.round(rowsH * dpr));
    if (!image || image.width !== pw || image.height !== ph) {
      image = ctx.createImageData(pw, ph);
      pixels = new Uint32Array(image.data.buffer);
    }
    pixels.fill(0xffffffff);
    var scale = pw / (view.t1 - view.t0);
    var t0 = view.t0;
    var t1 = view.t1;
    var rowsPx = Math.max(1, Math.floor(rh * dpr));
    var drawn = 0;
    function span(py, a, z, color) {
      var x0 = Math.floor((a - t0) * scale);
      var x1 = Math.floor((z - t0) * scale);
      if (x1 < 0 || x0 >= pw) return;
      if (x0 < 0) x0 = 0;
      if (x1 >= pw) x1 = pw - 1;
      for (var yy = py; yy < py + rowsPx && yy < ph; yy++) {
        var base = yy * pw;
        pixels.fill(color, base + x0, base + x1 + 1);
      }
    }
    for (var i = firstRow; i <= lastRow; i++) {
      var py = Math.floor((i - view.r0) * rh * dpr);
      if (py < 0 || py >= ph) continue;
      for (var j = rowBars[i]; j < rowBars[i + 1]; j++) {
        if (bEnd[j] < t0 || bStart[j] > t1) continue;
        var seg = segments(j);
        if (bKind[j] === 0) {
          var c = stagePx[bColor[j]];
          span(py, seg[0], seg[1], c.queue);
          span(py, seg[1], seg[2], c.base);
          span(py, seg[2], seg[3], c.post);
        } else {
          span(py, seg[0], seg[3], edgePalePx);
          span(py, seg[0], seg[1], edgeDarkPx);
          span(py, seg[2], seg[3], edgeDarkPx);
        }
        drawn += 1;
      }
    }
    ctx.putImageData(image, Math.round(GUTTER * dpr), Math.round(rowsTop * dpr));
    return drawn;
  }

  // What is under the mouse: {req, bar, batch}.
  function hitTest(mx, my) {
    var none = { req: -1, bar: -1, batch: -1 };
    if (my >= lanesTop && my < lanesTop + lanesH && mx >= GUTTER) {
      var k = laneStages[Math.floor((my - lanesTop) / LANE_H)];
      if (k === undefined) return none;
      var t = tOf(mx);
      var tol = 3 * (view.t1 - view.t0) / plotW();
      var list = batchesByStage[k];
      for (var q = 0; q < list.length; q++) {
        var bt = batches[list[q]];
        if (bt.start - tol <= t && t <= bt.end + tol) return { req: -1, bar: -1, batch: list[q] };
      }
      return none;
    }
    if (my < rowsTop || my >= rowsTop + rowsH || n === 0) return none;
    var rh = rowH();
    var i = Math.floor(view.r0 + (my - rowsTop) / rh);
    if (i < 0 || i >= n) return none;
    if (mx < GUTTER) return { req: i, bar: -1, batch: -1 };
    var tm = tOf(mx);
    var tolerance = 3 * (view.t1 - view.t0) / plotW();
    var inEdgeBand = rh >= 6 && (my - rowsTop - (i - view.r0) * rh) / rh >= 0.66;
    var best = -1;
    var bestScore = Infinity;
    for (var j = rowBars[i]; j < rowBars[i + 1]; j++) {
      if (bStart[j] - tolerance > tm || tm > bEnd[j] + tolerance) continue;
      var dist = tm < bStart[j] ? bStart[j] - tm : tm > bEnd[j] ? tm - bEnd[j] : 0;
      var score = dist + ((bKind[j] === 1) === inEdgeBand ? 0 : tolerance * 10);
      if (score < bestScore) {
        bestScore = score;
        best = j;
      }
    }
    return { req: i, bar: best, batch: best >= 0 && bKind[best] === 0 ? bBatch[best] : -1 };
  }

  function requestLines(i) {
    var r = reqs[i];
    var lines = [
      'request ' + r[RQ.request_id] + ' (' + r[RQ.status] + ')',
      'e2e_total_ms        ' + fmtFloat(r[RQ.e2e_total_ms]) + '   from ' + fmtMs(r[RQ.start_ms]) + ' to ' + fmtMs(r[RQ.end_ms])
    ];
    // null: not in the trace (another trace source).
    if (r[RQ.e2e_total_tokens] !== null) lines.push('e2e_total_tokens    ' + fmtInt(r[RQ.e2e_total_tokens]));
    if (r[RQ.transfers_total_time_ms] !== null) {
      lines.push('transfers_total_ms  ' + fmtFloat(r[RQ.transfers_total_time_ms]) + '   ' + fmtFloat(r[RQ.transfers_total_kbytes]) + ' KiB');
    }
    return lines;
  }

  function tooltipText(hit) {
    if (hit.bar < 0 && hit.req < 0 && hit.batch >= 0) {
      var bt = batches[hit.batch];
      return [
        stageLabel(stageKeys[bt.stage]) + ', batch_id ' + fmtInt(bt.id),
        'batch_size   ' + fmtInt(bt.size) + '   (' + fmtInt(bt.members) + ' of its requests in this report)',
        'compute from ' + fmtMs(bt.start) + ' to ' + fmtMs(bt.end)
      ].join('\n');
    }
    var lines = requestLines(hit.req);
    var j = hit.bar;
    if (j >= 0) {
      var r = reqs[hit.req];
      lines.push('');
      if (bKind[j] === 0) {
        var s = r[RQ.stages][bSub[j]];
        lines.push(stageLabel(String(s[ST.stage_id])) + '   from ' + fmtMs(s[ST.start_ms]) + ' to ' + fmtMs(s[ST.end_ms]));
        if (s[ST.queue_time_ms] !== null) lines.push('queue_time_ms        ' + fmtFloat(s[ST.queue_time_ms]));
        lines.push('stage_gen_time_ms    ' + fmtFloat(s[ST.stage_gen_time_ms]));
        if (s[ST.postprocess_time_ms] !== null) lines.push('postprocess_time_ms  ' + fmtFloat(s[ST.postprocess_time_ms]));
        if (s[ST.batch_id] !== null) lines.push('batch_id             ' + fmtInt(s[ST.batch_id]) + '   batch_size ' + fmtInt(s[ST.batch_size]));
        if (s[ST.num_tokens_in] !== null) lines.push('num_tokens_in / out  ' + fmtInt(s[ST.num_tokens_in]) + ' / ' + fmtInt(s[ST.num_tokens_out]));
        if (s[ST.time_to_first_output_ms] !== null) lines.push('time_to_first_output_ms ' + fmtFloat(s[ST.time_to_first_output_ms]));
        if (s[ST.output_chunks] !== 0 && s[ST.output_chunks] !== null) lines.push('output_chunks        ' + fmtInt(s[ST.output_chunks]));
        if (s[ST.audio_rtf] !== null) lines.push('audio_rtf            ' + fmtFloat(s[ST.audio_rtf]));
      } else {
        var e = r[RQ.transfers][bSub[j]];
        lines.push('transfer ' + edgeName(e) + '   from ' + fmtMs(e[ED.start_ms]) + ' to ' + fmtMs(e[ED.end_ms]));
        lines.push('size_kbytes          ' + fmtFloat(e[ED.size_kbytes]));
        lines.push('tx_time_ms           ' + fmtFloat(e[ED.tx_time_ms]));
        lines.push('in_flight_time_ms    ' + fmtFloat(e[ED.in_flight_time_ms]));
        lines.push('rx_decode_time_ms    ' + fmtFloat(e[ED.rx_decode_time_ms]));
      }
    }
    return lines.join('\n');
  }

  function mousePos(ev) {
    var rect = canvas.getBoundingClientRect();
    return [ev.clientX - rect.left, ev.clientY - rect.top];
  }

  var drag = null;
  canvas.addEventListener('pointerdown', function (ev) {
    var p = mousePos(ev);
    drag = { x: p[0], y: p[1], t0: view.t0, t1: view.t1, r0: view.r0, moved: false };
    try {
      canvas.setPointerCapture(ev.pointerId);
    } catch (e) {
      // A synthetic or finished pointer: dragging still works while over the canvas.
    }
  });
  canvas.addEventListener('pointermove', function (ev) {
    var p = mousePos(ev);
    if (drag) {
      var dx = p[0] - drag.x;
      var dy = p[1] - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
      if (drag.moved) {
        canvas.classList.add('dragging');
        var dt = dx / plotW() * (drag.t1 - drag.t0);
        view.t0 = drag.t0 - dt;
        view.t1 = drag.t1 - dt;
        view.r0 = drag.r0 - dy / rowH();
        clampView();
        tooltip.hidden = true;
        requestDraw();
        return;
      }
    }
    var hit = hitTest(p[0], p[1]);
    if (hit.req !== hover.req || hit.bar !== hover.bar || hit.batch !== hover.batch) {
      hover = hit;
      requestDraw();
    }
    if (hit.req < 0 && hit.batch < 0) {
      tooltip.hidden = true;
      return;
    }
    tooltip.textContent = tooltipText(hit);
    tooltip.hidden = false;
    var left = p[0] + 14;
    var boxW = boxEl.clientWidth;
    if (left + tooltip.offsetWidth > boxW) left = Math.max(0, p[0] - 14 - tooltip.offsetWidth);
    tooltip.style.left = left + 'px';
    tooltip.style.top = Math.max(0, p[1] + 14) + 'px';
  });
  canvas.addEventListener('pointerup', function (ev) {
    var p = mousePos(ev);
    var wasClick = drag && !drag.moved;
    drag = null;
    canvas.classList.remove('dragging');
    if (wasClick) {
      var hit = hitTest(p[0], p[1]);
      if (hit.req >= 0) selectRequest(hit.req, true);
    }
  });
  canvas.addEventListener('pointerleave', function () {
    tooltip.hidden = true;
    if (hover.req >= 0 || hover.batch >= 0) {
      hover = { req: -1, bar: -1, batch: -1 };
      requestDraw();
    }
  });
  canvas.addEventListener('wheel', function (ev) {
    ev.preventDefault();
    var p = mousePos(ev);
    var delta = ev.deltaY !== 0 ? ev.deltaY : ev.deltaX;
    if (ev.deltaMode === 1) delta *= 16;
    var factor = Math.exp(Math.max(-2, Math.min(2, delta * 0.0015)));
    if (ev.shiftKey) {
      var rc = view.r0 + Math.max(0, p[1] - rowsTop) / rowH();
      var rv = view.rv * factor;
      view.r0 = rc - (rc - view.r0) * rv / view.rv;
      view.rv = rv;
    } else {
      var tc = p[0] >= GUTTER ? tOf(p[0]) : (view.t0 + view.t1) / 2;
      var span = (view.t1 - view.t0) * factor;
      view.t0 = tc - (tc - view.t0) * factor;
      view.t1 = view.t0 + span;
    }
    clampView();
    tooltip.hidden = true;
    requestDraw();
  }, { passive: false });
  canvas.addEventListener('keydown', function (ev) {
    var span = view.t1 - view.t0;
    if (ev.key === '+' || ev.key === '=') { view.t0 += span / 4; view.t1 -= span / 4; }
    else if (ev.key === '-') { view.t0 -= span / 2; view.t1 += span / 2; }
    else if (ev.key === 'ArrowLeft') { view.t0 -= span / 10; view.t1 -= span / 10; }
    else if (ev.key === 'ArrowRight') { view.t0 += span / 10; view.t1 += span / 10; }
    else if (ev.key === 'ArrowUp') { view.r0 -= view.rv / 10; }
    else if (ev.key === 'ArrowDown') { view.r0 += view.rv / 10; }
    else if (ev.key === '0') { fit(); }
    else return;
    ev.preventDefault();
    clampView();
    requestDraw();
  });
  document.getElementById('reset').addEventListener('click', function () {
    fit();
    requestDraw();
  });
  window.addEventListener('resize', function () {
    resize();
    requestDraw();
  });

  // ---- Figures: histograms and a scatter plot on small canvases ----

  var FIG_W = 340;
  var FIG_H = 170;
  var figuresBox = document.getElementById('figures');
  var figureCount = 0;

  function figure(title, kind, count) {
    var fig = el('figure', { 'data-figure': kind, 'data-count': String(count) });
    fig.appendChild(el('figcaption', null, title));
    var c = el('canvas');
    c.width = Math.round(FIG_W * dpr);
    c.height = Math.round(FIG_H * dpr);
    c.style.width = FIG_W + 'px';
    c.style.height = FIG_H + 'px';
    fig.appendChild(c);
    figuresBox.appendChild(fig);
    figureCount += 1;
    var g = c.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.font = '10px system-ui, sans-serif';
    g.fillStyle = '#ffffff';
    g.fillRect(0, 0, FIG_W, FIG_H);
    return g;
  }

  var PAD = { l: 44, r: 10, t: 8, b: 30 };

  function axes(g, xMin, xMax, yMax, xLabel, yLabel) {
    var w = FIG_W - PAD.l - PAD.r;
    var h = FIG_H - PAD.t - PAD.b;
    g.strokeStyle = '#8a93a6';
    g.lineWidth = 1;
    g.beginPath();
    g.moveTo(PAD.l - 0.5, PAD.t);
    g.lineTo(PAD.l - 0.5, PAD.t + h + 0.5);
    g.lineTo(PAD.l + w, PAD.t + h + 0.5);
    g.stroke();
    g.fillStyle = '#5c6577';
    g.textBaseline = 'top';
    g.textAlign = 'left';
    g.fillText(shortNum(xMin), PAD.l, PAD.t + h + 4);
    g.textAlign = 'right';
    g.fillText(shortNum(xMax), PAD.l + w, PAD.t + h + 4);
    g.textAlign = 'center';
    g.fillText(xLabel, PAD.l + w / 2, PAD.t + h + 16);
    g.textAlign = 'right';
    g.textBaseline = 'middle';
    g.fillText(shortNum(yMax), PAD.l - 4, PAD.t + 4);
    g.fillText('0', PAD.l - 4, PAD.t + h);
    g.save();
    g.translate(10, PAD.t + h / 2);
    g.rotate(-Math.PI / 2);
    g.textAlign = 'center';
    g.fillText(yLabel, 0, 0);
    g.restore();
    g.textAlign = 'left';
    return { w: w, h: h };
  }

  function shortNum(v) {
    if (!isFinite(v)) return String(v);
    var a = Math.abs(v);
    if (a >= 1e6) return v.toExponential(2);
    if (a >= 100 || a === 0) return (v < 0 ? '-' : '') + group(String(Math.round(a)));
    if (a >= 1) return v.toFixed(1);
    return v.toPrecision(2);
  }

  function histogram(title, kind, values, color) {
    var g = figure(title + ' (' + fmtInt(values.length) + ')', kind, values.length);
    var lo = Infinity;
    var hi = -Infinity;
    values.forEach(function (v) {
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    });
    if (values.length === 0) {
      lo = 0;
      hi = 1;
    }
    if (hi <= lo) {
      hi = lo + Math.max(1e-3, Math.abs(lo) * 0.01);
    }
    var bins = Math.max(1, Math.min(40, Math.ceil(Math.sqrt(values.length)) + 1));
    var counts = new Array(bins).fill(0);
    values.forEach(function (v) {
      var k = Math.min(bins - 1, Math.floor((v - lo) / (hi - lo) * bins));
      counts[k] += 1;
    });
    var top = Math.max(1, Math.max.apply(null, counts));
    var box = axes(g, lo, hi, top, 'ms', 'requests');
    g.fillStyle = css(color);
    counts.forEach(function (c, k) {
      var x = PAD.l + k / bins * box.w;
      var bh = c / top * box.h;
      g.fillRect(x + 0.5, PAD.t + box.h - bh, Math.max(1, box.w / bins - 1), bh);
    });
  }

  function scatter(points) {
    var names = Object.keys(points).sort();
    var total = 0;
    var xMax = 0;
    var yMax = 0;
    names.forEach(function (name) {
      points[name].forEach(function (p) {
        total += 1;
        if (p[0] > xMax) xMax = p[0];
        if (p[1] > yMax) yMax = p[1];
      });
    });
    if (total === 0) return;
    var g = figure('transfer time (tx + in flight + rx_decode) against size, per edge (' + fmtInt(total) + ')', 'transfers', total);
    xMax = xMax > 0 ? xMax * 1.05 : 1;
    yMax = yMax > 0 ? yMax * 1.05 : 1;
    var box = axes(g, 0, xMax, yMax, 'KiB', 'ms');
    names.forEach(function (name, k) {
      g.fillStyle = css(rgb(PALETTE[(k + 3) % PALETTE.length]));
      g.globalAlpha = total > 2000 ? 0.35 : 0.8;
      points[name].forEach(function (p) {
        var x = PAD.l + p[0] / xMax * box.w;
        var y = PAD.t + box.h - p[1] / yMax * box.h;
        g.fillRect(x - 1.5, y - 1.5, 3, 3);
      });
      g.globalAlpha = 1;
      g.textBaseline = 'top';
      g.fillText(name, PAD.l + 6 + k * 48, PAD.t);
    });
  }

  function figures() {
    histogram('request latency, e2e_total_ms of ok requests', 'latency', okLatency, [31, 95, 209]);
    stageKeys.forEach(function (key, k) {
      if (genByStage[k].length > 0) {
        histogram(stageLabel(key) + ' stage_gen_time_ms', 'stage-' + key, genByStage[k], stageColors[k].base);
      }
    });
    scatter(transferPoints);
    body.setAttribute('data-figures', String(figureCount));
  }

  // ---- Requests' tables: the one picked, or all (#all) ----

  var requestsBox = document.getElementById('requests');
  var idInput = document.getElementById('request-id');
  var byId = new Map();
  reqs.forEach(function (r, i) {
    if (!byId.has(r[RQ.request_id])) byId.set(r[RQ.request_id], i);
  });
  var MAX_ALL = 1000;

  function selectRequest(i, updateHash) {
    if (i < 0 || i >= n) return;
    selected = i;
    requestsBox.textContent = '';
    requestsBox.appendChild(requestBlock(reqs[i]));
    idInput.value = reqs[i][RQ.request_id];
    body.setAttribute('data-selected', reqs[i][RQ.request_id]);
    if (updateHash) {
      history.replaceState(null, '', '#request=' + encodeURIComponent(reqs[i][RQ.request_id]));
    }
    requestDraw();
  }

  function showAll() {
    requestsBox.textContent = '';
    if (n > MAX_ALL) {
      requestsBox.appendChild(el('p', { 'class': 'hint' }, fmtInt(n) + ' requests: too many to show every table; pick one.'));
      return;
    }
    var frag = document.createDocumentFragment();
    reqs.forEach(function (r) { frag.appendChild(requestBlock(r)); });
    requestsBox.appendChild(frag);
    body.setAttribute('data-selected', '*');
  }

  function fromHash() {
    var hash = window.location.hash.replace(/^#/, '');
    var params = new Map();
    hash.split('&').forEach(function (part) {
      var eq = part.indexOf('=');
      if (part.length === 0) return;
      var key = eq < 0 ? part : part.slice(0, eq);
      var value = eq < 0 ? '' : part.slice(eq + 1);
      try {
        params.set(key, decodeURIComponent(value));
      } catch (e) {
        params.set(key, value);
      }
    });
    if (params.get('view')) {
      var v = params.get('view').split(',').map(Number);
      if (v.length === 4 && v.every(isFinite)) {
        view.t0 = v[0];
        view.t1 = v[1];
        view.r0 = v[2];
        view.rv = v[3];
        clampView();
      }
    }
    if (params.has('all')) showAll();
    else if (byId.has(params.get('request'))) selectRequest(byId.get(params.get('request')), false);
    else if (selected < 0 && n > 0) selectRequest(0, false);
  }

  idInput.addEventListener('change', function () {
    if (byId.has(idInput.value)) selectRequest(byId.get(idInput.value), true);
  });
  document.getElementById('prev').addEventListener('click', function () {
    selectRequest(Math.max(0, selected - 1), true);
  });
  document.getElementById('next').addEventListener('click', function () {
    selectRequest(Math.min(n - 1, selected + 1), true);
  });
  window.addEventListener('hashchange', fromHash);

  // Suggestions for the id box: the first ids (typing any id works).
  var datalist = document.getElementById('request-ids');
  var suggestions = document.createDocumentFragment();
  for (var si = 0; si < Math.min(n, 2000); si++) suggestions.appendChild(el('option', { value: reqs[si][RQ.request_id] }));
  datalist.appendChild(suggestions);

  // ---- First render ----

  body.setAttribute('data-requests', String(n));
  body.setAttribute('data-bars', String(nb));
  body.setAttribute('data-batches', String(batches.length));
  body.setAttribute('data-left-out', String(data.left_out));
  resize();
  fit();
  fromHash();
  draw();
  figures();
  body.setAttribute('data-render-ms', performance.now().toFixed(1));
  body.setAttribute('data-rendered', '1');
})();
