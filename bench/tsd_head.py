"""Benchmark of the TSD RoI head against mmdet's Shared2FC head on CPU, at the paper's settings.

FPN maps of one 1333x800 image (padded to 1344x800: strides 4-64, 256 channels), 2000 proposals (log-uniform
sizes 16-640 px, aspect ratios 1/3-3) and 8 ground-truth boxes, 512 sampled RoIs in training, 1000 RoIs at test,
``--num-classes`` classes. Times (median of ``--repeats`` after one warm-up), in one run:
  - a training step of the RoI head (assign, sample, RoIAlign, head, losses, backward into the FPN maps):
    ``StandardRoIHead`` + ``Shared2FCBBoxHead`` vs ``TSDRoIHead`` + ``TSDShared2FCBBoxHead``;
  - an inference pass (RoIAlign + head forward, no grad; the TSD head runs its TSD branch only);
  - the DeltaC + DeltaR pooling alone (forward + backward at the training RoIs; forward at the test RoIs) next to
    mmcv's RoIAlign extraction of the same RoIs, and the pooling's share of the TSD step (target: <= 25% in training).
With ``--model``: a whole training step of R-50 FPN Faster R-CNN (random init, one 1333x800 image), baseline vs
TSD (target: <= 1.6x).

Usage: python bench/tsd_head.py [--num-classes 500] [--repeats 3] [--threads 1] [--model]
"""
from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from functools import partial
from pathlib import Path
from typing import Callable

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pipeline.models  # noqa: E402,F401  (registers the TSD heads)
from mmdet.registry import MODELS  # noqa: E402
from mmdet.structures import DetDataSample  # noqa: E402
from mmdet.utils import register_all_modules  # noqa: E402
from mmengine.config import Config, ConfigDict  # noqa: E402
from mmengine.logging import MMLogger  # noqa: E402
from mmengine.structures import InstanceData  # noqa: E402
from pipeline.ops import deform_roi_pool_levels  # noqa: E402
from tqdm import tqdm  # noqa: E402

IMAGE_W, IMAGE_H, PAD_W = 1333, 800, 1344
STRIDES = (4, 8, 16, 32, 64)


def random_boxes(gen: torch.Generator, n: int) -> torch.Tensor:
    """(n, 4) boxes inside the image, log-uniform size 16-640 px, aspect ratio 1/3-3."""
    size = torch.exp(torch.empty(n).uniform_(2.77, 6.46, generator=gen))
    ratio = torch.exp(torch.empty(n).uniform_(-1.1, 1.1, generator=gen))
    w = (size * ratio.sqrt()).clamp(max=IMAGE_W - 1)
    h = (size / ratio.sqrt()).clamp(max=IMAGE_H - 1)
    x1 = torch.rand(n, generator=gen) * (IMAGE_W - w)
    y1 = torch.rand(n, generator=gen) * (IMAGE_H - h)
    return torch.stack([x1, y1, x1 + w, y1 + h], dim=1)


def model_cfg(tsd: bool, num_classes: int) -> ConfigDict:
    """The R-50 FPN Faster R-CNN of configs/r50_tsd.py (or r50_baseline.py) with ``num_classes``, random init."""
    model = Config.fromfile(str(REPO / "configs" / ("r50_tsd.py" if tsd else "r50_baseline.py"))).model
    model.roi_head.bbox_head.num_classes = num_classes
    model.backbone.init_cfg = None
    return model


def roi_head_cfg(tsd: bool, num_classes: int, train_rois: int, test_rois: int) -> dict:
    """That model's RoI head, sampling ``train_rois`` RoIs in training and keeping ``test_rois`` at test."""
    model = model_cfg(tsd, num_classes)
    rcnn_train, rcnn_test = model.train_cfg.rcnn, model.test_cfg.rcnn
    return dict(model.roi_head, train_cfg=dict(rcnn_train, sampler=dict(rcnn_train.sampler, num=train_rois)),
                test_cfg=dict(rcnn_test, max_per_img=test_rois))


def median_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def head_tasks(args) -> list[tuple[str, Callable[[], None]]]:
    """The RoI-head cases: (name, one timed step)."""
    gen = torch.Generator().manual_seed(0)
    feats = [torch.randn(1, 256, -(-IMAGE_H // s), PAD_W // s, generator=gen, requires_grad=True) for s in STRIDES]
    proposals = random_boxes(gen, 2000)
    gts = random_boxes(gen, 8)
    labels = torch.randint(0, args.num_classes, (8,), generator=gen)
    test_rois = torch.cat([torch.zeros(args.test_rois, 1), proposals[:args.test_rois]], dim=1)
    meta = dict(img_shape=(IMAGE_H, IMAGE_W), ori_shape=(IMAGE_H, IMAGE_W), pad_shape=(IMAGE_H, PAD_W),
                scale_factor=(1.0, 1.0))
    sample = DetDataSample(metainfo=meta)
    sample.gt_instances = InstanceData(bboxes=gts, labels=labels)

    def head_steps(head) -> tuple[Callable[[], None], Callable[[], None]]:
        def train_step():
            head.train()
            for p in [*head.parameters(), *feats]:
                p.grad = None
            losses = head.loss(feats, [InstanceData(bboxes=proposals.clone())], [sample])
            sum(v for k, v in losses.items() if "loss" in k).backward()

        def infer():
            head.eval()
            with torch.no_grad():
                head._bbox_forward(feats, test_rois)

        return train_step, infer

    tasks = []
    for tsd in (False, True):
        torch.manual_seed(0)
        head = MODELS.build(ConfigDict(roi_head_cfg(tsd, args.num_classes, args.train_rois, args.test_rois)))
        head.init_weights()
        train_step, infer = head_steps(head)
        name = "tsd" if tsd else "baseline"
        tasks += [(f"{name} train", train_step), (f"{name} infer", infer)]

    levels = head.bbox_head.map_roi_levels(test_rois, 4)
    scales = [1.0 / s for s in STRIDES[:4]]

    def pool(n: int, backward: bool):
        for f in feats:
            f.grad = None
        rois = test_rois[:n]
        offset = torch.randn(2 * n, 2, 7, 7, requires_grad=backward)
        with torch.set_grad_enabled(backward):
            out = deform_roi_pool_levels(feats[:4], torch.cat([rois, rois]), offset, torch.cat([levels[:n]] * 2),
                                         scales)
            if backward:
                out.backward(torch.ones_like(out))

    def roi_align(n: int, backward: bool):
        for f in feats:
            f.grad = None
        with torch.set_grad_enabled(backward):
            out = head.bbox_roi_extractor(feats[:4], test_rois[:n])
            if backward:
                out.backward(torch.ones_like(out))

    return tasks + [("pool train", lambda: pool(args.train_rois, True)),
                    ("pool infer", lambda: pool(args.test_rois, False)),
                    ("align train", lambda: roi_align(args.train_rois, True)),
                    ("align infer", lambda: roi_align(args.test_rois, False))]


def model_tasks(args) -> list[tuple[str, Callable[[], None]]]:
    """Whole-detector training steps, baseline and TSD."""
    gen = torch.Generator().manual_seed(1)
    image = torch.randint(0, 256, (3, IMAGE_H, IMAGE_W), dtype=torch.uint8, generator=gen)
    sample = DetDataSample(metainfo=dict(img_shape=(IMAGE_H, IMAGE_W), ori_shape=(IMAGE_H, IMAGE_W),
                                         scale_factor=(1.0, 1.0)))
    sample.gt_instances = InstanceData(bboxes=random_boxes(gen, 8),
                                       labels=torch.randint(0, args.num_classes, (8,), generator=gen))

    def train_step(model):
        model.train()
        model.zero_grad(set_to_none=True)
        data = model.data_preprocessor(dict(inputs=[image], data_samples=[sample.clone()]), True)
        total, _ = model.parse_losses(model.loss(data["inputs"], data["data_samples"]))
        total.backward()

    tasks = []
    for tsd in (False, True):
        torch.manual_seed(0)
        model = MODELS.build(model_cfg(tsd, args.num_classes))
        model.init_weights()
        tasks.append((f"model {'tsd' if tsd else 'baseline'}", partial(train_step, model)))
    return tasks


def print_table(title: str, rows: list[tuple[str, str, str, str]]) -> None:
    print(f"\n{title}")
    print(f"| {'what':44s} | {'baseline':>10s} | {'TSD':>10s} | {'ratio':>16s} |")
    print(f"|{'-' * 46}|{'-' * 12}|{'-' * 12}|{'-' * 18}|")
    for row in rows:
        print(f"| {row[0]:44s} | {row[1]:>10s} | {row[2]:>10s} | {row[3]:>16s} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-classes", type=int, default=500, help="classes of the box heads (default 500)")
    parser.add_argument("--train-rois", type=int, default=512, help="sampled RoIs per training image (512)")
    parser.add_argument("--test-rois", type=int, default=1000, help="RoIs per test image (1000)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions after one warm-up (3)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1; 0 = torch's choice). On a shared machine extra threads "
                             "mostly wait for each other at every parallel op, which distorts the comparison")
    parser.add_argument("--model", action="store_true", help="also time a whole R-50 FPN Faster R-CNN step")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    register_all_modules()
    MMLogger.get_current_instance().setLevel(logging.WARNING)  # no per-parameter init report
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.num_classes} classes, "
          f"{args.train_rois} train / {args.test_rois} test RoIs, median of {args.repeats}")

    tasks = head_tasks(args) + (model_tasks(args) if args.model else [])
    t = {name: median_time(step, args.repeats) for name, step in tqdm(tasks, desc="timing", unit="case")}
    ms = lambda s: f"{s * 1000:.0f} ms"  # noqa: E731
    print_table("RoI head on CPU (TSD vs Shared2FC + RoIAlign)", [
        ("training step (assign..backward)", ms(t["baseline train"]), ms(t["tsd train"]),
         f"{t['tsd train'] / t['baseline train']:.2f}x"),
        (f"inference pass ({args.test_rois} RoIs, no grad)", ms(t["baseline infer"]), ms(t["tsd infer"]),
         f"{t['tsd infer'] / t['baseline infer']:.2f}x"),
        (f"RoIAlign vs DeltaC+DeltaR, fwd+bwd ({args.train_rois})", ms(t["align train"]), ms(t["pool train"]),
         f"{t['pool train'] / t['align train']:.2f}x"),
        (f"RoIAlign vs DeltaC+DeltaR, fwd ({args.test_rois})", ms(t["align infer"]), ms(t["pool infer"]),
         f"{t['pool infer'] / t['align infer']:.2f}x"),
    ])
    print(f"DeltaC + DeltaR pooling: {t['pool train'] / t['tsd train']:.0%} of the TSD training step (target <= 25%), "
          f"{t['pool infer'] / t['tsd infer']:.0%} of the TSD inference pass")
    if args.model:
        print_table("Whole model training step, R-50 FPN Faster R-CNN, one 1333x800 image (target <= 1.6x)", [
            ("training step (data preprocessor..backward)", ms(t["model baseline"]), ms(t["model tsd"]),
             f"{t['model tsd'] / t['model baseline']:.2f}x"),
        ])


if __name__ == "__main__":
    main()
