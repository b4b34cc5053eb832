"""The panel's browser-side widgets (anywidget): a live plotly chart and a copy button.

Why not plotly's ``FigureWidget``: it is an anywidget whose module is plotly's 5 MB bundle, which
anywidget imports anew for every figure, and anywidget 0.11 gives a model 2 s to load its module
before it drops every later message to it ("Failed to initialize model"). On a busy machine the
figures then stay as they were first drawn. And a ``FigureWidget`` sends updates as one-off
edits that only views drawn at that moment apply. :class:`LivePlot` has a tiny module instead;
plotly.js is sent once per page, when a view first needs it, and every view draws the whole
figure state with ``Plotly.react`` (new views, reloads and Voila included).
"""

from __future__ import annotations

import functools
import json
from typing import Any

import anywidget
import plotly.io
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


_PLOT_ESM = """
const KEY = "__nbtune_plotly_js__";

// plotly.js, loaded once per page: asked from the kernel by the first view that needs it.
function loadPlotly(model) {
  if (window.Plotly && window.Plotly.react) return Promise.resolve(window.Plotly);
  if (!window[KEY]) {
    window[KEY] = new Promise((resolve, reject) => {
      const onMessage = (msg, buffers) => {
        if (!msg || msg.event !== "plotly.js") return;
        model.off("msg:custom", onMessage);
        try {
          const source = new TextDecoder().decode(buffers[0]);
          const module = { exports: {} };
          new Function("module", "exports", source)(module, module.exports);
          resolve(module.exports);
        } catch (err) {
          reject(err);
        }
      };
      model.on("msg:custom", onMessage);
      model.send({ event: "plotly.js?" });
    });
    window[KEY].catch(() => { delete window[KEY]; });
  }
  return window[KEY];
}

async function render({ model, el }) {
  // A plot of fixed height and the container's width; plotly fills it (autosize).
  const gd = document.createElement("div");
  gd.className = "nbtune-plot";
  gd.style.width = "100%";
  gd.style.height = model.get("height") + "px";
  el.appendChild(gd);
  let Plotly;
  try {
    Plotly = await loadPlotly(model);
  } catch (err) {
    gd.textContent = "nbtune: plotly.js could not be loaded: " + err;
    return;
  }
  const config = { responsive: true, displaylogo: false };
  const draw = () => {
    const layout = themed(Object.assign({}, model.get("figure_layout"), { autosize: true }));
    delete layout.height;
    delete layout.width;
    // The toolbar stands upright at the right edge, over no title.
    layout.modebar = Object.assign({ orientation: "v" }, layout.modebar);
    return Plotly.react(gd, model.get("traces"), layout, config);
  };
  await draw();
  model.on("change:traces", draw);
  model.on("change:figure_layout", draw);
  // JupyterLab's theme can change while the page is open: redraw in its colors.
  const theme = new MutationObserver(draw);
  theme.observe(document.body, { attributes: true, attributeFilter: ["data-jp-theme-light"] });
  let width = gd.offsetWidth;
  const resize = new ResizeObserver(() => {
    if (gd.offsetWidth > 0 && gd.offsetWidth !== width) {
      width = gd.offsetWidth;
      Plotly.Plots.resize(gd);
    }
  });
  resize.observe(gd);
  return () => {
    resize.disconnect();
    theme.disconnect();
    Plotly.purge(gd);
  };
}

// Under a dark JupyterLab theme: transparent backgrounds, the theme's text and grid colors.
function themed(layout) {
  if (document.body.dataset.jpThemeLight !== "false") return layout;
  const css = getComputedStyle(document.body);
  const color = (name, fallback) => css.getPropertyValue(name).trim() || fallback;
  const text = color("--jp-ui-font-color1", "#e0e0e0");
  const grid = color("--jp-border-color2", "#555");
  const lines = { gridcolor: grid, zerolinecolor: grid, linecolor: grid };
  const axis = (a) => Object.assign({}, a, lines);
  const out = Object.assign({}, layout, {
    paper_bgcolor: "rgba(0,0,0,0)",
    plot_bgcolor: "rgba(0,0,0,0)",
    font: Object.assign({}, layout.font, { color: text }),
    xaxis: axis(layout.xaxis),
    yaxis: axis(layout.yaxis),
  });
  out.legend = Object.assign({}, layout.legend, { bgcolor: "rgba(0,0,0,0)" });
  return out;
}
export default { render };
"""


@functools.lru_cache(maxsize=1)
def _plotly_js() -> bytes:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs().encode("utf-8")


class LivePlot(anywidget.AnyWidget):
    """A plotly chart drawn in the browser from its whole state, for live updates.

    Call :meth:`draw` with a ``go.Figure`` after changing it: its data and layout become the
    widget's state (numpy arrays as plotly's typed-array form), and every view redraws it.

    Attributes:
        traces: The figure's traces, as plotly JSON.
        figure_layout: The figure's layout, as plotly JSON.
        height: Minimum height of the view in pixels.
    """

    _esm = _PLOT_ESM
    traces = traitlets.List().tag(sync=True)
    figure_layout = traitlets.Dict().tag(sync=True)
    height = traitlets.Int(300).tag(sync=True)

    def __init__(self, **kwargs: Any) -> None:
        import ipywidgets

        kwargs.setdefault("layout", ipywidgets.Layout(width="100%", min_width="0"))
        super().__init__(**kwargs)
        self.on_msg(self._on_custom_message)

    def draw(self, figure: Any) -> None:
        """Show ``figure`` (a ``go.Figure``) in every view; unchanged parts are not sent."""
        spec = json.loads(plotly.io.to_json(figure, validate=False))
        with self.hold_sync():
            self.traces = spec.get("data", [])
            self.figure_layout = spec.get("layout", {})

    def _on_custom_message(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if isinstance(content, dict) and content.get("event") == "plotly.js?":
            self.send({"event": "plotly.js"}, buffers=[_plotly_js()])
