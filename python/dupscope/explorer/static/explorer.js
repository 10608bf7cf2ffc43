// dupscope explorer: reads window.DUPSCOPE_DATA (data.js) and draws images with their duplicates.
// Everything from the data is inserted with textContent / properties, never as HTML: file names and
// labels are data, not markup.
(function () {
  "use strict";

  const D = window.DUPSCOPE_DATA;
  const $ = (id) => document.getElementById(id);
  function fail(text) {
    const p = document.createElement("p");
    p.className = "empty";
    p.textContent = text;
    $("rows-container").appendChild(p);
  }
  if (!D || D.version !== 3) {
    fail(D ? "data.js was written by another dupscope version; rebuild the folder."
      : "data.js is missing or failed to load: keep it next to index.html.");
    return;
  }
  // The longest columns come in data/*.js parts: load them all, then start.
  const files = D.files || [];
  if (!files.length) { main(); return; }
  let left = files.length, failed = false;
  for (const f of files) {
    const el = document.createElement("script");
    el.src = f;
    el.onload = () => { if (--left === 0 && !failed) main(); };
    el.onerror = () => { if (!failed) fail(`${f} is missing or failed to load: keep the data/ folder next to index.html.`); failed = true; };
    document.head.appendChild(el);
  }

  function main() {
    performance.mark("dupscope:data-loaded");
    // ---------------------------------------------------------------------------------------------
    // Decoding: numeric columns arrive as base64 of little-endian typed arrays.
    function bytesOf(b64) {
      if (typeof Uint8Array.fromBase64 === "function") return Uint8Array.fromBase64(b64);
      const bin = atob(b64);
      const out = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
      return out;
    }
    // A column is base64 inline, or {parts, length}: slices in data/*.js files (window.DUPSCOPE_PARTS),
    // each decoded into place and freed.
    function col(field, Type) {
      if (typeof field === "string") return new Type(bytesOf(field).buffer);
      const out = new Type(field.length), parts = window.DUPSCOPE_PARTS || {};
      let at = 0;
      for (const key of field.parts) {
        const v = new Type(bytesOf(parts[key]).buffer);
        out.set(v, at);
        at += v.length;
        delete parts[key];
      }
      return out;
    }
    const i32 = (b64) => new Int32Array(bytesOf(b64).buffer);
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
    const labelNames = D.labelNames, labelCode = i32(D.label);
    const splitNames = D.splitNames, splitCode = i32(D.split);
    const flags = bytesOf(D.flags);
    const maxSim = f16(D.maxSim);
    const orderDesc = i32(D.order);
    const P = D.pairs.count;
    let lastT = NaN, lastBits = 0;
    // Scores stay float16 bits (half the memory of float32); for scores >= 0 the bits are in the
    // order of the values, so "score >= t" is "bits >= bitsAtLeast(t)".
    function bitsAtLeast(t) {
      if (t === lastT) return lastBits;
      let lo = 0, hi = 0x7c00;  // +infinity
      if (t > 0) while (lo < hi) { const mid = (lo + hi) >> 1; if (HALF[mid] >= t) hi = mid; else lo = mid + 1; }
      lastT = t;
      lastBits = lo;
      return lo;
    }
    // The complete-linkage merge list (dupscope.export.merge_list), levels never increasing.
    const M = D.merges.count;
    const mu = col(D.merges.u, Int32Array), mv = col(D.merges.v, Int32Array), mBits = col(D.merges.level, Uint16Array);
    // Pairs inside the hierarchy's groups, per image (CSR), each list from the highest score down.
    const linkStart = col(D.links.start, Int32Array), linkIdx = col(D.links.idx, Int32Array);
    const linkBits = col(D.links.bits, Uint16Array);
    // Geometric inliers per pair (-1: not checked), when phase 1 verified the pairs.
    const verified = !!D.links.inliers;
    const linkInl = verified ? col(D.links.inliers, Int16Array) : null;
    const nn = i32(D.nn), nnInl = D.nnInliers ? new Int16Array(bytesOf(D.nnInliers).buffer) : null;
    // A reference run's file: 1 query image, 2 reference image.
    const sets = D.sets ? bytesOf(D.sets) : null;
    // How many pairs score at least each distinct score (float16 bits, highest first).
    const levelBits = new Uint16Array(bytesOf(D.pairLevels.bits).buffer), levelCount = i32(D.pairLevels.atLeast);
    const width = i32(D.width), height = i32(D.height);
    const bytesOf_ = D.bytes ? new Float64Array(bytesOf(D.bytes).buffer) : new Float64Array(N).fill(-1);
    const VERIFIED_INLIERS = D.verifiedInliers || 15;
    const pred = D.pred ? {
      kind: D.pred.kind, score: f32(D.pred.score),
      cls: D.pred.cls ? i32(D.pred.cls) : null, classNames: D.pred.classNames || [],
    } : null;
    const T = D.thumbs;

    performance.mark("dupscope:decoded");
    // ---------------------------------------------------------------------------------------------

    // Marks: a person's review, kept in the browser per similarity file (D.identity). "Not a
    // duplicate" removes a pair's link at every threshold; "keep" makes an image its group's keeper.
    const MARKS_KEY = "dupscope-marks:" + (D.identity || D.source || "");
    const notDup = new Set(), keepMark = new Set();
    const pairKey = (x, y) => Math.min(x, y) * N + Math.max(x, y);
    function loadMarks() {
      try {
        const m = JSON.parse(localStorage.getItem(MARKS_KEY) || "null");
        if (m && Array.isArray(m.notDup) && Array.isArray(m.keep)) {
          for (const k of m.notDup) if (Number.isFinite(k)) notDup.add(k);
          for (const i of m.keep) if (i >= 0 && i < N) keepMark.add(i);
        }
      } catch (e) { /* storage unavailable or corrupt: start without marks */ }
    }
    function saveMarks() {
      try { localStorage.setItem(MARKS_KEY, JSON.stringify({ notDup: [...notDup], keep: [...keepMark] })); }
      catch (e) { /* storage full or disabled: marks last for this visit only */ }
    }
    loadMarks();
    // Groups at threshold t by the rule of dupscope.export (groups_at): the merges with level >= t
    // replayed in order, except a merge that would put the two images of a pair marked "not a
    // duplicate" into one group. Whether a merge is refused does not depend on t (only on the
    // merges before it), so the merges kept are found once per change of the marks, and they form
    // a tree: node j is the group made by kept merge j. The groups at t are then the nodes made at
    // a level >= t whose parent is not, found in one pass over the nodes; an image's group is its
    // ancestor; a group's images are one slice of a leaf order. A slider step is linear in the
    // merges and touches no per-image array.
    let tree = null, groupCache = null, marksVersion = 0, notDupVersion = 0;
    // Each image's "not a duplicate" partners.
    function marksByImage() {
      const of = new Map();
      for (const key of notDup) {
        const x = Math.floor(key / N), y = key % N;
        for (const [p, q] of [[x, y], [y, x]]) {
          if (!of.has(p)) of.set(p, []);
          of.get(p).push(q);
        }
      }
      return of;
    }
    function buildTree() {
      if (tree && tree.version === notDupVersion) return tree;
      const marked = notDup.size > 0, partners = marked ? marksByImage() : null;
      // Replay every merge on member chains (root, next, tail, size; the smaller group relabelled),
      // recording each kept merge's two children: a node (>= 0) or an image (-1 - i).
      const root = new Int32Array(N), next = new Int32Array(N).fill(-1), tail = new Int32Array(N);
      const gsize = new Int32Array(N).fill(1), node = new Int32Array(N).fill(-1), hasMark = new Uint8Array(N);
      for (let i = 0; i < N; i++) { root[i] = i; tail[i] = i; }
      if (marked) for (const i of partners.keys()) hasMark[i] = 1;
      const childA = new Int32Array(M), childB = new Int32Array(M), bits = new Uint16Array(M);
      let K = 0;
      for (let m = 0; m < M; m++) {
        let x = root[mu[m]], y = root[mv[m]];
        if (x === y) continue;
        if (gsize[x] < gsize[y]) { const z = x; x = y; y = z; }  // y: the smaller group
        if (marked && hasMark[x] && hasMark[y]) {
          let refused = false;
          for (let i = y; i !== -1 && !refused; i = next[i]) {
            const ps = partners.get(i);
            if (ps) for (const p of ps) if (root[p] === x) { refused = true; break; }
          }
          if (refused) continue;
        }
        childA[K] = node[x] >= 0 ? node[x] : -1 - x;
        childB[K] = node[y] >= 0 ? node[y] : -1 - y;
        bits[K] = mBits[m];
        for (let i = y; i !== -1; i = next[i]) root[i] = x;
        next[tail[x]] = y; tail[x] = tail[y]; gsize[x] += gsize[y];
        hasMark[x] |= hasMark[y];
        node[x] = K++;
      }
      // Per node: parent (K: none), size, first merge in its subtree (its best pair), lowest row.
      const parent = new Int32Array(K).fill(K), size = new Int32Array(K), first = new Int32Array(K);
      const lowest = new Int32Array(K), joined = new Int32Array(N).fill(K);  // joined: the node an image first joins
      const setBits = new Uint8Array(K);  // which sets a node's images come from (3: query and reference)
      for (let j = 0; j < K; j++) {
        let sz = 0, f = j, lo = N, bits = 0;
        for (const c of [childA[j], childB[j]]) {
          if (c >= 0) { parent[c] = j; sz += size[c]; f = Math.min(f, first[c]); lo = Math.min(lo, lowest[c]); bits |= setBits[c]; }
          else { joined[-1 - c] = j; sz += 1; lo = Math.min(lo, -1 - c); bits |= sets ? sets[-1 - c] : 0; }
        }
        size[j] = sz; first[j] = f; lowest[j] = lo; setBits[j] = bits;
      }
      // Leaf order: each node's images are one slice, from the roots (highest index first) down.
      const leafStart = new Int32Array(K), leaves = new Int32Array(N);
      let at = 0;
      for (let j = K - 1; j >= 0; j--) {
        if (parent[j] === K) { leafStart[j] = at; at += size[j]; }
        let s0 = leafStart[j];
        for (const c of [childA[j], childB[j]]) {
          if (c >= 0) { leafStart[c] = s0; s0 += size[c]; } else leaves[s0++] = -1 - c;
        }
      }
      // Nodes by their first merge (so by best score, highest first; ties by that merge's order).
      const byFirst = new Int32Array(K);
      {
        const c = new Int32Array(K + 1);
        for (let j = 0; j < K; j++) c[first[j] + 1]++;
        for (let j = 0; j < K; j++) c[j + 1] += c[j];
        for (let j = 0; j < K; j++) byFirst[c[first[j]]++] = j;
      }
      tree = { version: notDupVersion, K, bits, parent, size, first, lowest, joined, leafStart, leaves, byFirst, setBits };
      return tree;
    }
    function duplicateGroups(t) {
      if (groupCache && groupCache.t === t && groupCache.version === marksVersion) return groupCache;
      const T = buildTree(), tb = bitsAtLeast(t);
      // P: the nodes made at a level >= t (levels never increase).
      let lo = 0, hi = T.K;
      while (lo < hi) { const mid = (lo + hi) >> 1; if (T.bits[mid] >= tb) lo = mid + 1; else hi = mid; }
      const P = lo;
      const byBest = [];
      let nDup = 0;
      // In a reference run's file, the groups holding a query and a reference image come first.
      for (const pass of sets ? [true, false] : [null]) {
        for (let q = 0; q < T.K; q++) {
          const j = T.byFirst[q];
          if (j < P && T.parent[j] >= P && (pass === null || (T.setBits[j] === 3) === pass)) { byBest.push(j); nDup += T.size[j]; }
        }
      }
      const groupOf = (i) => {  // image i's group at t, -1 for none
        let j = T.joined[i];
        if (j >= P) return -1;
        while (T.parent[j] < P) j = T.parent[j];
        return j;
      };
      const memberCache = new Map(), keeperCache = new Map();
      const members = (g) => {  // in row order
        let m = memberCache.get(g);
        if (!m) { m = T.leaves.slice(T.leafStart[g], T.leafStart[g] + T.size[g]).sort(); memberCache.set(g, m); }
        return m;
      };
      // Keeper: an image marked "keep", else the largest (width x height), ties to the first row.
      const keeper = (g) => {
        let k = keeperCache.get(g);
        if (k !== undefined) return k;
        k = -1;
        for (const x of members(g)) {
          if (k < 0) { k = x; continue; }
          const kx = keepMark.has(x), kk = keepMark.has(k), ax = width[x] * height[x], ak = width[k] * height[k];
          if ((kx && !kk) || (kx === kk && ax > ak)) k = x;
        }
        keeperCache.set(g, k);
        return k;
      };
      const best = (g) => HALF[T.bits[T.first[g]]];
      groupCache = { t, version: marksVersion, count: byBest.length, byBest, nDup, groupOf, members, keeper, best,
        inGroup: (i) => T.joined[i] < P, rep: (g) => T.lowest[g], size: (g) => T.size[g],
        get: (g) => ({ keeper: keeper(g), best: best(g), members: Array.from(members(g)) }) };
      return groupCache;
    }
    // "keep" marks change keepers only; "not a duplicate" marks change the tree.
    function marksChanged() { marksVersion++; groupCache = null; saveMarks(); }

    // Number of pairs with similarity >= t.
    function pairCount(t) {
      const tb = bitsAtLeast(t);
      let lo = 0, hi = levelBits.length;  // first level below t
      while (lo < hi) { const mid = (lo + hi) >> 1; if (levelBits[mid] >= tb) lo = mid + 1; else hi = mid; }
      return lo ? levelCount[lo - 1] : 0;
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
      state.t = clamp(num("t", state.t), tLo, 1);
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
    // Row selection. A row is a group (its keeper first, then its copies) or, when "Show only
    // duplicates" is off, an image in no group. Rows are encoded as numbers: g >= 0 is group g,
    // -1 - i is the single image i.
    function groupPasses(members) {
      const distinct = (code) => {
        let first = 0;
        for (const m of members) { const c = code[m]; if (c && first && c !== first) return true; if (c) first = c; }
        return false;
      };
      return (!state.cross || distinct(splitCode)) && (!state.conf || distinct(labelCode));
    }
    function selectRows() {
      const t = state.t, want = state.rows, start = state.page * want;
      const G = duplicateGroups(t);
      const gl = state.cross || state.conf ? G.byBest.filter((g) => groupPasses(G.members(g))) : G.byBest;
      const singles = state.dups || state.cross || state.conf ? 0 : N - G.nDup;
      const total = gl.length + singles;
      // Merge the groups (by best score) with the single images (by their highest similarity,
      // none last), descending; ascending walks the same sequence from its end.
      const seq = [];
      const stop = Math.min(total, start + want);
      const pick = (k) => {  // k-th row of the descending sequence, walking forward only
        while (seq.length <= k) {
          let gi = seq.gIdx || 0, si = seq.sIdx || 0;
          while (singles && si < N && G.inGroup(orderDesc[si])) si++;
          const gs = gi < gl.length ? G.best(gl[gi]) : -Infinity;
          const ss = singles && si < N ? maxSim[orderDesc[si]] : -Infinity;
          if (gi < gl.length && (gs >= ss || !(ss >= -1))) { seq.push(gl[gi]); gi++; }
          else { seq.push(-1 - orderDesc[si]); si++; }
          seq.gIdx = gi; seq.sIdx = si;
        }
        return seq[k];
      };
      const rows = [];
      if (state.order === "desc") for (let k = start; k < stop; k++) rows.push(pick(k));
      else {
        // Ascending: the last rows of the descending sequence, reversed.
        const from = Math.max(0, total - stop), to = total - start;
        for (let k = from; k < to; k++) rows.push(pick(k));
        rows.reverse();
      }
      return { rows, total, G };
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
      if (sets) spl.textContent = (si ? splitNames[si] + " \u00b7 " : "") + (sets[i] === 2 ? "reference" : "query");
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
    const MAX_DUPS = 48;  // per row before a "+N more" button: keeps big groups from flooding the DOM
    let lastRenderMs = 0;

    // The pair (x, y) as shown: its score (and float16 bits) and inliers (-1: not checked), from the
    // pairs inside the groups or from an image's nearest neighbour; null when neither has it.
    function pairInfo(x, y) {
      for (let e = linkStart[x], end = linkStart[x + 1]; e < end; e++) {
        if (linkIdx[e] === y) return { s: HALF[linkBits[e]], bits: linkBits[e], inl: verified ? linkInl[e] : -1 };
      }
      for (const [p, q] of [[x, y], [y, x]]) {
        if (nn[p] === q) return { s: maxSim[p], bits: 0, inl: nnInl ? nnInl[p] : -1 };
      }
      return null;
    }
    // Group g's copies as (image, its pair with the keeper), in the row's order: the highest
    // score to the keeper first, ties by the lower row.
    function copiesOf(G, g) {
      const k = G.keeper(g);
      return Array.from(G.members(g)).filter((m) => m !== k).map((m) => [m, pairInfo(k, m)])
        .sort((x, y) => y[1].bits - x[1].bits || x[0] - y[0]);
    }
    function verifiedMark(v) {
      const mark = document.createElement("span");
      mark.className = v >= VERIFIED_INLIERS ? "verified yes" : "verified no";
      mark.textContent = v >= VERIFIED_INLIERS ? " \u2713" : " ?";
      mark.title = v < 0 ? "not verified: below the candidate bar" : v >= VERIFIED_INLIERS
        ? `verified: ${v} matching local features agree on one transform`
        : `not verified: only ${v} matching local features (a look-alike, or a heavy edit)`;
      return mark;
    }
    function markButton(cls, text, title, data) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "mark " + cls;
      b.textContent = text;
      b.title = title;
      Object.assign(b.dataset, data);
      return b;
    }

    // The first rows, up to a budget of cards (more than a screenful), are built at once so a change
    // shows synchronously; the rest start as empty shells filled when they come near the viewport.
    const EAGER_CARDS = 120;
    function fillRow(row) {
      const r = +row.dataset.row, t = state.t;
      row.dataset.filled = "1";
      const frag = document.createDocumentFragment();
      if (r < 0) {  // an image in no group
        const i = -1 - r, m = maxSim[i];
        frag.appendChild(card(i, Number.isFinite(m) ? `max ${m.toFixed(3)}` : "no neighbours", -1));
        const none = document.createElement("span");
        none.className = "nodups";
        none.textContent = "no duplicates at this threshold";
        frag.appendChild(none);
        row.replaceChildren(frag);
        return 1;
      }
      const gr = duplicateGroups(t).get(r), k = gr.keeper;
      const head = card(k, `best ${gr.best.toFixed(3)}`, -1);
      head.classList.add("keeper");
      head.lastChild.appendChild(markButton(keepMark.has(k) ? "keep on" : "keep", keepMark.has(k) ? "\u2605 kept" : "keeper",
        keepMark.has(k) ? "Marked 'keep this one' (click to unmark)" : "The group keeps this one (the largest, ties: the first); click to mark it",
        { keep: k }));
      frag.appendChild(head);
      const dups = document.createElement("div");
      dups.className = "dups";
      const others = copiesOf(duplicateGroups(t), r);
      const limit = expanded.has(r) ? others.length : Math.min(others.length, MAX_DUPS);
      for (let q = 0; q < limit; q++) {
        const [m, e] = others[q];
        const c = card(m, e.s.toFixed(3), k);
        if (verified) c.lastChild.firstChild.appendChild(verifiedMark(e.inl));
        c.lastChild.appendChild(markButton("keep", "keep", "Keep this one instead", { keep: m }));
        c.lastChild.appendChild(markButton("notdup", "not a duplicate", "Mark this pair as not a duplicate", { a: k, b: m }));
        dups.appendChild(c);
      }
      frag.appendChild(dups);
      if (limit < others.length) {
        const more = document.createElement("button");
        more.type = "button";
        more.className = "more ghost";
        more.dataset.expand = r;
        more.textContent = `+${others.length - limit} more`;
        frag.appendChild(more);
      }
      row.replaceChildren(frag);
      return limit + 1;
    }
    const lazyRows = "IntersectionObserver" in window ? new IntersectionObserver((entries) => {
      for (const en of entries) {
        if (en.isIntersecting && !en.target.dataset.filled) { fillRow(en.target); lazyRows.unobserve(en.target); }
      }
    }, { rootMargin: "600px 0px" }) : null;

    let shownRows = [];
    function renderRows() {
      const t0 = performance.now();
      let sel = selectRows();
      if (sel.rows.length === 0 && state.page > 0) { state.page = Math.max(0, Math.ceil(sel.total / state.rows) - 1); sel = selectRows(); }
      if (lazyRows) lazyRows.disconnect();
      const frag = document.createDocumentFragment();
      let cards = 0;
      for (const r of sel.rows) {
        const row = document.createElement("article");
        row.className = r >= 0 ? "row group" : "row single";
        row.dataset.row = r;
        row.dataset.index = r >= 0 ? sel.G.keeper(r) : -1 - r;
        if (cards < EAGER_CARDS || !lazyRows) cards += fillRow(row);
        else lazyRows.observe(row);
        frag.appendChild(row);
      }
      shownRows = sel.rows;
      if (!sel.rows.length) {
        const p = document.createElement("p");
        p.className = "empty";
        p.textContent = "No duplicate groups at this threshold and filters.";
        frag.appendChild(p);
      }
      container.replaceChildren(frag);
      const first = sel.total ? state.page * state.rows + 1 : 0;
      const what = state.dups || state.cross || state.conf ? "Groups" : "Rows (groups, then single images)";
      $("range").textContent = `${what} ${fmt(first)}\u2013${fmt(state.page * state.rows + sel.rows.length)} of ${fmt(sel.total)}`;
      $("prev-page").disabled = state.page === 0;
      $("next-page").disabled = (state.page + 1) * state.rows >= sel.total;
      lastRenderMs = performance.now() - t0;
    }

    function renderStats() {
      const t = state.t, G = duplicateGroups(t);
      $("stat-images").textContent = fmt(N) + (nOk < N ? ` (${fmt(N - nOk)} failed)` : "");
      $("stat-dup-images").textContent = fmt(G.nDup);
      $("stat-pairs").textContent = fmt(pairCount(t));
      $("stat-groups").textContent = fmt(G.count);
      $("stat-remove").textContent = fmt(G.nDup - G.count);
      $("stat-marks").textContent = notDup.size || keepMark.size ? `${fmt(notDup.size)} not-duplicate, ${fmt(keepMark.size)} keep` : "none";
    }

    // The threshold's range: from the lowest score in the neighbour lists (rounded down to 0.01)
    // to 1, so the slider's width is where the scores are.
    let tLo = 1;
    if (P) tLo = HALF[levelBits[levelBits.length - 1]];  // the lowest pair score
    tLo = P && Number.isFinite(tLo) ? Math.max(0, Math.floor(tLo * 100) / 100) : 0;
    if (tLo >= 1) tLo = 0.99;

    // Histogram of each image's highest similarity over [tLo, 1], threshold drawn on top.
    const BINS = 100;
    const hist = new Int32Array(BINS);
    const hLo = tLo;
    for (let i = 0; i < N; i++) {
      const m = maxSim[i];
      if (m >= hLo) hist[Math.min(BINS - 1, Math.floor((m - hLo) / (1 - hLo) * BINS))]++;
    }
    let hMax = 1;
    for (const c of hist) hMax = Math.max(hMax, c);
    const canvas = $("histogram");
    let colors = null;
    matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => { colors = null; renderHistogram(); });
    const AXIS = 18, LEFT = 30;  // pixels for the x axis labels and the y axis labels
    const xOf = (v, w) => LEFT + (v - hLo) / (1 - hLo) * (w - LEFT - 6);
    function renderHistogram() {
      const dpr = window.devicePixelRatio || 1;
      const w = canvas.clientWidth || 360, h = canvas.clientHeight || 130;
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
      const top = 14, base = h - AXIS, bw = (w - LEFT - 6) / BINS;
      const tx = xOf(state.t, w);
      for (let b = 0; b < BINS; b++) {
        const bh = Math.sqrt(hist[b] / hMax) * (base - top);  // sqrt: small bins stay visible
        const x = LEFT + b * bw, on = x + bw > tx;
        g.fillStyle = on ? accent : muted;
        g.globalAlpha = on ? 0.9 : 0.45;
        g.fillRect(x, base - bh, Math.max(1, bw - 1), bh);
      }
      g.globalAlpha = 1;
      g.fillStyle = muted;
      g.strokeStyle = muted;
      g.lineWidth = 1;
      g.font = "10px system-ui, sans-serif";
      // y axis: counts (square-root scale), x axis: similarity ticks.
      g.textAlign = "right";
      for (const c of [hMax, Math.round(hMax / 4)]) {
        if (c < 1) continue;
        const y = base - Math.sqrt(c / hMax) * (base - top);
        g.fillText(fmt(c), LEFT - 4, y + 3);
        g.beginPath(); g.moveTo(LEFT - 2, y); g.lineTo(LEFT, y); g.stroke();
      }
      g.fillText("0", LEFT - 4, base);
      g.beginPath(); g.moveTo(LEFT, base); g.lineTo(w - 6, base); g.stroke();
      const span = 1 - hLo, step = span > 0.5 ? 0.1 : span > 0.2 ? 0.05 : span > 0.1 ? 0.02 : 0.01;
      g.textAlign = "center";
      for (let v = Math.ceil(hLo / step - 1e-9) * step; v <= 1 + 1e-9; v += step) {
        const x = xOf(v, w);
        g.beginPath(); g.moveTo(x, base); g.lineTo(x, base + 3); g.stroke();
        g.fillText(v.toFixed(2), Math.min(Math.max(x, LEFT + 8), w - 14), h - 4);
      }
      g.textAlign = "left";
      if (SUG && SUG.t >= hLo) {  // the suggested threshold, dashed
        const sx = xOf(SUG.t, w);
        g.strokeStyle = "#16a34a";
        g.lineWidth = 1.5;
        g.setLineDash([4, 3]);
        g.beginPath(); g.moveTo(sx, top - 4); g.lineTo(sx, base); g.stroke();
        g.setLineDash([]);
      }
      if (state.t >= hLo) {
        g.strokeStyle = "#ef4444";
        g.lineWidth = 2;
        g.beginPath(); g.moveTo(tx, top - 4); g.lineTo(tx, base); g.stroke();
        g.fillStyle = "#ef4444";
        const above = dupCountAbove(state.t);
        g.fillText(`${state.t.toFixed(3)}: ${fmt(above)} images above`, Math.min(Math.max(tx + 3, LEFT), w - 130), 10);
      }
    }
    function dupCountAbove(t) {  // images whose highest similarity is >= t
      let lo = 0, hi = N;
      while (lo < hi) { const mid = (lo + hi) >> 1; if (maxSim[orderDesc[mid]] >= t) lo = mid + 1; else hi = mid; }
      return lo;
    }
    if (SUG) {
      $("suggested").hidden = false;
      $("suggested-text").textContent = `suggested threshold ${SUG.t.toFixed(3)} (dashed)`;
      $("suggested").title = SUG.why;  // the reasoning, as text
      $("use-suggested").addEventListener("click", () => set({ t: SUG.t, page: 0 }));
    }
    canvas.addEventListener("click", (ev) => {
      const r = canvas.getBoundingClientRect();
      const x = (ev.clientX - r.left - LEFT) / (r.width - LEFT - 6);
      set({ t: Math.round(clamp(hLo + x * (1 - hLo), tLo, 1) * 1000) / 1000, page: 0 });
    });

    // ---------------------------------------------------------------------------------------------
    // Controls.
    const ctl = {
      t: $("threshold"), tNum: $("threshold-number"), rows: $("rows"), per: $("per-row"),
      order: $("order"), dups: $("only-dups"), cross: $("cross-split"), conf: $("label-conflicts"),
    };
    ctl.rows.max = rowsMax;
    for (const el of [ctl.t, ctl.tNum]) { el.min = tLo; el.max = 1; el.step = 0.001; }
    $("threshold-min").textContent = tLo.toFixed(2);
    if (!splitNames.some((s) => s)) ctl.cross.hidden = true;
    if (!labelNames.some((s) => s)) ctl.conf.hidden = true;
    if (!pred) $("legend-pred").hidden = true;

    function syncControls() {
      ctl.t.value = state.t;
      if (document.activeElement !== ctl.tNum) ctl.tNum.value = state.t.toFixed(3);
      ctl.rows.value = state.rows;
      ctl.per.value = state.per;
      $("threshold-value").textContent = state.t.toFixed(3);
      $("rows-value").textContent = state.rows;
      $("per-row-value").textContent = state.per;
      ctl.order.textContent = state.order === "desc" ? "Descending order" : "Ascending order";
      ctl.order.title = state.order === "desc"
        ? "Now: highest score first. Click for lowest first (o)" : "Now: lowest score first. Click for highest first (o)";
      $("order-now").textContent = (state.order === "desc" ? "highest score first" : "lowest score first") +
        (sets ? (state.order === "desc" ? ", query-reference groups before the rest" : ", query-reference groups last") : "");
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
      if ("t" in changes) state.t = clamp(state.t, tLo, 1);
      update();
    }

    ctl.t.addEventListener("input", () => set({ t: parseFloat(ctl.t.value), page: 0 }));
    ctl.tNum.addEventListener("change", () => {
      const v = parseFloat(ctl.tNum.value);
      if (Number.isFinite(v)) set({ t: Math.round(v * 1000) / 1000, page: 0 });
      ctl.tNum.value = state.t.toFixed(3);
    });
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

    // Marks from the rows' buttons.
    function toggleKeep(i) {
      const G = duplicateGroups(state.t), g = G.groupOf(i);
      if (keepMark.has(i)) keepMark.delete(i);
      else {
        if (g >= 0) for (const m of G.members(g)) keepMark.delete(m);  // one keeper per group
        keepMark.add(i);
      }
      marksChanged();
    }
    function toggleNotDup(x, y) {
      const key = pairKey(x, y);
      if (notDup.has(key)) notDup.delete(key); else notDup.add(key);
      notDupVersion++;
      marksChanged();
    }

    // Thumbnail click -> compare view; mark buttons; "+N more" -> expand that row.
    container.addEventListener("click", (ev) => {
      const more = ev.target.closest("button.more");
      if (more) {
        expanded.add(+more.dataset.expand);
        const row = container.querySelector(`article.row[data-row="${more.dataset.expand}"]`);
        if (row) fillRow(row);
        return;
      }
      const mark = ev.target.closest("button.mark");
      if (mark) {
        if (mark.dataset.keep !== undefined) toggleKeep(+mark.dataset.keep);
        else toggleNotDup(+mark.dataset.a, +mark.dataset.b);
        update();
        return;
      }
      const thumb = ev.target.closest("button.thumb");
      if (!thumb) return;
      const i = +thumb.closest(".card").dataset.index, r = +thumb.closest("article.row").dataset.row;
      // A copy opens its pair with the keeper, the keeper its first copy, an image in no group
      // its pair with its nearest neighbour.
      const list = visiblePairs(), k = r >= 0 ? duplicateGroups(state.t).keeper(r) : i;
      openCompare(list, list.findIndex(([x, y]) => x === k && (y === i || i === k)), i);
    });

    // The compare view: the two images of a pair side by side at full resolution.
    const viewer = $("viewer");
    const originals = D.originals;
    if (originals && originals.rel === "paths") originals.rel = paths;
    function originalUrl(i) {
      if (!originals || !originals.rel[i]) return null;
      const rel = originals.rel[i].split("/").map(encodeURIComponent).join("/");
      if (location.protocol === "file:") return `${originals.fromSite.split("/").map(encodeURIComponent).join("/")}/${rel}`;
      return `_originals/${rel}`;
    }
    // Pairs shown on this page, in page order: (keeper, copy) for each group's copies, and for an
    // image in no group, the image and its nearest neighbour.
    function visiblePairs() {
      const G = duplicateGroups(state.t), out = [];
      for (const r of shownRows) {
        if (r >= 0) {
          for (const [m] of copiesOf(G, r)) out.push([G.keeper(r), m]);
        } else {
          const i = -1 - r;
          out.push([i, nn[i]]);
        }
      }
      return out;
    }
    let compare = { list: [], at: -1 };
    const sizeText = (b) => b < 0 ? "size unknown" : b < 1024 ? `${b} B` : b < 1048576 ? `${(b / 1024).toFixed(1)} KB` : `${(b / 1048576).toFixed(2)} MB`;
    function fillSide(side, i) {
      const img = side.querySelector("img");
      const info = side.querySelector(".side-info");
      if (i < 0) { side.hidden = true; return; }
      side.hidden = false;
      side.dataset.index = i;
      const url = originalUrl(i);
      img.onerror = () => { img.onerror = null; img.src = thumbUrl(i); side.querySelector(".natural").textContent = "original not available here: thumbnail shown"; };
      img.onload = () => {
        if (img.src.endsWith(thumbUrl(i))) return;
        side.querySelector(".natural").textContent = `${img.naturalWidth} \u00d7 ${img.naturalHeight} px shown`;
      };
      side.querySelector(".natural").textContent = "";
      img.src = url || thumbUrl(i);
      img.alt = base(paths[i]);
      info.querySelector(".side-name").textContent = base(paths[i]);
      // The path as listed and, when it differs, the file's full path (what a delete script needs).
      const full = originals && originals.rel[i] ? `${originals.root.replace(/\/$/, "")}/${originals.rel[i]}` : "";
      info.querySelector(".side-path").textContent = full && full !== paths[i] ? `${paths[i]}\n${full}` : paths[i];
      const sz = width[i] && height[i] ? `${width[i]} \u00d7 ${height[i]} px` : "size unknown";
      info.querySelector(".side-size").textContent = `${sz}, ${sizeText(bytesOf_[i])}`;
      const tags = [labelNames[labelCode[i]], splitNames[splitCode[i]], predText(i),
        flags[i] & 1 ? "" : "failed: " + (D.errors[i] || "unknown error")].filter(Boolean);
      info.querySelector(".side-tags").textContent = tags.join("  \u00b7  ");
      const keep = side.querySelector(".side-keep");
      keep.dataset.keep = i;
      const G = duplicateGroups(state.t), g = G.groupOf(i);
      keep.textContent = keepMark.has(i) ? "\u2605 kept (click to unmark)"
        : g >= 0 && G.keeper(g) === i ? "The group keeps this one" : "Keep this one";
    }
    function renderCompare() {
      const [x, y] = compare.list[compare.at] || [compare.single, -1];
      fillSide($("side-a"), x);
      fillSide($("side-b"), y);
      const e = y >= 0 ? pairInfo(x, y) : null;
      const ev = $("compare-evidence");
      ev.replaceChildren();
      if (e) {
        const v = e.inl;
        ev.textContent = `similarity ${e.s.toFixed(3)}` + (verified ? (v < 0 ? " \u00b7 not verified (below the candidate bar)"
          : ` \u00b7 ${v} matching local features${v >= VERIFIED_INLIERS ? " (verified)" : " (not verified)"}`) : "");
        if (notDup.has(pairKey(x, y))) ev.textContent += " \u00b7 marked: not a duplicate";
      } else ev.textContent = y >= 0 ? "" : "no neighbour";
      const nd = $("compare-notdup");
      nd.hidden = !e;
      nd.textContent = e && notDup.has(pairKey(x, y)) ? "Undo \u2018not a duplicate\u2019" : "Not a duplicate";
      $("compare-pos").textContent = compare.list.length ? `pair ${compare.at + 1} of ${compare.list.length} on this page (\u2190 \u2192)` : "";
      viewer.dataset.a = x;
      viewer.dataset.b = y;
    }
    function openCompare(list, at, single) {
      compare = { list, at: at >= 0 ? at : -1, single };
      if (compare.at < 0) compare.list = [];
      renderCompare();
      if (!viewer.open) viewer.showModal();
    }
    function stepCompare(d) {
      if (!compare.list.length) return;
      compare.at = clamp(compare.at + d, 0, compare.list.length - 1);
      renderCompare();
    }
    viewer.addEventListener("click", (ev) => {
      if (ev.target === viewer) { viewer.close(); return; }
      const keep = ev.target.closest(".side-keep");
      if (keep) { toggleKeep(+keep.dataset.keep); update(); renderCompare(); return; }
      if (ev.target.closest("#compare-notdup")) {
        toggleNotDup(+viewer.dataset.a, +viewer.dataset.b);
        const list = compare.list; update(); compare.list = list; renderCompare();
        return;
      }
      if (ev.target.closest("#compare-prev")) stepCompare(-1);
      if (ev.target.closest("#compare-next")) stepCompare(1);
    });
    viewer.addEventListener("keydown", (ev) => {
      if (ev.key === "ArrowRight") { stepCompare(1); ev.preventDefault(); }
      else if (ev.key === "ArrowLeft") { stepCompare(-1); ev.preventDefault(); }
    });
    $("help-button").addEventListener("click", () => $("help").showModal());

    // ---------------------------------------------------------------------------------------------
    // Export of the duplicates at the current threshold, built in the page.
    // Groups at t as lists of rows, keeper first (the rows of the page).
    const groupsAt = (t) => Array.from(duplicateGroups(t).byBest, (g) => {
      const gr = duplicateGroups(t).get(g);
      return [gr.keeper, ...gr.members.filter((m) => m !== gr.keeper)];
    });
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
    // Every pair, for the pair exports: part files loaded on first use (they are most of the data).
    let allPairs = null;
    function loadPairs() {
      if (allPairs) return allPairs;
      const files = D.pairs.files || [];
      allPairs = Promise.all(files.map((f) => new Promise((resolve, reject) => {
        const el = document.createElement("script");
        el.src = f;
        el.onload = resolve;
        el.onerror = () => reject(new Error(`${f} is missing or failed to load: keep the data/ folder next to index.html.`));
        document.head.appendChild(el);
      }))).then(() => ({ a: col(D.pairs.a, Int32Array), b: col(D.pairs.b, Int32Array), bits: col(D.pairs.s, Uint16Array) }));
      allPairs.catch((err) => { allPairs = null; alert(err.message); });
      return allPairs;
    }
    async function exportData(kind) {
      const t = state.t, tag = `t${t.toFixed(3)}`;
      if (kind === "groups") {
        const lines = ["group,index,path"];
        groupsAt(t).forEach((g, k) => { for (const i of g) lines.push(`${k},${i},${csvCell(paths[i])}`); });
        download(`duplicate-groups-${tag}.csv`, lines.join("\n") + "\n", "text/csv");
        return;
      }
      const { a: pa, b: pb, bits } = await loadPairs();
      const np = pairCount(t), kept = [];  // pairs at t (sorted by score), without those marked "not a duplicate"
      for (let p = 0; p < np; p++) if (!notDup.has(pairKey(pa[p], pb[p]))) kept.push(p);
      if (kind === "json") {
        const pairs = kept.map((p) => ({ a: pa[p], b: pb[p], path_a: paths[pa[p]], path_b: paths[pb[p]], similarity: HALF[bits[p]] }));
        const groups = groupsAt(t).map((g) => g.map((i) => ({ index: i, path: paths[i] })));
        const doc = { source: D.source, metric: (D.attrs && D.attrs.metric) || "(1+cos)/2", threshold: t,
          n_images: N, n_pairs: pairs.length, n_groups: groups.length, pairs, groups };
        download(`duplicates-${tag}.json`, JSON.stringify(doc, null, 1), "application/json");
      } else {
        const lines = ["a,b,path_a,path_b,similarity"];
        for (const p of kept) lines.push(`${pa[p]},${pb[p]},${csvCell(paths[pa[p]])},${csvCell(paths[pb[p]])},${HALF[bits[p]]}`);
        download(`duplicate-pairs-${tag}.csv`, lines.join("\n") + "\n", "text/csv");
      }
    }
    // The delete list, by the rule of dupscope.export (dupscope export --marks writes the same
    // rows): the groups above, marks applied, each keeping its keeper; groups numbered by their
    // first row, as dupscope export numbers them.
    function deleteList(t) {
      const G = duplicateGroups(t);
      const number = new Int32Array(N), keepers = new Uint8Array(N);  // number: group of each image, 1-based
      Array.from(G.byBest).sort((x, y) => G.rep(x) - G.rep(y)).forEach((g, k) => {
        for (const i of G.members(g)) number[i] = k + 1;
        keepers[G.keeper(g)] = 1;
      });
      const rows = [];
      for (let i = 0; i < N; i++) {
        const m = maxSim[i];
        rows.push({ path: paths[i], group: number[i] || null,
          action: !number[i] || keepers[i] ? "keep" : "remove", width: width[i], height: height[i],
          best_score: Number.isFinite(m) ? Math.round(m * 1e4) / 1e4 : null });
      }
      return rows;
    }
    // The review as a file for `dupscope export --marks`.
    function marksDocument() {
      const nd = [...notDup].sort((x, y) => x - y).map((k) => {
        const a = Math.floor(k / N), b = k % N;
        return { a, b, path_a: paths[a], path_b: paths[b] };
      });
      const keep = [...keepMark].sort((x, y) => x - y).map((i) => ({ index: i, path: paths[i] }));
      return { dupscope_marks: 1, identity: D.identity || null, source: D.source, not_duplicate: nd, keep };
    }
    $("export-marks").addEventListener("click", () =>
      download("marks.json", JSON.stringify(marksDocument(), null, 1) + "\n", "application/json"));
    $("clear-marks").addEventListener("click", () => {
      notDup.clear(); keepMark.clear(); notDupVersion++; marksChanged(); update();
    });
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
      const k = ev.key;
      // The threshold slider's own arrow keys step 0.001; with Shift they step 0.01 here too.
      const onSlider = ev.target === ctl.t && (k === "ArrowRight" || k === "ArrowLeft");
      if (!onSlider && (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT")) return;  // the control's own keys
      if (onSlider && !ev.shiftKey) return;
      if (viewer.open || $("help").open) return;
      const step = ev.shiftKey ? 0.01 : 0.001;
      if (k === "ArrowRight" || k === "ArrowLeft") {
        const t = Math.round(clamp(state.t + (k === "ArrowRight" ? step : -step), tLo, 1) * 1000) / 1000;
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
    performance.mark("dupscope:set-up");
    readHash();
    // "Show only duplicates" starts on when there are duplicates (unless the address says otherwise).
    if (!new URLSearchParams(location.hash.slice(1)).has("dups")) state.dups = duplicateGroups(state.t).count > 0;
    update();
    // For tests and benchmarks: the page is ready, and how long the last row render took.
    window.dupscope = {
      state, set, exportData, deleteList,
      get lastRenderMs() { return lastRenderMs; },
      counts: () => ({ pairs: pairCount(state.t), groups: duplicateGroups(state.t).count, dupImages: duplicateGroups(state.t).nDup }),
      groups: () => groupsAt(state.t), marksDocument, range: () => [tLo, 1],
    };
    document.documentElement.dataset.ready = "1";
  }
})();
