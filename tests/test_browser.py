"""The widget in a real browser: JupyterLab and headless Chromium, driven by Playwright.

Runs ``tests/notebooks/widget_live.ipynb`` (the toy script into a temporary study): the panel
and its plots render, the score curve gains points while trials run, a target edited in the
panel re-scores the curve, a ``1 + 1`` cell answers while the study runs (timed in the
browser), and Stop stops it. Then the flagship ``notebooks/tune_cartpole_acrobot.ipynb`` in
smoke mode (``NBTUNE_SMOKE=1``): Run All, every cell runs without an error, and both panels (the
recorded demo study and the study the notebook runs) draw their plots. Screenshots go to
``test-artifacts/`` (git-ignored).

Locally it is skipped when Chromium, Playwright or JupyterLab is missing; under ``CI=true`` it
fails instead. Install Chromium with ``apt-get install -y chromium`` (never ``playwright
install``: these machines have no internet).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _support import TOY, skip_or_fail, wait_for

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = Path(__file__).parent / "notebooks" / "widget_live.ipynb"
FLAGSHIP = ROOT / "notebooks" / "tune_cartpole_acrobot.ipynb"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    skip_or_fail("Chromium is not installed (apt-get install -y chromium)")
    raise AssertionError  # unreachable


def _require_stack() -> None:
    for module, hint in (
        ("playwright", "pip install playwright (never `playwright install`)"),
        ("jupyterlab", "pip install jupyterlab"),
        ("nbtune.widgets", 'pip install "nbtune[widgets]"'),
    ):
        try:
            __import__(module)
        except ImportError:
            skip_or_fail(f"{module} is not installed ({hint})")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(base: str, token: str, path: str, method: str = "GET") -> Any:
    request = urllib.request.Request(
        f"{base}{path}", method=method, headers={"Authorization": f"token {token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        body = response.read()
    return json.loads(body) if body else None


def _write_lab_settings(settings: Path, theme: str | None = None) -> None:
    """No autosave (the fixture stays without outputs) and no news or update pop-ups."""
    plugins: list[tuple[str, dict[str, Any]]] = [
        ("@jupyterlab/docmanager-extension/plugin", {"autosave": False}),
        ("@jupyterlab/apputils-extension/notification", {"fetchNews": "false"}),
        ("@jupyterlab/apputils-extension/announcements", {"fetchNews": "false"}),
    ]
    if theme is not None:
        plugins.append(("@jupyterlab/apputils-extension/themes", {"theme": theme}))
    for plugin, values in plugins:
        path = settings / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


@contextlib.contextmanager
def _jupyter_lab(
    tmp_path: Path, copies: dict[str, Path], env: dict[str, str], theme: str | None = None
) -> Iterator[tuple[str, str]]:
    """A JupyterLab server on a free port with every Jupyter folder in ``tmp_path``.

    ``copies`` maps names in the server's root (also the kernels' working directory) to the
    files or folders copied there; ``env`` is added to the server's environment, which its
    kernels inherit. Yields the server's URL and token.
    """
    _require_stack()
    home = tmp_path / "jupyter"
    root = tmp_path / "root"
    for folder in (home, root):
        folder.mkdir()
    for name, source in copies.items():
        if source.is_dir():
            shutil.copytree(source, root / name)
        else:
            shutil.copy(source, root / name)
    settings = home / "lab-settings"
    _write_lab_settings(settings, theme)
    token = secrets.token_hex(16)
    port = _free_port()
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "IPYTHONDIR": str(home / "ipython"),
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        **env,
    }
    log = (tmp_path / "jupyter.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--allow-root",
            "--ip=127.0.0.1",
            f"--port={port}",
            f"--ServerApp.token={token}",
            f"--ServerApp.root_dir={root}",
            "--ServerApp.open_browser=False",
            "--expose-app-in-browser",
        ],
        cwd=root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: kernels die with it
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                raise RuntimeError(
                    f"jupyter lab exited: {(tmp_path / 'jupyter.log').read_text()[-2000:]}"
                )
            with contextlib.suppress(OSError):
                _api(base, token, "/api/status")
                break
            if time.monotonic() > deadline:
                raise RuntimeError("jupyter lab did not start within 120 s")
            time.sleep(0.5)
        for session in _api(base, token, "/api/sessions"):  # a fresh kernel for this test
            _api(base, token, f"/api/sessions/{session['id']}", method="DELETE")
        yield base, token
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)
        log.close()


@pytest.fixture
def jupyter_lab(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """JupyterLab serving ``widget_live.ipynb``, its toy study in the yielded work folder."""
    work = tmp_path / "work"
    work.mkdir()
    env = {"NBTUNE_TOY_SCRIPT": str(TOY), "NBTUNE_WORKDIR": str(work)}
    with _jupyter_lab(tmp_path, {NOTEBOOK.name: NOTEBOOK}, env) as (base, token):
        yield base, token, work


@pytest.fixture
def dark_lab(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """As :func:`jupyter_lab`, under JupyterLab's dark theme, with trials of a few seconds (the
    kernel restart must find one running)."""
    work = tmp_path / "work"
    work.mkdir()
    env = {"NBTUNE_TOY_SCRIPT": str(TOY), "NBTUNE_WORKDIR": str(work), "NBTUNE_LOG_SLEEP": "0.2"}
    copies = {NOTEBOOK.name: NOTEBOOK}
    with _jupyter_lab(tmp_path, copies, env, theme="JupyterLab Dark") as (base, token):
        yield base, token, work


@pytest.fixture
def flagship_lab(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """JupyterLab serving the flagship notebook in smoke mode.

    ``NBTUNE_SMOKE=1`` reaches the kernel: a tiny budget, and the study in a
    ``tempfile.TemporaryDirectory``, which ``TMPDIR`` puts in the yielded folder. The notebook
    opens ``data/demo_study.log`` from its working directory, so ``data/`` is copied beside it.
    """
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    copies = {FLAGSHIP.name: FLAGSHIP, "data": FLAGSHIP.parent / "data"}
    env = {"NBTUNE_SMOKE": "1", "TMPDIR": str(scratch)}
    with _jupyter_lab(tmp_path, copies, env) as (base, token):
        yield base, token, scratch


# JavaScript run in the page --------------------------------------------------------------------

# The history plot as drawn: complete trials (x, y) and the best-so-far line. The argument
# picks the code cell (its index among code cells) whose panel to read; null: the page's first.
_HISTORY = """(cell) => {
  const cells = document.querySelectorAll('.jp-Notebook .jp-CodeCell');
  const scope = cell === null ? document : cells[cell];
  const gd = scope && scope.querySelector('.nbtune-history .js-plotly-plot');
  if (!gd || !gd._fullData || gd._fullData.length < 3) return null;
  const arr = (a) => (a ? Array.from(a, Number) : []);
  const full = gd._fullData;
  return {x: arr(full[0].x), y: arr(full[0].y), best: arr(full[2].y)};
}"""

# Run the selected cell through JupyterLab's command and time it until its output shows "2".
_TIME_CELL = """async (index) => {
  const notebook = window.jupyterapp.shell.currentWidget.content;
  notebook.activeCellIndex = index;  // clicks in the panel make its own cell the active one
  notebook.deselectAll();
  const cell = document.querySelectorAll('.jp-Notebook .jp-Cell')[index];
  const before = cell.querySelector('.jp-InputPrompt').textContent;
  const done = new Promise((resolve) => {
    const check = () => {
      const prompt = cell.querySelector('.jp-InputPrompt').textContent;
      const out = cell.querySelector('.jp-OutputArea-output');
      if (/\\[\\d+\\]/.test(prompt) && prompt !== before && out && out.textContent.trim() === '2') {
        observer.disconnect();
        resolve(performance.now());
      }
    };
    const observer = new MutationObserver(check);
    observer.observe(cell, {subtree: true, childList: true, characterData: true});
  });
  const started = performance.now();
  await window.jupyterapp.commands.execute('notebook:run-cell');
  return (await done) - started;
}"""


def _open(page: Any, base: str, token: str, name: str) -> None:
    """Open a notebook in a fresh tab layout and wait until its kernel is connected."""
    from playwright.sync_api import expect

    page.goto(f"{base}/lab/tree/{name}?reset&token={token}")
    # The toolbar says idle before the kernel is connected: wait for the status bar.
    expect(page.locator("#jp-main-statusbar")).to_contain_text("ipykernel) | Idle", timeout=120_000)


def _run_all(page: Any) -> None:
    page.locator('.lm-MenuBar-itemLabel:text-is("Run")').click()
    page.locator('.lm-Menu-itemLabel:text-is("Run All Cells")').click()


def _history(page: Any, cell: int | None = None) -> dict[str, list[float]] | None:
    return page.evaluate(_HISTORY, cell)


def _wait_history(
    page: Any, predicate: Any, timeout: float, what: str, cell: int | None = None
) -> dict[str, list[float]]:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = _history(page, cell)
        if last is not None and predicate(last):
            return last
        page.wait_for_timeout(250)
    raise AssertionError(f"timed out waiting for {what}; last history: {last}")


def _points(history: dict[str, list[float]]) -> list[tuple[float, float]]:
    return list(zip(history["x"], history["y"], strict=True))


def _study_values(work: Path, study_name: str) -> dict[int, float]:
    import optuna
    from optuna.trial import TrialState

    study = optuna.load_study(study_name=study_name, storage=f"sqlite:///{work / 'widget_live.db'}")
    return {
        t.number: t.value for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    }


def test_widget_live_in_jupyterlab(jupyter_lab: tuple[str, str, Path]) -> None:
    from playwright.sync_api import expect, sync_playwright

    base, token, work = jupyter_lab
    executable = _chromium()
    ARTIFACTS.mkdir(exist_ok=True)
    report: dict[str, Any] = {"phases_s": {}}
    started = time.monotonic()

    def phase(name: str) -> None:
        report["phases_s"][name] = round(time.monotonic() - started, 1)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 2200})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        try:
            _open(page, base, token, NOTEBOOK.name)
            phase("kernel ready")
            _run_all(page)

            # The panel and its plots render (first render: kernel imports, ~5 MB of JS per plot).
            panel = page.locator(".jp-OutputArea-output:has(.nbtune-panel)")
            expect(panel).to_have_count(1, timeout=180_000)
            for css in ("nbtune-history", "nbtune-env-scores", "nbtune-learning-curves"):
                expect(page.locator(f".{css} .js-plotly-plot .main-svg").first).to_be_visible(
                    timeout=60_000
                )
            expect(page.locator(".nbtune-parcoords .js-plotly-plot .parcoords")).to_have_count(
                1, timeout=60_000
            )
            status = page.locator(".nbtune-status")
            expect(status).to_contain_text("running", timeout=60_000)
            phase("panel and plots drawn, running")

            # The curve gains points while trials run.
            first = _wait_history(page, lambda h: len(h["x"]) >= 2, 120, "two complete trials")
            points = page.locator(".nbtune-history .scatterlayer .trace:first-child .points path")
            grown = _wait_history(
                page, lambda h: len(h["x"]) > len(first["x"]), 60, "more points while running"
            )
            assert points.count() >= len(grown["x"]) - 1
            values = _study_values(work, "widget-live")
            for x, y in zip(grown["x"], grown["y"], strict=True):
                assert y == pytest.approx(values[int(x)])
            phase("curve gained points")

            # Edit a target in the panel: every finished trial is re-scored into a fork.
            before = _history(page)
            assert before is not None
            row = page.locator(".nbtune-target-row").first
            expect(row.locator(".nbtune-target-env input")).to_have_value("EnvA")
            row.locator(".nbtune-target-high input").fill("200")
            page.locator("button.nbtune-apply-targets").click()
            expect(page.locator(".nbtune-targets-message")).to_contain_text(
                "re-scored", timeout=60_000
            )
            expect(page.locator(".nbtune-header")).to_contain_text("re-scored from")
            expect(status).to_contain_text("widget-live.r1", timeout=30_000)
            expect(status).to_contain_text("running", timeout=30_000)
            old = dict(zip(before["x"], before["y"], strict=True))
            after = _wait_history(
                page,
                lambda h: h["x"] and all(old.get(x) != y for x, y in _points(h)),
                30,
                "the curve to change",
            )
            fork = _study_values(work, "widget-live.r1")
            for x, y in zip(after["x"], after["y"], strict=True):
                assert y == pytest.approx(fork[int(x)])
            # EnvA's range doubled: its normalized score halves, the average drops by a quarter.
            common = [x for x in after["x"] if x in old]
            assert common
            for x in common:
                y_after = after["y"][after["x"].index(x)]
                assert y_after == pytest.approx(0.75 * old[x], abs=2e-3)

            phase("target edited, curve re-scored")

            # A cell answers while the study runs; time it in the browser.
            _wait_history(page, lambda h: len(h["x"]) > len(after["x"]), 60, "trials in the fork")
            last = page.locator(".jp-Notebook .jp-Cell").count() - 1
            expect(status).to_contain_text("running")
            times = [page.evaluate(_TIME_CELL, last) for _ in range(7)]
            expect(status).to_contain_text("running")
            report["one_plus_one_ms_while_running"] = times
            panel.screenshot(path=str(ARTIFACTS / "widget_live.png"))
            phase("1+1 timed while running")

            # Stop: the state changes, and the study ends with no trial running.
            page.locator("button.nbtune-stop").click()
            expect(status).to_contain_text("stopped", timeout=60_000)
            expect(page.locator("button.nbtune-start")).to_be_enabled()
            phase("stopped")
            idle = [page.evaluate(_TIME_CELL, last) for _ in range(5)]
            report["one_plus_one_ms_idle"] = idle
            page.screenshot(path=str(ARTIFACTS / "widget_live_page.png"), full_page=True)
        finally:
            with contextlib.suppress(Exception):
                page.screenshot(path=str(ARTIFACTS / "widget_live_last.png"), full_page=True)
            browser.close()

    import optuna
    from optuna.trial import TrialState

    storage = f"sqlite:///{work / 'widget_live.db'}"
    for name in ("widget-live", "widget-live.r1"):
        study = optuna.load_study(study_name=name, storage=storage)
        assert not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)), name
    report["page_errors"] = errors
    running = report["one_plus_one_ms_while_running"]
    report["median_ms_while_running"] = statistics.median(running)
    report["median_ms_idle"] = statistics.median(report["one_plus_one_ms_idle"])
    (ARTIFACTS / "widget_live_timings.json").write_text(json.dumps(report, indent=2))
    print(f"\n1+1 while tuning: median {report['median_ms_while_running']:.0f} ms {running}")
    print(f"1+1 idle: median {report['median_ms_idle']:.0f} ms")
    assert report["median_ms_while_running"] < 2000, report
    assert not errors, errors


# Text and background colors of an element, and their WCAG contrast ratio (the background is
# the first one up the tree that is not transparent).
_CONTRAST = """(selector) => {
  const el = document.querySelector(selector);
  if (!el) return null;
  const rgb = (text) => (text.match(/[\\d.]+/g) || []).map(Number);
  let node = el, background = null;
  while (node && node.nodeType === 1) {
    const c = rgb(getComputedStyle(node).backgroundColor);
    if (c.length >= 3 && (c.length < 4 || c[3] > 0.5)) { background = c; break; }
    node = node.parentElement;
  }
  background = background || [255, 255, 255];
  const text = rgb(getComputedStyle(el).color);
  const lum = (c) => {
    const [r, g, b] = c.slice(0, 3).map((v) => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const [hi, lo] = [lum(text), lum(background)].sort((a, b) => b - a);
  return { text, background, ratio: (hi + 0.05) / (lo + 0.05) };
}"""

# Where the charts sit in the panel, and the look of the history plot as plotly drew it.
_LAYOUT = """() => {
  const panel = document.querySelector('.nbtune-panel').getBoundingClientRect();
  const figures = Array.from(document.querySelectorAll('.nbtune-figure'))
    .filter((el) => el.offsetParent !== null)
    .map((el) => el.getBoundingClientRect().width);
  const gd = document.querySelector('.nbtune-history .js-plotly-plot');
  const cell = document.querySelector('.nbtune-table td');
  return {
    panel: panel.width,
    figures,
    paper: gd._fullLayout.paper_bgcolor,
    font: gd._fullLayout.font.color,
    padding: cell ? getComputedStyle(cell).paddingLeft : null,
  };
}"""


# Validation has finished: the statement recommends a configuration, and the winner's-curse chart
# shows points.
_VALIDATED = """() => {
  const statement = document.querySelector('.nbtune-validation-statement');
  const gd = document.querySelector('.nbtune-winners-curse .js-plotly-plot');
  if (!statement || !/is recommended/.test(statement.textContent)) return false;
  if (/running/.test(statement.textContent) || !gd || !gd._fullData) return false;
  return gd._fullData.some((t) => t.y && Array.from(t.y).filter(Number.isFinite).length >= 2);
}"""


def _studies_running(work: Path) -> dict[str, list[int]]:
    import optuna
    from optuna.trial import TrialState

    storage = f"sqlite:///{work / 'widget_live.db'}"
    return {
        s.study_name: [
            t.number
            for t in optuna.load_study(study_name=s.study_name, storage=storage).get_trials(
                deepcopy=False, states=(TrialState.RUNNING,)
            )
        ]
        for s in optuna.get_all_study_summaries(storage)
    }


def _just_started(work: Path, study_name: str, within: float = 1.0) -> bool:
    """Whether a trial of the study started running less than ``within`` seconds ago."""
    import datetime

    import optuna
    from optuna.trial import TrialState

    study = optuna.load_study(study_name=study_name, storage=f"sqlite:///{work / 'widget_live.db'}")
    now = datetime.datetime.now()  # Optuna stores local naive times
    return any(
        t.datetime_start is not None and (now - t.datetime_start).total_seconds() < within
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    )


def test_panel_in_the_dark_at_800_px_and_after_a_kernel_restart(
    dark_lab: tuple[str, str, Path],
) -> None:
    """Under JupyterLab Dark at 800 px: readable text, transparent charts that fill the column,
    a padded table. Then a kernel restart mid-run, and the same cells run again: the panel
    continues the fork a target edit made, fails the trial the dead kernel left running, and
    nothing stays RUNNING."""
    from playwright.sync_api import expect, sync_playwright

    base, token, work = dark_lab
    executable = _chromium()
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 800, "height": 2400})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        try:
            _open(page, base, token, NOTEBOOK.name)
            assert page.evaluate("document.body.dataset.jpThemeLight") == "false"
            _run_all(page)
            status = page.locator(".nbtune-status")
            expect(status).to_contain_text("running", timeout=180_000)
            _wait_history(page, lambda h: len(h["x"]) >= 2, 120, "two complete trials")

            # A target edit forks the study; the run goes on in the fork.
            row = page.locator(".nbtune-target-row").first
            row.locator(".nbtune-target-high input").fill("200")
            page.locator("button.nbtune-apply-targets").click()
            expect(status).to_contain_text("widget-live.r1", timeout=60_000)
            expect(page.locator(".nbtune-best-command pre")).to_be_visible(timeout=60_000)

            # Dark theme: the best command is readable, the charts take the theme's colors.
            contrast = page.evaluate(_CONTRAST, ".nbtune-best-command pre")
            assert contrast is not None and contrast["ratio"] >= 4.5, contrast
            table = page.evaluate(_CONTRAST, ".nbtune-table td")
            assert table is not None and table["ratio"] >= 4.5, table
            layout = page.evaluate(_LAYOUT)
            assert layout["paper"].replace(" ", "") == "rgba(0,0,0,0)", layout
            assert layout["font"] not in ("#444", "rgb(68, 68, 68)"), layout  # not plotly_white's
            # 800 px: one chart a row, filling the panel's column; a padded table.
            assert layout["figures"] and all(w >= 0.9 * layout["panel"] for w in layout["figures"])
            assert layout["padding"] == "8px", layout
            page.locator(".jp-OutputArea-output:has(.nbtune-panel)").screenshot(
                path=str(ARTIFACTS / "panel_dark_800.png")
            )

            # Stop, validate from the panel (the winner's-curse chart fills in as fresh seeds
            # finish), then start again.
            _wait_history(page, lambda h: len(h["x"]) >= 2, 60, "trials in the fork")
            page.locator("button.nbtune-stop").click()
            expect(status).to_contain_text("stopped", timeout=60_000)
            # A number field reaches the kernel when it loses the focus (Tab), not while typed.
            for css, value in ((".nbtune-validate-top-k", "2"), (".nbtune-validate-seeds", "1")):
                page.locator(f"{css} input").fill(value)
                page.locator(f"{css} input").press("Tab")
            page.wait_for_timeout(500)
            page.locator("button.nbtune-validate").click()
            page.wait_for_function(_VALIDATED, timeout=180_000)
            expect(page.locator(".nbtune-validation-statement")).to_be_visible()
            page.locator(".jp-OutputArea-output:has(.nbtune-panel)").screenshot(
                path=str(ARTIFACTS / "panel_validated.png")
            )
            page.locator("button.nbtune-start").click()
            expect(status).to_contain_text("running", timeout=60_000)

            # Restart the kernel mid-run (what a user does when a notebook hangs), while a trial
            # of the fork runs.
            # A trial that has just started: it still runs when the kernel dies, seconds later
            # (one that ends first would leave nothing for the restart to find).
            wait_for(lambda: _just_started(work, "widget-live.r1"), 60, "a trial starting")
            (session,) = _api(base, token, "/api/sessions")
            _api(base, token, f"/api/kernels/{session['kernel']['id']}/restart", method="POST")
            expect(page.locator("#jp-main-statusbar")).to_contain_text(
                "ipykernel) | Idle", timeout=120_000
            )
            left_running = _studies_running(work)
            assert left_running.get("widget-live.r1"), left_running  # the dead kernel's trial

            # The same cells again: the panel continues the fork, and fails the dead trial.
            _run_all(page)
            header = page.locator(".nbtune-header")
            expect(header).to_contain_text("widget-live.r1", timeout=180_000)
            expect(header).to_contain_text("re-scored from")
            expect(status).to_contain_text("running", timeout=60_000)
            log = page.locator(".nbtune-log")
            expect(log).to_contain_text("continuing 'widget-live.r1'", timeout=30_000)
            expect(log).to_contain_text("its process stopped", timeout=30_000)
            page.wait_for_timeout(3000)
            page.locator(".jp-OutputArea-output:has(.nbtune-panel)").screenshot(
                path=str(ARTIFACTS / "panel_after_restart.png")
            )
            page.locator("button.nbtune-stop").click()
            expect(status).to_contain_text("stopped", timeout=60_000)

        finally:
            with contextlib.suppress(Exception):
                page.screenshot(path=str(ARTIFACTS / "panel_dark_last.png"), full_page=True)
            with contextlib.suppress(Exception):  # what the panel said, for a failed run
                texts = {
                    css: page.locator(css).first.inner_text(timeout=2000)
                    for css in (
                        ".nbtune-status",
                        ".nbtune-error",
                        ".nbtune-validation",
                        ".nbtune-log",
                    )
                }
                (ARTIFACTS / "panel_dark_texts.json").write_text(json.dumps(texts, indent=2))
            browser.close()

    import optuna

    storage = f"sqlite:///{work / 'widget_live.db'}"
    fork = optuna.load_study(study_name="widget-live.r1", storage=storage)
    dead = [t for t in fork.trials if t.user_attrs.get("fail_reason", "").startswith("its process")]
    assert dead, [t.state for t in fork.trials]
    assert any(t.user_attrs.get("nbtune:retry_of") == dead[0].number for t in fork.trials)
    running = _studies_running(work)
    assert running.pop("widget-live.r1.validation", []) == []
    assert running == {"widget-live": [], "widget-live.r1": []}
    assert not errors, errors


# The flagship notebook's code cells as JupyterLab's model holds them: execution count and errors
# (in the page an error renders like stderr, same classes and mime type, so ask the model).
_CELLS = """(path) => {
  const panel = Array.from(window.jupyterapp.shell.widgets('main')).find(
    (widget) => widget.context && widget.context.path === path
  );
  if (!panel) return null;
  return Array.from(panel.content.model.cells)
    .filter((cell) => cell.type === 'code')
    .map((cell) => ({
      count: cell.executionCount,
      errors: cell.outputs
        .toJSON()
        .filter((output) => output.output_type === 'error')
        .map((output) => `${output.ename}: ${output.evalue}`),
    }));
}"""


def _code_cell(sources: list[str], text: str) -> int:
    """The index among the code cells of the one cell whose source contains ``text``."""
    found = [i for i, source in enumerate(sources) if text in source]
    assert len(found) == 1, (text, found)
    return found[0]


@pytest.mark.timeout(900)
def test_flagship_notebook_in_jupyterlab(flagship_lab: tuple[str, str, Path]) -> None:
    """The flagship notebook, Run All in JupyterLab (smoke mode): every cell runs, no errors."""
    import optuna
    from optuna.trial import TrialState
    from playwright.sync_api import expect, sync_playwright

    base, token, scratch = flagship_lab
    executable = _chromium()
    ARTIFACTS.mkdir(exist_ok=True)
    sources = [
        "".join(cell["source"])
        for cell in json.loads(FLAGSHIP.read_text())["cells"]
        if cell["cell_type"] == "code"
    ]
    demo_cell = _code_cell(sources, "TunerWidget.watch(")
    live_cell = _code_cell(sources, "TunerWidget(tuner")
    phases: dict[str, float] = {}
    started = time.monotonic()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 2200})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        try:
            _open(page, base, token, FLAGSHIP.name)
            phases["kernel ready"] = round(time.monotonic() - started, 1)
            _run_all(page)

            # Every code cell runs: its prompt reads [n]:. Run All stops at a cell that raises
            # (the cells after it stay [ ]:), so look for errors while waiting, not only after.
            code_cells = page.locator(".jp-Notebook .jp-CodeCell")
            prompts = page.locator(".jp-Notebook .jp-CodeCell .jp-InputPrompt")
            stderr = page.locator(
                '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
            )
            deadline = time.monotonic() + 600  # ~35 s under nbmake on a quiet machine
            while True:
                cells = page.evaluate(_CELLS, FLAGSHIP.name)
                assert cells is not None, "the notebook is not open in JupyterLab"
                assert len(cells) == len(sources) == code_cells.count(), (cells, sources)
                raised = {i: cell["errors"] for i, cell in enumerate(cells) if cell["errors"]}
                assert not raised, f"code cells raised: {raised}"
                # Tracebacks printed to stderr (a thread's exception, say) fail it too.
                tracebacks = [
                    text for text in stderr.all_text_contents() if "Traceback (most recent" in text
                ]
                assert not tracebacks, tracebacks
                texts = prompts.all_text_contents()
                if all(isinstance(cell["count"], int) for cell in cells) and all(
                    re.fullmatch(r"\[\d+\]:", text.strip()) for text in texts
                ):
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(f"cells not finished within 600 s: {texts}")
                page.wait_for_timeout(1000)
            phases["all cells ran"] = round(time.monotonic() - started, 1)

            # Both panels rendered: the recorded demo study, then the study this notebook ran.
            for index in (demo_cell, live_cell):
                panel = code_cells.nth(index).locator(".nbtune-panel")
                expect(panel).to_have_count(1)
                panel.scroll_into_view_if_needed()
                for css in ("nbtune-history", "nbtune-env-scores"):
                    expect(panel.locator(f".{css} .js-plotly-plot .main-svg").first).to_be_visible(
                        timeout=60_000
                    )
                expect(panel.locator(".nbtune-parcoords .js-plotly-plot .parcoords")).to_have_count(
                    1, timeout=60_000
                )
            live = code_cells.nth(live_cell).locator(".nbtune-panel")
            expect(live.locator(".nbtune-status")).to_contain_text("finished", timeout=30_000)
            expect(live.locator(".nbtune-error")).to_have_text("")

            # The history plot shows the study's complete trials, as stored.
            (database,) = scratch.glob("nbtune-smoke-*/*.db")  # the smoke run's own folder
            storage = f"sqlite:///{database}"
            # The tuning study (its last cell validates it into "<name>.validation").
            (study_name,) = [
                n for n in optuna.get_all_study_names(storage) if not n.endswith(".validation")
            ]
            study = optuna.load_study(study_name=study_name, storage=storage)
            values = {t.number: t.value for t in study.get_trials(states=(TrialState.COMPLETE,))}
            assert values, [t.state for t in study.trials]
            history = _wait_history(
                page,
                lambda h: sorted(h["x"]) == sorted(values),
                60,
                "every complete trial in the history plot",
                cell=live_cell,
            )
            for x, y in zip(history["x"], history["y"], strict=True):
                assert y == pytest.approx(values[int(x)])
            # The last cell's plain plotly figures render too.
            plots = code_cells.nth(len(sources) - 1).locator(".js-plotly-plot .main-svg")
            expect(plots.first).to_be_visible(timeout=60_000)
            phases["panels and plots checked"] = round(time.monotonic() - started, 1)
            live.screenshot(path=str(ARTIFACTS / "flagship.png"))
        finally:
            with contextlib.suppress(Exception):
                page.screenshot(path=str(ARTIFACTS / "flagship_last.png"), full_page=True)
            browser.close()

    print(f"\nflagship notebook in JupyterLab: {phases}")
    assert not errors, errors
