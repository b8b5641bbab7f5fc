// The model page: copy buttons for the pull commands, and the live status while a model
// is queued or verifying (polls .../status every 2 s; reloads once a verdict is in).
"use strict";

(function () {
  function copy(button) {
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source || !navigator.clipboard) {
      button.textContent = "Select and copy";
      return;
    }
    navigator.clipboard.writeText(source.textContent.trim()).then(function () {
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = "Copy"; }, 2000);
    }, function () {
      button.textContent = "Copy failed";
    });
  }

  document.querySelectorAll("button.copy").forEach(function (button) {
    button.addEventListener("click", function () { copy(button); });
  });

  var region = document.getElementById("status");
  if (!region || region.getAttribute("data-live") !== "true") {
    return;
  }
  var url = region.getAttribute("data-status-url");

  function plural(n, word) { return n + " " + word + (n === 1 ? "" : "s"); }

  function queueText(state) {
    var job = state.job;
    if (!job) { return ""; }
    if (job.status === "running") {
      return "Verifying now" + (job.worker ? " on " + job.worker : "") + " (attempt " +
        job.attempts + " of " + job.max_attempts + ").";
    }
    if (job.status !== "queued") { return ""; }
    var text = "Waiting in the queue: " +
      (typeof job.ahead === "number" ? plural(job.ahead, "job") : "unknown jobs") + " ahead.";
    var workers = state.workers;
    if (workers) {
      text += workers.present ? " " + plural(workers.present, "worker") + " present, " +
        workers.busy + " busy." : " No worker is running: it starts when one does.";
    }
    return text;
  }

  function show(state) {
    var badge = document.getElementById("status-badge");
    var reason = document.getElementById("status-reason");
    var queue = document.getElementById("status-queue");
    if (badge && badge.textContent !== state.status) {
      badge.textContent = state.status;
      badge.className = "badge status-" + state.status;
    }
    if (reason) { reason.textContent = state.reason || ""; }
    if (queue) {
      var text = queueText(state);
      if (queue.textContent.trim() !== text) { queue.textContent = text; }
    }
  }

  function poll() {
    fetch(url, {headers: {"Accept": "application/json"}, credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (state) {
        if (!state) { setTimeout(poll, 2000); return; }
        show(state);
        if (state.status === "ready" || state.status === "failed") {
          window.location.reload();
          return;
        }
        setTimeout(poll, 2000);
      }, function () { setTimeout(poll, 2000); });
  }

  setTimeout(poll, 2000);
})();
