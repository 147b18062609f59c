"""The benchmarks (the repository's bench/ modules) smoke-run tiny on the CPU: every figure is there and sane.

No timing is asserted: on a shared machine only the presence and the sign of a ratio are facts.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.attack import count_name, stream_schedule
from bench.attack import main as attack_benchmark
from bench.gpu import main as gpu_benchmark
from bench.train_overhead import main as train_benchmark

REPO = Path(__file__).resolve().parents[1]
TINY_ATTACK = ["--size", "16", "--batch", "6", "--stream-batches", "2", "--mining-batches", "3", "--max-points", "3",
               "--train-images", "42", "--epochs", "1", "--repeats", "1", "--peer-images", "1",
               "--memory-images", "40", "--memory-batch", "16", "--memory-size", "16", "--memory-points", "2"]
RATIOS = ("stream_images_per_s", "one_by_one_images_per_s", "speedup", "single_batch_images_per_s", "single_batch_speedup",
          "fwd_bwd_batching_speedup", "speedup_share_of_fwd_bwd", "bound_s", "mining_overhead_vs_points_used",
          "stream_overhead_vs_points_used", "plain_loop_images_per_s", "speedup_vs_plain_loop", "one_by_one_vs_plain_loop",
          "full_step_over_fwd_bwd")


def check_attack_report(report, batch, size, max_points, memory_images):
    for key in RATIOS:
        assert report[key] > 0, key
    assert report["batch"] == batch and report["size"] == size
    assert report["images"] == 2 * batch and report["mining_images"] == 3 * batch
    assert 0 <= report["mean_points_used"] <= max_points and 0 <= report["flip_rate"] <= 1
    assert report["mining_steps"] >= report["ideal_steps"] > 0 and 0 < report["mining_mean_occupancy"] <= 1
    assert 0 <= report["drain_share"] < 1 and report["mining_profile"]["steps"] == report["mining_steps"]
    small, large = count_name(memory_images), count_name(4 * memory_images)
    for name in (small, large):
        assert report[f"rss_mining_{name}_mb"] > 0 and report[f"rss_growth_{name}_mb"] is not None
    assert report[f"regions_bytes_{large}"] == 4 * report[f"regions_bytes_{small}"] > 0
    assert report["rss_mining_peak_ratio"] > 0


def test_the_attack_benchmark_reports_every_figure(tmp_path):
    out = tmp_path / "bench.json"
    report = attack_benchmark(TINY_ATTACK + ["--json", str(out)])
    assert json.loads(out.read_text()) == report
    check_attack_report(report, batch=6, size=16, max_points=3, memory_images=40)
    peer = report["peer"]
    assert "skipped" in peer or (peer["images"] == 1 and 0 <= peer["success_rate"] <= 1)
    assert peer["pasm_on_same_images"]["images_per_s"] > 0


def test_the_training_benchmark_reports_step_over_compute(tmp_path):
    report = train_benchmark(["--data", str(tmp_path / "synth"), "--train-images", "40", "--test-images", "8",
                              "--size", "16", "--batch", "8", "--epochs", "2", "--teacher-epochs", "1", "--arms", "pasm",
                              "--json", str(tmp_path / "train.json")])
    assert json.loads((tmp_path / "train.json").read_text()) == report
    assert report["steps_per_epoch"] == 5 and len(report["epoch_seconds"]) == 2
    assert report["step_over_compute"] > 0 and report["compute_step_s"] > 0 and report["epoch_step_s"] > 0
    assert report["mining"]["images"] == 40 and "ratio" not in report, "the ratio needs the none arm"


def test_the_gpu_benchmark_runs_quick_on_the_cpu(tmp_path):
    report = gpu_benchmark(["--device", "cpu", "--quick", "--json", str(tmp_path / "gpu.json")])
    assert json.loads((tmp_path / "gpu.json").read_text()) == report
    assert report["attack"]["arch"] == "resnet18" and report["attack"]["autocast"] is True
    assert report["attack"]["speedup"] > 0 and report["attack"]["mining_overhead_vs_points_used"] > 0
    assert report["train"]["ratio"] > 0 and report["train"]["step_over_compute"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has CUDA")
def test_the_gpu_benchmark_refuses_a_machine_without_cuda_in_one_line():
    run = subprocess.run([sys.executable, "-m", "bench.gpu"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode != 0
    assert run.stderr.strip().count("\n") == 0 and "CUDA" in run.stderr and run.stderr.startswith("error:")


def test_the_app_benchmark_refuses_a_missing_checkpoint_in_one_line(tmp_path):
    missing = tmp_path / "teacher.safetensors"
    run = subprocess.run([sys.executable, "-m", "bench.app", "--checkpoint", str(missing)], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert str(missing) in run.stderr and "no such file" in run.stderr and "Traceback" not in run.stderr


def test_the_erased_regions_benchmark_counts_every_face_once_per_method(tmp_path):
    from bench.erased_regions import METHODS
    from bench.erased_regions import main as erased_regions
    from pasm.checkpoints import make_meta, save_checkpoint
    from pasm.data.synth import CLASSES, REGIONS, write_synth
    from pasm.models import InputSpec, build_model

    write_synth(tmp_path / "synth", train=14, test=7, size=24, seed=0)
    model = build_model("small_cnn", len(CLASSES), InputSpec(24, 3))
    save_checkpoint(tmp_path / "teacher.safetensors", model, make_meta(model, CLASSES))
    report = erased_regions(["--checkpoint", str(tmp_path / "teacher.safetensors"), "--data", str(tmp_path / "synth"),
                             "--json", str(tmp_path / "regions.json")])
    assert json.loads((tmp_path / "regions.json").read_text()) == report and report["faces"] == 14
    for name in METHODS:
        assert set(report[name]) == {*REGIONS, "no cue", "no region"} and sum(report[name].values()) == 14
    assert report["random"]["no region"] == 0  # random erasing always places a window


def test_pasm_has_no_bench_command():
    from pasm.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "attack"])


def test_the_drain_schedule_counts_steps_and_occupancy():
    assert stream_schedule([3, 3], capacity=2) == (3, 1.0)
    steps, occupancy = stream_schedule([1, 1, 4], capacity=2)  # the third image enters at step 2, alone after it
    assert steps == 5 and occupancy == pytest.approx(6 / 10)


def test_the_contention_benchmark_times_every_thread_count_and_held_core():
    from bench.contention import main as contention_benchmark

    report = contention_benchmark(["--threads", "1,2", "--held", "0,1", "--steps", "1", "--repeats", "1",
                                   "--policies", "default"])
    cells = report["ms_per_step"]["default"]
    assert set(cells) == {"held=0", "held=1"} and all(set(row) == {"threads=1", "threads=2"} for row in cells.values())
    assert all(ms > 0 for row in cells.values() for ms in row.values())
    assert min(report["slowdown"]["default"]["held=0"].values()) == 1.0


def test_contention_slowdowns_are_over_the_best_idle_cell_of_any_policy():
    from bench.contention import slowdowns

    cells = {"default": {"held=0": {"threads=1": 50.0, "threads=2": 40.0}, "held=1": {"threads=2": 120.0}},
             "PASSIVE": {"held=0": {"threads=1": 60.0, "threads=2": 80.0}, "held=1": {"threads=2": 100.0}}}
    slow = slowdowns(cells)
    assert slow["default"]["held=1"]["threads=2"] == 3.0 and slow["PASSIVE"]["held=0"]["threads=1"] == 1.5
    assert slowdowns({"default": {"held=1": {"threads=1": 70.0}}}) is None, "no idle cell: no baseline"
