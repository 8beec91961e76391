// Keep what the user typed while a form preview was on its way: the re-rendered form from the
// server must not overwrite fields edited after the request left. Those fields are restored
// after the swap and a new preview is asked for, so derived values catch up.
(() => {
  const form = () => document.getElementById("crf");
  const values = (element) => {
    const result = new Map();
    for (const [name, value] of new FormData(element)) {
      result.set(name, [...(result.get(name) || []), value]);
    }
    return result;
  };
  let sent = null;
  let typed = null;
  document.addEventListener("htmx:beforeRequest", (event) => {
    const crf = form();
    if (crf && crf.contains(event.detail.elt)) sent = values(crf);
  });
  document.addEventListener("htmx:beforeSwap", () => {
    const crf = form();
    if (!crf || !sent) return;
    const now = values(crf);
    typed = new Map();
    for (const name of new Set([...now.keys(), ...sent.keys()])) {
      const current = now.get(name) || [];
      if (JSON.stringify(current) !== JSON.stringify(sent.get(name) || [])) typed.set(name, current);
    }
    sent = null;
  });
  document.addEventListener("htmx:afterSettle", () => {
    const crf = form();
    const pending = typed;
    typed = null;
    if (!crf || !pending || pending.size === 0) return;
    for (const element of crf.elements) {
      if (!pending.has(element.name)) continue;
      const wanted = pending.get(element.name);
      if (element.type === "radio" || element.type === "checkbox") {
        element.checked = wanted.includes(element.value);
      } else {
        element.value = wanted[0] ?? "";
      }
    }
    htmx.trigger(crf, "change");
  });
})();

// Warn before leaving a form with unsaved changes: once the user has typed or chosen anything
// in it, or when the page is a refused save showing what they typed. Submitting the form (save,
// complete, not done) is not leaving it, and the saved page that follows starts clean. Only the
// user's own input counts: the preview above re-triggers "change" itself.
(() => {
  let dirty = document.querySelector("#crf[data-unsaved]") !== null;
  const inForm = (event) => event.isTrusted && event.target instanceof Element
    && event.target.closest("#crf") !== null;
  for (const type of ["input", "change"]) {
    document.addEventListener(type, (event) => { if (inForm(event)) dirty = true; });
  }
  document.addEventListener("submit", (event) => {
    if (event.target instanceof Element && event.target.id === "crf") dirty = false;
  });
  window.addEventListener("beforeunload", (event) => {
    if (!dirty) return;
    event.preventDefault();
    event.returnValue = "";  // older Chromium asks for it to show the dialog
  });
})();
