"""The end of a generation: evaluation, the checkpoint and the summary, only then is it finished; or generation 0
adopted from ``--teacher``. Part of the Trainer (a mixin): it uses the trainer's run, records, evaluation sets and
progress."""
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from .. import __version__, fileio
from ..checkpoints import file_sha256, load_checkpoint, make_meta, save_checkpoint
from ..emotions import remap_outputs
from .mining import MINING_BATCH
from .samples import CleanImages


class GenerationEnd:
    """The Trainer's generation ends (pasm.train.loop.Trainer)."""

    def _finish(self, g, model, teacher_sha, mining, mining_seconds):
        """Evaluate, write the checkpoint and the summary; only then is the generation finished."""
        cfg = self.config
        if self.dist.is_main:
            self.progress.status(phase="evaluating", generation=g, epoch=cfg.epochs, step=0)
            started = time.monotonic()
            metrics = self._evaluate(model)
            eval_seconds = time.monotonic() - started
            arm = {"erasing": cfg.erasing if g > 0 else "none", "distill": cfg.distill and g > 0}
            meta = make_meta(model, self.classes, generation=g, parent_hash=teacher_sha,
                             train_config={**cfg.to_dict(), "generation": g, **arm},
                             metrics={"data": cfg.data, **metrics},
                             provenance={"run": str(self.run.path.resolve()), "pasm": __version__})
            sha = save_checkpoint(self.run.checkpoint_path(g), model, meta)
            train_seconds = sum(r["seconds"] for r in self.records if r["kind"] == "epoch" and r["generation"] == g)
            seconds = {"mining": mining_seconds, "train": train_seconds, "eval": eval_seconds}
            self._record_generation(g, sha, teacher_sha, metrics, arm, seconds, mining)
        self.dist.barrier()

    def _adopt_teacher(self):
        """Generation 0 from ``--teacher``. With the run's classes the file is copied unchanged, so its hash is the
        students' parent hash. With other names or order, generation 0 is the teacher with its final layer's rows
        put in the data set's order (so students and distillation see one class order); its parent hash is the
        teacher's file and its provenance records the mapping."""
        self.progress.status(phase="evaluating", generation=0, epoch=0, step=0)
        if self.dist.is_main:
            mapping, path = self.teacher_mapping, self.run.checkpoint_path(0)
            teacher = load_checkpoint(self.config.teacher, device=self.device)
            model = teacher.model if mapping.identical else remap_outputs(teacher.model, mapping.indices).eval()
            started = time.monotonic()
            metrics = self._evaluate(model)
            seconds = {"mining": 0.0, "train": 0.0, "eval": time.monotonic() - started}
            if mapping.identical:
                fileio.write_bytes(path, Path(self.config.teacher).read_bytes())
                sha, parent_hash = file_sha256(path), teacher.meta.get("parent_hash")
            else:
                provenance = {"source": self.config.teacher, "source_sha256": teacher.sha256, "pasm": __version__,
                              "class_mapping": mapping.to_dict(), "source_provenance": teacher.meta.get("provenance")}
                meta = make_meta(model, self.classes, generation=0, parent_hash=teacher.sha256,
                                 train_config=teacher.meta.get("train_config"),
                                 metrics={"data": self.config.data, **metrics}, provenance=provenance)
                sha, parent_hash = save_checkpoint(path, model, meta), teacher.sha256
            arm = {"erasing": "none", "distill": False, "source": self.config.teacher,
                   "class_mapping": mapping.description}
            self._record_generation(0, sha, parent_hash, metrics, arm, seconds, None)
        self.dist.barrier()

    def _evaluate(self, model):
        """The evaluation sets' metrics plus accuracy on the clean, unaugmented training images, which says
        whether the network fits its training set (the regime a regulariser like erasing is meant for)."""
        metrics = self.eval_sets.evaluate(model, device=self.device)
        loader = DataLoader(CleanImages(self.images, range(len(self.images))), batch_size=MINING_BATCH,
                            num_workers=self._loader_workers())
        model.eval()
        correct = 0
        with torch.no_grad():
            for images, labels in loader:
                logits = model(images.to(self.device).float().div_(255))
                correct += int((logits.argmax(1).cpu() == labels).sum())
        return {**metrics, "train_accuracy": correct / len(self.images)}

    def _record_generation(self, g, sha, parent_hash, metrics, arm, seconds, mining):
        scores = {"train_accuracy": metrics["train_accuracy"], "test_accuracy": metrics["accuracy"],
                  "mean_class_accuracy": metrics["mean_class_accuracy"],
                  "occluded_accuracy": metrics["occluded_accuracy"],
                  "occluded_mean_class_accuracy": metrics["occluded_mean_class_accuracy"]}
        if "wild_accuracy" in metrics:
            scores.update(wild_accuracy=metrics["wild_accuracy"], wild_mean_class_accuracy=metrics["wild_mean_class_accuracy"])
        entry = {"index": g, "checkpoint": self.run.checkpoint_name(g), "sha256": sha, "parent_hash": parent_hash,
                 **arm, **scores, "per_class_accuracy": metrics["per_class_accuracy"],
                 "occluded_accuracy_by_kind": metrics["occluded_accuracy_by_kind"],
                 "wild_accuracy_by_region": metrics.get("wild_accuracy_by_region"), "mining": mining, "seconds": seconds}
        self.generations = [e for e in self.generations if e["index"] != g] + [entry]
        self.records = [r for r in self.records if not (r["kind"] == "generation" and r["generation"] == g)]
        self.records.append({"kind": "generation", "generation": g, **scores, "confusion": metrics["confusion"],
                             "mining": mining, "seconds": seconds})
        self.run.write_summary(self.summary())
        self.run.write_metrics(self.records)
        self.run.save_state({"generation": g, "epoch": self.config.epochs, "finished": True,
                             "records": self.records, "generations": self.generations})
        extra = f", wild {scores['wild_accuracy']:.3f}" if "wild_accuracy" in scores else ""
        self.progress.say(f"generation {g}: test accuracy {scores['test_accuracy']:.3f}, mean class accuracy "
                  f"{scores['mean_class_accuracy']:.3f}, occluded {scores['occluded_accuracy']:.3f}{extra} "
                  f"-> {self.run.checkpoint_name(g)}")
