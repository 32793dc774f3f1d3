// The review page: signs the reviewer in (Cognito managed login, authorization code with PKCE), lists the
// photos leased to them, shows one at a time and decides by click or key.
// Everything from the server is set as text (textContent), never as markup: object keys are user input.
// The access token lives in this tab's sessionStorage only; the API takes it as a bearer token, so no cookie
// is ever sent and another site cannot make the browser decide anything.
"use strict";

const $ = (id) => document.getElementById(id);
const meta = (name) => document.querySelector(`meta[name="${name}"]`).content;
const AUTH = meta("auth-url");
const CLIENT_ID = meta("client-id");
const SCOPE = `openid ${meta("scope")}`;
const HERE = `${location.origin}${location.pathname}`;  // the app client's callback and sign-out URL
const API = new URL("reviews", HERE.replace(/\/review$/, "/")).href;
const state = { images: [], current: null, busy: false, timer: null };
const UNUSABLE = () => $("unusable-label").content.textContent.trim();
const PREVIEW_NOTES = {
  "": "The preview is being made; it shows within a few seconds.",
  deleted: "The photo was deleted from the bucket; you can still decide, e.g. unusable.",
  unreadable: "The file is not a readable image; you can still decide, e.g. unusable.",
};

function base64url(bytes) {
  return btoa(String.fromCharCode(...new Uint8Array(bytes))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

async function signIn() {
  const verifier = base64url(crypto.getRandomValues(new Uint8Array(32)));
  const nonce = base64url(crypto.getRandomValues(new Uint8Array(16)));
  sessionStorage.setItem("pkce", JSON.stringify({ verifier, nonce }));
  const challenge = base64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  const query = new URLSearchParams({ response_type: "code", client_id: CLIENT_ID, redirect_uri: HERE, scope: SCOPE,
    state: nonce, code_challenge: challenge, code_challenge_method: "S256" });
  location.assign(`${AUTH}/oauth2/authorize?${query}`);
}

function signOut() {
  sessionStorage.clear();
  location.assign(`${AUTH}/logout?${new URLSearchParams({ client_id: CLIENT_ID, logout_uri: HERE })}`);
}

// Back from managed login with ?code=...&state=...: the code and the verifier buy the tokens.
async function finishSignIn(params) {
  history.replaceState(null, "", HERE);  // the code is single-use; keep it out of the history
  const saved = JSON.parse(sessionStorage.getItem("pkce") || "{}");
  sessionStorage.removeItem("pkce");
  if (params.get("error")) throw new Error(`sign-in failed: ${params.get("error_description") || params.get("error")}`);
  if (!saved.nonce || params.get("state") !== saved.nonce) throw new Error("sign-in failed: the answer is not for this page");
  const response = await fetch(`${AUTH}/oauth2/token`, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ grant_type: "authorization_code", client_id: CLIENT_ID, code: params.get("code"),
      redirect_uri: HERE, code_verifier: saved.verifier }),
  });
  const body = await response.json();
  if (!response.ok) throw new Error(`sign-in failed: ${body.error || response.status}`);
  sessionStorage.setItem("token", body.access_token);
  sessionStorage.setItem("expires", String(Date.now() + body.expires_in * 1000));
}

function token() {
  const value = sessionStorage.getItem("token");
  if (value && Date.now() < Number(sessionStorage.getItem("expires") || 0)) return value;
  sessionStorage.removeItem("token");
  return null;
}

function signedOut(message) {
  state.images = [];
  state.current = null;
  clearInterval(state.timer);
  $("who").textContent = "";
  $("sign-in").hidden = false;
  $("sign-out").hidden = true;
  $("summary").textContent = "";
  $("waiting").hidden = true;
  say(message);
  render();
}

async function call(method, url, body) {
  const response = await fetch(url, {
    method,
    headers: { Authorization: `Bearer ${token()}`, Accept: "application/json",
      ...(body ? { "Content-Type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  let answer = {};
  try { answer = await response.json(); } catch (_) { /* API Gateway's own answers may be bare */ }
  return { status: response.status, ok: response.ok, body: answer };
}

function age(seconds) {
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86400).toFixed(1)} days`;
}

function labels(image) { return [...image.classes, UNUSABLE()]; }

// A key per label: its first letter unless taken, and its position (1, 2, 3).
function shortcuts(image) {
  const keys = {};
  labels(image).forEach((label, n) => {
    const letter = label[0].toLowerCase();
    if (!(letter in keys) && !"jkr".includes(letter)) keys[letter] = label;
    keys[String(n + 1)] = label;
  });
  return keys;
}

function say(text) { $("status").textContent = text; }

async function load() {
  if (!token()) { signedOut("Signed out: sign in to see the photos waiting for you."); return; }
  const answer = await call("GET", API);
  if (answer.status === 401) { signedOut("Your sign-in has ended: sign in again."); return; }
  if (answer.status === 403) {
    state.images = [];
    say(answer.body.message || "You are signed in, but not as a reviewer.");
    $("summary").textContent = "";
    $("waiting").hidden = true;
    clearInterval(state.timer);
    render();
    return;
  }
  if (!answer.ok) { say(answer.body.message || `error ${answer.status}`); return; }
  $("who").textContent = `Signed in as ${answer.body.reviewer}`;
  $("waiting").hidden = false;
  state.images = answer.body.items;
  const others = Math.max(0, answer.body.waiting - state.images.length);
  $("summary").textContent = `${state.images.length} on your list` + (others ? `, about ${others} more waiting` : "");
  if (!state.current || !state.images.some((i) => i.id === state.current)) {
    state.current = state.images.length ? state.images[0].id : null;
  }
  render();
}

function render() {
  const list = $("queue");
  list.replaceChildren(...state.images.map((image) => {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = `${image.key} (${image.reason === "audit" ? "audit" : "unsure"}, ${age(image.waited_seconds)})`;
    button.addEventListener("click", () => { state.current = image.id; render(); });
    item.append(button);
    if (image.id === state.current) item.setAttribute("aria-current", "true");
    return item;
  }));
  const image = state.images.find((i) => i.id === state.current);
  $("current").hidden = !image;
  $("empty").hidden = Boolean(image) || !token() || $("status").textContent.includes("not a reviewer");
  if (!image) return;
  const photo = $("photo");
  // A new photo, or its preview made since: show it (each listing gives a fresh URL; keep the one showing).
  if (photo.dataset.id !== image.id || Boolean(image.image_url) !== photo.hasAttribute("src")) {
    photo.dataset.id = image.id;
    if (image.image_url) photo.src = image.image_url; else photo.removeAttribute("src");
    $("photo-note").textContent = "";
  }
  if (!image.image_url) $("photo-note").textContent = PREVIEW_NOTES[image.preview] || PREVIEW_NOTES.unreadable;
  $("key").textContent = image.key;
  const badge = document.createElement("span");
  badge.className = image.reason === "audit" ? "badge audit" : "badge";
  badge.textContent = image.reason === "audit" ? "audit sample (already dispatched)" : "below the confidence threshold";
  $("reason").replaceChildren(badge);
  $("model").textContent = `${image.label} at ${(image.confidence * 100).toFixed(1)} %`;
  $("probabilities").textContent = Object.entries(image.probabilities)
    .map(([name, p]) => `${name} ${(p * 100).toFixed(1)} %`).join(", ");
  $("uploaded").textContent = image.uploaded_at || "-";
  $("waited").textContent = age(image.waited_seconds);
  const keys = shortcuts(image);
  $("decide").replaceChildren(...labels(image).map((label) => {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.label = label;
    const key = Object.keys(keys).find((k) => keys[k] === label && isNaN(Number(k)));
    button.textContent = label === UNUSABLE() ? "Not a vehicle / unusable" : label[0].toUpperCase() + label.slice(1);
    if (key) button.setAttribute("aria-keyshortcuts", key);
    button.addEventListener("click", () => decide(label));
    return button;
  }));
  $("key-help").textContent = Object.entries(keys).filter(([k]) => isNaN(Number(k)))
    .map(([k, label]) => `${k} ${label}`).join(", ");
}

async function decide(label) {
  const image = state.images.find((i) => i.id === state.current);
  if (!image || state.busy) return;
  state.busy = true;
  try {
    const answer = await call("POST", `${API}/${encodeURIComponent(image.id)}`, { label });
    if (answer.status === 401) { signedOut("Your sign-in has ended: sign in again."); return; }
    say(answer.ok ? `${answer.body.key}: ${answer.body.human_label} (${answer.body.outcome})`
      : `${image.key}: ${answer.body.message || `error ${answer.status}`}`);
    if (answer.ok || answer.status === 409) {
      const at = state.images.findIndex((i) => i.id === image.id);
      state.images.splice(at, 1);
      state.current = state.images.length ? state.images[Math.min(at, state.images.length - 1)].id : null;
      render();  // at once: a key pressed next must decide the photo on screen, not one not yet shown
    }
  } catch (error) {
    say(`${image.key}: not sent (${error.message}); try again`);
  } finally {
    state.busy = false;
  }
  await load();
}

function move(step) {
  const at = state.images.findIndex((i) => i.id === state.current);
  if (at < 0) return;
  state.current = state.images[Math.max(0, Math.min(state.images.length - 1, at + step))].id;
  render();
}

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const image = state.images.find((i) => i.id === state.current);
  const key = event.key.toLowerCase();
  if (key === "j" || key === "arrowdown") { move(1); event.preventDefault(); }
  else if (key === "k" || key === "arrowup") { move(-1); event.preventDefault(); }
  else if (key === "r") { load(); event.preventDefault(); }
  else if (image && key in shortcuts(image)) { decide(shortcuts(image)[key]); event.preventDefault(); }
});

document.addEventListener("DOMContentLoaded", async () => {
  $("sign-in").addEventListener("click", signIn);
  $("sign-out").addEventListener("click", signOut);
  $("photo").addEventListener("error", () => { $("photo-note").textContent = "The photo cannot be shown; you can still decide."; });
  const params = new URLSearchParams(location.search);
  if (params.has("code") || params.has("error")) {
    try { await finishSignIn(params); } catch (error) { signedOut(error.message); return; }
  }
  if (!token()) { signedOut("Signed out: sign in to see the photos waiting for you."); return; }
  $("sign-in").hidden = true;
  $("sign-out").hidden = false;
  await load();
  state.timer = setInterval(load, 10000);
});
