// dupscope explorer: reads window.DUPSCOPE_DATA (data.js) and draws images with their duplicates.
// Everything from the data is inserted with textContent / properties, never as HTML: file names and
// labels are data, not markup.
(function () {
  "use strict";

  const D = window.DUPSCOPE_DATA;
  const $ = (id) => document.getElementById(id);
  if (!D || D.version !== 1) {
    const p = document.createElement("p");
    p.className = "empty";
    p.textContent = D ? "data.js was written by another dupscope version; rebuild the folder."
      : "data.js is missing or failed to load: keep it next to index.html.";
    $("rows-container").appendChild(p);
    return;
  }

  // ---------------------------------------------------------------------------------------------
  // Decoding: numeric columns arrive as base64 of little-endian typed arrays.
  function bytesOf(b64) {
    if (typeof Uint8Array.fromBase64 === "function") return Uint8Array.fromBase64(b64);
    const bin = atob(b64);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  const i32 = (b64) => new Int32Array(bytesOf(b64).buffer);
  const i16 = (b64) => new Int16Array(bytesOf(b64).buffer);
  const f32 = (b64) => new Float32Array(bytesOf(b64).buffer);
  // float16 -> float32 through a table: exact, so comparisons match numpy on the stored values.
  const HALF = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const e = (h >> 10) & 31, m = h & 1023, s = h & 0x8000 ? -1 : 1;
    HALF[h] = e === 0 ? s * m * 2 ** -24 : e === 31 ? (m ? NaN : s * Infinity) : s * (1 + m / 1024) * 2 ** (e - 15);
  }
  function f16(b64) {
    const u = new Uint16Array(bytesOf(b64).buffer);
    const out = new Float32Array(u.length);
    for (let i = 0; i < u.length; i++) out[i] = HALF[u[i]];
    return out;
  }

  const N = D.n;
  const paths = D.paths;
  const resolved = D.resolved;
  const labelNames = D.labelNames, labelCode = i32(D.label);
  const splitNames = D.splitNames, splitCode = i32(D.split);
  const flags = bytesOf(D.flags);
  const maxSim = f16(D.maxSim);
  const orderDesc = i32(D.order);
  const P = D.pairs.count;
  const pa = i32(D.pairs.a), pb = i32(D.pairs.b), ps = f16(D.pairs.s);
  // Geometric inliers per pair (-1: not checked), when phase 1 verified the pairs.
  const pinl = D.pairs.inliers ? i16(D.pairs.inliers) : null;
  const width = i32(D.width), height = i32(D.height);
  const VERIFIED_INLIERS = D.verifiedInliers || 15;
  const pred = D.pred ? {
    kind: D.pred.kind, score: f32(D.pred.score),
    cls: D.pred.cls ? i32(D.pred.cls) : null, classNames: D.pred.classNames || [],
  } : null;
  const T = D.thumbs;

  // Per-image duplicate lists (CSR). Pairs are sorted by similarity, so each list comes out sorted.
  const deg = new Int32Array(N + 1);
  for (let p = 0; p < P; p++) { deg[pa[p] + 1]++; deg[pb[p] + 1]++; }
  for (let i = 0; i < N; i++) deg[i + 1] += deg[i];
  const adjStart = deg;
  const adjIdx = new Int32Array(2 * P), adjSim = new Float32Array(2 * P), adjInl = new Int16Array(2 * P);
  {
    const fill = adjStart.slice(0, N);
    for (let p = 0; p < P; p++) {
      const a = pa[p], b = pb[p], s = ps[p], v = pinl ? pinl[p] : -1;
      adjIdx[fill[a]] = b; adjInl[fill[a]] = v; adjSim[fill[a]++] = s;
      adjIdx[fill[b]] = a; adjInl[fill[b]] = v; adjSim[fill[b]++] = s;
    }
  }

  // Groups (connected components of 2+ images) after adding the first p pairs, for every p: one
  // union-find pass at load makes the group count at any threshold a lookup.
  const parent = new Int32Array(N), size = new Int32Array(N);
  function find(x) {
    while (parent[x] !== x) { parent[x] = parent[parent[x]]; x = parent[x]; }
    return x;
  }
  const groupsAfter = new Int32Array(P + 1);
  {
    for (let i = 0; i < N; i++) { parent[i] = i; size[i] = 1; }
    let groups = 0;
    for (let p = 0; p < P; p++) {
      let ra = find(pa[p]), rb = find(pb[p]);
      if (ra !== rb) {
        const sa = size[ra], sb = size[rb];
        if (sa === 1 && sb === 1) groups++;
        else if (sa > 1 && sb > 1) groups--;
        if (sa < sb) { const t = ra; ra = rb; rb = t; }
        parent[rb] = ra; size[ra] += size[rb];
      }
      groupsAfter[p + 1] = groups;
    }
  }

  // Number of pairs with similarity >= t (pairs sorted descending).
  function pairCount(t) {
    let lo = 0, hi = P;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (ps[mid] >= t) lo = mid + 1; else hi = mid; }
    return lo;
  }
  // Number of images with a duplicate at t (orderDesc sorts by max similarity, NaN last).
  function dupImageCount(t) {
    let lo = 0, hi = N;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (maxSim[orderDesc[mid]] >= t) lo = mid + 1; else hi = mid; }
    return lo;
  }
  let nOk = 0;
  for (let i = 0; i < N; i++) nOk += flags[i] & 1;

  // ---------------------------------------------------------------------------------------------
  // State, kept in the URL hash so a view can be shared.
  const rowsMax = Math.max(1, Math.min(N, 1000));
  // With no threshold in the URL, start at the one suggested from the data (a clear valley
  // between duplicates and the bulk), else at 0.95.
  const SUG = D.suggested || null;
  const state = {
    t: SUG && SUG.method === "valley" ? SUG.t : 0.95, rows: Math.min(rowsMax, 50), per: 8, order: "desc",
    dups: false, cross: false, conf: false, page: 0,
  };
  const clamp = (x, lo, hi) => Math.min(hi, Math.max(lo, x));
  function readHash() {
    const h = new URLSearchParams(location.hash.slice(1));
    const num = (k, d) => { const v = parseFloat(h.get(k)); return Number.isFinite(v) ? v : d; };
    state.t = clamp(num("t", state.t), 0, 1);
    state.rows = clamp(Math.round(num("rows", state.rows)), 1, rowsMax);
    state.per = clamp(Math.round(num("per", state.per)), 1, 24);
    state.order = h.get("order") === "asc" ? "asc" : h.has("order") ? "desc" : state.order;
    for (const k of ["dups", "cross", "conf"]) if (h.has(k)) state[k] = h.get(k) === "1";
    state.page = Math.max(0, Math.round(num("page", 0)));
  }
  function writeHash() {
    const h = `t=${state.t.toFixed(3)}&rows=${state.rows}&per=${state.per}&order=${state.order}` +
      `&dups=${+state.dups}&cross=${+state.cross}&conf=${+state.conf}&page=${state.page}`;
    // replaceState: no hashchange event and no history entry per slider step.
    if (location.hash.slice(1) !== h) history.replaceState(null, "", "#" + h);
  }

  // ---------------------------------------------------------------------------------------------
  // Row selection.
  function hasCross(i, t) {
    const si = splitCode[i];
    if (!si) return false;
    for (let e = adjStart[i], end = adjStart[i + 1]; e < end && adjSim[e] >= t; e++) {
      const sj = splitCode[adjIdx[e]];
      if (sj && sj !== si) return true;
    }
    return false;
  }
  function hasConflict(i, t) {
    const li = labelCode[i];
    if (!li) return false;
    for (let e = adjStart[i], end = adjStart[i + 1]; e < end && adjSim[e] >= t; e++) {
      const lj = labelCode[adjIdx[e]];
      if (lj && lj !== li) return true;
    }
    return false;
  }
  // Images matching the filters in the current order; only the current page is kept.
  function selectRows() {
    const t = state.t, want = state.rows, start = state.page * want;
    const desc = state.order === "desc";
    const filtered = state.dups || state.cross || state.conf;
    const out = [];
    let total = 0;
    if (!filtered) {
      total = N;
      for (let k = start; k < Math.min(N, start + want); k++) out.push(desc ? orderDesc[k] : orderDesc[N - 1 - k]);
      return { rows: out, total };
    }
    for (let k = 0; k < N; k++) {
      const i = desc ? orderDesc[k] : orderDesc[N - 1 - k];
      if (!(maxSim[i] >= t)) { if (desc) break; continue; }  // no duplicate: sorted, so none after
      if (state.cross && !hasCross(i, t)) continue;
      if (state.conf && !hasConflict(i, t)) continue;
      if (total >= start && out.length < want) out.push(i);
      total++;
    }
    return { rows: out, total };
  }

  // ---------------------------------------------------------------------------------------------
  // Rendering: one cloned prototype per card, filled with textContent.
  const base = (p) => { const m = /[^\\/]*$/.exec(p); return m ? m[0] : p; };
  const thumbUrl = (i) => (flags[i] & 2) ? `${T.dir}/${(i / T.shard) | 0}/${i}.${T.ext}` : "assets/placeholder.svg";
  const fmt = (x) => x.toLocaleString("en-US");
  function predText(i) {
    if (!pred) return "";
    const s = pred.score[i];
    if (!Number.isFinite(s)) return "no prediction";
    if (pred.kind === "class") {
      const c = pred.cls[i];
      const name = c >= 0 && c < pred.classNames.length ? pred.classNames[c] : String(c);
      return `${name} ${s.toFixed(3)}`;
    }
    return `score ${s.toFixed(3)}`;
  }

  const proto = document.createElement("figure");
  proto.className = "card";
  proto.innerHTML = '<button type="button" class="thumb"><img alt="" loading="lazy" decoding="async"></button>' +
    '<figcaption><span class="sim"></span><span class="name"></span>' +
    '<span class="tags"><span class="tag label"></span><span class="tag split"></span><span class="tag pred"></span></span></figcaption>';

  function card(i, simText, rowImage) {
    // Walk the clone by sibling links: cheaper than querying, and this runs for every card.
    const el = proto.cloneNode(true);
    el.dataset.index = i;
    const img = el.firstChild.firstChild;
    img.src = thumbUrl(i);
    const sim = el.lastChild.firstChild, name = sim.nextSibling, lab = name.nextSibling.firstChild;
    const spl = lab.nextSibling, prd = spl.nextSibling;
    sim.textContent = simText;
    const nm = base(paths[i]);
    name.textContent = nm;
    name.title = paths[i];
    const li = labelCode[i], si = splitCode[i];
    if (li) lab.textContent = labelNames[li];
    if (si) { spl.textContent = splitNames[si]; spl.className = "tag split split-" + splitNames[si]; }
    if (pred) prd.textContent = predText(i);
    if (!(flags[i] & 1)) {
      el.className = "card failed";
      el.title = "failed to load: " + (D.errors[i] || "unknown error");
    }
    if (rowImage >= 0) {
      let cls = "card dup";
      const lr = labelCode[rowImage], sr = splitCode[rowImage];
      if (li && lr && li !== lr) { cls += " conflict"; lab.title = "label differs from " + labelNames[lr]; }
      if (si && sr && si !== sr) { cls += " cross"; spl.title = "other split than " + splitNames[sr]; }
      if (!(flags[i] & 1)) cls += " failed";
      el.className = cls;
    }
    return el;
  }

  const container = $("rows-container");
  const expanded = new Set();
  const MAX_DUPS = 48;  // per row before a "+N more" button: keeps hub images from flooding the DOM
  let lastRenderMs = 0;

  // The first rows, up to a budget of cards (more than a screenful), are built at once so a change
  // shows synchronously; the rest start as empty shells filled when they come near the viewport.
  // Building all 1,000 rows with dozens of duplicates each would cost far more than the 100 ms a
  // slider step may take.
  const EAGER_CARDS = 120;
  function fillRow(row) {
    const i = +row.dataset.index, t = state.t;
    row.dataset.filled = "1";
    const m = maxSim[i];
    const frag = document.createDocumentFragment();
    frag.appendChild(card(i, Number.isFinite(m) ? `max ${m.toFixed(3)}` : "no neighbours", -1));
    const dups = document.createElement("div");
    dups.className = "dups";
    let e = adjStart[i];
    const end = adjStart[i + 1];
    const limit = expanded.has(i) ? end : Math.min(end, e + MAX_DUPS);
    for (; e < limit && adjSim[e] >= t; e++) {
      const c = card(adjIdx[e], adjSim[e].toFixed(3), i);
      if (pinl) {
        const v = adjInl[e], simEl = c.lastChild.firstChild;
        const mark = document.createElement("span");
        mark.className = v >= VERIFIED_INLIERS ? "verified yes" : "verified no";
        mark.textContent = v >= VERIFIED_INLIERS ? " \u2713" : " ?";
        mark.title = v < 0 ? "not verified: below the candidate bar" : v >= VERIFIED_INLIERS
          ? `verified: ${v} matching local features agree on one transform`
          : `not verified: only ${v} matching local features (a look-alike, or a heavy edit)`;
        simEl.appendChild(mark);
      }
      dups.appendChild(c);
    }
    if (dups.firstChild) frag.appendChild(dups);
    else {
      const none = document.createElement("span");
      none.className = "nodups";
      none.textContent = "no duplicates at this threshold";
      frag.appendChild(none);
    }
    if (e < end && adjSim[e] >= t) {
      let rest = 0;
      while (e < end && adjSim[e] >= t) { rest++; e++; }
      const more = document.createElement("button");
      more.type = "button";
      more.className = "more ghost";
      more.dataset.expand = i;
      more.textContent = `+${rest} more`;
      frag.appendChild(more);
    }
    row.replaceChildren(frag);
    return dups.childElementCount + 1;
  }
  const lazyRows = "IntersectionObserver" in window ? new IntersectionObserver((entries) => {
    for (const en of entries) {
      if (en.isIntersecting && !en.target.dataset.filled) { fillRow(en.target); lazyRows.unobserve(en.target); }
    }
  }, { rootMargin: "600px 0px" }) : null;

  function renderRows() {
    const t0 = performance.now();
    let sel = selectRows();
    if (sel.rows.length === 0 && state.page > 0) { state.page = Math.max(0, Math.ceil(sel.total / state.rows) - 1); sel = selectRows(); }
    if (lazyRows) lazyRows.disconnect();
    const frag = document.createDocumentFragment();
    let cards = 0;
    for (const i of sel.rows) {
      const row = document.createElement("article");
      row.className = "row";
      row.dataset.index = i;
      if (cards < EAGER_CARDS || !lazyRows) cards += fillRow(row);
      else lazyRows.observe(row);
      frag.appendChild(row);
    }
    if (!sel.rows.length) {
      const p = document.createElement("p");
      p.className = "empty";
      p.textContent = "No images match the current threshold and filters.";
      frag.appendChild(p);
    }
    container.replaceChildren(frag);
    const first = sel.total ? state.page * state.rows + 1 : 0;
    $("range").textContent = `Rows ${fmt(first)}\u2013${fmt(state.page * state.rows + sel.rows.length)} of ${fmt(sel.total)}`;
    $("prev-page").disabled = state.page === 0;
    $("next-page").disabled = (state.page + 1) * state.rows >= sel.total;
    lastRenderMs = performance.now() - t0;
  }
  function rerenderRow(i) {
    const row = container.querySelector(`article.row[data-index="${i}"]`);
    if (row) fillRow(row);
  }

  function renderStats() {
    const t = state.t;
    const np = pairCount(t);
    $("stat-images").textContent = fmt(N) + (nOk < N ? ` (${fmt(N - nOk)} failed)` : "");
    $("stat-dup-images").textContent = fmt(dupImageCount(t));
    $("stat-pairs").textContent = fmt(np);
    $("stat-groups").textContent = fmt(groupsAfter[np]);
  }

  // Histogram of each image's highest similarity, threshold drawn on top.
  const BINS = 100;
  const hist = new Int32Array(BINS);
  let hLo = 1;
  for (let i = 0; i < N; i++) if (maxSim[i] < hLo) hLo = maxSim[i];
  hLo = Number.isFinite(hLo) && hLo < 1 ? Math.floor(hLo * 20) / 20 : 0;
  for (let i = 0; i < N; i++) {
    const m = maxSim[i];
    if (m >= hLo) hist[Math.min(BINS - 1, Math.floor((m - hLo) / (1 - hLo) * BINS))]++;
  }
  let hMax = 1;
  for (const c of hist) hMax = Math.max(hMax, c);
  const canvas = $("histogram");
  let colors = null;
  matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => { colors = null; renderHistogram(); });
  function renderHistogram() {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || 360, h = canvas.clientHeight || 110;
    if (canvas.width !== Math.round(w * dpr)) { canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr); }
    const g = canvas.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    // Colours read once: getComputedStyle here would force a style pass over freshly built rows.
    if (!colors) {
      const css = getComputedStyle(document.documentElement);
      colors = { accent: css.getPropertyValue("--accent").trim() || "#4f46e5",
        muted: css.getPropertyValue("--muted").trim() || "#6b7280" };
    }
    const { accent, muted } = colors;
    const pad = 16, bw = (w - 8) / BINS;
    const tx = 4 + (state.t - hLo) / (1 - hLo) * (w - 8);
    for (let b = 0; b < BINS; b++) {
      const bh = Math.sqrt(hist[b] / hMax) * (h - pad - 6);  // sqrt: small bins stay visible
      g.fillStyle = 4 + (b + 1) * bw > tx ? accent : muted;
      g.globalAlpha = 4 + (b + 1) * bw > tx ? 0.9 : 0.45;
      g.fillRect(4 + b * bw, h - pad - bh, Math.max(1, bw - 1), bh);
    }
    g.globalAlpha = 1;
    g.fillStyle = muted;
    g.font = "10px system-ui, sans-serif";
    g.fillText(hLo.toFixed(2), 4, h - 4);
    g.fillText("1.00", w - 26, h - 4);
    if (SUG && SUG.t >= hLo) {  // the suggested threshold, dashed
      const sx = 4 + (SUG.t - hLo) / (1 - hLo) * (w - 8);
      g.strokeStyle = "#16a34a";
      g.lineWidth = 1.5;
      g.setLineDash([4, 3]);
      g.beginPath(); g.moveTo(sx, 2); g.lineTo(sx, h - pad); g.stroke();
      g.setLineDash([]);
    }
    if (state.t >= hLo) {
      g.strokeStyle = "#ef4444";
      g.lineWidth = 2;
      g.beginPath(); g.moveTo(tx, 2); g.lineTo(tx, h - pad); g.stroke();
      g.fillStyle = "#ef4444";
      g.fillText(state.t.toFixed(3), Math.min(Math.max(tx + 3, 2), w - 34), 11);
    }
  }
  if (SUG) {
    $("suggested").hidden = false;
    $("suggested-text").textContent = `suggested threshold ${SUG.t.toFixed(3)} (dashed)`;
    $("suggested").title = SUG.why;  // the reasoning, as text
    $("use-suggested").addEventListener("click", () => set({ t: SUG.t, page: 0 }));
  }
  canvas.addEventListener("click", (ev) => {
    const r = canvas.getBoundingClientRect();
    const x = (ev.clientX - r.left - 4) / (r.width - 8);
    set({ t: Math.round(clamp(hLo + x * (1 - hLo), 0, 1) * 1000) / 1000, page: 0 });
  });

  // ---------------------------------------------------------------------------------------------
  // Controls.
  const ctl = {
    t: $("threshold"), rows: $("rows"), per: $("per-row"),
    order: $("order"), dups: $("only-dups"), cross: $("cross-split"), conf: $("label-conflicts"),
  };
  ctl.rows.max = rowsMax;
  if (!splitNames.some((s) => s)) ctl.cross.hidden = true;
  if (!labelNames.some((s) => s)) ctl.conf.hidden = true;

  function syncControls() {
    ctl.t.value = state.t;
    ctl.rows.value = state.rows;
    ctl.per.value = state.per;
    $("threshold-value").textContent = state.t.toFixed(3);
    $("rows-value").textContent = state.rows;
    $("per-row-value").textContent = state.per;
    ctl.order.textContent = state.order === "desc" ? "Descending order" : "Ascending order";
    ctl.order.setAttribute("aria-pressed", String(state.order === "asc"));
    ctl.dups.setAttribute("aria-pressed", String(state.dups));
    ctl.cross.setAttribute("aria-pressed", String(state.cross));
    ctl.conf.setAttribute("aria-pressed", String(state.conf));
    container.style.setProperty("--per-row", state.per);
  }

  // Every change renders synchronously: 1,000 rows take a few ms to build, and tests rely on it.
  function update() {
    syncControls();
    renderStats();
    renderRows();
    renderHistogram();
    writeHash();
  }
  function set(changes) {
    Object.assign(state, changes);
    update();
  }

  ctl.t.addEventListener("input", () => set({ t: parseFloat(ctl.t.value), page: 0 }));
  ctl.rows.addEventListener("input", () => set({ rows: parseInt(ctl.rows.value, 10), page: 0 }));
  ctl.per.addEventListener("input", () => {
    // Only the grid width changes: no need to rebuild rows.
    state.per = parseInt(ctl.per.value, 10);
    syncControls();
    writeHash();
  });
  ctl.order.addEventListener("click", () => set({ order: state.order === "desc" ? "asc" : "desc", page: 0 }));
  ctl.dups.addEventListener("click", () => set({ dups: !state.dups, page: 0 }));
  ctl.cross.addEventListener("click", () => set({ cross: !state.cross, page: 0 }));
  ctl.conf.addEventListener("click", () => set({ conf: !state.conf, page: 0 }));
  $("prev-page").addEventListener("click", () => set({ page: Math.max(0, state.page - 1) }));
  $("next-page").addEventListener("click", () => set({ page: state.page + 1 }));
  window.addEventListener("hashchange", () => { readHash(); update(); });
  window.addEventListener("resize", renderHistogram);

  // Thumbnail click -> viewer; "+N more" -> expand that row.
  const viewer = $("viewer");
  container.addEventListener("click", (ev) => {
    const more = ev.target.closest("button.more");
    if (more) { expanded.add(+more.dataset.expand); rerenderRow(+more.dataset.expand); return; }
    const thumb = ev.target.closest("button.thumb");
    if (!thumb) return;
    openViewer(+thumb.closest(".card").dataset.index);
  });
  function openViewer(i) {
    const img = $("viewer-img");
    img.onerror = null;
    img.src = thumbUrl(i);
    // From disk the original may still be where it was read from: show it when it loads.
    if (location.protocol === "file:" && (flags[i] & 2) && resolved[i]) {
      const full = new Image();
      full.onload = () => { if (viewer.dataset.index === String(i)) img.src = full.src; };
      full.src = "file://" + encodeURI(resolved[i]).replace(/#/g, "%23").replace(/\?/g, "%3F");
    }
    img.alt = base(paths[i]);
    viewer.dataset.index = i;
    $("viewer-name").textContent = base(paths[i]);
    $("viewer-path").textContent = resolved[i] && resolved[i] !== paths[i] ? `${paths[i]}\n${resolved[i]}` : paths[i];
    const meta = $("viewer-meta");
    meta.replaceChildren();
    const tags = [labelNames[labelCode[i]], splitNames[splitCode[i]], predText(i),
      Number.isFinite(maxSim[i]) ? `max similarity ${maxSim[i].toFixed(3)}` : "",
      flags[i] & 1 ? "" : "failed: " + (D.errors[i] || "unknown error")];
    for (const s of tags) {
      if (!s) continue;
      const t = document.createElement("span");
      t.className = "tag";
      t.textContent = s;
      meta.appendChild(t);
    }
    if (!viewer.open) viewer.showModal();
  }
  viewer.addEventListener("click", (ev) => { if (ev.target === viewer) viewer.close(); });
  $("help-button").addEventListener("click", () => $("help").showModal());

  // ---------------------------------------------------------------------------------------------
  // Export of the duplicates at the current threshold, built in the page.
  function groupsAt(np) {
    for (let i = 0; i < N; i++) { parent[i] = i; size[i] = 1; }
    for (let p = 0; p < np; p++) {
      let ra = find(pa[p]), rb = find(pb[p]);
      if (ra !== rb) { if (size[ra] < size[rb]) { const t = ra; ra = rb; rb = t; } parent[rb] = ra; size[ra] += size[rb]; }
    }
    const byRoot = new Map();
    for (let i = 0; i < N; i++) {
      const r = find(i);
      if (size[r] < 2) continue;
      let g = byRoot.get(r);
      if (!g) byRoot.set(r, (g = []));
      g.push(i);
    }
    return [...byRoot.values()].sort((x, y) => y.length - x.length || x[0] - y[0]);
  }
  const csvCell = (s) => /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  function download(name, text, type) {
    const a = document.createElement("a");
    a.href = URL.createObjectURL(new Blob([text], { type }));
    a.download = name;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }
  function exportData(kind) {
    const t = state.t, np = pairCount(t), tag = `t${t.toFixed(3)}`;
    if (kind === "json") {
      const pairs = [];
      for (let p = 0; p < np; p++) {
        pairs.push({ a: pa[p], b: pb[p], path_a: paths[pa[p]], path_b: paths[pb[p]], similarity: ps[p] });
      }
      const groups = groupsAt(np).map((g) => g.map((i) => ({ index: i, path: paths[i] })));
      const doc = { source: D.source, metric: (D.attrs && D.attrs.metric) || "(1+cos)/2", threshold: t,
        n_images: N, n_pairs: np, n_groups: groups.length, pairs, groups };
      download(`duplicates-${tag}.json`, JSON.stringify(doc, null, 1), "application/json");
    } else if (kind === "pairs") {
      const lines = ["a,b,path_a,path_b,similarity"];
      for (let p = 0; p < np; p++) lines.push(`${pa[p]},${pb[p]},${csvCell(paths[pa[p]])},${csvCell(paths[pb[p]])},${ps[p]}`);
      download(`duplicate-pairs-${tag}.csv`, lines.join("\n") + "\n", "text/csv");
    } else {
      const lines = ["group,index,path"];
      groupsAt(np).forEach((g, k) => { for (const i of g) lines.push(`${k},${i},${csvCell(paths[i])}`); });
      download(`duplicate-groups-${tag}.csv`, lines.join("\n") + "\n", "text/csv");
    }
  }
  // The delete list, by the rule of dupscope.export (dupscope export writes the same rows): groups
  // around a representative (most links first, then the higher best score, then the lower index),
  // each keeping its largest image (ties: the first).
  function deleteList(t) {
    const np = pairCount(t);
    const degree = new Int32Array(N), best = new Float64Array(N).fill(-Infinity);
    const adj = Array.from({ length: N }, () => []);
    for (let p = 0; p < np; p++) {
      const a = pa[p], b = pb[p];
      degree[a]++; degree[b]++; adj[a].push(b); adj[b].push(a);
      if (ps[p] > best[a]) best[a] = ps[p];
      if (ps[p] > best[b]) best[b] = ps[p];
    }
    const visit = Array.from({ length: N }, (_, i) => i)
      .sort((x, y) => degree[y] - degree[x] || best[y] - best[x] || x - y);
    const group = new Int32Array(N).fill(-1);
    const key = (x, y) => Math.min(x, y) * N + Math.max(x, y);
    const scoreOf = new Map();
    for (let p = 0; p < np; p++) scoreOf.set(key(pa[p], pb[p]), ps[p]);
    for (const i of visit) {
      if (!degree[i] || group[i] >= 0) continue;
      const linked = adj[i].filter((j) => group[j] < 0)
        .sort((x, y) => scoreOf.get(key(i, y)) - scoreOf.get(key(i, x)) || x - y);
      if (!linked.length) continue;
      // Each joins only if it is linked to every member so far: no chains through a look-alike.
      const members = [i];
      for (const j of linked) if (members.slice(1).every((m) => scoreOf.has(key(j, m)))) members.push(j);
      if (members.length > 1) for (const m of members) group[m] = i;
    }
    const keeper = new Map();
    for (let i = 0; i < N; i++) {
      const g = group[i];
      if (g < 0) continue;
      const k = keeper.get(g);
      if (k === undefined || width[i] * height[i] > width[k] * height[k]) keeper.set(g, i);
    }
    const reps = [...keeper.keys()].sort((x, y) => x - y), number = new Map(reps.map((g, k) => [g, k + 1]));
    const rows = [];
    for (let i = 0; i < N; i++) {
      const g = group[i], m = maxSim[i];
      rows.push({ path: paths[i], group: g >= 0 ? number.get(g) : null,
        action: g < 0 || keeper.get(g) === i ? "keep" : "remove", width: width[i], height: height[i],
        best_score: Number.isFinite(m) ? Math.round(m * 1e4) / 1e4 : null });
    }
    return rows;
  }
  $("export-delete-csv").addEventListener("click", () => {
    const lines = ["path,group,action,width,height,best_score"];
    for (const r of deleteList(state.t)) {
      lines.push([csvCell(r.path), r.group ?? "", r.action, r.width, r.height, r.best_score ?? ""].join(","));
    }
    download(`delete-list-t${state.t.toFixed(3)}.csv`, lines.join("\n") + "\n", "text/csv");
  });
  $("export-json").addEventListener("click", () => exportData("json"));
  $("export-pairs-csv").addEventListener("click", () => exportData("pairs"));
  $("export-groups-csv").addEventListener("click", () => exportData("groups"));

  // ---------------------------------------------------------------------------------------------
  // Keyboard.
  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const tag = ev.target && ev.target.tagName;
    if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT") return;  // the control's own keys
    if (viewer.open || $("help").open) return;
    const step = ev.shiftKey ? 0.01 : 0.001;
    const k = ev.key;
    if (k === "ArrowRight" || k === "ArrowLeft") {
      const t = Math.round(clamp(state.t + (k === "ArrowRight" ? step : -step), 0, 1) * 1000) / 1000;
      set({ t, page: 0 });
    } else if (k === "o") set({ order: state.order === "desc" ? "asc" : "desc", page: 0 });
    else if (k === "d") set({ dups: !state.dups, page: 0 });
    else if (k === "x" && !ctl.cross.hidden) set({ cross: !state.cross, page: 0 });
    else if (k === "l" && !ctl.conf.hidden) set({ conf: !state.conf, page: 0 });
    else if (k === "n" && !$("next-page").disabled) set({ page: state.page + 1 });
    else if (k === "p" && state.page > 0) set({ page: state.page - 1 });
    else if (k === "e") exportData("json");
    else if (k === "?") $("help").showModal();
    else return;
    ev.preventDefault();
  });

  // ---------------------------------------------------------------------------------------------
  const a = D.attrs || {};
  $("source").textContent = [D.source, `${fmt(N)} images`, a.model ? `model ${a.model}` : "",
    `k=${D.k}`, a.created ? `created ${a.created}` : ""].filter(Boolean).join("  \u00b7  ");
  readHash();
  update();
  // For tests and benchmarks: the page is ready, and how long the last row render took.
  window.dupscope = {
    state, set, exportData, deleteList,
    get lastRenderMs() { return lastRenderMs; },
    counts: () => ({ pairs: pairCount(state.t), groups: groupsAfter[pairCount(state.t)], dupImages: dupImageCount(state.t) }),
  };
  document.documentElement.dataset.ready = "1";
})();
