// The screen timeline player (issue 6): step, play and scrub through the frames
// listed in the page's table. Only the frame shown is fetched (each one is audited).
(function () {
  "use strict";
  var PLAY_MS = 1000;
  function init() {
    var player = document.getElementById("screen-player");
    if (!player) return;
    var rows = Array.prototype.slice.call(document.querySelectorAll("tr[data-frame]"));
    var img = document.getElementById("screen-frame");
    var caption = document.getElementById("screen-caption");
    var position = document.getElementById("screen-position");
    var scrub = player.querySelector("[data-player=scrub]");
    var play = player.querySelector("[data-player=play]");
    var current = parseInt(player.dataset.current, 10) || 0;
    var timer = null;
    function show(i) {
      if (i < 0 || i >= rows.length) return false;
      rows[current].removeAttribute("aria-current");
      current = i;
      var row = rows[i];
      row.setAttribute("aria-current", "true");
      img.src = row.dataset.src;
      caption.textContent = row.dataset.caption;
      position.textContent = (i + 1) + " / " + rows.length;
      scrub.value = String(i);
      player.dataset.current = String(i);
      return true;
    }
    function stop() {
      if (timer !== null) { clearInterval(timer); timer = null; }
      play.textContent = play.dataset.labelPlay;
    }
    player.querySelector("[data-player=prev]").addEventListener("click", function () { stop(); show(current - 1); });
    player.querySelector("[data-player=next]").addEventListener("click", function () { stop(); show(current + 1); });
    scrub.addEventListener("input", function () { stop(); show(parseInt(scrub.value, 10)); });
    play.addEventListener("click", function () {
      if (timer !== null) { stop(); return; }
      if (current >= rows.length - 1) show(0);
      play.textContent = play.dataset.labelPause;
      timer = setInterval(function () { if (!show(current + 1)) stop(); }, PLAY_MS);
    });
    document.querySelectorAll("[data-player-goto]").forEach(function (link) {
      link.addEventListener("click", function (e) {
        e.preventDefault(); stop(); show(parseInt(link.dataset.playerGoto, 10));
        player.scrollIntoView();
      });
    });
    document.addEventListener("keydown", function (e) {
      if (e.target && (e.target.tagName === "INPUT" || e.target.tagName === "SELECT")) return;
      if (e.key === "ArrowLeft") { stop(); show(current - 1); }
      if (e.key === "ArrowRight") { stop(); show(current + 1); }
    });
  }
  document.addEventListener("DOMContentLoaded", init);
})();
