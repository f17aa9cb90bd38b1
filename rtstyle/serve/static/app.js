// rtstyle's browser page: camera -> WebSocket (one JPEG in flight) -> translated JPEG shown with fps and round trip.
// Plain JS, no build step. The token in this page's address is passed on to the socket and the stream.
"use strict";
const $ = (id) => document.getElementById(id);
const token = new URLSearchParams(location.search).get("token");
const withToken = (path) => path + (token ? "?token=" + encodeURIComponent(token) : "");
const MAX_WIDTH = 640; // frames are sent at most this wide: the server translates at --size anyway
const RESEND_MS = 2000; // a frame without an answer (refused, dropped) is given up on after this

let ws, sentAt = 0, inFlight = false, frames = 0, fps = 0, lastShown = 0, streaming = false;
const canvas = document.createElement("canvas");
const video = $("camera"), shown = $("translated");

function say(text) { $("message").textContent = text || ""; }

function connect() {
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  ws = new WebSocket(scheme + location.host + withToken("/ws"));
  ws.binaryType = "blob";
  ws.onopen = () => { $("status").textContent = "connected"; };
  ws.onclose = (e) => { $("status").textContent = "disconnected" + (e.reason ? ": " + e.reason : ""); };
  ws.onmessage = (e) => (typeof e.data === "string" ? onText(JSON.parse(e.data)) : onFrame(e.data));
}

function onText(msg) {
  if (msg.type === "hello") {
    fill($("model"), msg.models, msg.settings.model);
    fill($("backend"), msg.backends, msg.settings.backend);
    $("mode").disabled = !msg.source;
    startCamera();
  } else if (msg.type === "result") {
    $("translate").textContent = msg.translate_ms.toFixed(0);
  } else if (msg.type === "error" || msg.type === "warning") {
    say(msg.message || msg.error);
    inFlight = false;
  } else if (msg.type === "settings") {
    say("");
  }
}

function onFrame(blob) {
  const now = performance.now();
  const url = URL.createObjectURL(blob);
  shown.onload = () => URL.revokeObjectURL(url);
  shown.src = url;
  $("rtt").textContent = (now - sentAt).toFixed(0);
  if (lastShown) fps = fps ? 0.9 * fps + 0.1 * (1000 / (now - lastShown)) : 1000 / (now - lastShown);
  lastShown = now;
  $("fps").textContent = fps.toFixed(1);
  $("frames").textContent = String(++frames);
  inFlight = false;
  sendFrame();
}

function fill(select, names, chosen) {
  select.innerHTML = "";
  for (const name of names) select.add(new Option(name, name, false, name === chosen));
}

async function startCamera() {
  if (streaming) return;
  try {
    video.srcObject = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
  } catch (e) {
    say("no camera: " + e.message + " (the server's source can still be viewed)");
    return;
  }
  streaming = true;
  video.onplaying = () => sendFrame();
  setInterval(() => { if (inFlight && performance.now() - sentAt > RESEND_MS) { inFlight = false; sendFrame(); } }, 500);
}

function sendFrame() {
  if (inFlight || !streaming || $("mode").value !== "camera" || ws.readyState !== WebSocket.OPEN) return;
  if (!video.videoWidth) return;
  const scale = Math.min(1, MAX_WIDTH / video.videoWidth);
  canvas.width = Math.round(video.videoWidth * scale);
  canvas.height = Math.round(video.videoHeight * scale);
  canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
  inFlight = true;
  canvas.toBlob((blob) => { sentAt = performance.now(); ws.send(blob); }, "image/jpeg", 0.85);
}

function sendSettings() {
  const size = $("size").value;
  const message = {
    type: "settings", model: $("model").value, backend: $("backend").value,
    size: size === "native" ? null : Number(size), side_by_side: $("side_by_side").checked,
    stabilize: $("stabilize").checked ? 0.93 : null,
  };
  if ($("mode").value === "source") message.target = "source";
  ws.send(JSON.stringify(message));
}

function setMode() {
  const source = $("mode").value === "source";
  // side by side: the server sends original | translated in one picture, so this page's own copy goes
  $("original-box").style.display = source || $("side_by_side").checked ? "none" : "";
  shown.onload = null;
  shown.src = source ? withToken("/stream.mjpg") : "";
  if (source) { sendSettings(); pollSourceStats(); } else { inFlight = false; sendFrame(); }
}

async function pollSourceStats() {
  while ($("mode").value === "source") {
    try {
      const stats = await (await fetch(withToken("/stats"))).json();
      if (stats.source) { $("fps").textContent = stats.source.fps.toFixed(1); $("frames").textContent = stats.source.frames; }
    } catch (e) { say("stats: " + e.message); }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

for (const id of ["model", "backend", "size", "stabilize"]) $(id).onchange = sendSettings;
$("side_by_side").onchange = () => {
  sendSettings();
  $("original-box").style.display = $("mode").value === "source" || $("side_by_side").checked ? "none" : "";
};
$("mode").onchange = setMode;
connect();
