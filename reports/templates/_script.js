(function () {
  "use strict";
  var doc = document;
  doc.documentElement.className += " js";
  var bar = doc.getElementById("filters");
  if (bar) { bar.hidden = false; }
  var $ = function (id) { return doc.getElementById(id); };
  var all = function (sel, root) { return Array.prototype.slice.call((root || doc).querySelectorAll(sel)); };

  function has(list, value) { return (" " + (list || "") + " ").indexOf(" " + value + " ") >= 0; }

  function apply() {
    var server = $("f-server") ? $("f-server").value : "";
    var cls = $("f-class") ? $("f-class").value : "";
    var plat = $("f-platform") ? $("f-platform").value : "";
    var text = $("f-text") ? $("f-text").value.toLowerCase().trim() : "";
    all("[data-platform]").forEach(function (el) {
      if (el.tagName === "SECTION") { return; }
      el.hidden = !!plat && el.getAttribute("data-platform") !== plat;
    });
    var shown = 0;
    var table = doc.querySelector("table.matrix");
    if (table) { table.classList.toggle("filtering", !!(cls || text)); }
    all("table.matrix tbody tr.member").forEach(function (tr) {
      var okServer = !server || tr.getAttribute("data-server") === server;
      var any = false;
      all("td.cell", tr).forEach(function (td) {
        if (td.hidden) { return; }
        var match = (!cls || has(td.getAttribute("data-classes"), cls)) &&
          (!text || td.textContent.toLowerCase().indexOf(text) >= 0 ||
           tr.querySelector("th").textContent.toLowerCase().indexOf(text) >= 0);
        td.classList.toggle("dim", !match && !!(cls || text));
        if (match && !td.classList.contains("empty")) { any = true; }
      });
      tr.hidden = !okServer || ((cls || text) && !any);
      if (!tr.hidden) { shown += 1; }
    });
    all("table.matrix tbody.grp").forEach(function (tb) {
      tb.hidden = all("tr.member", tb).every(function (tr) { return tr.hidden; });
    });
    all(".cell-detail").forEach(function (sec) {
      var ok = (!server || sec.getAttribute("data-server") === server) &&
        (!plat || sec.getAttribute("data-platform") === plat) &&
        (!cls || has(sec.getAttribute("data-classes"), cls)) &&
        (!text || sec.textContent.toLowerCase().indexOf(text) >= 0);
      sec.hidden = !ok;
    });
    all(".chip[data-class]").forEach(function (chip) {
      chip.classList.toggle("active", !!cls && chip.getAttribute("data-class") === cls);
    });
    var out = $("f-shown");
    if (out) { out.textContent = shown + " of " + all("table.matrix tbody tr.member").length + " rows"; }
  }

  // initial filters from the query string: report.html?server=uvicorn&class=startup-failure&platform=win32
  if (window.URLSearchParams && location.search) {
    var params = new URLSearchParams(location.search);
    [["server", "f-server"], ["class", "f-class"], ["platform", "f-platform"], ["q", "f-text"]].forEach(function (p) {
      var el = $(p[1]);
      var value = params.get(p[0]);
      if (!el || value === null) { return; }
      if (el.tagName === "SELECT" && !el.querySelector('option[value="' + value.replace(/["\\]/g, "") + '"]')) {
        return;
      }
      el.value = value;
    });
  }
  ["f-server", "f-class", "f-platform"].forEach(function (id) {
    var el = $(id);
    if (el) { el.addEventListener("change", apply); }
  });
  if ($("f-text")) { $("f-text").addEventListener("input", apply); }
  if ($("f-reset")) {
    $("f-reset").addEventListener("click", function () {
      ["f-server", "f-class", "f-platform", "f-text"].forEach(function (id) { if ($(id)) { $(id).value = ""; } });
      apply();
    });
  }
  all(".chip[data-class]").forEach(function (chip) {
    chip.addEventListener("click", function () {
      var sel = $("f-class");
      if (!sel) { return; }
      var c = chip.getAttribute("data-class");
      sel.value = sel.value === c ? "" : c;
      apply();
    });
  });

  function copyText(text, button) {
    function done() {
      button.textContent = "Copied";
      button.classList.add("done");
      setTimeout(function () { button.textContent = "Copy"; button.classList.remove("done"); }, 1400);
    }
    function fallback() {
      var ta = doc.createElement("textarea");
      ta.value = text;
      ta.setAttribute("readonly", "");
      ta.style.position = "fixed";
      ta.style.opacity = "0";
      doc.body.appendChild(ta);
      ta.select();
      try { doc.execCommand("copy"); done(); } catch (e) { button.textContent = "Select + Ctrl-C"; }
      doc.body.removeChild(ta);
    }
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(text).then(done, fallback);
    } else {
      fallback();
    }
  }
  all("button.copy").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      var target = $(button.getAttribute("data-copy"));
      if (target) { copyText(target.textContent, button); }
    });
  });
  apply();
  // the drill-down a link points at: make sure it is visible (a filter may have hidden it) and in view
  function reveal() {
    var target = location.hash ? doc.getElementById(decodeURIComponent(location.hash.slice(1))) : null;
    if (target && (target.tagName === "SECTION" || target.tagName === "DETAILS")) {
      target.hidden = false;
      if (target.tagName === "DETAILS") { target.open = true; }
      target.scrollIntoView();
    }
  }
  // matrix groups: passing groups start folded (CSS, only with script); a button folds / unfolds each
  all("table.matrix tbody.grp").forEach(function (tb) {
    var button = tb.querySelector("button.toggle");
    if (!button) { return; }
    function show() {
      var folded = tb.classList.contains("collapsed");
      button.textContent = folded ? "\u25b8" : "\u25be";
      button.setAttribute("aria-expanded", folded ? "false" : "true");
    }
    button.hidden = false;
    button.addEventListener("click", function () { tb.classList.toggle("collapsed"); show(); });
    show();
  });
  window.addEventListener("hashchange", reveal);
  reveal();
})();
