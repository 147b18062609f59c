"""Small helpers shared by the AppTest files."""
import json
import time


def no_exception(at):
    assert not at.exception, [e.value for e in at.exception]


def wait_for(condition, limit=60):
    """Poll a condition (a job reaching a state); the limit only keeps a broken test from hanging."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.02)


def chart_titles(at):
    titles = []
    for chart in at.get("plotly_chart"):
        title = json.loads(chart.proto.spec).get("layout", {}).get("title", {})
        titles.append(title.get("text", "") if isinstance(title, dict) else str(title) if title else "")
    return titles


_STAND_IN = """
import json, os, signal, sys, time
from pathlib import Path

out = Path(sys.argv[1])
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(True))


def status(state):
    (out / "status.tmp").write_text(json.dumps({"state": state, "generation": 0, "epoch": 1, "progress": 0.5}))
    os.replace(out / "status.tmp", out / "status.json")


if "--resume" in sys.argv:
    ON_RESUME
status("running")
with open(out / "train.log", "a") as log:
    print("stand-in running", file=log)
while not stop:
    time.sleep(0.02)
status("stopped")
"""


def stand_in_job(on_resume):
    """A stand-in for a training process, for the job buttons' tests: "running" until SIGTERM, then "stopped";
    started with --resume it runs ``on_resume`` (one line of Python) instead."""
    return _STAND_IN.replace("ON_RESUME", on_resume)
