// Behaviour that used to live in inline handlers, which the Content-Security-Policy forbids.
// `<form data-confirm="Question?">` asks before it submits; `<select data-autosubmit>` submits
// its form when changed.
document.addEventListener("submit", (event) => {
  const form = event.target.closest("form[data-confirm]");
  if (form && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
    event.stopImmediatePropagation();
  }
}, true);

document.addEventListener("change", (event) => {
  if (event.target.matches("select[data-autosubmit]")) {
    event.target.form.requestSubmit();
  }
});
