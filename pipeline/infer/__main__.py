"""``python -m pipeline.infer CONFIG CHECKPOINT ...``: test-time-augmented predictions of one shard, or of all N
shards at once with ``--gpus N`` (one process per device); layout and resuming in ``pipeline.infer``."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from contracts.cli import INPUT_ERRORS, report_error
from pipeline.checkpoints import TRUST_HELP
from pipeline.distributed import parse_process_count
from pipeline.infer.model import load_config, load_detector, predict_images, resolve_classes
from pipeline.infer.processes import run_processes, without_option
from pipeline.infer.shards import InferSettings, MERGED, list_images, parse_shard, run_shard, shard_done, shard_name
from pipeline.infer.variants import MERGE_METHODS, VariantLoader, default_scales, make_variants, parse_scales


def _argument_type(parse):
    """``parse`` as an argparse type: its ValueError message becomes the usage error."""
    def convert(text: str):
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return convert


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipeline.infer",
        description="Predict boxes with test-time augmentation (scales x horizontal flip), fuse the variants per "
                    "image and write predictions Parquet (OUT/merged/shard-K-of-N.parquet; docs/artifacts.md).")
    p.add_argument("config", type=Path, help="mmdet config of the model (loads the plugin via custom_imports)")
    p.add_argument("checkpoint", type=Path, help="trained checkpoint (.pth)")
    p.add_argument("--split", choices=("validation", "test"), required=True,
                   help="which split the images are (names the default output folder)")
    p.add_argument("--images", type=Path, required=True, help="folder of <ImageID>.jpg (or .jpeg, .png, any case)")
    p.add_argument("--image-list", type=Path,
                   help="predict only these images: one ImageID per line (sample_submission.csv works too)")
    p.add_argument("--out", type=Path,
                   help="output folder (default: WORK/predictions/<config name>/<split>)")
    p.add_argument("--work", type=Path, default=Path("work"), help="WORK folder for the default --out (work)")
    p.add_argument("--classes", type=Path,
                   help="class file, row i = class i (MID,DisplayName; e.g. WORK/prepared/classes.csv); "
                        "default: the MIDs saved in the checkpoint's dataset metainfo")
    p.add_argument("--scales", type=_argument_type(parse_scales),
                   help="TTA short sides, e.g. 800,1000,1200 (default: the config's tta_scales, else its test scale)")
    p.add_argument("--no-flip", action="store_true", help="no horizontally mirrored variants")
    p.add_argument("--merge", choices=MERGE_METHODS, default="wbf", help="how variants are fused (default wbf)")
    p.add_argument("--iou-thr", type=float, help="IoU threshold of the fusion (default: the method's own)")
    p.add_argument("--keep-variants", action="store_true", help="also write each variant's predictions")
    p.add_argument("--score-thr", type=float, default=0.001, help="model score threshold (default 0.001)")
    p.add_argument("--max-per-img", type=int, default=500,
                   help="detections per image, per variant and after fusion (default 500)")
    p.add_argument("--shard", type=_argument_type(parse_shard), default=(0, 1),
                   help="predict shard k of N (0-based) of the sorted image list (default 0/1)")
    p.add_argument("--gpus", type=_argument_type(lambda text: parse_process_count(text, "--gpus")),
                   help="run all N shards at once, one process per device (CUDA_VISIBLE_DEVICES); without CUDA, "
                        "N CPU processes; logs in OUT/logs")
    p.add_argument("--batch-size", type=int, default=1, help="images per forward pass (default 1)")
    p.add_argument("--chunk-size", type=int, default=500,
                   help="images per resumable chunk of a shard (default 500)")
    p.add_argument("--workers", type=int, help="image loading processes (default 4 on cuda, 0 on cpu)")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    p.add_argument("--amp", action="store_true", help="mixed-precision (autocast) forward passes (cuda only)")
    p.add_argument("--overwrite", action="store_true", help="redo the shard even if it is finished")
    p.add_argument("--trust-checkpoint", action="store_true", help=TRUST_HELP)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.batch_size < 1 or args.chunk_size < 1 or args.max_per_img < 1:
        parser.error("--batch-size, --chunk-size and --max-per-img must be >= 1")
    if args.amp and device != "cuda":
        parser.error("--amp needs --device cuda (mixed precision is not used on CPU)")
    if args.gpus is not None and args.shard != (0, 1):
        parser.error("--gpus N runs shards 0/N to N-1/N itself: give no --shard")
    out = args.out or args.work / "predictions" / args.config.stem / args.split
    k, num_shards = args.shard
    try:  # every input is checked before the first image is predicted
        for path, what in ((args.config, "config"), (args.checkpoint, "checkpoint")):
            if not path.is_file():
                raise FileNotFoundError(f"{what} not found: {path}")
        paths = list_images(args.images, args.image_list)
        if args.gpus is not None:
            shard_argv = [*without_option(sys.argv[1:] if argv is None else argv, "--gpus"), "--out", str(out)]
            return run_processes(shard_argv, args.gpus, out, len(paths), cuda=device == "cuda")
        cfg = load_config(args.config, args.score_thr, args.max_per_img)
        variants = make_variants(args.scales or default_scales(cfg), flip=not args.no_flip)
        settings = InferSettings(str(args.config), str(args.checkpoint), variants, args.merge, args.iou_thr,
                                 args.score_thr, args.max_per_img, args.keep_variants, args.chunk_size,
                                 args.batch_size)
        if not args.overwrite and shard_done(out, shard_name(k, num_shards), settings):
            print(f"{out}: {shard_name(k, num_shards)} already finished (--overwrite redoes it)")
            return 0
        model, meta = load_detector(cfg, args.checkpoint, device, args.trust_checkpoint)
        classes = resolve_classes(args.classes, meta, cfg)
    except INPUT_ERRORS as error:  # a user's mistake: one line; anything else keeps its traceback
        return report_error(error)
    loader = VariantLoader(cfg, variants)
    workers = args.workers if args.workers is not None else (4 if device == "cuda" else 0)

    def predict(batch_paths):
        return predict_images(model, loader, batch_paths, args.batch_size, workers, args.amp)

    run_shard(out, k, num_shards, paths, predict, classes, settings, overwrite=args.overwrite)
    print(f"wrote {out / MERGED / shard_name(k, num_shards)}.parquet ({', '.join(v.name for v in variants)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
