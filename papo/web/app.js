// papo's browser client: no build step, no dependencies. Speaks papo.v1 (docs/protocol.md).
// Every text that comes from the server is put on the page with textContent, never as HTML.
// Every text of the page's own is written in English through t() / tn(), and shown in the
// page's language from the gettext catalogs (see papo/web.py and tools/catalogs.py).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const WS_URL = location.origin.replace(/^http/, "ws") + "/ws";
  const MAX_BACKOFF = 30;
  const DEFAULT_ROOM = "#geral";
  const FEW = 30;             // a conversation with fewer messages loaded asks for its history
  const READ_EVERY = 1000;    // ms: at most one `read` per conversation this often
  const PAGE = 50;            // messages per history page
  const LANG_KEY = "papo.lang";

  const saved = {
    get name() { return localStorage.getItem("papo.name"); },
    get token() { return localStorage.getItem("papo.token"); },
    keep(name, token) { localStorage.setItem("papo.name", name); localStorage.setItem("papo.token", token); },
    forget() { localStorage.removeItem("papo.name"); localStorage.removeItem("papo.token"); },
  };

  let ws = null;
  let next = null;            // a new socket joining in another language, until its welcome
  let me = null;              // our name, as the server spells it
  let joined = false;         // joined on the current connection
  let everJoined = false;     // joined once: reconnects resume
  let lastId = 0;             // newest message id seen, in any conversation
  // Every conversation is complete up to `floor`: the resume_from of a rejoin. It follows
  // lastId only once this connection is past its replay (`proven`: the answer to the `who`
  // sent after the welcome comes after the whole replay). A replay cut short may have gone
  // far in one conversation and not started another one this page never heard of.
  let floor = 0;
  let proven = false;
  let resumedFrom = 0;        // the resume_from of the last rejoin
  const MAX_RESUME = 1000;    // conversations a hello's `resume` may name
  let liveFrom = 0;           // messages above this id arrived live (not the backlog): may notify
  let roomsOn = true;         // the server speaks rooms (its welcome lists them)
  let leaving = false;
  let attempt = 0;
  let retryTimer = null;
  let pendingHello = null;    // the hello to send when the socket opens
  let wantRoom = null;        // key of a room this page asked to join: shown when joined
  let askedNotify = false;
  let stuck = true;           // the log shows its newest line: it keeps doing so (messages, resizes)
  let users = [];             // who is online, as the last `users` event said
  let status = { kind: "", text: () => "" };
  let joinError = "";
  const outbox = new Map();   // cid -> {text, to, room, conv, item}: sent or to send, not yet acknowledged
  // A message refused with store_unavailable is sent again, same cid, after a short growing
  // wait (0.25-0.5 s, then doubling, at most 2.5-5 s), this many times; then it is given up.
  const RESEND_TRIES = 5;
  const RESEND_CAP = 5;       // s
  const refusals = new Map(); // cid -> {tries, timer}: refused messages waiting to go again
  const cidPrefix = Math.random().toString(36).slice(2, 10) + "-";
  let cidCount = 0;
  let seq = 0;                // orders notices and pending messages among messages
  let quietRooms = 0;         // `rooms` answers the page asked for itself (for operators): not shown
  let menu = null;            // the message menu that is open: {el, button, item}
  const EDIT_WINDOW = 15 * 60 * 1000;  // ms: the server lets a message be edited this long
  const MUTES = [300, 600, 3600, 86400];  // s: what "Mute" offers, 10 minutes first

  // Conversations: rooms ("#" + key) and direct conversations ("@" + the other's key).
  const convs = new Map();
  let homeKey = roomKey(DEFAULT_ROOM);
  let current = homeKey;

  // ------------------------------------------------------------------ languages

  // The catalog of the page's language: GET /i18n/<lang>.json, made from papo/locale's .po files.
  let lang = "en";
  let catalog = { messages: {}, plural: {} };
  let plurals = new Intl.PluralRules("en");
  const ENGLISH_PLURALS = new Intl.PluralRules("en");
  let clock = new Intl.DateTimeFormat("en", { hour: "2-digit", minute: "2-digit" });
  let longDate = new Intl.DateTimeFormat("en", { dateStyle: "long" });
  let moment = new Intl.DateTimeFormat("en", { dateStyle: "medium", timeStyle: "short" });
  let loadingLanguage = 0;

  function fill(template, values) {  // "{name} joined" + {name: "ana"}: as Python's str.format
    if (!values) return template;
    return template.replace(/\{([a-z_]+)\}/g, (all, key) => (key in values ? String(values[key]) : all));
  }

  // A text in the page's language: t("connected as {name}", { name }).
  function t(msgid, values) {
    const text = catalog.messages[msgid];
    return fill(typeof text === "string" && text ? text : msgid, values);
  }

  // A count: tn("{n} member", "{n} members", n); {n} is the count. The catalog says which of
  // its forms each of the language's plural categories (Intl.PluralRules) is.
  function tn(singular, plural, count, values) {
    const all = { n: count, ...values };
    const forms = catalog.messages[singular];
    const form = catalog.plural[plurals.select(count)] ?? catalog.plural.other;
    if (Array.isArray(forms) && form != null && forms[form]) return fill(forms[form], all);
    return fill(ENGLISH_PLURALS.select(count) === "one" ? singular : plural, all);
  }

  function languages() { return [...$("language").options].map((o) => o.value); }

  // The first of `tags` papo speaks, as papo.i18n.match_language: pt, pt-PT and pt-BR are pt-BR.
  function pickLanguage(tags) {
    const have = languages();
    for (const tag of tags) {
      if (!tag) continue;
      const want = String(tag).toLowerCase().replace(/_/g, "-");
      const exact = have.find((l) => l.toLowerCase() === want);
      if (exact) return exact;
      const near = have.find((l) => l.toLowerCase().split("-")[0] === want.split("-")[0]);
      if (near) return near;
    }
    return null;
  }

  function wantedLanguage() {  // the one chosen on this page before, else the browser's
    const browser = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language];
    return pickLanguage([localStorage.getItem(LANG_KEY)]) || pickLanguage(browser) || "en";
  }

  // Load `tag`'s catalog and show the page in it. Without its catalog (the server is away)
  // the page reads English.
  async function useLanguage(tag) {
    const mine = ++loadingLanguage;
    let loaded = null;
    try {
      const response = await fetch("/i18n/" + encodeURIComponent(tag) + ".json");
      if (response.ok) loaded = await response.json();
    } catch { /* no catalog: English */ }
    if (mine !== loadingLanguage) return;  // another language was chosen meanwhile
    lang = loaded ? tag : "en";
    catalog = loaded || { messages: {}, plural: {} };
    plurals = new Intl.PluralRules(lang);
    // 24-hour languages write 01:55; 12-hour ones 1:55 AM (as the terminal client does).
    const cycle = new Intl.DateTimeFormat(lang, { hour: "numeric" }).resolvedOptions().hourCycle;
    const hour = cycle === "h23" || cycle === "h24" ? "2-digit" : "numeric";
    clock = new Intl.DateTimeFormat(lang, { hour, minute: "2-digit" });
    longDate = new Intl.DateTimeFormat(lang, { dateStyle: "long" });
    moment = new Intl.DateTimeFormat(lang, { dateStyle: "medium", timeStyle: "short" });
    document.documentElement.lang = lang;
    $("language").value = lang;
    renderAll();
  }

  function code(text) {
    const el = document.createElement("code");
    el.textContent = text;
    return el;
  }

  // Put `template` in `el`, its {placeholders} replaced by the nodes of `nodes`.
  function compose(el, template, nodes) {
    const parts = template.split(/\{([a-z_]+)\}/);
    el.replaceChildren(...parts.map((part, i) =>
      i % 2 && nodes[part] ? nodes[part] : document.createTextNode(i % 2 ? "{" + part + "}" : part)));
  }

  // The page's fixed words (index.html has none of its own).
  function renderStatic() {
    const put = (id, text) => { $(id).textContent = text; };
    put("language-label", t("Language"));
    put("leave", t("Leave"));
    put("join-title", t("Join the chat"));
    put("name-label", t("Name"));
    put("password-label", t("Password"));
    put("password-hint", t("Optional. The first password given protects the name."));
    put("join-button", t("Join"));
    put("howto-title", t("Other ways to chat"));
    compose($("howto-terminal"), t("Terminal: {command}"), { command: code("python client.py --url " + WS_URL) });
    compose($("howto-any"), t("Any WebSocket client: connect to {url} and send lines of text."), { url: code(WS_URL) });
    $("rooms").setAttribute("aria-label", t("Rooms"));
    put("rooms-title", t("Rooms"));
    put("join-room-button", t("Join room"));
    put("direct-title", t("Direct"));
    put("part", t("Part"));
    $("log").setAttribute("aria-label", t("Conversation"));
    put("message-label", t("Message"));
    put("send-button", t("Send"));
    put("online-title", t("Online"));
    const field = $("room-name");
    if (field) {
      $("room-name-label").textContent = t("Room name");
      field.placeholder = t("#room");
    }
  }

  // Everything, again, in the language just chosen.
  function renderAll() {
    renderStatic();
    setStatus(status.kind, status.text);
    setJoinError(joinError);
    renderLists();
    for (const conv of convs.values()) redraw(conv);
    showHead(currentConv());
    showLog(currentConv());
    renderUsers(users);
  }

  // ------------------------------------------------------------------ names

  function nameKey(s) {  // as the server's names.name_key: NFKC, casefold, accents dropped, NFKC
    return s.normalize("NFKC").toLowerCase().normalize("NFD")  // accents: on Latin, Greek, Cyrillic
      .replace(/(?=\p{L})([\p{sc=Latin}\p{sc=Greek}\p{sc=Cyrillic}])\p{M}+/gu, "$1").normalize("NFKC");
  }

  function same(a, b) {
    return a != null && b != null && nameKey(a) === nameKey(b);
  }

  function roomName(raw) { return raw.startsWith("#") ? raw : "#" + raw; }
  function roomKey(raw) { return "#" + nameKey(roomName(raw).slice(1)); }
  function directKey(name) { return "@" + nameKey(name); }

  function fold(s) {  // for mentions: also ignores accents (@joao finds João)
    return nameKey(s).normalize("NFKD").replace(/\p{M}/gu, "").normalize("NFC");
  }

  // The name as the server spells it (Beatriz), for one typed in any case (beatriz).
  function displayName(typed) {
    const online = users.find((u) => same(u.name, typed));
    if (online) return online.name;
    const conv = convs.get(directKey(typed));
    return conv ? conv.name : typed;
  }

  // ------------------------------------------------------------------ conversations

  function newConv(key, kind, name) {
    const conv = {
      key, kind, name, topic: "",
      since: everJoined ? liveFrom : null,  // messages up to this id are history: marked off
      lastRead: 0, readSent: 0, readAt: 0, readTimer: null,
      base: { id: 0, read: 0, unread: 0 },  // the server's unread count, as of message `id`
      items: [], ids: new Map(),
      ops: new Set(), joinedOps: new Set(),  // name keys of the room's operators (and admins)
      more: null, loading: false, unread: 0,
      seen: 0,  // the newest message id seen in it: where its resume starts
      li: null, button: null, badge: null,
    };
    convs.set(key, conv);
    return conv;
  }

  function roomConv(name) {
    const key = roomKey(name);
    let conv = convs.get(key);
    if (!conv) {
      conv = newConv(key, "room", roomName(name));
      renderLists();
    }
    return conv;
  }

  // The direct conversation with `name`; `spelled`: the server spelled it (renames a typed one).
  function directConv(name, spelled) {
    const key = directKey(name);
    let conv = convs.get(key);
    if (!conv) {
      conv = newConv(key, "direct", name);
      renderLists();
    } else if (spelled && conv.name !== name) {
      conv.name = name;
      renderLists();
      redraw(conv);
      if (conv.key === current) showHead(conv);
    }
    return conv;
  }

  function home() { return convs.get(homeKey) || roomConv(DEFAULT_ROOM); }
  function currentConv() { return convs.get(current) || home(); }

  function convOf(ev) {  // the conversation a message, history page or read marker is about
    if (ev.with != null) return directConv(ev.with, true);
    if (ev.to != null) return directConv(same(ev.from, me) ? ev.to : ev.from, true);
    return ev.room ? roomConv(ev.room) : home();
  }

  // A message was seen: its conversation's position moves on. A deleted direct message
  // to us does not say from whom: it moves nothing (resume_from covers it).
  function see(ev) {
    let conv = null;
    if (ev.to != null) {
      const peer = ev.deleted ? (same(ev.to, me) ? null : ev.to) : (same(ev.from, me) ? ev.to : ev.from);
      conv = peer ? convs.get(directKey(peer)) : null;
    } else {
      conv = ev.room ? convs.get(roomKey(ev.room)) : home();
    }
    if (conv) conv.seen = Math.max(conv.seen, ev.id);
    if (proven) floor = Math.max(floor, ev.id);
  }

  // The hello of a rejoin: each conversation after its own position (the most recent ones,
  // at most MAX_RESUME), and every other one after the floor.
  function resumeHello() {
    const seen = [...convs.values()].filter((c) => c.seen > 0).sort((a, b) => b.seen - a.seen);
    const resume = {};
    for (const conv of seen.slice(0, MAX_RESUME)) {
      resume[conv.kind === "room" ? conv.name : "@" + conv.name] = conv.seen;
    }
    resumedFrom = floor;
    return { type: "hello", name: me, token: saved.token, resume, resume_from: floor };
  }

  function knownConv(ev) {  // the same, for answers: never brings back a room we left
    if (ev.with != null) return directConv(ev.with, true);
    return ev.room ? convs.get(roomKey(ev.room)) || null : home();
  }

  function target(conv) {
    return conv.kind === "room" ? { room: conv.name } : { with: conv.name };
  }

  function setBase(conv, id, read, unread) {
    conv.base = { id: id || 0, read: read || 0, unread: unread || 0 };
    conv.lastRead = Math.max(conv.lastRead, read || 0);
    conv.readSent = read || 0;  // what the server has: anything newer is sent again
  }

  // Unread = messages of others after lastRead: those loaded, plus those the server
  // counted (welcome, room joined) that are not loaded here.
  function unread(conv) {
    let n = 0;
    let counted = 0;
    const b = conv.base;
    for (const it of conv.items) {
      if (!it.id || it.mine || (it.m && it.m.deleted)) continue;
      if (it.id > conv.lastRead) n += 1;
      if (it.id > b.read && it.id <= b.id) counted += 1;
    }
    if (conv.lastRead === b.read && b.read < b.id) n += Math.max(0, b.unread - counted);
    return n;
  }

  function newestId(conv) {
    for (let i = conv.items.length - 1; i >= 0; i -= 1) if (conv.items[i].id) return conv.items[i].id;
    return 0;
  }

  function oldestId(conv) {
    for (const it of conv.items) if (it.id) return it.id;
    return 0;
  }

  function before(a, b) { return a.k1 - b.k1 || a.k2 - b.k2; }

  function nearBottom() {
    const log = $("log");
    return log.scrollTop + log.clientHeight >= log.scrollHeight - 40;
  }

  function toBottom() {
    const log = $("log");
    log.scrollTop = log.scrollHeight;
    stuck = true;
  }

  // Put items in their place in `conv` (and on the page, if `conv` is shown), keeping the
  // log's scroll: at the bottom it follows new messages; older ones put above leave what
  // is in view where it is.
  function insert(conv, ...items) {
    const shown = conv.key === current;
    const log = $("log");
    const atBottom = shown && (stuck || nearBottom());
    const fromBottom = shown ? log.scrollHeight - log.scrollTop : 0;
    undecorate(conv);
    let above = false;
    for (const item of items) {
      let i = conv.items.length;
      while (i > 0 && before(conv.items[i - 1], item) > 0) i -= 1;
      conv.items.splice(i, 0, item);
      if (!shown) continue;
      const after = conv.items[i + 1];
      if (after) above = true;
      log.insertBefore(item.el, after ? after.el : null);
    }
    decorate(conv);
    if (!shown) return;
    if (atBottom) toBottom();
    else if (above) log.scrollTop = log.scrollHeight - fromBottom;
  }

  function unlink(conv, item) {
    const i = conv.items.indexOf(item);
    if (i >= 0) conv.items.splice(i, 1);
    item.el.remove();
    undecorate(conv);
    decorate(conv);
  }

  function messageItem(conv, m) {
    const item = { id: m.id, k1: m.id, k2: 0, mine: same(m.from, me), m, el: null };
    item.draw = () => messageElement(item.m, conv, item);
    item.el = item.draw();
    conv.ids.set(m.id, item);
    return item;
  }

  // Draw every item of `conv` again (another language, a name now spelled as the server does).
  function redraw(conv) {
    if (menu && conv.ids.get(menu.item.id) === menu.item) closeMenu(false);
    undecorate(conv);
    for (const item of conv.items) {
      const el = item.draw();
      if (item.el.parentNode) item.el.replaceWith(el);
      item.el = el;
    }
    decorate(conv);
  }

  // Lines between the messages: a day's name where the day changes ("today", "yesterday",
  // else the date), and one under the history that came with the join, above the live ones.
  function undecorate(conv) {
    for (const it of conv.items) if (it.deco) it.el.remove();
    conv.items = conv.items.filter((it) => !it.deco);
  }

  function decorate(conv) {
    let lastOld = -1;  // the last message that was already there when this page joined
    conv.items.forEach((it, i) => { if (it.id && conv.since != null && it.id <= conv.since) lastOld = i; });
    const items = [];
    let day = null;
    conv.items.forEach((it, i) => {
      if (it.m) {
        const when = new Date(it.m.ts || Date.now());
        if (when.toDateString() !== day) {
          day = when.toDateString();
          items.push(line("day", dayLabel(when)));
        }
      }
      items.push(it);
      if (i === lastOld) items.push(line("divider", t("earlier messages above")));
    });
    conv.items = items;
    if (conv.key !== current) return;
    const log = $("log");
    for (let i = items.length - 1; i >= 0; i -= 1) {
      if (items[i].deco) log.insertBefore(items[i].el, i + 1 < items.length ? items[i + 1].el : null);
    }
  }

  function line(kind, text) {
    const p = document.createElement("p");
    p.className = kind;
    const span = document.createElement("span");
    span.textContent = text;
    p.appendChild(span);
    return { deco: true, el: p };
  }

  function dayLabel(when) {
    const today = new Date();
    const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
    if (when.toDateString() === today.toDateString()) return t("today");
    if (when.toDateString() === yesterday.toDateString()) return t("yesterday");
    return longDate.format(when);
  }

  function atMidnight() {  // "today" becomes "yesterday": the day lines are written again
    const now = new Date();
    const midnight = new Date(now.getFullYear(), now.getMonth(), now.getDate() + 1, 0, 0, 1);
    setTimeout(() => {
      for (const conv of convs.values()) { undecorate(conv); decorate(conv); }
      atMidnight();
    }, midnight - now);
  }

  function dropConv(conv) {
    clearTimeout(conv.readTimer);
    convs.delete(conv.key);
    if (current === conv.key) show(home());
    renderLists();
  }

  // ------------------------------------------------------------------ page

  // `text`: a function giving the words in the page's language (so a new language redraws it).
  function setStatus(kind, text) {
    status = { kind, text };
    const el = $("status");
    el.className = "status" + (kind ? " " + kind : "");
    el.textContent = text();
  }

  // Why joining failed, next to the form: the server's words, or a function giving the page's.
  function setJoinError(text) {
    joinError = text;
    $("join-error").textContent = typeof text === "function" ? text() : text;
  }

  function showChat(on) {
    $("join").hidden = on;
    $("chat").hidden = !on;
    $("leave").hidden = !on;
    if (on) $("message").focus(); else $("name").focus();
  }

  // A notice in the log. `text`: the server's words (a string), or a function giving the
  // page's own in the page's language.
  function notice(text, isError, conv) {
    const c = conv || currentConv();
    const draw = () => {
      const p = document.createElement("p");
      p.className = "notice" + (isError ? " error" : "");
      const said = typeof text === "function" ? text() : text;
      if (said instanceof Node) p.appendChild(said); else p.textContent = said;
      return p;
    };
    const after = c.since == null ? 0 : c.since + 0.5;  // live: below the history's line
    insert(c, { id: 0, k1: Math.max(newestId(c), after), k2: ++seq, el: draw(), draw });
  }

  function timeOf(ts) {  // 01:55 (pt-BR), 01:55 AM (en): the day is in the log's day lines
    return clock.format(ts ? new Date(ts) : new Date());
  }

  const MENTION = /(?<![\p{L}\p{M}\p{Nd}_.\-@])@([\p{L}\p{M}\p{Nd}_.\-]+)/gu;

  // Append `text` to `p`, each @our-name in a <mark class="mention">; true if there was one.
  function appendText(p, text, mentions) {
    if (!mentions || !me) { p.appendChild(document.createTextNode(text)); return false; }
    const mine = fold(me);
    let last = 0;
    let hit = false;
    for (const m of text.matchAll(MENTION)) {
      let name = m[1];
      while (name && fold(name) !== mine && /[._-]$/.test(name)) name = name.slice(0, -1);
      if (fold(name) !== mine) continue;
      p.appendChild(document.createTextNode(text.slice(last, m.index)));
      const mark = document.createElement("mark");
      mark.className = "mention";
      mark.textContent = "@" + name;
      p.appendChild(mark);
      last = m.index + 1 + name.length;
      hit = true;
    }
    p.appendChild(document.createTextNode(text.slice(last)));
    return hit;
  }

  // A message's line. `item` (when it is stored) carries what is being done to it here:
  // its edit field, or an operator's mute or kick form, drawn in place of or under the text.
  function messageElement(m, conv, item) {
    const p = document.createElement("p");
    const own = same(m.from, me);
    p.className = "msg" + (own ? " own" : "") + (m.to ? " private" : "") + (m.pending ? " pending" : "");
    const time = document.createElement("span");
    time.className = "time";
    time.textContent = timeOf(m.ts);
    p.appendChild(time);
    if (m.id) p.dataset.id = String(m.id);
    if (m.deleted) {  // a tombstone: who wrote it and what it said are gone
      p.classList.add("deleted");
      const gone = document.createElement("span");
      gone.className = "text";
      gone.textContent = t("message deleted");
      p.appendChild(gone);
      return p;
    }
    if (m.to) {  // the sender's name follows: "private" only says it is a private message
      const tag = document.createElement("span");
      tag.className = "tag";
      const to = conv && conv.kind === "direct" ? conv.name : m.to;  // as the server spells it
      tag.textContent = own ? t("private to {name}", { name: to }) : t("private");
      p.appendChild(tag);
    }
    const from = document.createElement("span");
    from.className = "from";
    from.textContent = m.from + ":";
    p.appendChild(from);
    if (item && item.editing === "edit") {
      p.appendChild(editForm(item));
      return p;
    }
    const body = document.createElement("span");
    body.className = "text";
    if (appendText(body, m.text, !own && conv && conv.kind === "room")) p.classList.add("mentions-me");
    p.appendChild(body);
    if (m.edited_ts) {
      const mark = document.createElement("span");
      mark.className = "edited";
      mark.textContent = " " + t("(edited)");
      mark.title = moment.format(new Date(m.edited_ts));
      p.appendChild(mark);
    }
    if (item && !m.pending && actionsFor(item, conv).length) p.appendChild(menuButton(item, conv));
    if (item && (item.editing === "mute" || item.editing === "kick")) p.appendChild(moderateForm(item, conv));
    return p;
  }

  // ------------------------------------------------------------------ a message's menu

  function isOperator(conv) {
    return Boolean(conv && conv.kind === "room" && me && conv.ops.has(nameKey(me)));
  }

  // What this user may do with a message: its author edits (for 15 minutes) and deletes it;
  // the room's operators (admins are marked operators everywhere) delete, mute or kick.
  function actionsFor(item, conv) {
    const m = item.m;
    if (!m.id || m.pending || m.deleted || !me) return [];
    if (same(m.from, me)) {
      const fresh = Date.now() - Date.parse(m.ts) < EDIT_WINDOW;
      return fresh ? ["edit", "delete"] : ["delete"];
    }
    return isOperator(conv) ? ["delete", "mute", "kick"] : [];
  }

  function actionLabel(action, m) {
    const name = m.from;
    if (action === "edit") return t("Edit");
    if (action === "delete") return t("Delete");
    if (action === "mute") return t("Mute {name}", { name });
    return t("Kick {name}", { name });
  }

  function menuButton(item, conv) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "more";
    b.setAttribute("aria-haspopup", "menu");
    b.setAttribute("aria-expanded", "false");
    // Not "message" in its name: the message field is found by that word ("Message", "Mensagem").
    b.setAttribute("aria-label", t("Actions: {name}, {time}", { name: item.m.from, time: timeOf(item.m.ts) }));
    b.title = t("Actions");
    b.addEventListener("click", (e) => {
      e.stopPropagation();
      if (menu && menu.button === b) closeMenu(true);
      else openMenu(item, conv, b, 0);
    });
    b.addEventListener("keydown", (e) => {
      if (e.key === "ArrowDown" || e.key === "ArrowUp") {
        e.preventDefault();
        openMenu(item, conv, b, e.key === "ArrowUp" ? -1 : 0);
      }
    });
    return b;
  }

  // A menu (role menu, items role menuitem): arrows move, Home/End, Escape closes and gives
  // the focus back to its button, Tab closes it and moves on.
  function openMenu(item, conv, button, first) {
    closeMenu(false);
    const list = document.createElement("div");
    list.className = "menu";
    list.setAttribute("role", "menu");
    list.setAttribute("aria-label", button.getAttribute("aria-label"));
    const entries = actionsFor(item, conv).map((action) => {
      const entry = document.createElement("button");
      entry.type = "button";
      entry.setAttribute("role", "menuitem");
      entry.tabIndex = -1;
      entry.textContent = actionLabel(action, item.m);
      entry.addEventListener("click", (e) => {
        e.stopPropagation();
        closeMenu(false);
        act(action, item, conv);
      });
      return entry;
    });
    if (!entries.length) return;
    list.append(...entries);
    list.addEventListener("keydown", (e) => {
      const at = entries.indexOf(document.activeElement);
      let to = null;
      if (e.key === "ArrowDown") to = (at + 1) % entries.length;
      else if (e.key === "ArrowUp") to = (at - 1 + entries.length) % entries.length;
      else if (e.key === "Home") to = 0;
      else if (e.key === "End") to = entries.length - 1;
      else if (e.key === "Escape") { e.preventDefault(); closeMenu(true); return; }
      else if (e.key === "Tab") { closeMenu(false); return; }
      if (to == null) return;
      e.preventDefault();
      entries[to].focus();
    });
    button.after(list);
    button.setAttribute("aria-expanded", "true");
    menu = { el: list, button, item };
    entries[first < 0 ? entries.length - 1 : 0].focus();
  }

  function closeMenu(focusButton) {
    if (!menu) return;
    const { el, button } = menu;
    menu = null;
    el.remove();
    button.setAttribute("aria-expanded", "false");
    if (focusButton && button.isConnected) button.focus();
  }

  function act(action, item, conv) {
    const m = item.m;
    if (action === "delete") {
      request({ type: "delete", id: m.id });
      $("message").focus();
      return;
    }
    item.editing = action;
    item.draft = action === "edit" ? m.text : "";
    redrawItem(item);
    const field = item.el.querySelector("form input, form select");
    if (field) field.focus();
  }

  function stopEditing(item) {
    item.editing = null;
    redrawItem(item);
    const b = item.el.querySelector(".more");
    if (b) b.focus(); else $("message").focus();
  }

  // Draw one stored message again (it was edited, deleted, or is being edited here),
  // keeping the focus on its menu button if it was there.
  function redrawItem(item) {
    const old = item.el;
    const hadFocus = old.contains(document.activeElement) && document.activeElement.classList.contains("more");
    if (menu && menu.item === item) closeMenu(false);
    item.el = item.draw();
    if (old.parentNode) old.replaceWith(item.el);
    if (hadFocus) {
      const b = item.el.querySelector(".more");
      if (b) b.focus(); else $("message").focus();
    }
  }

  function findItem(id) {
    for (const conv of convs.values()) {
      const item = conv.ids.get(id);
      if (item) return item;
    }
    return null;
  }

  // The text, in place, in a field: Enter saves (the server's `edited` shows it), Escape cancels.
  function editForm(item) {
    const form = document.createElement("form");
    form.className = "edit";
    const field = document.createElement("input");
    field.value = item.draft != null ? item.draft : item.m.text;
    field.setAttribute("aria-label", t("New text"));
    field.maxLength = 4000;
    field.addEventListener("input", () => { item.draft = field.value; });
    field.addEventListener("keydown", (e) => {
      if (e.key === "Escape") { e.preventDefault(); stopEditing(item); }
    });
    const save = document.createElement("button");
    save.type = "submit";
    save.textContent = t("Save");
    const cancel = document.createElement("button");
    cancel.type = "button";
    cancel.className = "secondary";
    cancel.textContent = t("Cancel");
    cancel.addEventListener("click", () => stopEditing(item));
    form.append(field, save, cancel);
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const text = field.value;
      if (text.trim() && text !== item.m.text) request({ type: "edit", id: item.m.id, text });
      stopEditing(item);
    });
    return form;
  }

  function durationLabel(seconds) {
    if (seconds % 86400 === 0) return tn("{n} day", "{n} days", seconds / 86400);
    if (seconds % 3600 === 0) return tn("{n} hour", "{n} hours", seconds / 3600);
    return tn("{n} minute", "{n} minutes", seconds / 60);
  }

  // An operator's mute (for how long, why) or kick (why), under the message of whom it is about.
  function moderateForm(item, conv) {
    const muting = item.editing === "mute";
    const name = item.m.from;
    const form = document.createElement("form");
    form.className = "moderate";
    const fields = [];
    let how = null;
    if (muting) {
      how = document.createElement("select");
      how.setAttribute("aria-label", t("Mute for"));
      for (const seconds of MUTES) {
        const option = document.createElement("option");
        option.value = String(seconds);
        option.textContent = durationLabel(seconds);
        how.appendChild(option);
      }
      how.value = String(item.howLong || 600);
      how.addEventListener("change", () => { item.howLong = Number(how.value); });
      fields.push(how);
    }
    const why = document.createElement("input");
    why.setAttribute("aria-label", t("Reason (optional)"));
    why.placeholder = t("Reason (optional)");
    why.maxLength = 200;
    why.value = item.draft || "";
    why.addEventListener("input", () => { item.draft = why.value; });
    fields.push(why);
    const go = document.createElement("button");
    go.type = "submit";
    go.textContent = muting ? t("Mute {name}", { name }) : t("Kick {name}", { name });
    const cancel = document.createElement("button");
    cancel.type = "button";
    cancel.className = "secondary";
    cancel.textContent = t("Cancel");
    cancel.addEventListener("click", () => stopEditing(item));
    form.append(...fields, go, cancel);
    form.addEventListener("keydown", (e) => {
      if (e.key === "Escape") { e.preventDefault(); stopEditing(item); }
    });
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const reason = why.value.trim();
      const ev = { type: item.editing, room: conv.name, name };
      if (reason) ev.reason = reason;
      if (muting) ev.seconds = Number(how.value);
      request(ev);
      item.draft = "";
      stopEditing(item);
    });
    return form;
  }

  // A <time> for an ISO 8601 moment, written in the page's language ("Dec 1, 2026, 9:52 PM").
  function timeNode(iso) {
    const el = document.createElement("time");
    el.dateTime = iso;
    el.textContent = moment.format(new Date(iso));
    return el;
  }

  function composed(template, nodes) {  // a <span> of `template` with nodes for placeholders
    const span = document.createElement("span");
    compose(span, template, nodes);
    return span;
  }

  function badgeText(n) { return n > 999 ? "999+" : String(n); }

  function convLabel(conv) {
    return conv.kind === "room" ? conv.name : t("{name} (direct)", { name: conv.name });
  }

  function convButton(conv) {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button";
    b.className = "conv";
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = conv.name;
    b.title = convLabel(conv);
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.setAttribute("aria-hidden", "true");
    b.append(name, badge);
    b.addEventListener("click", () => {
      askNotify();
      show(conv);
      $("message").focus();
    });
    li.appendChild(b);
    conv.li = li;
    conv.button = b;
    conv.badge = badge;
    updateBadge(conv);
    return li;
  }

  function renderLists() {
    const roomList = [];
    const directList = [];
    for (const conv of convs.values()) (conv.kind === "room" ? roomList : directList).push(conv);
    roomList.sort((a, b) => (b.key === homeKey) - (a.key === homeKey) || a.name.localeCompare(b.name));
    $("room-list").replaceChildren(...roomList.map(convButton));
    $("direct-list").replaceChildren(...directList.map(convButton));
    $("direct").hidden = directList.length === 0;
  }

  function updateBadge(conv) {
    if (!conv.button || !convs.has(conv.key)) return;
    const n = unread(conv);
    conv.unread = n;
    conv.badge.textContent = n ? badgeText(n) : "";
    conv.badge.hidden = n === 0;
    const what = convLabel(conv);
    conv.button.setAttribute("aria-label", n
      ? tn("{name}, {count} unread", "{name}, {count} unread", n, { name: what, count: badgeText(n) })
      : what);
    if (conv.key === current) conv.button.setAttribute("aria-current", "true");
    else conv.button.removeAttribute("aria-current");
    let total = 0;
    for (const c of convs.values()) total += c.unread;
    document.title = total ? "(" + badgeText(total) + ") papo" : "papo";
  }

  function showHead(conv) {
    $("conv-title").textContent = conv.name;
    const topic = $("topic");
    if (conv.kind === "room") {
      topic.textContent = conv.topic || t("no topic");
      topic.classList.toggle("empty", !conv.topic);
    } else {
      topic.textContent = t("direct conversation");
      topic.classList.add("empty");
    }
    const part = $("part");
    part.hidden = conv.kind !== "room" || conv.key === homeKey;
    part.setAttribute("aria-label", t("Part {room}", { room: conv.name }));
    $("message").placeholder = conv.kind === "room"
      ? t("Message {room}, or /msg NAME text", { room: conv.name })
      : t("Message {name}", { name: conv.name });
  }

  function showLog(conv) {
    $("log").replaceChildren(...conv.items.map((it) => it.el));
    toBottom();
  }

  // Make `conv` the current conversation: its messages in the log, the input sends there.
  function show(conv) {
    const previous = convs.get(current);
    current = conv.key;
    if (previous) updateBadge(previous);
    showHead(conv);
    showLog(conv);
    const log = $("log");
    updateBadge(conv);
    markRead(conv);
    if (conv.ids.size < FEW || log.scrollHeight <= log.clientHeight) loadOlder(conv);
  }

  function renderUsers(list) {
    users = list || [];
    const ul = $("online");
    ul.replaceChildren();
    for (const u of users) {
      const li = document.createElement("li");
      const b = document.createElement("button");
      b.type = "button";
      const many = u.sessions > 1;
      b.textContent = u.name + (many ? " ×" + u.sessions : "");  // × is in every font
      b.title = many ? tn("{name} is on {n} device", "{name} is on {n} devices", u.sessions, { name: u.name }) : u.name;
      b.setAttribute("aria-label", many
        ? tn("Private chat with {name} (on {n} device)", "Private chat with {name} (on {n} devices)", u.sessions, { name: u.name })
        : t("Private chat with {name}", { name: u.name }));
      b.addEventListener("click", () => {
        const input = $("message");
        input.value = "/msg " + u.name + " ";
        input.focus();
      });
      li.appendChild(b);
      ul.appendChild(li);
    }
  }

  // ------------------------------------------------------------------ history and read markers

  function loadOlder(conv) {
    if (!roomsOn || !joined || conv.loading || conv.more === false) return;
    const ev = { type: "history", ...target(conv), limit: PAGE };
    const oldest = oldestId(conv);
    if (oldest) ev.before = oldest;
    conv.loading = send(ev);
  }

  function atTop() { return $("log").scrollTop <= 2; }

  function markRead(conv) {
    if (!conv || conv.key !== current || document.hidden) return;
    const id = newestId(conv);
    if (id > conv.lastRead) {
      conv.lastRead = id;
      updateBadge(conv);
    }
    flushRead(conv);
  }

  function flushRead(conv) {  // tell the server (and so our other sessions), at most once a second
    if (!roomsOn || !joined || conv.lastRead <= conv.readSent || !convs.has(conv.key)) return;
    const wait = conv.readAt + READ_EVERY - Date.now();
    if (wait > 0) {
      if (!conv.readTimer) conv.readTimer = setTimeout(() => { conv.readTimer = null; flushRead(conv); }, wait);
      return;
    }
    if (send({ type: "read", ...target(conv), id: conv.lastRead })) {
      conv.readSent = conv.lastRead;
      conv.readAt = Date.now();
    }
  }

  // ------------------------------------------------------------------ notifications

  function askNotify() {  // on a user gesture, once
    if (askedNotify || !("Notification" in window)) return;
    askedNotify = true;
    try {
      if (Notification.permission === "default") {
        const asked = Notification.requestPermission();
        if (asked && asked.catch) asked.catch(() => {});
      }
    } catch { /* an old browser: no notifications */ }
  }

  function notify(conv, m) {
    if (!document.hidden || !("Notification" in window) || Notification.permission !== "granted") return;
    try {
      const title = conv.kind === "room"
        ? t("{name} in {room}", { name: m.from, room: conv.name })
        : t("{name} (private)", { name: m.from });
      const n = new Notification(title, { body: m.text, tag: conv.key });
      n.onclick = () => { window.focus(); if (convs.has(conv.key)) show(conv); n.close(); };
    } catch { /* not allowed here (some mobile browsers) */ }
  }

  // ------------------------------------------------------------------ connection

  // The server writes its errors and notices in the language the URL asks for.
  function wsUrl() { return WS_URL + "?lang=" + encodeURIComponent(lang); }

  function send(event) {
    if (ws && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify(event));
      return true;
    }
    return false;
  }

  function receive(e) {
    let event;
    try { event = JSON.parse(e.data); } catch { return; }
    handle(event);
  }

  function open(hello) {
    clearTimeout(retryTimer);
    pendingHello = hello;
    joined = false;
    ws = new WebSocket(wsUrl(), "papo.v1");
    ws.lang = lang;
    ws.onopen = () => send(pendingHello);
    ws.onmessage = receive;
    ws.onclose = (e) => closed(e);
  }

  // The language changed while joined: a second connection joins in the new one (the same
  // user, resuming where this page is), then takes over; the first closes. The user never
  // leaves (it has two sessions for a moment), and nothing is missed or shown twice.
  function rejoinInLanguage() {
    if (!joined || next || !me || !saved.token || ws.lang === lang) return;
    const sock = new WebSocket(wsUrl(), "papo.v1");
    sock.lang = lang;
    next = sock;
    sock.onopen = () => sock.send(JSON.stringify(resumeHello()));
    sock.onmessage = (e) => {
      let event;
      try { event = JSON.parse(e.data); } catch { return; }
      if (next !== sock) return;
      if (event.type !== "welcome") { sock.onclose = null; sock.close(); next = null; return; }
      next = null;
      const old = ws;
      old.onmessage = null;
      old.onclose = null;
      old.close(1000);
      ws = sock;
      sock.onmessage = receive;
      sock.onclose = (ev) => closed(ev);
      handle(event);
    };
    sock.onclose = () => { if (next === sock) next = null; };  // the old one stays
  }

  function closed(e) {
    joined = false;
    proven = false;
    quietRooms = 0;  // the answers asked for on this connection will not come
    for (const conv of convs.values()) conv.loading = false;
    if (leaving) { setStatus("offline", () => t("offline")); return; }
    if (!everJoined) {
      setStatus("offline", () => t("offline"));
      if (!$("join-error").textContent) setJoinError(() => t("Cannot reach the server; try again."));
      return;
    }
    if (e.code === 1008) {
      setStatus("offline", () => t("offline"));
      const reason = e.reason;
      notice(() => {
        const why = reason || t("refused");
        return t("Disconnected: {reason}", { reason: why });
      }, true);
      return;
    }
    attempt += 1;
    const ceiling = Math.min(MAX_BACKOFF, 0.5 * 2 ** (attempt - 1));
    let wait = ceiling / 2 + Math.random() * ceiling / 2;
    const tick = () => {
      const seconds = Math.ceil(wait);
      setStatus("reconnecting", () => t("reconnecting in {n} s", { n: seconds }));
      if (wait <= 0) { open(resumeHello()); return; }
      const step = Math.min(1, wait);
      wait -= step;
      retryTimer = setTimeout(tick, step * 1000);
    };
    tick();
  }

  function welcome(ev) {
    me = ev.name;
    if (ev.token) saved.keep(ev.name, ev.token);
    if (!everJoined) lastId = Math.max(lastId, ev.last_id || 0);
    if (!everJoined) floor = Math.max(floor, ev.last_id || 0);
    proven = false;  // this connection's replay follows; the answer to `who` ends it
    const listedAt = everJoined ? resumedFrom : (ev.last_id || 0);  // where the server began each
    liveFrom = Math.max(liveFrom, ev.last_id || 0);
    roomsOn = Array.isArray(ev.rooms);
    const listed = roomsOn ? ev.rooms : [{ room: DEFAULT_ROOM }];
    const newHome = roomKey(listed.length ? listed[0].room : DEFAULT_ROOM);
    if (newHome !== homeKey) {  // the server's default room has another name
      const old = convs.get(homeKey);
      if (old && old.items.length === 0) convs.delete(homeKey);
      if (current === homeKey) current = newHome;
      homeKey = newHome;
    }
    const keep = new Set();
    for (const r of listed) {
      const conv = roomConv(r.room);
      conv.name = r.room;
      conv.topic = r.topic || "";
      if (conv.since == null) conv.since = ev.last_id || 0;
      if (!conv.seen) conv.seen = listedAt;
      setBase(conv, ev.last_id, r.last_read, r.unread);
      keep.add(conv.key);
    }
    for (const conv of [...convs.values()]) {  // rooms left while this page was away
      if (conv.kind === "room" && !keep.has(conv.key)) {
        clearTimeout(conv.readTimer);
        convs.delete(conv.key);
      }
    }
    for (const d of ev.direct || []) {
      const conv = directConv(d.with, true);
      if (conv.since == null) conv.since = ev.last_id || 0;
      if (!conv.seen) conv.seen = listedAt;
      setBase(conv, ev.last_id, d.last_read, d.unread);
    }
    everJoined = true;
    joined = true;
    attempt = 0;
    setJoinError("");
    const name = me;
    setStatus("connected", () => t("connected as {name}", { name }));
    renderLists();
    showChat(true);
    send({ type: "who" });
    if (roomsOn && send({ type: "rooms" })) quietRooms += 1;  // who the operators are
    for (const [cid, m] of outbox) send(sayEvent(cid, m));  // unacknowledged: again, same cid
    show(currentConv());
    for (const conv of convs.values()) flushRead(conv);  // read while offline
    rejoinInLanguage();  // the language was changed while this connection was joining
  }

  // A line of /rooms (the same words as the server's plain-text /rooms). The texts are not
  // nested in one call: the catalog extractor reads only the outer call's words.
  function describeRoom(r) {
    const members = tn("{n} member", "{n} members", r.members);
    const values = { room: r.room, members, online: r.online, topic: r.topic };
    if (r.joined && r.topic) return t("{room} (you): {members}, {online} online — {topic}", values);
    if (r.joined) return t("{room} (you): {members}, {online} online", values);
    if (r.topic) return t("{room}: {members}, {online} online — {topic}", values);
    return t("{room}: {members}, {online} online", values);
  }

  function handle(ev) {
    switch (ev.type) {
      case "welcome":
        welcome(ev);
        break;
      case "message": {
        lastId = Math.max(lastId, ev.id);
        const mine = ev.cid && outbox.get(ev.cid);
        if (mine) { confirm(ev.cid, ev.id); see(ev); break; }  // ours, stored before its ack was lost
        if (ev.deleted) { tombstone(ev); see(ev); break; }
        const conv = convOf(ev);
        see(ev);
        if (conv.ids.has(ev.id)) break;
        const item = messageItem(conv, ev);
        insert(conv, item);
        if (conv.key === current && !document.hidden) markRead(conv);
        else updateBadge(conv);
        if (!item.mine && ev.id > liveFrom && (ev.to || item.el.classList.contains("mentions-me"))) notify(conv, ev);
        break;
      }
      case "ack": {
        if (ev.cid && outbox.has(ev.cid)) confirm(ev.cid, ev.id, ev.to);
        break;
      }
      case "history": {
        const conv = knownConv(ev);
        if (!conv) break;
        conv.loading = false;
        conv.more = Boolean(ev.more);
        const items = [];
        for (const m of ev.messages || []) {
          if (conv.ids.has(m.id)) { if (m.deleted) tombstone(m); } else items.push(messageItem(conv, m));
        }
        insert(conv, ...items);
        updateBadge(conv);
        if (conv.key === current) {
          markRead(conv);
          const log = $("log");
          if (conv.more && (atTop() || log.scrollHeight <= log.clientHeight)) loadOlder(conv);
        }
        break;
      }
      case "read": {
        const conv = knownConv(ev);
        if (!conv) break;
        conv.lastRead = Math.max(conv.lastRead, ev.id);
        conv.readSent = Math.max(conv.readSent, ev.id);
        updateBadge(conv);
        break;
      }
      case "room":
        roomEvent(ev);
        break;
      case "member": {
        const key = roomKey(ev.room);
        const { name, room } = ev;
        if (convs.has(key)) {
          notice(() => (ev.event === "join"
            ? t("{name} joined {room}", { name, room })
            : t("{name} left {room}", { name, room })), false, convs.get(key));
        }
        break;
      }
      case "edited": {
        const item = findItem(ev.id);
        if (!item || item.m.deleted) break;
        item.m = { ...item.m, text: ev.text, edited_ts: ev.edited_ts };
        if (item.editing === "edit") item.editing = null;  // edited elsewhere meanwhile
        redrawItem(item);
        break;
      }
      case "deleted": {
        const item = findItem(ev.id);
        if (item) tombstone({ ...item.m, id: ev.id, deleted: true });
        break;
      }
      case "rooms": {
        const list = ev.rooms || [];
        for (const r of list) {  // who the operators are (admins aside: `room joined` marks them)
          const conv = r.joined && convs.get(roomKey(r.room));
          if (conv && Array.isArray(r.operators)) setOps(conv, [...r.operators.map(nameKey), ...conv.joinedOps]);
        }
        if (quietRooms > 0) { quietRooms -= 1; break; }
        if (!list.length) { notice(() => t("no rooms yet: /join #name creates one")); break; }
        notice(() => t("rooms ({n}): {list}", { n: list.length, list: list.map(describeRoom).join("; ") }));
        break;
      }
      case "error": {
        if (!joined) {
          const said = ev.message;
          const until = ev.until ? moment.format(new Date(ev.until)) : null;
          setJoinError(until ? () => t("{message} (until {time})", { message: said, time: until }) : said);
          if (ev.code === "bad_token" || ev.code === "auth_required") saved.forget();
          everJoined = false;
          leaving = true;
          ws.close();
          showChat(false);
          return;
        }
        if (ev.code === "store_unavailable" && ev.cid && outbox.has(ev.cid) && resendLater(ev.cid)) break;
        for (const conv of convs.values()) conv.loading = false;  // a history request may have failed
        if (ev.code !== "rate_limited") wantRoom = null;  // the join may be what failed
        if (ev.cid && outbox.has(ev.cid)) {
          const m = outbox.get(ev.cid);
          unlink(m.conv, m.item);
          outbox.delete(ev.cid);
          const input = $("message");
          if (ev.code === "muted" && !input.value) input.value = m.text;  // not lost: sent later
          const { conv } = m;  // a /msg to nobody: no conversation is left of it
          const waiting = [...outbox.values()].some((o) => o.conv === conv);
          if (conv.kind === "direct" && conv.ids.size === 0 && !waiting && convs.has(conv.key)) dropConv(conv);
        }
        const message = ev.message;  // in the page's language already: the URL asked for it
        notice(() => t("error: {message}", { message }), true);
        if ((ev.code === "muted" || ev.code === "banned") && ev.until) {
          const until = ev.until;
          notice(() => composed(ev.code === "muted" ? t("you are muted until {time}") : t("you are banned until {time}"),
            { time: timeNode(until) }), true);
        }
        break;
      }
      case "presence": {
        const { name } = ev;
        notice(() => (ev.event === "join" ? t("{name} joined", { name }) : t("{name} left", { name })), false, home());
        send({ type: "who" });
        break;
      }
      case "users":  // answered after this connection's replay: it is live now
        if (!proven) { proven = true; floor = Math.max(floor, lastId); }
        renderUsers(ev.users);
        break;
      case "gap":  // a per-conversation resume says which conversation lost some
        notice(() => t("older messages are no longer kept"), false, (ev.room || ev.with) ? knownConv(ev) : null);
        break;
      case "notice":
        notice(ev.text);
        break;
    }
  }

  function roomEvent(ev) {
    const key = roomKey(ev.room);
    if (ev.event === "joined") {
      const isNew = !convs.has(key);
      const conv = roomConv(ev.room);
      conv.name = ev.room;
      conv.topic = ev.topic || "";
      if (isNew || conv.since == null) conv.since = ev.last_id || liveFrom;
      if (!conv.seen) conv.seen = ev.last_id || 0;  // its last messages follow, as history
      setBase(conv, ev.last_id, ev.last_read, ev.unread);
      conv.joinedOps = new Set((ev.members || []).filter((m) => m.op).map((m) => nameKey(m.name)));
      setOps(conv, conv.joinedOps);
      if (isNew) {
        const room = ev.room;
        const n = (ev.members || []).length;
        notice(() => {
          const members = tn("{n} member", "{n} members", n);
          return t("you joined {room} ({members})", { room, members });
        }, false, conv);
      }
      updateBadge(conv);
      if (wantRoom === key) { wantRoom = null; show(conv); }
      else if (conv.key === current) showHead(conv);
    } else if (ev.event === "parted") {
      const conv = convs.get(key);
      if (conv) dropConv(conv);
      if (ev.by) {  // kicked: said where the user is now
        const { by, reason, room } = ev;
        notice(() => (reason
          ? t("{name} removed you from {room}: {reason}", { name: by, room, reason })
          : t("{name} removed you from {room}", { name: by, room })), true);
      }
    } else if (ev.event === "topic") {
      const conv = convs.get(key);
      if (!conv) return;
      conv.topic = ev.topic || "";
      const { by, topic } = ev;
      notice(() => (topic ? t("{name} set the topic: {topic}", { name: by, topic }) : t("{name} cleared the topic", { name: by })), false, conv);
      if (conv.key === current) showHead(conv);
    }
  }

  // The room's operators changed (or became known): their menus change with them.
  function setOps(conv, keys) {
    const was = isOperator(conv);
    conv.ops = new Set(keys);
    if (was !== isOperator(conv)) redraw(conv);
  }

  // A message was deleted (live, in a resume or a history page): its line reads "message
  // deleted", in whichever conversation has it. A tombstone of a direct message to us does
  // not say from whom: unless its message is here, there is nowhere to put it.
  function tombstone(m) {
    const item = findItem(m.id);
    if (item) {
      if (item.m.deleted) return;
      item.m = { id: m.id, ts: item.m.ts, to: item.m.to, room: item.m.room, deleted: true };
      item.editing = null;
      redrawItem(item);
      const conv = convOfItem(item);
      if (conv) updateBadge(conv);
      return;
    }
    if (!m.room && (!m.to || same(m.to, me))) return;
    const conv = m.room ? roomConv(m.room) : directConv(m.to, true);
    insert(conv, messageItem(conv, m));
  }

  function convOfItem(item) {
    for (const conv of convs.values()) if (conv.ids.get(item.id) === item) return conv;
    return null;
  }

  // Our message `cid` could not be stored just now (store_unavailable: the server's store
  // failed, or could not confirm it; sent again under its cid it is stored once). It stays
  // pending and goes again after a short wait (true), or, after RESEND_TRIES, is given up
  // (false: the caller drops it and shows the server's error). The user is told either way.
  function resendLater(cid) {
    const m = outbox.get(cid);
    const r = refusals.get(cid) || { tries: 0, timer: null };
    clearTimeout(r.timer);
    r.tries += 1;
    if (r.tries > RESEND_TRIES) {
      refusals.delete(cid);
      const { tries } = r;
      notice(() => t("gave up sending your message after {n} tries: {text}", { n: tries, text: m.text }), true, m.conv);
      return false;
    }
    const ceiling = Math.min(RESEND_CAP, 0.5 * 2 ** (r.tries - 1));
    const delay = ceiling / 2 + Math.random() * ceiling / 2;
    if (r.tries === 1) {
      const seconds = Math.max(1, Math.ceil(delay));
      notice(() => t("your message is not confirmed yet; sending it again in {seconds} s…", { seconds }), false, m.conv);
    }
    r.timer = setTimeout(() => {
      r.timer = null;  // offline: it goes with the rest of the outbox after the rejoin
      if (joined && outbox.has(cid)) send(sayEvent(cid, outbox.get(cid)));
    }, delay * 1000);
    refusals.set(cid, r);
    return true;
  }

  function confirm(cid, id, to) {
    const m = outbox.get(cid);
    outbox.delete(cid);
    const refused = refusals.get(cid);
    if (refused) { clearTimeout(refused.timer); refusals.delete(cid); }
    const { conv, item } = m;
    if (to && item.m.to) {  // the server's spelling of the name ("joao" typed, "João" it is)
      item.m.to = to;
      if (conv.kind !== "room" && conv.name !== to) {
        conv.name = to;
        renderLists();
        if (conv.key === current) showHead(conv);
      }
    }
    item.m.pending = false;
    item.m.id = id;
    item.el.classList.remove("pending");
    item.el.dataset.id = String(id);
    lastId = Math.max(lastId, id);
    unlink(conv, item);
    if (!convs.has(conv.key) || conv.ids.has(id)) return;
    item.id = id;
    item.k1 = id;
    item.k2 = 0;
    conv.ids.set(id, item);
    item.draw = () => messageElement(item.m, conv, item);  // now it has a menu
    item.el = item.draw();
    insert(conv, item);
    if (conv.key === current) markRead(conv);
  }

  function sayEvent(cid, m) {
    const ev = { type: "say", text: m.text, cid };
    if (m.to) ev.to = m.to;
    else if (m.room) ev.room = m.room;
    return ev;
  }

  // ------------------------------------------------------------------ input

  // The commands the page understands, in English and in Portuguese (as the server's).
  const COMMANDS = {
    "/msg": "msg", "/m": "msg", "/w": "msg", "/privado": "msg",
    "/who": "who", "/quem": "who",
    "/rooms": "rooms", "/salas": "rooms",
    "/join": "join", "/entrar": "join",
    "/part": "part", "/leave": "part", "/deixar": "part",
    "/topic": "topic", "/topico": "topic", "/tópico": "topic",
    "/help": "help", "/ajuda": "help",
  };

  function help() {
    return t("commands here: /msg or /privado NAME text, /join or /entrar #room, /part or /deixar [#room], /topic TEXT, /rooms or /salas, /who or /quem");
  }

  function request(event) {
    if (!send(event)) notice(() => t("not connected right now"), true);
  }

  function joinRoom(name) {
    const room = roomName(name.trim());
    wantRoom = roomKey(room);
    if (convs.has(wantRoom)) { show(convs.get(wantRoom)); wantRoom = null; return; }
    request({ type: "join", room });
  }

  function submit(line) {
    const text = line.trim();
    if (!text) return;
    const conv = currentConv();
    const [word, ...rest] = text.split(/\s+/);
    const arg = text.slice(word.length).trim();
    const command = text.startsWith("//") ? null : COMMANDS[word.toLowerCase()];
    if (command === "help") { notice(help); return; }
    if (command === "who" && !rest.length) { request({ type: "who" }); return; }
    if (command === "rooms" && !rest.length) { request({ type: "rooms" }); return; }
    if (command === "join") {
      if (rest.length !== 1) { notice(() => t("usage: {command} #room", { command: word }), true); return; }
      joinRoom(rest[0]);
      return;
    }
    if (command === "part") {
      if (rest.length > 1) { notice(() => t("usage: {command} [#room]", { command: word }), true); return; }
      if (!rest.length && conv.kind !== "room") {
        notice(() => t("this is not a room: {command} #room", { command: word }), true);
        return;
      }
      request({ type: "part", room: rest.length ? roomName(rest[0]) : conv.name });
      return;
    }
    if (command === "topic") {
      if (conv.kind !== "room") { notice(() => t("a direct conversation has no topic"), true); return; }
      request({ type: "topic", room: conv.name, text: arg });
      return;
    }
    let to = null;
    let body = line;
    let dest = conv;
    if (command === "msg") {
      const pm = /^\S+\s+(\S+)\s+([\s\S]+)$/.exec(text);
      if (!pm) { notice(() => t("usage: {command} NAME text", { command: word }), true); return; }
      to = displayName(pm[1]);
      body = pm[2];
      const known = convs.has(directKey(to));
      dest = directConv(to);
      if (!known) dest.more = false;  // a new conversation: nothing older on the server
    } else if (text.startsWith("//")) body = text.slice(1);
    else if (text.startsWith("/")) { notice(help, true); return; }
    if (!command && dest.kind === "direct") to = dest.name;
    if (dest.key !== current) show(dest);
    const cid = cidPrefix + (++cidCount);
    const item = { id: 0, k1: Infinity, k2: ++seq, mine: true, el: null };
    item.m = { from: me, text: body, to, ts: new Date().toISOString(), pending: true };
    item.draw = () => messageElement(item.m, dest, null);
    item.el = item.draw();
    insert(dest, item);
    const m = { text: body, to, room: dest.kind === "room" && dest.key !== homeKey ? dest.name : null, conv: dest, item };
    outbox.set(cid, m);
    if (joined) send(sayEvent(cid, m));  // otherwise: sent after the reconnect
  }

  function closeRoomForm() {
    const field = $("room-name");
    if (field) { field.remove(); $("room-name-label").remove(); }
    $("join-room-button").setAttribute("aria-expanded", "false");
  }

  function reset() {
    for (const conv of convs.values()) clearTimeout(conv.readTimer);
    convs.clear();
    outbox.clear();
    for (const r of refusals.values()) clearTimeout(r.timer);
    refusals.clear();
    users = [];
    homeKey = roomKey(DEFAULT_ROOM);
    current = homeKey;
    wantRoom = null;
    $("log").replaceChildren();
    home();
    renderLists();
    showHead(home());
  }

  document.addEventListener("DOMContentLoaded", async () => {
    await useLanguage(wantedLanguage());
    home();
    renderLists();
    showHead(home());
    atMidnight();
    $("language").addEventListener("change", async () => {
      const chosen = $("language").value;
      localStorage.setItem(LANG_KEY, chosen);
      await useLanguage(chosen);
      rejoinInLanguage();
    });
    $("join").addEventListener("submit", (e) => {
      e.preventDefault();
      askNotify();
      leaving = false;
      setJoinError("");
      const name = $("name").value.trim();
      const password = $("password").value;
      const hello = { type: "hello", name };
      if (password) hello.password = password;
      if (ws) ws.onclose = null;
      open(hello);
    });
    $("send").addEventListener("submit", (e) => {
      e.preventDefault();
      askNotify();
      const input = $("message");
      submit(input.value);
      input.value = "";
      input.focus();
    });
    // "Join room": the first press asks for the name (a field appears), the next joins.
    // The field exists only while asked for, so that the login form's "Name" stays the only one.
    $("join-room").addEventListener("submit", (e) => {
      e.preventDefault();
      askNotify();
      let field = $("room-name");
      if (!field) {
        const label = document.createElement("label");
        label.id = "room-name-label";
        label.htmlFor = "room-name";
        label.className = "visually-hidden";
        label.textContent = t("Room name");
        field = document.createElement("input");
        field.id = "room-name";
        field.maxLength = 33;
        field.autocomplete = "off";
        field.placeholder = t("#room");
        field.addEventListener("keydown", (k) => {
          if (k.key === "Escape") { closeRoomForm(); $("join-room-button").focus(); }
        });
        $("join-room").prepend(label, field);
        $("join-room-button").setAttribute("aria-expanded", "true");
        field.focus();
        return;
      }
      const name = field.value.trim().replace(/^#/, "");
      if (!name) { field.focus(); return; }
      closeRoomForm();
      joinRoom(name);
      $("message").focus();
    });
    $("part").addEventListener("click", () => {
      const conv = currentConv();
      if (conv.kind === "room" && conv.key !== homeKey) request({ type: "part", room: conv.name });
    });
    const log = $("log");
    log.addEventListener("scroll", () => {
      stuck = nearBottom();
      if (atTop()) loadOlder(currentConv());
    });
    // The log got smaller (a phone's keyboard, a rotation, the online list grew): the newest
    // line stays in view above the input, if it was.
    new ResizeObserver(() => { if (stuck) log.scrollTop = log.scrollHeight; }).observe(log);
    log.addEventListener("wheel", (e) => { if (e.deltaY < 0 && atTop()) loadOlder(currentConv()); }, { passive: true });
    log.addEventListener("keydown", (e) => {
      if (["Home", "PageUp", "ArrowUp"].includes(e.key) && atTop()) loadOlder(currentConv());
    });
    document.addEventListener("click", (e) => { if (menu && !menu.el.contains(e.target)) closeMenu(false); });
    document.addEventListener("visibilitychange", () => { if (!document.hidden) markRead(currentConv()); });
    window.addEventListener("focus", () => markRead(currentConv()));
    $("leave").addEventListener("click", () => {
      leaving = true;
      if (next) { next.onclose = null; next.close(); next = null; }
      send({ type: "logout" });
      saved.forget();
      everJoined = false;
      me = null;
      lastId = 0;
      floor = 0;
      liveFrom = 0;
      closeRoomForm();
      reset();
      showChat(false);
      setStatus("", () => "");  // left on purpose: nothing to warn about
    });
    showChat(false);
    if (saved.name && saved.token) {  // a new tab, or a reload: join again without asking
      $("name").value = saved.name;
      open({ type: "hello", name: saved.name, token: saved.token });
    }
  });
})();
