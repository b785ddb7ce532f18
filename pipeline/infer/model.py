"""Running the detector: the config and checkpoint loaded, the class MIDs resolved, and the variants of each image
predicted in batches."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from contracts.classes import read_classes
from contracts.files import DataError
from pipeline.checkpoints import load_checkpoint
from pipeline.infer.variants import Detections, VariantLoader, keep_valid, to_normalised


class _ImageVariants:
    """Map-style dataset over image paths for a DataLoader: item i = the variants of image i."""

    def __init__(self, paths: Sequence[Path], loader: VariantLoader):
        self.paths, self.loader = list(paths), loader

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> list[dict]:
        return self.loader(self.paths[i])


def load_checkpoint_file(path: Path, trust: bool = False) -> dict:
    """Read a checkpoint: in full when it is ours (in a training work dir), else without running its pickle code
    unless ``trust`` (:func:`pipeline.checkpoints.load_checkpoint`)."""
    return load_checkpoint(path, "cpu", trust)


def set_test_cfg(cfg, score_thr: float, max_per_img: int) -> None:
    """Set the model's final-stage score threshold and detection cap (two-stage ``rcnn`` or single-stage)."""
    test_cfg = cfg.model.get("test_cfg")
    if test_cfg is None:
        raise ValueError("the config's model has no test_cfg")
    target = test_cfg.get("rcnn") or test_cfg
    target["score_thr"] = score_thr
    target["max_per_img"] = max_per_img


def load_config(config: Path | str, score_thr: float, max_per_img: int):
    """Read an mmdet config (its ``custom_imports`` load the plugin) and set its test score_thr / max_per_img."""
    from mmengine.config import Config

    if not Path(config).is_file():
        raise FileNotFoundError(f"config not found: {config}")
    cfg = Config.fromfile(str(config))
    set_test_cfg(cfg, score_thr, max_per_img)
    return cfg


def load_detector(cfg, checkpoint: Path, device: str, trust: bool = False):
    """Build the detector of ``cfg``, load ``checkpoint`` into it, eval mode. Returns (model, checkpoint meta)."""
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import init_default_scope
    from mmengine.runner import load_state_dict

    init_default_scope(cfg.get("default_scope", "mmdet"))
    from mmdet.registry import MODELS

    try:
        model = revert_sync_batchnorm(MODELS.build(cfg.model))
    except KeyError as error:  # the config names a type no registry knows
        raise DataError(f"the config's model: {error.args[0] if error.args else error}") from None
    ckpt = load_checkpoint_file(checkpoint, trust)
    try:
        load_state_dict(model, ckpt.get("state_dict", ckpt), strict=True)
    except RuntimeError as error:  # strict loading of a checkpoint of another model
        raise DataError(f"{checkpoint}: {error}") from None
    return model.to(device).eval(), ckpt.get("meta", {})


def resolve_classes(classes_file: Path | None, meta: dict, cfg) -> list[str]:
    """The MIDs by class index: the ``--classes`` file, else the ``mids`` the training dataset saved in the
    checkpoint's ``dataset_meta``; their count must be the model's ``num_classes``."""
    from pipeline.num_classes import model_num_classes

    if classes_file is not None:
        mids, source = list(read_classes(classes_file).mids), str(classes_file)
    else:
        mids, source = list((meta.get("dataset_meta") or {}).get("mids") or []), "the checkpoint's dataset_meta"
        if not mids:
            raise ValueError("the checkpoint names no class MIDs: pass --classes FILE "
                             "(e.g. WORK/prepared/classes.csv)")
    counts = model_num_classes(cfg.model)
    if counts and counts != {len(mids)}:
        raise ValueError(f"{source} lists {len(mids)} classes but the model has num_classes="
                         f"{', '.join(map(str, sorted(counts)))}")
    return [str(m) for m in mids]


def predict_images(model, loader: VariantLoader, paths: Sequence[Path], batch_size: int, workers: int = 0,
                   amp: bool = False) -> Iterator[list[Detections]]:
    """Yield, per image in order, the detections of every variant (normalised, un-flipped, in the original frame)."""
    import torch
    from torch.utils.data import DataLoader

    device = next(model.parameters()).device
    data = DataLoader(_ImageVariants(paths, loader), batch_size=batch_size, num_workers=workers, collate_fn=list)
    with torch.no_grad(), torch.autocast(device.type, enabled=amp):
        for batch in data:
            per_variant = []
            for v, variant in enumerate(loader.variants):
                samples = model.test_step(dict(inputs=[item[v]["inputs"] for item in batch],
                                               data_samples=[item[v]["data_samples"] for item in batch]))
                per_variant.append([_sample_detections(s, variant.flip) for s in samples])
            yield from (list(image) for image in zip(*per_variant))


def _sample_detections(sample, flipped: bool) -> Detections:
    """One mmdet prediction (pixel boxes of the original-size frame) -> normalised, un-flipped, valid boxes."""
    pred = sample.pred_instances
    height, width = sample.ori_shape[:2]
    boxes = to_normalised(pred.bboxes.float().cpu().numpy(), width, height, flipped)
    dets = Detections(boxes, pred.scores.float().cpu().numpy(), pred.labels.cpu().numpy().astype(np.int64))
    return keep_valid(dets)
