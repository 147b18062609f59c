import json

import pytest

from pasm.cli import main
from pasm.data.synth import write_synth
from pasm.errors import PasmError
from pasm.study import markdown_table, run_study

ARMS = ["none", "random", "attention", "pasm"]


pytestmark = pytest.mark.usefixtures("one_thread")


def test_study_runs_every_arm_and_writes_the_table_and_figure(tmp_path, capsys):
    write_synth(tmp_path / "synth", train=28, test=14, size=32, seed=1)
    out = tmp_path / "study"
    argv = ["study", "--data", f"synth:{tmp_path / 'synth'}", "--out", str(out), "--arms", ",".join(ARMS),
            "--seeds", "0", "--size", "32", "--epochs", "1", "--batch", "14", "--max-points", "3", "--device", "cpu",
            "--workers", "0"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    study = json.loads((out / "study.json").read_text())
    assert study["arms"] == ARMS and study["seeds"] == [0]
    assert list(study["results"]) == ARMS
    for arm in ARMS:
        rows = study["results"][arm]
        assert [row["generation"] for row in rows] == [0, 1]
        for row in rows:
            for key in ("test_accuracy", "occluded_accuracy", "wild_accuracy"):
                assert row[key]["std"] == 0.0 and row[key]["values"] == [row[key]["mean"]]
        assert f"| {arm} | 1 |" in printed
    summaries = {arm: json.loads((out / f"{arm}-seed0" / "summary.json").read_text()) for arm in ARMS}
    teachers = {s["generations"][0]["sha256"] for s in summaries.values()}
    assert len(teachers) == 1  # one teacher per seed, shared by the arms
    assert [s["generations"][1]["erasing"] for s in summaries.values()] == ARMS
    assert summaries["random"]["generations"][1]["mining"] is None
    assert summaries["pasm"]["generations"][1]["mining"]["images"] == 28
    markdown = (out / "study.md").read_text()
    assert all(f"| {arm} |" in markdown for arm in ARMS) and "±" in markdown
    html = (out / "study.html").read_text()
    assert "plotly" in html.lower() and all(arm in html for arm in ARMS)
    if study["png"] is None:
        assert "PNG" in study["png_note"] or "kaleido" in study["png_note"].lower()

    stamp = (out / "pasm-seed0" / "gen1.safetensors").stat().st_mtime_ns
    assert main(argv) == 0  # finished runs are skipped, not trained again
    assert (out / "pasm-seed0" / "gen1.safetensors").stat().st_mtime_ns == stamp


def test_mean_and_std_over_seeds_in_the_table():
    results = {"pasm": [{"generation": 1, "seeds": 2, "test_accuracy": {"mean": 0.75, "std": 0.05, "values": [0.7, 0.8]}}]}
    table = markdown_table(results)
    assert "| pasm | 1 | 0.7500 ± 0.0500 | 2 |" in table
    assert "test accuracy" in table.splitlines()[0]


@pytest.mark.parametrize("arms, seeds, message", [
    (["pasm", "cutout"], [0], "unknown arm"),
    (["pasm", "pasm"], [0], "each arm once"),
    (["pasm"], [0, 0], "distinct"),
])
def test_bad_arms_and_seeds_are_refused(tmp_path, arms, seeds, message):
    with pytest.raises(PasmError, match=message):
        run_study(tmp_path, {"data": "synth:/nowhere"}, arms, seeds)
