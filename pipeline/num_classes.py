"""The class count of a model config: every ``num_classes`` of its RoI heads (each cascade stage, the mask head).

The RPN's own ``num_classes`` (1, object vs background) is not a class count of the data and is never touched.
"""
from __future__ import annotations


def _visit(node, change) -> set[int]:
    """Every ``num_classes`` integer under ``node``; each is replaced by ``change(old)``."""
    found: set[int] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "num_classes" and isinstance(value, int):
                found.add(value)
                node[key] = change(value)
            else:
                found |= _visit(value, change)
    elif isinstance(node, (list, tuple)):
        for item in node:
            found |= _visit(item, change)
    return found


def model_num_classes(model_cfg: dict) -> set[int]:
    """Every ``num_classes`` set in a model config's RoI heads."""
    return _visit(model_cfg.get("roi_head", model_cfg), lambda n: n)


def set_num_classes(model_cfg: dict, num_classes: int) -> None:
    """Set every ``num_classes`` of the model's RoI heads to ``num_classes``."""
    _visit(model_cfg.get("roi_head", model_cfg), lambda _: num_classes)


def set_dataset_num_classes(loader_cfg: dict, num_classes: int) -> None:
    """Set the ``num_classes`` check of a dataloader's dataset (through wrappers) to ``num_classes``."""
    _visit(loader_cfg, lambda _: num_classes)
