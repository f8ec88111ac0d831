// Behaviour that used to live in inline handlers, which the Content-Security-Policy forbids.
// `<form data-confirm="Question?">` asks before it submits; `<select data-autosubmit>` submits
// its form when changed; `<button data-step="1" data-step-for="id">` steps a number field
// within its min and max (its `input` event lets htmx fetch the new price).
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

document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-step]");
  const field = button && document.getElementById(button.dataset.stepFor);
  if (!field) return;
  const min = field.min === "" ? -Infinity : Number(field.min);
  const max = field.max === "" ? Infinity : Number(field.max);
  const current = Number.parseInt(field.value, 10);
  const next = Math.min(max, Math.max(min, (Number.isNaN(current) ? min : current) + Number(button.dataset.step)));
  if (String(next) !== field.value) {
    field.value = String(next);
    field.dispatchEvent(new Event("input", { bubbles: true }));
  }
});
