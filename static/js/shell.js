/* The app shell's behaviour, from a static file (the Content-Security-Policy forbids inline
   scripts and handlers): the menu below the breakpoint, and drop-down menus that close on
   Escape or a click elsewhere. Confirmations (data-confirm) are in tally.js. */
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  function setMenu(toggle, open) {
    var nav = document.getElementById(toggle.getAttribute("aria-controls"));
    if (!nav) return;
    toggle.setAttribute("aria-expanded", open ? "true" : "false");
    nav.classList.toggle("open", open);
  }

  function closeDropdowns(except) {
    document.querySelectorAll("details.dropdown[open]").forEach(function (menu) {
      if (menu !== except) menu.removeAttribute("open");
    });
  }

  document.addEventListener("click", function (event) {
    var toggle = event.target.closest("[data-menu-toggle]");
    if (toggle) {
      setMenu(toggle, toggle.getAttribute("aria-expanded") !== "true");
      return;
    }
    closeDropdowns(event.target.closest("details.dropdown"));
  });

  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    document.querySelectorAll("[data-menu-toggle][aria-expanded=true]").forEach(function (toggle) {
      setMenu(toggle, false);
      toggle.focus();
    });
    closeDropdowns(null);
  });
})();
