// Sekimori console: live view of a PC's screen (see console/routes/live.py).
// Text messages carry the session's state; binary messages one picture each, after a
// 14-byte header (big-endian): capture µs (u64), width, height (u16), monitor, format (u8).
// Remote control: "Request control" sends "control" and opens the signing flow (C1's
// window.SekimoriActions.requestAction when the page has it, else the action page in a
// new tab); once the server says "ready"/"granted", keyboard and mouse on the picture
// are sent as JSON lists of input events (sekimori/protocol/live_input.py), pointer
// moves at most every 50 ms, everything batched every 30 ms.
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
  var controlBtn = document.getElementById("live-control");
  var controlEl = document.getElementById("live-control-state");
  var controlReasonEl = document.getElementById("live-control-reason");
  var controlling = false;
  var monitor = 1;
  var queue = [];
  var flushTimer = null;
  var pendingMove = null;
  var lastMove = 0;
  var MOVE_EVERY_MS = 50;
  var FLUSH_EVERY_MS = 30;
  var MAX_EVENTS = 64;
  var NAMED = {
    Enter: "Return", Backspace: "BackSpace", Tab: "Tab", Escape: "Escape", " ": "space",
    ArrowLeft: "Left", ArrowRight: "Right", ArrowUp: "Up", ArrowDown: "Down",
    Shift: "Shift_L", Control: "Control_L", Alt: "Alt_L", Meta: "Super_L",
    AltGraph: "ISO_Level3_Shift", CapsLock: "Caps_Lock", Delete: "Delete", Insert: "Insert",
    Home: "Home", End: "End", PageUp: "Prior", PageDown: "Next", ContextMenu: "Menu"
  };
  var PUNCT = {
    "!": "exclam", "\"": "quotedbl", "#": "numbersign", "$": "dollar", "%": "percent",
    "&": "ampersand", "'": "apostrophe", "(": "parenleft", ")": "parenright", "*": "asterisk",
    "+": "plus", ",": "comma", "-": "minus", ".": "period", "/": "slash", ":": "colon",
    ";": "semicolon", "<": "less", "=": "equal", ">": "greater", "?": "question", "@": "at",
    "[": "bracketleft", "\\": "backslash", "]": "bracketright", "^": "asciicircum",
    "_": "underscore", "`": "grave", "{": "braceleft", "|": "bar", "}": "braceright",
    "~": "asciitilde"
  };

  function keysym(key) {
    if (NAMED[key]) return NAMED[key];
    if (PUNCT[key]) return PUNCT[key];
    if (/^[A-Za-z0-9]$/.test(key)) return key;
    if (/^F([1-9]|1[0-9]|2[0-4])$/.test(key)) return key;
    return null; // not on a keyboard map by name: dropped
  }

  function showControl(state, reason) {
    if (!controlEl) return;
    controlEl.dataset.control = state;
    var key = "msgControl" + state.charAt(0).toUpperCase() + state.slice(1);
    controlEl.textContent = root.dataset[key] || state;
    controlReasonEl.textContent = reason || "";
  }

  function flush() {
    flushTimer = null;
    if (pendingMove) {
      queue.push(pendingMove);
      pendingMove = null;
      lastMove = performance.now();
    }
    if (!queue.length || !socket || socket.readyState !== 1 || !controlling) {
      queue = [];
      return;
    }
    while (queue.length) socket.send(JSON.stringify(queue.splice(0, MAX_EVENTS)));
  }

  function send(event) {
    if (!controlling) return;
    if (event.k === "move") {
      pendingMove = event;
      if (performance.now() - lastMove < MOVE_EVERY_MS && !flushTimer) {
        flushTimer = setTimeout(flush, MOVE_EVERY_MS);
      } else if (!flushTimer) {
        flushTimer = setTimeout(flush, 0);
      }
      return;
    }
    if (pendingMove) { queue.push(pendingMove); pendingMove = null; lastMove = performance.now(); }
    queue.push(event);
    if (!flushTimer) flushTimer = setTimeout(flush, FLUSH_EVERY_MS);
  }

  function point(event) {
    var rect = canvas.getBoundingClientRect();
    var x = Math.round((event.clientX - rect.left) * canvas.width / rect.width);
    var y = Math.round((event.clientY - rect.top) * canvas.height / rect.height);
    return {
      k: "move", monitor: monitor,
      x: Math.max(0, Math.min(canvas.width - 1, x)),
      y: Math.max(0, Math.min(canvas.height - 1, y))
    };
  }

  function setControlling(on) {
    controlling = on;
    canvas.classList.toggle("live-controlled", on);
    canvas.style.outline = on ? "3px solid #e07000" : "";
    if (on) canvas.focus();
  }

  function show(state, reason) {
    stateEl.dataset.state = state;
    stateEl.textContent = root.dataset["msg" + state.charAt(0).toUpperCase() + state.slice(1)] || state;
    reasonEl.textContent = reason || "";
  }

  function picture(buffer) {
    var view = new DataView(buffer);
    var width = view.getUint16(8), height = view.getUint16(10);
    var type = types[view.getUint8(13)] || "image/jpeg";
    monitor = view.getUint8(12) || 1;
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
    if (controlBtn) controlBtn.disabled = true;
    if (controlling) showControl("ended", "");
    setControlling(false);
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
        if (message.control) {
          showControl(message.control, message.reason);
          if (message.control === "ready" || message.control === "granted") setControlling(true);
          if (message.control === "ended" || message.control === "none") setControlling(false);
          return;
        }
        show(message.state, message.reason);
        if (controlBtn) controlBtn.disabled = message.state !== "started";
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

  if (controlBtn) {
    controlBtn.addEventListener("click", function () {
      if (!socket || socket.readyState !== 1) return;
      socket.send("control");
      showControl("asked", "");
      var actions = window.SekimoriActions;
      if (actions && typeof actions.requestAction === "function") {
        actions.requestAction({ action: "remote_control", devices: [root.dataset.device] });
      } else {
        window.open(root.dataset.controlUrl, "_blank", "noopener");
      }
    });
    canvas.addEventListener("mousemove", function (event) {
      if (controlling) send(point(event));
    });
    canvas.addEventListener("mousedown", function (event) {
      if (!controlling) return;
      event.preventDefault();
      canvas.focus();
      send(point(event));
      send({ k: "button", button: [1, 2, 3][event.button] || 1, down: true });
    });
    canvas.addEventListener("mouseup", function (event) {
      if (!controlling) return;
      event.preventDefault();
      send(point(event));
      send({ k: "button", button: [1, 2, 3][event.button] || 1, down: false });
    });
    canvas.addEventListener("contextmenu", function (event) {
      if (controlling) event.preventDefault();
    });
    canvas.addEventListener("wheel", function (event) {
      if (!controlling) return;
      event.preventDefault();
      var dy = Math.max(-10, Math.min(10, Math.round(event.deltaY / 100) || Math.sign(event.deltaY)));
      var dx = Math.max(-10, Math.min(10, Math.round(event.deltaX / 100) || Math.sign(event.deltaX)));
      if (dx || dy) send({ k: "wheel", dx: dx, dy: dy });
    }, { passive: false });
    function key(down) {
      return function (event) {
        if (!controlling) return;
        var name = keysym(event.key);
        if (!name) return;
        event.preventDefault();
        send({ k: "key", keysym: name, down: down });
      };
    }
    canvas.addEventListener("keydown", key(true));
    canvas.addEventListener("keyup", key(false));
  }
})();
