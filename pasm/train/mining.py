"""Mining before a student trains: a region per training image from the teacher (or from the student, re-mining,
or from every earlier generation, accumulating), each rank locating its share. Part of the Trainer (a mixin): it uses
the trainer's images, config, processes, stop requests and progress."""
import math

import torch
from torch.utils.data import DataLoader

from ..attack import AttackConfig
from ..checkpoints import load_checkpoint
from ..mining import RegionConfig, locate_all, region_method
from .masks import combine_regions
from .samples import CleanImages, stream_seed

# Images per batch of the passes over clean images: mining, the fill's mean colour, the training accuracy.
MINING_BATCH = 256


class Mining:
    """The Trainer's mining (pasm.train.loop.Trainer)."""

    def _mine(self, model, g, epoch, who=None):
        """A region per training image from ``model`` (the teacher, or the student when re-mining; none
        for random erasing, whose windows are drawn afresh every epoch), each rank locating its share."""
        cfg = self.config
        shown = cfg.erasing != "random"  # random windows take no time worth showing
        if shown:
            self.progress.status(phase="mining", generation=g, epoch=epoch)
        count = len(self.images)
        share = math.ceil(count / self.dist.world)
        # Every rank mines the same number of rows (the last one wraps around), so collectives line up.
        indices = [i % count for i in range(self.dist.rank * share, (self.dist.rank + 1) * share)]
        loader = DataLoader(CleanImages(self.images, indices), batch_size=MINING_BATCH, num_workers=self._loader_workers())
        generator = torch.Generator().manual_seed(stream_seed(cfg.seed, g, epoch, 1))
        method = region_method(cfg.erasing, model, AttackConfig(max_points=cfg.max_points),
                               RegionConfig(cfg.region, cfg.area, cfg.adaptive, cfg.fill), generator)
        batches = self._mining_batches(loader)
        if shown:
            batches = self.progress.log_mining(batches, g, epoch, count, MINING_BATCH, share=self.dist.world)
        regions, result = locate_all(method, batches, MINING_BATCH)
        regions = self.dist.gather_rows(regions)[:count].cpu()
        attempts = None if result is None else torch.stack([result.num_points, result.points_to_flip], dim=1)
        stats = self._mining_stats(None if attempts is None else self.dist.gather_rows(attempts)[:count].cpu())
        if shown:
            self.progress.mined(count)
            self.progress.say(f"generation {g}: mined {count} regions with {who or ('the student' if epoch else 'the teacher')} ({cfg.erasing}"
                      + (f"; {stats['flipped']:.0%} flipped, {stats['mean_points_to_flip']:.1f} points on average"
                         if attempts is not None else "") + ")")
        return regions, stats

    def _accumulated(self, regions, g):
        """With ``accumulate``, generation g >= 2 erases from the regions every earlier generation locates (each
        frozen checkpoint mines again): their union as masks (N, 1, S, S), or all of them (N, K, ...), one drawn per
        step. Reliance that moved to the next region then meets it erased too, instead of the teacher's one region."""
        cfg = self.config
        if cfg.accumulate == "none" or g < 2:
            return regions
        earlier = []
        for k in range(g - 1):
            model = load_checkpoint(self.run.checkpoint_path(k), device=self.device).model.requires_grad_(False)
            earlier.append(self._mine(model, g, 0, who=f"generation {k}")[0])
        return combine_regions(earlier + [regions], cfg.accumulate, self.input_spec.size)

    def _mining_batches(self, loader):
        """The loader's images on the device in [0, 1], checking for a stop request between batches."""
        for images, labels in loader:
            self.stopper.check()
            yield images.to(self.device).float().div_(255), labels.to(self.device)

    @staticmethod
    def _mining_stats(attempts):
        """How the attack went: share of images it flipped, points it needed, share with no region."""
        if attempts is None:
            return {"images": 0}
        num_points, points_to_flip = attempts[:, 0], attempts[:, 1]
        flipped = points_to_flip > 0
        return {
            "images": len(attempts),
            "flipped": float(flipped.float().mean()),
            "mean_points_to_flip": float(points_to_flip[flipped].float().mean()) if flipped.any() else 0.0,
            "misclassified": float((points_to_flip == 0).float().mean()),
            "no_region": float((num_points == 0).float().mean()),
        }
