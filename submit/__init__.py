"""submit stage: the Kaggle submission and the Open Images Challenge 2019 metric.

- ``python -m submit``: predictions Parquet -> ``ImageId,PredictionString`` CSV (``submit.write``);
- ``python -m submit.validate``: line-by-line check of a submission file;
- ``python -m submit.score``: Challenge 2019 mAP of a submission or predictions on validation
  (``contracts.metric.evaluate``, the official evaluator's rules); ``--report DIR`` writes a self-contained HTML
  evaluation report (``submit.report``);
- ``python -m submit.show``: predictions drawn on their images, judged by the metric's own matching.
"""
