// The document editor: formatted text edited in place.
//
// The element is contenteditable, and what it shows is always drawn from the
// replica: plain text (counted in code points by the replica) with marks and
// commented passages over it. Whatever the browser changes in the element is
// read back as the difference between the text shown and the element's text,
// applied to the replica, and the element is drawn again. Line breaks,
// pasting, the formatting keys and undo are handled here instead of being
// left to the browser, which would otherwise add markup of its own.

/** Code point index of UTF-16 index `i` in `s`. */
export function cp(s, i) {
  let n = 0;
  for (let k = 0; k < i; k++) {
    const c = s.charCodeAt(k);
    if (c >= 0xd800 && c <= 0xdbff && k + 1 < i) k++;
    n++;
  }
  return n;
}

/** UTF-16 index of code point index `n` in `s`. */
export function u16(s, n) {
  let i = 0;
  while (n > 0 && i < s.length) {
    const c = s.charCodeAt(i);
    i += c >= 0xd800 && c <= 0xdbff ? 2 : 1;
    n--;
  }
  return i;
}

const isHigh = (c) => c >= 0xd800 && c <= 0xdbff;
const isLow = (c) => c >= 0xdc00 && c <= 0xdfff;

/** The shortest replacement turning `was` into `now`, in UTF-16 indices,
 * never splitting a surrogate pair: `[start, endWas, endNow]`. */
export function difference(was, now) {
  let start = 0;
  while (start < was.length && start < now.length && was[start] === now[start]) start++;
  if (start > 0 && isHigh(was.charCodeAt(start - 1))) start--;
  let endWas = was.length;
  let endNow = now.length;
  while (endWas > start && endNow > start && was[endWas - 1] === now[endNow - 1]) {
    endWas--;
    endNow--;
  }
  if (endWas < was.length && isLow(was.charCodeAt(endWas))) {
    endWas++;
    endNow++;
  }
  return [start, endWas, endNow];
}

// The input the browser may apply itself; the editor reads the text back.
const KEPT_INPUT = /^(insertText|insertReplacementText|insertCompositionText|insertFromComposition|deleteComposedCharacter.*|deleteContent.*|deleteWord.*|deleteSoftLine.*|deleteHardLine.*|deleteEntireSoftLine|deleteByCut|insertTranspose)$/;

// The marks drawn, each as the element that shows it.
const TAGS = { bold: "strong", italic: "em", underline: "u", commented: "mark" };
const ORDER = ["bold", "italic", "underline", "commented"];

/** What the element shows, in document order: text nodes, line breaks and
 * the blocks a browser may add, each with the UTF-16 length it stands for.
 * The editor never draws a line break as `<br>` (the text holds "\n" and
 * the element keeps white space), so a `<br>` with no text after it is one
 * the browser or the editor added to keep a last empty line visible, and
 * stands for nothing; a block starts a new line. */
function tokens(root) {
  const out = [];
  let lastText = -1;
  const go = (node) => {
    for (const c of node.childNodes) {
      if (c.nodeType === Node.TEXT_NODE) {
        out.push({ node: c, kind: "text", len: c.data.length });
        if (c.data.length) lastText = out.length - 1;
      } else if (c.nodeName === "BR") {
        out.push({ node: c, kind: "br", len: 1 });
      } else if (c.nodeType === Node.ELEMENT_NODE) {
        if (c.nodeName === "DIV" || c.nodeName === "P") out.push({ node: c, kind: "block", len: 1 });
        go(c);
      }
    }
  };
  go(root);
  for (let k = lastText + 1; k < out.length; k++) if (out[k].kind === "br") out[k].len = 0;
  // A block adds a line break only between text that does not end one.
  let text = "";
  for (const tk of out) {
    if (tk.kind === "block" && (text === "" || text.endsWith("\n"))) tk.len = 0;
    if (tk.kind === "text") text += tk.node.data;
    else if (tk.len) text += "\n";
  }
  return out;
}

/** The text an element shows (see [`tokens`]). */
function read(root) {
  return tokens(root).map((tk) => (tk.kind === "text" ? tk.node.data : "\n".repeat(tk.len))).join("");
}

/** Draws `body` with its marks and comments into `root`. */
function draw(root, body, marks, comments) {
  const nodes = marked(body, marks, comments);
  if (body === "" || body.endsWith("\n")) {
    const br = document.createElement("br");
    br.dataset.end = "1";
    nodes.push(br);
  }
  root.replaceChildren(...nodes);
}

/** The nodes showing `body` (plain text, marks in code points) with its
 * marks (`{mark, start, end}`: bold, italic, underline) and commented
 * passages: what the editor draws, and what a public copy shows. */
export function marked(body, marks, comments = []) {
  const chars = Array.from(body);
  const n = chars.length;
  const ranges = [
    ...marks.map((m) => ({ s: m.start, e: Math.min(m.end, n), k: m.mark })),
    ...comments.map((c) => ({ s: c.start, e: Math.min(c.end, n), k: "commented" })),
  ].filter((r) => r.s < r.e && TAGS[r.k]);
  // One pass over the places where a mark starts or ends, counting the
  // marks open at each (a text with many marks costs its marks, not their
  // square).
  /** @type {Map<number, {k: string, d: number}[]>} */
  const edges = new Map([[0, []], [n, []]]);
  for (const r of ranges) {
    if (!edges.has(r.s)) edges.set(r.s, []);
    if (!edges.has(r.e)) edges.set(r.e, []);
    edges.get(r.s).push({ k: r.k, d: 1 });
    edges.get(r.e).push({ k: r.k, d: -1 });
  }
  const at = [...edges.keys()].sort((a, b) => a - b);
  /** @type {Record<string, number>} */
  const open = {};
  /** @type {Node[]} */
  const nodes = [];
  for (let i = 0; i + 1 < at.length; i++) {
    for (const { k, d } of edges.get(at[i])) open[k] = (open[k] || 0) + d;
    const [a, b] = [at[i], at[i + 1]];
    let node = document.createTextNode(chars.slice(a, b).join(""));
    for (const k of ORDER) {
      if (!open[k]) continue;
      const wrap = document.createElement(TAGS[k]);
      wrap.append(node);
      node = wrap;
    }
    nodes.push(node);
  }
  return nodes;
}

/** UTF-16 index, in the text `root` shows, of the point (`node`, `offset`). */
function indexAt(root, node, offset) {
  const point = document.createRange();
  point.setStart(node, offset);
  let i = 0;
  // Tokens come in document order: count those that start before the
  // point (a block's line break also when the point opens the block).
  for (const tk of tokens(root)) {
    if (tk.kind === "text" && tk.node === node) return i + offset;
    const c = point.comparePoint(tk.node, 0);
    if (c > 0 || (c === 0 && tk.kind !== "block")) break;
    i += tk.len;
  }
  return i;
}

/** The DOM point showing UTF-16 index `i` of the text in `root`. */
function pointAt(root, i) {
  let seen = 0;
  const before = (n) => [n.parentNode, Array.prototype.indexOf.call(n.parentNode.childNodes, n)];
  for (const tk of tokens(root)) {
    if (tk.kind === "text") {
      if (i <= seen + tk.len) return [tk.node, i - seen];
    } else if (i === seen) {
      return before(tk.node);
    }
    seen += tk.len;
  }
  return [root, root.childNodes.length];
}

/** A colour for a user name, the same on every device. */
function colour(name) {
  let x = 0;
  for (const ch of name) x = (x * 31 + ch.codePointAt(0)) >>> 0;
  return `hsl(${x % 360} 70% 38%)`;
}

/**
 * An editor over one document.
 *
 * `model()` returns the replica's `{body, marks, comments}`; `splice(at,
 * removed, text)` applies an edit (code points) and returns nothing;
 * `format(mark)` toggles a mark over the selection; `changed()` is called
 * after each local edit; `moved()` when the caret moves; `failed(err)` when
 * the replica refuses an edit (the element is then drawn again from it).
 */
export function createEditor({ label, model, splice, format, changed, moved, failed }) {
  const el = document.createElement("div");
  Object.assign(el, { id: "editor", className: "editor", contentEditable: "true", spellcheck: true });
  el.setAttribute("role", "textbox");
  el.setAttribute("aria-multiline", "true");
  el.setAttribute("aria-label", label);
  el.setAttribute("dir", "auto");
  const carets = document.createElement("div");
  carets.className = "carets";
  carets.setAttribute("aria-hidden", "true");
  const wrap = document.createElement("div");
  wrap.className = "editor-wrap";
  wrap.append(el, carets);

  let shown = "";
  let drawn = "";
  let composing = false;
  let others = new Map(); // device -> {user, cursor (code points), announced}
  const undo = [];
  const redo = [];

  const selection = () => {
    const s = document.getSelection();
    if (!s || s.rangeCount === 0) return null;
    const r = s.getRangeAt(0);
    if (!el.contains(r.startContainer) || !el.contains(r.endContainer)) return null;
    return [indexAt(el, r.startContainer, r.startOffset), indexAt(el, r.endContainer, r.endOffset)];
  };
  const place = (a, b = a) => {
    if (document.activeElement !== el) return;
    const s = document.getSelection();
    const r = document.createRange();
    const [na, oa] = pointAt(el, Math.min(a, shown.length));
    const [nb, ob] = pointAt(el, Math.min(b, shown.length));
    r.setStart(na, oa);
    r.setEnd(nb, ob);
    s.removeAllRanges();
    s.addRange(r);
  };

  /** Draws the replica's state, keeping the selection at `keep` (UTF-16). */
  const redraw = (keep) => {
    const m = model();
    shown = m.body;
    const key = JSON.stringify([m.body, m.marks, m.comments]);
    if (key !== drawn || read(el) !== shown) {
      draw(el, m.body, m.marks, m.comments);
      drawn = key;
      if (keep) place(keep[0], keep[1]);
    }
    drawCarets();
  };

  // Other people's carets and the undo steps follow the text they point
  // into when code points [start, end) are replaced, the text growing by
  // `delta`. An undo step whose place was inside the replaced passage has
  // lost it: it is marked, and undo stops there rather than guess.
  const shift = (start, end, delta) => {
    for (const o of others.values()) if (o.cursor >= end) o.cursor = Math.max(start, o.cursor + delta);
    for (const e of [...undo, ...redo]) {
      if (e.at >= end) e.at = Math.max(start, e.at + delta);
      else if (e.at > start) e.lost = true;
    }
    if (kept) kept = kept.map((x) => (x >= end ? x + delta : Math.min(x, start)));
    if (kept && kept[0] >= kept[1]) kept = null;
    if (lastCaret !== null && lastCaret >= end) lastCaret += delta;
    else if (lastCaret !== null && lastCaret > start) lastCaret = start;
  };

  /** Applies the replacement of UTF-16 `[a, b)` by `text` as a local edit;
   * false if the replica refused it. */
  const edit = (a, b, text, record = true) => {
    const at = cp(shown, a);
    const removed = shown.slice(a, b);
    const gone = cp(shown, b) - at;
    try {
      splice(at, gone, text);
    } catch (err) {
      failed(err);
      return false;
    }
    shift(at, at + gone, Array.from(text).length - gone);
    if (record) {
      const last = undo[undo.length - 1];
      const now = Date.now();
      if (last && !removed && !last.removed && now - last.t < 1000 && last.at + Array.from(last.inserted).length === at && !text.includes("\n")) {
        last.inserted += text;
        last.t = now;
      } else undo.push({ at, removed, inserted: text, t: now });
      if (undo.length > 500) undo.shift();
      redo.length = 0;
    }
    changed();
    return true;
  };

  const insert = (text, at = null) => {
    const s = at ?? selection() ?? [shown.length, shown.length];
    const [a, b] = [Math.min(...s), Math.max(...s)];
    if (edit(a, b, text)) redraw([a + text.length, a + text.length]);
    else redraw(null);
  };

  /** Takes in the edits of others that arrived while the browser was
   * composing (the element was left alone meanwhile), keeping `[a, b)`
   * (UTF-16, over the text shown) on the same text: returns it moved. */
  const catchUp = (a, b) => {
    const now = model().body;
    if (now === shown) return [a, b];
    const [rs, re, rn] = difference(shown, now);
    const move = (x) => (x >= re ? x + rn - re : x <= rs ? x : rn);
    shift(cp(shown, rs), cp(shown, re), cp(now, rn) - cp(shown, re));
    shown = now;
    const s = move(a);
    return [s, Math.max(s, move(b))];
  };

  /** Reads what the browser changed in the element. */
  const sync = () => {
    const now = read(el);
    if (now === shown) {
      refresh();
      return;
    }
    const [start, endWas, endNow] = difference(shown, now);
    const text = now.slice(start, endNow);
    const shifted = model().body !== shown;
    const [a, b] = catchUp(start, endWas);
    const ok = edit(a, b, text);
    // Where the browser left the caret, unless others' edits moved the text.
    redraw(ok ? (shifted ? [a + text.length, a + text.length] : selection()) : null);
  };

  const history = (from, to) => {
    const e = from.pop();
    if (!e) return;
    const a = u16(shown, e.at);
    const b = u16(shown, e.at + Array.from(e.inserted).length);
    if (e.lost || b > shown.length || shown.slice(a, b) !== e.inserted) {
      // Someone else changed this passage since: undoing could remove
      // their text or put it back in the wrong place, so this step and
      // the older ones are dropped.
      from.length = 0;
      return;
    }
    const gone = Array.from(e.inserted).length;
    try {
      splice(e.at, gone, e.removed);
    } catch (err) {
      from.length = 0;
      failed(err);
      redraw(null);
      return;
    }
    shift(e.at, e.at + gone, Array.from(e.removed).length - gone);
    to.push({ at: e.at, removed: e.inserted, inserted: e.removed, t: 0 });
    changed();
    redraw([a + e.removed.length, a + e.removed.length]);
  };

  el.addEventListener("beforeinput", (e) => {
    switch (e.inputType) {
      case "insertParagraph":
      case "insertLineBreak":
        e.preventDefault();
        insert("\n");
        break;
      case "formatBold":
      case "formatItalic":
      case "formatUnderline":
        e.preventDefault();
        format(e.inputType.slice(6).toLowerCase());
        break;
      case "historyUndo":
        e.preventDefault();
        history(undo, redo);
        break;
      case "historyRedo":
        e.preventDefault();
        history(redo, undo);
        break;
      default:
        // Typing, deleting, spelling corrections and composition change
        // the text and are read back; anything else (lists, links, rules,
        // dragging within the editor, other formatting) would add markup
        // the document does not hold.
        if (!KEPT_INPUT.test(e.inputType)) e.preventDefault();
    }
  });
  // Undo and redo from the keyboard are taken before the browser sees them:
  // its own history does not know the replica.
  el.addEventListener("keydown", (e) => {
    if (!(e.ctrlKey || e.metaKey) || e.altKey) return;
    const key = /^[a-z]$/i.test(e.key) ? e.key.toLowerCase() : e.code.replace(/^Key/, "").toLowerCase();
    if (key === "z" && !e.shiftKey) {
      e.preventDefault();
      history(undo, redo);
    } else if ((key === "z" && e.shiftKey) || (key === "y" && !e.shiftKey)) {
      e.preventDefault();
      history(redo, undo);
    }
  });
  el.addEventListener("paste", (e) => {
    e.preventDefault();
    const text = e.clipboardData.getData("text/plain").replace(/\r\n?/g, "\n");
    if (text) insert(text);
  });
  // Dropped text goes in as plain text where it is dropped (text dragged
  // within the editor is copied: the browser's move would be markup).
  el.addEventListener("dragstart", (e) => e.dataTransfer && (e.dataTransfer.effectAllowed = "copy"));
  el.addEventListener("drop", (e) => {
    e.preventDefault();
    const text = (e.dataTransfer?.getData("text/plain") || "").replace(/\r\n?/g, "\n");
    const r = document.caretRangeFromPoint?.(e.clientX, e.clientY);
    const c = r ? null : document.caretPositionFromPoint?.(e.clientX, e.clientY);
    /** @type {[Node | undefined, number]} */
    const p = r ? [r.startContainer, r.startOffset] : [c?.offsetNode, c?.offset ?? 0];
    if (!text || !p[0] || !el.contains(p[0])) return;
    el.focus();
    const i = indexAt(el, p[0], p[1]);
    insert(text, [i, i]);
  });
  el.addEventListener("input", (e) => {
    if (!(e instanceof InputEvent && e.isComposing) && !composing) sync();
  });
  el.addEventListener("compositionstart", () => { composing = true; });
  // Read after the event, so a composition that ends as the next begins
  // (Korean, for one) is not redrawn under the input method.
  el.addEventListener("compositionend", () => {
    composing = false;
    setTimeout(() => { if (!composing) sync(); }, 0);
  });
  // The last passage selected stays the one the toolbar and the comment
  // form act on when the focus moves to them.
  // Likewise the caret: others see where one was last working.
  let kept = null;
  let lastCaret = null;
  const keep = () => {
    const s = selection();
    if (s) {
      kept = s[0] === s[1] ? null : [cp(shown, Math.min(...s)), cp(shown, Math.max(...s))];
      lastCaret = cp(shown, s[1]);
    }
  };
  const onSelection = () => {
    if (document.activeElement !== el) return;
    keep();
    moved();
  };
  document.addEventListener("selectionchange", onSelection);
  // The browser tells of a new selection in a later task: a focus that
  // leaves sooner (a quick tap on the comment field) would otherwise
  // leave the passage selected before this one as the kept one.
  el.addEventListener("focusout", keep);
  const onResize = () => drawCarets();
  window.addEventListener("resize", onResize);

  function drawCarets() {
    const base = wrap.getBoundingClientRect();
    const marks = [];
    for (const [device, o] of others) {
      const i = u16(shown, Math.min(o.cursor, Array.from(shown).length));
      const [node, offset] = pointAt(el, i);
      const r = document.createRange();
      r.setStart(node, offset);
      r.setEnd(node, offset);
      /** @type {{ left: number, top: number, height: number } | undefined} */
      let rect = r.getClientRects()[0];
      if (!rect && node.nodeType === Node.TEXT_NODE && offset < node.data.length) {
        r.setEnd(node, offset + 1);
        const whole = r.getClientRects()[0];
        if (whole) rect = { left: getComputedStyle(el).direction === "rtl" ? whole.right : whole.left, top: whole.top, height: whole.height };
      }
      if (!rect) rect = el.getBoundingClientRect();
      const c = document.createElement("span");
      c.className = "remote-caret";
      c.dataset.user = o.user;
      c.dataset.device = device;
      c.style.left = `${rect.left - base.left}px`;
      c.style.top = `${rect.top - base.top}px`;
      c.style.height = `${rect.height || 18}px`;
      c.style.borderColor = colour(o.user);
      const name = document.createElement("span");
      name.className = "remote-name";
      name.textContent = o.user;
      name.style.background = colour(o.user);
      c.append(name);
      marks.push(c);
    }
    carets.replaceChildren(...marks);
  }

  /** Draws the replica's state after a change from elsewhere, keeping the
   * local selection where it was relative to the text around it. While the
   * browser composes, the element is left alone: the change is taken in
   * when the composition ends. */
  function refresh() {
    if (composing) return;
    const s = selection();
    redraw(s ? catchUp(s[0], s[1]) : (catchUp(0, 0), null));
  }

  return {
    element: wrap,
    refresh,
    /** The selection as code point indices `[start, end)`, if not empty:
     * the live one while the editor has the focus, else the last one. */
    selection() {
      const s = document.activeElement === el ? selection() : null;
      if (!s) return kept;
      const [a, b] = [cp(shown, Math.min(...s)), cp(shown, Math.max(...s))];
      return a < b ? [a, b] : null;
    },
    /** The caret as a code point index: the live one while the editor
     * has the focus, else the last one (null if there was none). */
    caret() {
      const s = document.activeElement === el ? selection() : null;
      return s ? cp(shown, s[1]) : lastCaret;
    },
    /** Shows other people's carets: `[{device, user, cursor}]`. A caret
     * announced before keeps the place the edits since moved it to. */
    showCarets(list) {
      others = new Map(list.map((o) => {
        const was = others.get(o.device);
        const cursor = was && was.announced === o.cursor ? was.cursor : o.cursor;
        return [o.device, { user: o.user, cursor, announced: o.cursor }];
      }));
      drawCarets();
    },
    /** Draws again keeping the selection (after a local format or comment). */
    redraw() {
      redraw(selection());
    },
    close() {
      window.removeEventListener("resize", onResize);
      document.removeEventListener("selectionchange", onSelection);
    },
  };
}
