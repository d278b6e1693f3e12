// Sekimori console: the little script the pages need (CSP allows no inline script).
// Charts: <canvas data-chart="ID"> with <script type="application/json" id="ID">
// {"type": "bar", "labels": [...], "datasets": [{"label": "...", "data": [...]}]}.
(function () {
  "use strict";
  function drawCharts(root) {
    if (typeof Chart === "undefined") return;
    root.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      if (canvas.dataset.drawn) return;
      var source = document.getElementById(canvas.dataset.chart);
      if (!source) return;
      var spec = JSON.parse(source.textContent);
      canvas.dataset.drawn = "1";
      new Chart(canvas, {
        type: spec.type || "bar",
        data: { labels: spec.labels, datasets: spec.datasets },
        options: {
          responsive: true, maintainAspectRatio: false, animation: false,
          indexAxis: spec.horizontal ? "y" : "x",
          plugins: { legend: { display: spec.datasets.length > 1 } },
          scales: spec.type === "doughnut" ? {} : { x: { stacked: !!spec.stacked }, y: { stacked: !!spec.stacked, beginAtZero: true } }
        }
      });
    });
  }
  function bind(root) {
    root.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
      select.addEventListener("change", function () { select.form.submit(); });
    });
    root.querySelectorAll("[data-copy]").forEach(function (button) {
      button.addEventListener("click", function () {
        var target = document.getElementById(button.dataset.copy);
        if (target && navigator.clipboard) navigator.clipboard.writeText(target.textContent.trim());
      });
    });
    root.querySelectorAll("button[data-thumbnails]").forEach(function (button) {
      button.addEventListener("click", function () {
        document.querySelectorAll("img[data-thumbnail]").forEach(function (img) {
          img.hidden = false;
          img.src = img.dataset.thumbnail + "?t=" + Date.now();
        });
      });
    });
    drawCharts(root);
  }
  // A region marked data-swap-errors shows 400 answers too (a filter's error message).
  document.addEventListener("htmx:beforeSwap", function (e) {
    if (e.detail.xhr.status === 400 && e.detail.target && e.detail.target.hasAttribute("data-swap-errors")) {
      e.detail.shouldSwap = true;
      e.detail.isError = false;
    }
  });
  document.addEventListener("DOMContentLoaded", function () { bind(document); });
  document.addEventListener("htmx:afterSettle", function (e) { bind(e.target); });
})();
