"""The contracts every stage shares, in one place each; stages import them from here and never from each other.

- ``contracts.files``: ``DataError``, atomic output, plain-or-gzip reading, image-id lists.
- ``contracts.classes``: the class list (``MID,DisplayName`` file; row i = class index i).
- ``contracts.hierarchy``: the label hierarchy (ancestors and descendants of each class).
- ``contracts.expansion``: copying predictions to their ancestor classes.
- ``contracts.predictions``: the predictions table (schema, reader, atomic writer).
- ``contracts.submission_csv``: the Kaggle submission CSV format (header and parser).
- ``contracts.metric``: the official Challenge 2019 metric and its ground-truth readers.
"""
