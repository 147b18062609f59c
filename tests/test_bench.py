import json

from bench.attack import main as attack_benchmark


def test_the_attack_benchmark_reports_every_figure(tmp_path):
    out = tmp_path / "bench.json"
    report = attack_benchmark(["--size", "16", "--batch", "6", "--max-points", "3", "--train-images", "42",
                               "--epochs", "1", "--repeats", "1", "--peer-images", "1", "--json", str(out)])
    assert json.loads(out.read_text()) == report
    for key in ("batched_images_per_s", "per_sample_images_per_s", "speedup", "overhead_vs_fwd_bwd",
                "overhead_vs_points_used", "fwd_bwd_batching_speedup"):
        assert report[key] > 0, key
    assert report["batch"] == 6 and report["size"] == 16
    assert 1 <= report["attack_steps"] <= 3
    assert 0 < report["mean_points_used"] <= report["attack_steps"]
    peer = report["peer"]
    assert "skipped" in peer or (peer["images"] == 1 and 0 <= peer["success_rate"] <= 1)
    assert peer["pasm_on_same_images"]["images_per_s"] > 0
