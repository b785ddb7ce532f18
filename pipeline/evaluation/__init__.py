"""Evaluation for the val/test loops: the Challenge 2019 metric, registered as ``OpenImagesChallengeMetric``."""
from .openimages_metric import OpenImagesChallengeMetric, prepared_ground_truth

__all__ = ["OpenImagesChallengeMetric", "prepared_ground_truth"]
