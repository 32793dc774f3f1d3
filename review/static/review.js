// The review page: keeps the waiting list current, shows one image at a time, decides by click or key.
// Everything from the server is set as text (textContent), never as markup: object keys are user input.
"use strict";

const state = { images: [], current: null, busy: false };
const $ = (id) => document.getElementById(id);
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const UNUSABLE = $("unusable-label").content.textContent.trim();

function age(seconds) {
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86400).toFixed(1)} days`;
}

function labels(image) { return [...image.classes, UNUSABLE]; }

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

async function load(fresh = false) {
  const response = await fetch(`/api/waiting${fresh ? "?fresh=1" : ""}`, { headers: { Accept: "application/json" } });
  const body = await response.json();
  if (!response.ok) { say(body.error || `error ${response.status}`); return; }
  state.images = body.images;
  const more = body.elsewhere ? `, ${body.elsewhere} more held elsewhere or not yet received` : "";
  $("summary").textContent = body.count
    ? `${body.count} waiting, oldest ${age(body.oldest_seconds)}${more}`
    : `Nothing waiting${more}`;
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
  $("empty").hidden = Boolean(image);
  if (!image) return;
  const photo = $("photo");
  if (photo.dataset.id !== image.id) {
    photo.dataset.id = image.id;
    $("photo-note").textContent = "";
    photo.src = `/images/${encodeURIComponent(image.id)}`;
  }
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
    button.textContent = label === UNUSABLE ? "Not a vehicle / unusable" : label[0].toUpperCase() + label.slice(1);
    if (key) button.setAttribute("aria-keyshortcuts", key);
    button.addEventListener("click", () => decide(label));
    return button;
  }));
  $("key-help").textContent = Object.entries(keys).filter(([k]) => isNaN(Number(k)))
    .map(([k, label]) => `${k} ${label}`).join(", ");
}

async function decide(label) {
  const image = state.images.find((i) => i.id === state.current);
  const reviewer = $("reviewer").value.trim();
  if (!image || state.busy) return;
  if (!reviewer) { say("Enter your name as reviewer first."); $("reviewer").focus(); return; }
  localStorage.setItem("reviewer", reviewer);
  state.busy = true;
  try {
    const response = await fetch("/api/decisions", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
      body: JSON.stringify({ id: image.id, label, reviewer }),
    });
    const body = await response.json();
    say(response.ok ? `${body.key}: ${body.human_label} (${body.outcome})` : `${image.key}: ${body.error}`);
    if (response.ok || response.status === 409) {
      const at = state.images.findIndex((i) => i.id === image.id);
      state.images.splice(at, 1);
      state.current = state.images.length ? state.images[Math.min(at, state.images.length - 1)].id : null;
      render();  // at once: a key pressed next must decide the image on screen, not one not yet shown
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
  if (event.target instanceof HTMLInputElement || event.ctrlKey || event.metaKey || event.altKey) return;
  const image = state.images.find((i) => i.id === state.current);
  const key = event.key.toLowerCase();
  if (key === "j" || key === "arrowdown") { move(1); event.preventDefault(); }
  else if (key === "k" || key === "arrowup") { move(-1); event.preventDefault(); }
  else if (key === "r") { load(true); event.preventDefault(); }
  else if (image && key in shortcuts(image)) { decide(shortcuts(image)[key]); event.preventDefault(); }
});

document.addEventListener("DOMContentLoaded", () => {
  const saved = localStorage.getItem("reviewer");
  if (saved) $("reviewer").value = saved;
  // Enter in the name field hands the keyboard back to deciding.
  $("reviewer").addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === "Escape") { localStorage.setItem("reviewer", $("reviewer").value.trim()); $("reviewer").blur(); }
  });
  $("photo").addEventListener("error", () => {
    $("photo-note").textContent = "The image cannot be shown (deleted from the bucket, or not an image); you can still decide, e.g. unusable.";
  });
  load(true);
  setInterval(load, 5000);
});
