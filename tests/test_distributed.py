import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from pasm.checkpoints import load_checkpoint
from pasm.data.synth import write_synth
from pasm.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]


def shape_of_run(out):
    """What must not depend on the number of processes: the files, the metric lines, the summary's keys."""
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((out / "summary.json").read_text())
    return {
        "files": sorted(p.name for p in out.iterdir()),
        "records": [(r["kind"], r["generation"], r.get("epoch")) for r in records],
        "generations": [sorted(entry) for entry in summary["generations"]],
        "config": json.loads((out / "config.json").read_text())["config"],
        "status": json.loads((out / "status.json").read_text())["state"],
        "mined": [entry["mining"] and entry["mining"]["images"] for entry in summary["generations"]],
        "weights": {k: tuple(v.shape) for k, v in load_checkpoint(out / "gen1.safetensors").model.state_dict().items()},
    }


def test_two_processes_with_gloo_give_the_run_of_one(tmp_path):
    write_synth(tmp_path / "synth", train=42, test=14, size=32, seed=1)
    data = f"synth:{tmp_path / 'synth'}"
    options = ["--data", data, "--size", "32", "--epochs", "1", "--batch", "8", "--max-points", "5", "--device", "cpu"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "pasm", "train", *options, "--out", str(tmp_path / "two"), "--workers", "0"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "on 2 process(es)" in (tmp_path / "two" / "train.log").read_text()

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        config = TrainConfig(data=data, size=32, epochs=1, batch=8, max_points=5)
        train(config, tmp_path / "one", device="cpu", workers=0)
    finally:
        torch.set_num_threads(threads)
    assert shape_of_run(tmp_path / "two") == shape_of_run(tmp_path / "one")
