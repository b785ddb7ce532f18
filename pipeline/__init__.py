"""oid-tsd's mmdetection 3.x plugin: the TSD heads, their pooling op and the Open Images datasets.

Importing the package registers everything with mmdet's registries; configs load it with
``custom_imports = dict(imports=['pipeline'], allow_failed_imports=False)``.
"""
from . import datasets, evaluation, models  # noqa: F401  (registration side effects)
