"""Test-time-augmented inference: ``python -m pipeline.infer CONFIG CHECKPOINT ...`` -> predictions Parquet.

Every image runs through each TTA variant (``variants``: a short side from the scale list, with and without a
horizontal flip); the model (``model``) predicts each, the boxes are mapped back to the original image, normalised
and un-flipped, and the variants are fused per image and class with one of ``ensemble.FUSION_METHODS`` (WBF by
default). Work is split into shards and resumable chunks (``shards``); ``--gpus N`` runs all N shards at once
(``processes``). Output layout (docs/artifacts.md)::

    OUT/merged/shard-{k:03d}-of-{N:03d}.parquet     fused predictions
    OUT/s{scale}[_flip]/shard-....parquet          one folder per variant (--keep-variants)
    OUT/.partial/shard-...-of-.../                  finished chunks of an unfinished shard (removed at the end)
    OUT/logs/shard-...-of-....log                   one log per shard process (--gpus N, tools/slurm_infer.sh)

A finished shard is skipped on a rerun; an interrupted one resumes from its last finished chunk.
"""
from pipeline.infer.model import load_checkpoint_file, load_config, load_detector, predict_images, resolve_classes
from pipeline.infer.shards import (MERGED, PARTIAL, InferSettings, detections_table, list_images, output_names,
                                   parse_shard, run_shard, shard_bounds, shard_done, shard_name)
from pipeline.infer.variants import (MERGE_METHODS, NO_LONG_CAP, Detections, Variant, VariantLoader, config_scale,
                                     default_scales, empty_detections, keep_valid, make_variants, merge_variants,
                                     parse_scales, resize_scale, to_normalised, top_k)

__all__ = ["MERGED", "MERGE_METHODS", "NO_LONG_CAP", "PARTIAL", "Detections", "InferSettings", "Variant",
           "VariantLoader", "config_scale", "default_scales", "detections_table", "empty_detections", "keep_valid",
           "list_images", "load_checkpoint_file", "load_config", "load_detector", "make_variants", "merge_variants",
           "output_names", "parse_scales", "parse_shard", "predict_images", "resize_scale", "resolve_classes",
           "run_shard", "shard_bounds", "shard_done", "shard_name", "to_normalised", "top_k"]
