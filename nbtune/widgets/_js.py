"""The panel's two small browser-side widgets: a copy button and a render beacon."""

from __future__ import annotations

import anywidget
import traitlets

_ESM = """
function render({ model, el }) {
  const button = document.createElement("button");
  button.className = "jupyter-button widget-button nbtune-copy-button";
  button.textContent = model.get("label");
  button.title = "Copy to the clipboard";
  button.addEventListener("click", async () => {
    const text = model.get("text");
    let ok = false;
    try {
      await navigator.clipboard.writeText(text);
      ok = true;
    } catch (err) {
      // Without clipboard permission (an insecure origin), fall back to a selected textarea.
      const area = document.createElement("textarea");
      area.value = text;
      document.body.appendChild(area);
      area.select();
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      area.remove();
    }
    button.textContent = ok ? "Copied" : "Copy failed";
    setTimeout(() => { button.textContent = model.get("label"); }, 1200);
  });
  model.on("change:label", () => { button.textContent = model.get("label"); });
  el.appendChild(button);
}
export default { render };
"""


class CopyButton(anywidget.AnyWidget):
    """Copies :attr:`text` to the browser's clipboard when clicked.

    Attributes:
        text: What is copied.
        label: The button's caption.
    """

    _esm = _ESM
    text = traitlets.Unicode("").tag(sync=True)
    label = traitlets.Unicode("Copy").tag(sync=True)


_BEACON_ESM = """
function render({ model, el }) {
  el.style.display = "none";
  const started = performance.now();
  const ready = () => {
    const panel = el.closest(model.get("container"));
    if (!panel) return false;
    const plots = Array.from(panel.querySelectorAll(".js-plotly-plot"));
    return plots.length >= model.get("expected") && plots.every((gd) => gd._fullLayout);
  };
  let timer = null;
  const poll = () => {
    if (ready() || performance.now() - started > model.get("timeout_ms")) {
      model.send({ event: "rendered", complete: ready() });
    } else {
      timer = setTimeout(poll, 200);
    }
  };
  poll();
  return () => clearTimeout(timer);
}
export default { render };
"""


class RenderBeacon(anywidget.AnyWidget):
    """Tells the kernel when a view of its container has drawn its plotly figures.

    Each view sends one ``{"event": "rendered"}`` message once ``expected`` plotly plots inside
    the closest ``container`` (a CSS selector) have drawn, or after ``timeout_ms``.
    """

    _esm = _BEACON_ESM
    container = traitlets.Unicode(".nbtune-panel").tag(sync=True)
    expected = traitlets.Int(0).tag(sync=True)
    timeout_ms = traitlets.Int(120_000).tag(sync=True)
