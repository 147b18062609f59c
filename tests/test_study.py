import json
import random
import statistics
import tempfile

import pytest

from pasm.cli import main
from pasm.data.synth import REGIONS, write_synth
from pasm.errors import PasmError
from pasm.runs import Run
from pasm.study import arm_config, arm_settings, markdown_table, paired, report, run_study

ARMS = ["none", "random", "attention", "pasm"]
VARIANTS = ["none", "pasm", "pasm-adaptive"]


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


def spread_scores(run):
    """Distinct made-up scores for a run's student: after one epoch on 14 images every arm is at chance, so the real
    differences are all 0 and could not show a pairing or sign mistake."""
    summary = run.read_summary()
    student, rng = summary["generations"][1], random.Random(run.path.name)
    student.update(test_accuracy=rng.random(), wild_accuracy=rng.random(),
                   wild_accuracy_by_region={r: rng.random() for r in student["wild_accuracy_by_region"]})
    run.write_summary(summary)


def test_paired_differences_to_none_are_the_runs_own_differences(tmp_path, capsys):
    write_synth(tmp_path / "synth", train=28, test=14, size=32, seed=1)
    out = tmp_path / "study"
    argv = ["study", "--data", f"synth:{tmp_path / 'synth'}", "--out", str(out), "--arms", ",".join(VARIANTS),
            "--seeds", "0,1", "--size", "32", "--epochs", "1", "--batch", "14", "--limit", "14", "--max-points", "3",
            "--device", "cpu", "--workers", "0"]
    assert main(argv) == 0
    teachers = {}
    for arm in VARIANTS:
        for seed in (0, 1):
            run = Run(out / f"{arm}-seed{seed}")
            teachers.setdefault(seed, set()).add(run.read_summary()["generations"][0]["sha256"])
            spread_scores(run)
    assert [len(shas) for shas in teachers.values()] == [1, 1]  # the arms of a seed share its teacher
    assert Run(out / "pasm-adaptive-seed0").read_config()["adaptive"] is True
    assert Run(out / "pasm-seed0").read_config()["adaptive"] is False
    capsys.readouterr()
    assert main(argv) == 0  # finished runs are skipped; the report is made again from their summaries
    assert "## Paired difference to `none`" in capsys.readouterr().out
    study = json.loads((out / "study.json").read_text())
    runs = {(arm, seed): Run(out / f"{arm}-seed{seed}").read_summary()["generations"][1]
            for arm in VARIANTS for seed in (0, 1)}
    assert study["arm_settings"]["pasm-adaptive"] == {"erasing": "pasm", "adaptive": True}
    none_row = study["results"]["none"][1]
    assert none_row["train_accuracy"]["values"] == [runs["none", s]["train_accuracy"] for s in (0, 1)]
    assert list(none_row["wild_accuracy_by_region"]) == list(REGIONS)
    assert study["paired"]["baseline"] == "none" and list(study["paired"]["arms"]) == VARIANTS[1:]
    markdown = (out / "study.md").read_text()
    for arm in VARIANTS[1:]:
        [row] = study["paired"]["arms"][arm]
        assert row["generation"] == 1 and row["seeds"] == [0, 1]
        for key in ("test_accuracy", "wild_accuracy"):
            by_seed = [runs[arm, s][key] - runs["none", s][key] for s in (0, 1)]
            assert row[key]["values"] == pytest.approx(by_seed)
            assert row[key]["mean"] == pytest.approx(statistics.fmean(by_seed))
            assert row[key]["std"] == pytest.approx(statistics.stdev(by_seed))
        regions = {s: (runs[arm, s]["wild_accuracy_by_region"], runs["none", s]["wild_accuracy_by_region"])
                   for s in (0, 1)}
        for region in REGIONS:
            by_seed = [regions[s][0][region] - regions[s][1][region] for s in (0, 1)]
            assert row["wild_accuracy_by_region"][region]["values"] == pytest.approx(by_seed)
        test = [runs[arm, s]["test_accuracy"] - runs["none", s]["test_accuracy"] for s in (0, 1)]
        assert f"| {arm} | 1 | {statistics.fmean(test):+.4f} ± {statistics.stdev(test):.4f} |" in markdown
        assert f"| {arm} | 1 | 1 | {test[1]:+.4f} |" in markdown
    assert "| teacher (all arms) | 0 |" in markdown and "| none | 0 |" not in markdown
    assert "occluded test (test_wild)" in (out / "study.html").read_text()

    argv[argv.index("--arms") + 1:argv.index("--seeds") + 2] = ["pasm-disks,none", "--seeds", "0"]
    assert main(argv) == 0  # an arm added later, even first, adopts the seed's teacher
    disks = Run(out / "pasm-disks-seed0")
    assert {disks.read_summary()["generations"][0]["sha256"]} == teachers[0]
    assert disks.read_config()["region"] == "disks"


def test_paired_differences_by_hand_and_none_without_a_none_arm():
    def entry(test, wild, regions):
        return {"test_accuracy": test, "wild_accuracy": wild, "wild_accuracy_by_region": regions}

    runs = {"none": {0: {1: entry(0.5, 0.4, {"eyes": 0.3})}, 1: {1: entry(0.6, 0.5, None)}},
            "pasm": {0: {1: entry(0.7, 0.3, {"eyes": 0.5})}, 1: {1: entry(0.5, 0.5, None)}}}
    [row] = paired(runs)["pasm"]
    assert row["test_accuracy"]["values"] == pytest.approx([0.2, -0.1])
    assert row["test_accuracy"]["mean"] == pytest.approx(0.05)
    assert row["test_accuracy"]["std"] == pytest.approx(0.2121, abs=1e-4)
    assert row["wild_accuracy"]["values"] == pytest.approx([-0.1, 0.0])
    assert row["wild_accuracy_by_region"]["eyes"]["values"] == pytest.approx([0.2])  # seed 1 predates regions
    assert row["wild_accuracy_by_region"]["eyes"]["seeds"] == [0]
    assert paired({"pasm": runs["pasm"]}) is None
    assert "Paired" not in report({"pasm": []}, None, ["pasm"], [0, 1], 15)


def test_an_unknown_arm_is_refused_in_one_line(tmp_path, capsys):
    argv = ["study", "--data", f"synth:{tmp_path}", "--out", str(tmp_path / "study"), "--arms", "none,pasm-cutout"]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "unknown arm" in error and "pasm-adaptive" in error
    assert not (tmp_path / "study").exists()


def test_an_arm_that_contradicts_the_options_is_refused_before_training(tmp_path):
    with pytest.raises(PasmError, match="--arms pasm-disks: --adaptive"):
        run_study(tmp_path / "study", {"data": "synth:/nowhere", "adaptive": True}, ["none", "pasm-disks"], [0])
    assert not (tmp_path / "study").exists()


def test_re_mining_every_third_of_the_epochs():
    assert arm_settings("pasm-remine", 15) == {"erasing": "pasm", "remine_every": 5}
    assert arm_settings("pasm-remine", 2)["remine_every"] == 1


def test_the_small_window_arm_sets_its_area_over_the_studys():
    options = {"data": "synth:/nowhere", "area": 0.2}
    assert arm_config(options, "pasm-small", 0, None).area == 0.05
    assert arm_config(options, "pasm", 0, None).area == 0.2


def test_arms_are_paired_with_random_erasing_too(tmp_path):
    def entry(test, wild):
        return {"test_accuracy": test, "wild_accuracy": wild}

    runs = {"none": {0: {1: entry(0.5, 0.4)}}, "random": {0: {1: entry(0.45, 0.5)}}, "pasm": {0: {1: entry(0.4, 0.3)}}}
    [row] = paired(runs, "random")["pasm"]
    assert row["test_accuracy"]["values"] == pytest.approx([-0.05]) and row["wild_accuracy"]["values"] == pytest.approx([-0.2])
    assert set(paired(runs, "random")) == {"none", "pasm"}
    text = report({"pasm": []}, {"none": paired(runs), "random": paired(runs, "random")}, ["pasm"], [0], 15)
    assert "## Paired difference to `none`" in text and "## Paired difference to `random`" in text


def test_side_by_side_runs_take_turns_on_the_visible_cuda_devices(monkeypatch, tmp_path):
    import torch

    from pasm import study

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert study.visible_devices("auto") == ["cuda:0", "cuda:1"] and study.visible_devices("cpu") == ["cpu"]
    started = []

    class Finished:
        def __init__(self, command, **kwargs):
            started.append(command[command.index("--device") + 1])

        def wait(self):
            return 0

    monkeypatch.setattr(study.subprocess, "Popen", Finished)
    write_synth(tmp_path / "synth", train=28, test=14, size=32, seed=1)
    config = arm_config({"data": f"synth:{tmp_path / 'synth'}", "size": 32}, "none", 0, None)
    runner = study._SideBySide("auto", 0)
    runner.busy["cuda:0"] = 1  # a run is still going there
    runner.train((config, tmp_path / "a", False))
    assert started == ["cuda:1"]


def test_a_study_on_ray_gives_the_results_of_one_run_after_another(tmp_path):
    ray = pytest.importorskip("ray")  # in the dev lock; a GPU machine's own environment may lack it
    write_synth(tmp_path / "synth", train=28, test=14, size=32, seed=1)
    options = {"data": f"synth:{tmp_path / 'synth'}", "size": 32, "epochs": 1, "batch": 14, "max_points": 3,
               "threads": 1}
    serial = run_study(tmp_path / "serial", options, ["none", "pasm"], [0], device="cpu", workers=0)
    # Ray's sockets live under its temp dir, and a socket path must stay under 108 bytes: pytest's tmp_path is too deep.
    with tempfile.TemporaryDirectory(prefix="ray") as ray_dir:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=ray_dir)
        try:
            on_ray = run_study(tmp_path / "ray", options, ["none", "pasm"], [0], device="cpu", workers=0,
                               launcher="ray")
        finally:
            ray.shutdown()
    assert on_ray["results"] == serial["results"]
    assert (tmp_path / "ray" / "pasm-seed0" / "gen1.safetensors").is_file()
