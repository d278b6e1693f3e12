// Sekimori console: live view of a PC's screen (see console/routes/live.py).
// Text messages carry the session's state; binary messages one picture each, after a
// 14-byte header (big-endian): capture µs (u64), width, height (u16), monitor, format (u8).
(function () {
  "use strict";
  var root = document.getElementById("live");
  if (!root) return;
  var canvas = document.getElementById("live-canvas");
  var ctx = canvas.getContext("2d");
  var stateEl = document.getElementById("live-state");
  var reasonEl = document.getElementById("live-reason");
  var framesEl = document.getElementById("live-frames");
  var fpsEl = document.getElementById("live-fps");
  var startBtn = document.getElementById("live-start");
  var stopBtn = document.getElementById("live-stop");
  var consent = document.getElementById("live-consent");
  var record = document.getElementById("live-record");
  var types = ["image/jpeg", "image/webp", "image/png"];
  var socket = null;
  var frames = 0;
  var recent = [];
  var drawing = false;

  function show(state, reason) {
    stateEl.dataset.state = state;
    stateEl.textContent = root.dataset["msg" + state.charAt(0).toUpperCase() + state.slice(1)] || state;
    reasonEl.textContent = reason || "";
  }

  function picture(buffer) {
    var view = new DataView(buffer);
    var width = view.getUint16(8), height = view.getUint16(10);
    var type = types[view.getUint8(13)] || "image/jpeg";
    frames += 1;
    var now = performance.now();
    recent.push(now);
    while (recent.length && now - recent[0] > 2000) recent.shift();
    framesEl.textContent = String(frames);
    fpsEl.textContent = (recent.length / 2).toFixed(1);
    root.dataset.frames = String(frames);
    if (drawing) return; // the newest picture wins; a slow canvas skips frames
    drawing = true;
    createImageBitmap(new Blob([buffer.slice(14)], { type: type })).then(function (bitmap) {
      if (canvas.width !== width || canvas.height !== height) {
        canvas.width = width;
        canvas.height = height;
      }
      ctx.drawImage(bitmap, 0, 0);
      bitmap.close();
      drawing = false;
    }, function () { drawing = false; });
  }

  function finish() {
    startBtn.disabled = false;
    stopBtn.disabled = true;
    socket = null;
  }

  function start() {
    if (socket) return;
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var query = [];
    if (consent.checked) query.push("consent=1");
    if (record.checked) query.push("record=1");
    var url = scheme + location.host + root.dataset.ws + (query.length ? "?" + query.join("&") : "");
    frames = 0;
    recent = [];
    show("connecting");
    socket = new WebSocket(url);
    socket.binaryType = "arraybuffer";
    startBtn.disabled = true;
    stopBtn.disabled = false;
    socket.onmessage = function (event) {
      if (typeof event.data === "string") {
        var message = JSON.parse(event.data);
        show(message.state, message.reason);
      } else {
        picture(event.data);
      }
    };
    socket.onclose = function () {
      if (["refused", "stopped", "unavailable"].indexOf(stateEl.dataset.state) < 0) show("closed");
      finish();
    };
  }

  document.getElementById("live-form").addEventListener("submit", function (event) {
    event.preventDefault();
    start();
  });
  stopBtn.addEventListener("click", function () {
    if (socket) socket.close();
  });
})();
