// papo's browser client: no build step, no dependencies. Speaks papo.v1 (docs/protocol.md).
// Every text that comes from the server is put on the page with textContent, never as HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const WS_URL = location.origin.replace(/^http/, "ws") + "/ws";
  const MAX_BACKOFF = 30;
  const DEFAULT_ROOM = "#geral";
  const FEW = 30;             // a conversation with fewer messages loaded asks for its history
  const READ_EVERY = 1000;    // ms: at most one `read` per conversation this often
  const PAGE = 50;            // messages per history page

  const saved = {
    get name() { return localStorage.getItem("papo.name"); },
    get token() { return localStorage.getItem("papo.token"); },
    keep(name, token) { localStorage.setItem("papo.name", name); localStorage.setItem("papo.token", token); },
    forget() { localStorage.removeItem("papo.name"); localStorage.removeItem("papo.token"); },
  };

  let ws = null;
  let me = null;              // our name, as the server spells it
  let joined = false;         // joined on the current connection
  let everJoined = false;     // joined once: reconnects resume
  let lastId = 0;             // newest message id seen, in any conversation: where a resume starts
  let liveFrom = 0;           // messages above this id arrived live (not the backlog): may notify
  let roomsOn = true;         // the server speaks rooms (its welcome lists them)
  let leaving = false;
  let attempt = 0;
  let retryTimer = null;
  let pendingHello = null;    // the hello to send when the socket opens
  let wantRoom = null;        // key of a room this page asked to join: shown when joined
  let askedNotify = false;
  const outbox = new Map();   // cid -> {text, to, room, conv, item}: sent or to send, not yet acknowledged
  const cidPrefix = Math.random().toString(36).slice(2, 10) + "-";
  let cidCount = 0;
  let seq = 0;                // orders notices and pending messages among messages

  // Conversations: rooms ("#" + key) and direct conversations ("@" + the other's key).
  const convs = new Map();
  let homeKey = roomKey(DEFAULT_ROOM);
  let current = homeKey;

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

  // ------------------------------------------------------------------ conversations

  function newConv(key, kind, name) {
    const conv = {
      key, kind, name, topic: "",
      lastRead: 0, readSent: 0, readAt: 0, readTimer: null,
      base: { id: 0, read: 0, unread: 0 },  // the server's unread count, as of message `id`
      items: [], ids: new Map(),
      more: null, loading: false, unread: 0,
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

  function directConv(name) {
    const key = directKey(name);
    let conv = convs.get(key);
    if (!conv) {
      conv = newConv(key, "direct", name);
      renderLists();
    }
    return conv;
  }

  function home() { return convs.get(homeKey) || roomConv(DEFAULT_ROOM); }
  function currentConv() { return convs.get(current) || home(); }

  function convOf(ev) {  // the conversation a message, history page or read marker is about
    if (ev.with != null) return directConv(ev.with);
    if (ev.to != null) return directConv(same(ev.from, me) ? ev.to : ev.from);
    return ev.room ? roomConv(ev.room) : home();
  }

  function knownConv(ev) {  // the same, for answers: never brings back a room we left
    if (ev.with != null) return directConv(ev.with);
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
      if (!it.id || it.mine) continue;
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

  // Put items in their place in `conv` (and on the page, if `conv` is shown), keeping the
  // log's scroll: at the bottom it follows new messages; older ones put above leave what
  // is in view where it is.
  function insert(conv, ...items) {
    const shown = conv.key === current;
    const log = $("log");
    const atBottom = shown && log.scrollTop + log.clientHeight >= log.scrollHeight - 40;
    const fromBottom = shown ? log.scrollHeight - log.scrollTop : 0;
    let above = false;
    for (const item of items) {
      let i = conv.items.length;
      while (i > 0 && before(conv.items[i - 1], item) > 0) i -= 1;
      conv.items.splice(i, 0, item);
      if (!shown) continue;
      const next = conv.items[i + 1];
      if (next) above = true;
      log.insertBefore(item.el, next ? next.el : null);
    }
    if (!shown) return;
    if (atBottom) log.scrollTop = log.scrollHeight;
    else if (above) log.scrollTop = log.scrollHeight - fromBottom;
  }

  function unlink(conv, item) {
    const i = conv.items.indexOf(item);
    if (i >= 0) conv.items.splice(i, 1);
    item.el.remove();
  }

  function messageItem(conv, m) {
    const item = { id: m.id, k1: m.id, k2: 0, mine: same(m.from, me), el: messageElement(m, conv) };
    conv.ids.set(m.id, item);
    return item;
  }

  function dropConv(conv) {
    clearTimeout(conv.readTimer);
    convs.delete(conv.key);
    if (current === conv.key) show(home());
    renderLists();
  }

  // ------------------------------------------------------------------ page

  function setStatus(kind, text) {
    const el = $("status");
    el.className = "status " + kind;
    el.textContent = text;
  }

  function showChat(on) {
    $("join").hidden = on;
    $("chat").hidden = !on;
    $("leave").hidden = !on;
    if (on) $("message").focus(); else $("name").focus();
  }

  function notice(text, isError, conv) {
    const p = document.createElement("p");
    p.className = "notice" + (isError ? " error" : "");
    p.textContent = text;
    const c = conv || currentConv();
    insert(c, { id: 0, k1: newestId(c), k2: ++seq, el: p });
  }

  function timeOf(ts) {
    const d = ts ? new Date(ts) : new Date();
    const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    if (d.toDateString() === new Date().toDateString()) return time;
    return d.toLocaleDateString([], { day: "numeric", month: "short" }) + " " + time;  // scrollback
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

  function messageElement(m, conv) {
    const p = document.createElement("p");
    const own = same(m.from, me);
    p.className = "msg" + (own ? " own" : "") + (m.to ? " private" : "");
    const time = document.createElement("span");
    time.className = "time";
    time.textContent = timeOf(m.ts);
    p.appendChild(time);
    if (m.to) {
      const tag = document.createElement("span");
      tag.className = "tag";
      tag.textContent = own ? "private to " + m.to : "private from " + m.from;
      p.appendChild(tag);
    }
    const from = document.createElement("span");
    from.className = "from";
    from.textContent = m.from + ":";
    p.appendChild(from);
    if (appendText(p, m.text, !own && conv && conv.kind === "room")) p.classList.add("mentions-me");
    if (m.id) p.dataset.id = String(m.id);
    return p;
  }

  function badgeText(n) { return n > 999 ? "999+" : String(n); }

  function convButton(conv) {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button";
    b.className = "conv";
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = conv.name;
    b.title = conv.kind === "room" ? conv.name : conv.name + " (direct)";
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
    const what = conv.kind === "room" ? conv.name : conv.name + " (direct)";
    conv.button.setAttribute("aria-label", n ? what + ", " + badgeText(n) + " unread" : what);
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
      topic.textContent = conv.topic || "no topic";
      topic.classList.toggle("empty", !conv.topic);
    } else {
      topic.textContent = "direct conversation";
      topic.classList.add("empty");
    }
    const part = $("part");
    part.hidden = conv.kind !== "room" || conv.key === homeKey;
    part.setAttribute("aria-label", "Part " + conv.name);
    $("message").placeholder = conv.kind === "room"
      ? "Message " + conv.name + ", or /msg NAME text"
      : "Message " + conv.name;
  }

  // Make `conv` the current conversation: its messages in the log, the input sends there.
  function show(conv) {
    const previous = convs.get(current);
    current = conv.key;
    if (previous) updateBadge(previous);
    showHead(conv);
    const log = $("log");
    log.replaceChildren(...conv.items.map((it) => it.el));
    log.scrollTop = log.scrollHeight;
    updateBadge(conv);
    markRead(conv);
    if (conv.ids.size < FEW || log.scrollHeight <= log.clientHeight) loadOlder(conv);
  }

  function renderUsers(users) {
    const ul = $("online");
    ul.replaceChildren();
    for (const u of users) {
      const li = document.createElement("li");
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = u.name + (u.sessions > 1 ? " ⧉" + u.sessions : "");
      b.title = u.sessions > 1 ? u.name + " is on " + u.sessions + " devices" : u.name;
      b.setAttribute("aria-label", "Private chat with " + u.name + (u.sessions > 1 ? " (on " + u.sessions + " devices)" : ""));
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
      const title = conv.kind === "room" ? m.from + " in " + conv.name : m.from + " (private)";
      const n = new Notification(title, { body: m.text, tag: conv.key });
      n.onclick = () => { window.focus(); if (convs.has(conv.key)) show(conv); n.close(); };
    } catch { /* not allowed here (some mobile browsers) */ }
  }

  // ------------------------------------------------------------------ connection

  function send(event) {
    if (ws && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify(event));
      return true;
    }
    return false;
  }

  function open(hello) {
    clearTimeout(retryTimer);
    pendingHello = hello;
    joined = false;
    ws = new WebSocket(WS_URL, "papo.v1");
    ws.onopen = () => send(pendingHello);
    ws.onmessage = (e) => {
      let event;
      try { event = JSON.parse(e.data); } catch { return; }
      handle(event);
    };
    ws.onclose = (e) => closed(e);
  }

  function closed(e) {
    joined = false;
    for (const conv of convs.values()) conv.loading = false;
    if (leaving) { setStatus("offline", "offline"); return; }
    if (!everJoined) {
      setStatus("offline", "offline");
      if (!$("join-error").textContent) $("join-error").textContent = "Cannot reach the server; try again.";
      return;
    }
    if (e.code === 1008) { setStatus("offline", "offline"); notice("Disconnected: " + (e.reason || "refused"), true); return; }
    attempt += 1;
    const ceiling = Math.min(MAX_BACKOFF, 0.5 * 2 ** (attempt - 1));
    let wait = ceiling / 2 + Math.random() * ceiling / 2;
    const tick = () => {
      setStatus("reconnecting", "reconnecting in " + Math.ceil(wait) + " s");
      if (wait <= 0) { open({ type: "hello", name: me, token: saved.token, resume_from: lastId }); return; }
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
      const conv = directConv(d.with);
      setBase(conv, ev.last_id, d.last_read, d.unread);
    }
    everJoined = true;
    joined = true;
    attempt = 0;
    $("join-error").textContent = "";
    setStatus("connected", "connected as " + me);
    renderLists();
    showChat(true);
    send({ type: "who" });
    for (const [cid, m] of outbox) send(sayEvent(cid, m));  // unacknowledged: again, same cid
    show(currentConv());
    for (const conv of convs.values()) flushRead(conv);  // read while offline
  }

  function handle(ev) {
    switch (ev.type) {
      case "welcome":
        welcome(ev);
        break;
      case "message": {
        lastId = Math.max(lastId, ev.id);
        const mine = ev.cid && outbox.get(ev.cid);
        if (mine) { confirm(ev.cid, ev.id); break; }  // ours, stored before its ack was lost
        const conv = convOf(ev);
        if (conv.ids.has(ev.id)) break;
        const item = messageItem(conv, ev);
        insert(conv, item);
        if (conv.key === current && !document.hidden) markRead(conv);
        else updateBadge(conv);
        if (!item.mine && ev.id > liveFrom && (ev.to || item.el.classList.contains("mentions-me"))) notify(conv, ev);
        break;
      }
      case "ack": {
        if (ev.cid && outbox.has(ev.cid)) confirm(ev.cid, ev.id);
        break;
      }
      case "history": {
        const conv = knownConv(ev);
        if (!conv) break;
        conv.loading = false;
        conv.more = Boolean(ev.more);
        const items = [];
        for (const m of ev.messages || []) if (!conv.ids.has(m.id)) items.push(messageItem(conv, m));
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
        if (convs.has(key)) notice(ev.name + (ev.event === "join" ? " joined " : " left ") + ev.room, false, convs.get(key));
        break;
      }
      case "rooms": {
        const list = ev.rooms || [];
        if (!list.length) { notice("no rooms yet: /join #name creates one"); break; }
        notice("rooms (" + list.length + "): " + list.map((r) =>
          r.room + (r.joined ? " (you)" : "") + ": " + r.members + " members, " + r.online + " online" +
          (r.topic ? " — " + r.topic : "")).join("; "));
        break;
      }
      case "error": {
        if (!joined) {
          $("join-error").textContent = ev.message;
          if (ev.code === "bad_token" || ev.code === "auth_required") saved.forget();
          everJoined = false;
          leaving = true;
          ws.close();
          showChat(false);
          return;
        }
        for (const conv of convs.values()) conv.loading = false;  // a history request may have failed
        if (ev.code !== "rate_limited") wantRoom = null;  // the join may be what failed
        if (ev.cid && outbox.has(ev.cid)) {
          const m = outbox.get(ev.cid);
          unlink(m.conv, m.item);
          outbox.delete(ev.cid);
          const { conv } = m;  // a /msg to nobody: no conversation is left of it
          const waiting = [...outbox.values()].some((o) => o.conv === conv);
          if (conv.kind === "direct" && conv.ids.size === 0 && !waiting && convs.has(conv.key)) dropConv(conv);
        }
        notice("error: " + ev.message, true);
        break;
      }
      case "presence":
        notice(ev.name + (ev.event === "join" ? " joined" : " left"), false, home());
        send({ type: "who" });
        break;
      case "users":
        renderUsers(ev.users);
        break;
      case "gap":
        notice("older messages are no longer kept");
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
      setBase(conv, ev.last_id, ev.last_read, ev.unread);
      if (isNew) notice("you joined " + ev.room + " (" + (ev.members || []).length + " members)", false, conv);
      updateBadge(conv);
      if (wantRoom === key) { wantRoom = null; show(conv); }
      else if (conv.key === current) showHead(conv);
    } else if (ev.event === "parted") {
      const conv = convs.get(key);
      if (conv) dropConv(conv);
    } else if (ev.event === "topic") {
      const conv = convs.get(key);
      if (!conv) return;
      conv.topic = ev.topic || "";
      notice(ev.topic ? ev.by + " set the topic: " + ev.topic : ev.by + " cleared the topic", false, conv);
      if (conv.key === current) showHead(conv);
    }
  }

  function confirm(cid, id) {
    const m = outbox.get(cid);
    outbox.delete(cid);
    const { conv, item } = m;
    m.item.el.classList.remove("pending");
    m.item.el.dataset.id = String(id);
    lastId = Math.max(lastId, id);
    unlink(conv, item);
    if (!convs.has(conv.key) || conv.ids.has(id)) return;
    item.id = id;
    item.k1 = id;
    item.k2 = 0;
    conv.ids.set(id, item);
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

  const HELP = "commands here: /msg NAME text, /join #room, /part [#room], /topic TEXT, /rooms, /who";

  function request(event) {
    if (!send(event)) notice("not connected right now", true);
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
    if (word === "/who" && !rest.length) { request({ type: "who" }); return; }
    if (word === "/rooms" && !rest.length) { request({ type: "rooms" }); return; }
    if (word === "/join") {
      if (rest.length !== 1) { notice("usage: /join #room", true); return; }
      joinRoom(rest[0]);
      return;
    }
    if (word === "/part" || word === "/leave") {
      if (rest.length > 1) { notice("usage: /part [#room]", true); return; }
      if (!rest.length && conv.kind !== "room") { notice("this is not a room: /part #room", true); return; }
      request({ type: "part", room: rest.length ? roomName(rest[0]) : conv.name });
      return;
    }
    if (word === "/topic") {
      if (conv.kind !== "room") { notice("a direct conversation has no topic", true); return; }
      request({ type: "topic", room: conv.name, text: arg });
      return;
    }
    let to = null;
    let body = line;
    let dest = conv;
    const pm = /^\/msg\s+(\S+)\s+([\s\S]+)$/.exec(text);
    if (pm) { to = pm[1]; body = pm[2]; dest = directConv(to); }
    else if (text.startsWith("/msg")) { notice("usage: /msg NAME text", true); return; }
    else if (text.startsWith("//")) body = text.slice(1);
    else if (text.startsWith("/")) { notice(HELP, true); return; }
    if (!pm && dest.kind === "direct") to = dest.name;
    if (dest.key !== current) show(dest);
    const cid = cidPrefix + (++cidCount);
    const el = messageElement({ from: me, text: body, to, ts: null }, dest);
    el.classList.add("pending", "own");
    const item = { id: 0, k1: Infinity, k2: ++seq, mine: true, el };
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
    homeKey = roomKey(DEFAULT_ROOM);
    current = homeKey;
    wantRoom = null;
    $("log").replaceChildren();
    home();
    renderLists();
    showHead(home());
  }

  document.addEventListener("DOMContentLoaded", () => {
    for (const el of document.querySelectorAll(".ws-url")) el.textContent = WS_URL;
    home();
    renderLists();
    showHead(home());
    $("join").addEventListener("submit", (e) => {
      e.preventDefault();
      askNotify();
      leaving = false;
      $("join-error").textContent = "";
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
        label.textContent = "Room name";
        field = document.createElement("input");
        field.id = "room-name";
        field.maxLength = 33;
        field.autocomplete = "off";
        field.placeholder = "#room";
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
    log.addEventListener("scroll", () => { if (atTop()) loadOlder(currentConv()); });
    log.addEventListener("wheel", (e) => { if (e.deltaY < 0 && atTop()) loadOlder(currentConv()); }, { passive: true });
    log.addEventListener("keydown", (e) => {
      if (["Home", "PageUp", "ArrowUp"].includes(e.key) && atTop()) loadOlder(currentConv());
    });
    document.addEventListener("visibilitychange", () => { if (!document.hidden) markRead(currentConv()); });
    window.addEventListener("focus", () => markRead(currentConv()));
    $("leave").addEventListener("click", () => {
      leaving = true;
      send({ type: "logout" });
      saved.forget();
      everJoined = false;
      me = null;
      lastId = 0;
      liveFrom = 0;
      closeRoomForm();
      reset();
      showChat(false);
      setStatus("offline", "offline");
    });
    if (saved.name && saved.token) {  // a new tab, or a reload: join again without asking
      $("name").value = saved.name;
      open({ type: "hello", name: saved.name, token: saved.token });
    } else {
      showChat(false);
    }
  });
})();
