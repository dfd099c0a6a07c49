// papo's browser client: no build step, no dependencies. Speaks papo.v1 (docs/protocol.md).
// Every text that comes from the server is put on the page with textContent, never as HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const WS_URL = location.origin.replace(/^http/, "ws") + "/ws";
  const MAX_BACKOFF = 30;

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
  let lastId = 0;             // newest message id seen: where a resume starts
  let leaving = false;
  let attempt = 0;
  let retryTimer = null;
  let pendingHello = null;    // the hello to send when the socket opens
  const seen = new Set();     // ids of messages on the page (no duplicates)
  const outbox = new Map();   // cid -> {text, to, el}: sent or to send, not yet acknowledged
  const cidPrefix = Math.random().toString(36).slice(2, 10) + "-";
  let cidCount = 0;

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

  function append(el) {
    const log = $("log");
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 40;
    log.appendChild(el);
    if (atBottom) log.scrollTop = log.scrollHeight;
  }

  function notice(text, isError) {
    const p = document.createElement("p");
    p.className = "notice" + (isError ? " error" : "");
    p.textContent = text;
    append(p);
  }

  function timeOf(ts) {
    const d = ts ? new Date(ts) : new Date();
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function same(a, b) {
    return a !== null && b !== null && a.normalize("NFKC").toLowerCase() === b.normalize("NFKC").toLowerCase();
  }

  function messageElement(m) {
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
    p.appendChild(document.createTextNode(m.text));
    if (m.id) p.dataset.id = String(m.id);
    return p;
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

  function handle(ev) {
    switch (ev.type) {
      case "welcome": {
        me = ev.name;
        if (ev.token) saved.keep(ev.name, ev.token);
        if (!everJoined) lastId = Math.max(lastId, ev.last_id || 0);
        everJoined = true;
        joined = true;
        attempt = 0;
        $("join-error").textContent = "";
        setStatus("connected", "connected as " + me);
        showChat(true);
        send({ type: "who" });
        for (const [cid, m] of outbox) send(sayEvent(cid, m));  // unacknowledged: again, same cid
        break;
      }
      case "message": {
        if (seen.has(ev.id)) break;
        seen.add(ev.id);
        lastId = Math.max(lastId, ev.id);
        const mine = ev.cid && outbox.get(ev.cid);
        if (mine) { confirm(ev.cid, ev.id); break; }  // ours, stored before its ack was lost
        append(messageElement(ev));
        break;
      }
      case "ack": {
        if (ev.cid && outbox.has(ev.cid)) confirm(ev.cid, ev.id);
        seen.add(ev.id);
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
        if (ev.cid && outbox.has(ev.cid)) {
          const m = outbox.get(ev.cid);
          m.el.remove();
          outbox.delete(ev.cid);
        }
        notice("error: " + ev.message, true);
        break;
      }
      case "presence":
        notice(ev.name + (ev.event === "join" ? " joined" : " left"));
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

  function confirm(cid, id) {
    const m = outbox.get(cid);
    outbox.delete(cid);
    m.el.classList.remove("pending");
    m.el.dataset.id = String(id);
    seen.add(id);
    lastId = Math.max(lastId, id);
  }

  function sayEvent(cid, m) {
    const ev = { type: "say", text: m.text, cid };
    if (m.to) ev.to = m.to;
    return ev;
  }

  // ------------------------------------------------------------------ input

  function submit(line) {
    const text = line.trim();
    if (!text) return;
    if (text === "/who") { if (!send({ type: "who" })) notice("not connected right now", true); return; }
    let to = null;
    let body = line;
    const pm = /^\/msg\s+(\S+)\s+([\s\S]+)$/.exec(text);
    if (pm) { to = pm[1]; body = pm[2]; }
    else if (text.startsWith("/msg")) { notice("usage: /msg NAME text", true); return; }
    else if (text.startsWith("//")) body = text.slice(1);
    else if (text.startsWith("/")) { notice("commands here: /msg NAME text, /who", true); return; }
    const cid = cidPrefix + (++cidCount);
    const el = messageElement({ from: me, text: body, to, ts: null });
    el.classList.add("pending", "own");
    append(el);
    const m = { text: body, to, el };
    outbox.set(cid, m);
    if (joined) send(sayEvent(cid, m));  // otherwise: sent after the reconnect
  }

  document.addEventListener("DOMContentLoaded", () => {
    for (const el of document.querySelectorAll(".ws-url")) el.textContent = WS_URL;
    $("join").addEventListener("submit", (e) => {
      e.preventDefault();
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
      const input = $("message");
      submit(input.value);
      input.value = "";
      input.focus();
    });
    $("leave").addEventListener("click", () => {
      leaving = true;
      send({ type: "logout" });
      saved.forget();
      everJoined = false;
      me = null;
      $("log").replaceChildren();
      seen.clear();
      outbox.clear();
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
