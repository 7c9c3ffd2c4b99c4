"""The README's pictures of the dashboard and of `pbtune plot`, taken from a real study.

Runs ``examples/digits_mlp.py`` (a real PBT study, about 15 s on two cores) on SQLite in a
temporary folder, serves the dashboard on it, and saves the views with Debian's chromium
(playwright), plus the three PNGs of `pbtune plot`. Not a test; run it by hand::

    python tests/dashboard/screenshots.py docs
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pbtune
from pbtune.dashboard import DashboardApp, make_dashboard_server, write_plots

ROOT = Path(__file__).resolve().parents[2]
PANELS = {"studies": "#studies-view", "lineage": "#lineage-panel",
          "schedules": "#schedule-panel"}


def run_study(folder: Path) -> str:
    url = f"sqlite:///{folder}/digits.db"
    subprocess.run([sys.executable, str(ROOT / "examples" / "digits_mlp.py"), "--storage", url,
                    "--checkpoint-root", str(folder / "ck"), "--name", "digits", "--quiet"],
                   check=True)
    return url


def hover_best(page: object, out: Path) -> None:
    """Moves the mouse from the top right (where the best trials are) until a tooltip
    shows, preferring the best trial's."""
    page.locator("#pbt-panel").scroll_into_view_if_needed()  # type: ignore[attr-defined]
    box = page.locator("#pbt-plot .u-over").bounding_box()  # type: ignore[attr-defined]
    tip = page.locator("#pbt-plot .tooltip")  # type: ignore[attr-defined]
    found = None
    for column in range(int(box["width"]) - 2, int(box["width"] * 0.85), -4):
        for row in range(2, int(box["height"]), 4):
            page.mouse.move(box["x"] + column, box["y"] + row)  # type: ignore[attr-defined]
            if tip.is_visible():
                found = found or (column, row)
                if "best trial" in tip.inner_text():
                    found = (column, row)
                    break
        else:
            continue
        break
    if found is None:
        raise RuntimeError("no point found under the mouse at the right of the PBT plot")
    page.mouse.move(box["x"] + found[0], box["y"] + found[1])  # type: ignore[attr-defined]
    page.locator("#pbt-panel").screenshot(  # type: ignore[attr-defined]
        path=str(out / "dashboard-pbt-hover.png"))


def shoot(url: str, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    storage = pbtune.Storage(url)
    httpd = make_dashboard_server(DashboardApp(storage), "127.0.0.1", 0)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_port}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                    args=["--headless", "--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(base + "/")
        page.wait_for_selector("#studies tbody a")
        page.locator(PANELS["studies"]).screenshot(path=str(out / "dashboard-studies.png"))
        page.locator("#studies tbody a").first.click()
        page.wait_for_selector("#schedules .schedule .uplot")
        for name, selector in PANELS.items():
            if name != "studies":
                page.locator(selector).screenshot(path=str(out / f"dashboard-{name}.png"))
        hover_best(page, out)
        page.set_viewport_size({"width": 1280, "height": 6000})  # no scrolling: page = viewport
        box = page.locator("#table-panel").bounding_box()
        page.screenshot(path=str(out / "dashboard-trials.png"),  # its first 15 rows or so
                        clip={**box, "height": min(box["height"], 520)})
        browser.close()
    httpd.shutdown()
    plots = write_plots(storage, storage.get_study("digits"), out / "plot")
    for path in plots:
        path.replace(out / f"plot-{path.name}")
    (out / "plot").rmdir()
    storage.dispose()


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs").resolve()
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pbtune-shots-") as scratch:
        shoot(run_study(Path(scratch)), target)
    print(f"wrote the screenshots into {target}")
