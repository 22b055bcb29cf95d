// The practice inbox: copy buttons and the live list (server-sent events). No inline script: the
// page's Content-Security-Policy is default-src 'self'. Items arrive rendered (and escaped) by the server.
"use strict";

function fallbackCopy(text) {
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.className = "offscreen";
  document.body.appendChild(area);
  area.select();
  let ok = false;
  try {
    ok = document.execCommand("copy");
  } catch (e) {
    ok = false;
  }
  document.body.removeChild(area);
  return ok ? Promise.resolve() : Promise.reject(new Error("copy refused"));
}

function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    return navigator.clipboard.writeText(text).catch(function () { return fallbackCopy(text); });
  }
  return fallbackCopy(text);
}

document.addEventListener("click", function (event) {
  const button = event.target.closest("button.copy");
  if (!button) return;
  const status = document.getElementById("copy-status");
  copyText(button.dataset.copy).then(function () {
    button.textContent = "Kopiert ✓";
    button.dataset.copied = "yes";
    if (status) status.textContent = button.dataset.label + " kopiert.";
    setTimeout(function () { button.textContent = "Kopieren"; }, 2000);
  }, function () {
    button.dataset.copied = "no";
    if (status) status.textContent = "Kopieren nicht möglich: bitte den Text markieren und mit Strg+C kopieren.";
  });
});

function fragment(html) {
  const template = document.createElement("template");
  template.innerHTML = html;  // rendered and escaped by the server
  return template.content.firstElementChild;
}

function place(inbox, node) {
  const old = document.getElementById(node.id);
  if (old) {
    old.replaceWith(node);
    return;
  }
  const later = Array.from(inbox.children).find(function (other) {
    return other.dataset.start > node.dataset.start;
  });
  inbox.insertBefore(node, later || null);
}

function refreshEmpty(inbox) {
  const empty = document.getElementById("empty");
  if (empty) empty.hidden = inbox.children.length > 0;
}

function startLive() {
  const inbox = document.getElementById("inbox");
  if (!inbox || !window.EventSource) return;
  const live = document.getElementById("live");
  const source = new EventSource(inbox.dataset.events);
  const say = function (text, state) {
    if (live) { live.textContent = text; live.dataset.state = state; }
  };
  source.addEventListener("sync", function (event) {
    const items = JSON.parse(event.data);
    const keep = new Set(items.map(function (item) { return "item-" + item.id; }));
    Array.from(inbox.children).forEach(function (node) { if (!keep.has(node.id)) node.remove(); });
    items.forEach(function (item) { place(inbox, fragment(item.html)); });
    refreshEmpty(inbox);
    say("live", "live");
  });
  source.addEventListener("item", function (event) {
    place(inbox, fragment(JSON.parse(event.data).html));
    refreshEmpty(inbox);
  });
  source.addEventListener("removed", function (event) {
    const node = document.getElementById("item-" + JSON.parse(event.data).id);
    if (node) node.remove();
    refreshEmpty(inbox);
  });
  source.addEventListener("expired", function () {
    source.close();
    say("Sitzung abgelaufen – bitte neu anmelden", "closed");
  });
  source.onerror = function () {
    if (source.readyState === EventSource.CLOSED) say("getrennt – bitte Seite neu laden", "closed");
    else say("Verbindung unterbrochen – verbinde neu …", "connecting");
  };
}

document.addEventListener("DOMContentLoaded", startLive);
