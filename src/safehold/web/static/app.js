// Progress of a long operation (rollback, export, drill): poll the job until it ends,
// then reload so that the server renders the outcome. The only script on the site.
"use strict";
(function () {
  var box = document.querySelector("[data-job]");
  if (!box || box.getAttribute("data-state") !== "running") return;
  var id = box.getAttribute("data-job");
  function field(name) { return box.querySelector('[data-field="' + name + '"]'); }
  function poll() {
    fetch("/jobs/" + encodeURIComponent(id) + ".json", { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (job) {
        field("state").textContent = job.state;
        field("message").textContent = job.message;
        field("count").textContent = job.done + "/" + job.total;
        var bar = field("bar");
        bar.max = job.total || 1;
        bar.value = job.total ? job.done : 0;
        if (job.state === "running") { setTimeout(poll, 500); } else { location.reload(); }
      })
      .catch(function () { setTimeout(poll, 2000); });
  }
  setTimeout(poll, 300);
})();
