"""Fine-tuning from another model: ``python -m pipeline.train CONFIG --init-from CKPT``.

An expert (``make train EXPERT=NAME FROM=MODEL``) starts from a global model's checkpoint: every weight and buffer
loads strictly, except the layers whose shape depends on the class count (the classification layers of every bbox
head, cascade stage and TSD branch, class-specific regression, mask logits). Those keep the new model's fresh
initialisation. They are found by building the model a second time with one class more and comparing the shapes,
so no list of layer names is kept. Any other key missing on either side, or of another shape, is an error naming it.

The config check runs before training starts (:func:`add_init_from`, from ``load_config``); the weights are loaded
by the :class:`InitFromCheckpoint` hook once mmengine has initialised the model, and a resumed run ignores it.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS, init_default_scope

from contracts.files import DataError

Shapes = dict[str, tuple[int, ...]]


def _meta_model_shapes(cfg, num_classes: int | None = None) -> Shapes:
    """State-dict shapes of the config's model (built on the meta device: no memory, no init), optionally with
    every ``num_classes`` of its heads set to ``num_classes``."""
    from pipeline.num_classes import set_num_classes

    init_default_scope(cfg.get("default_scope", "mmdet"))
    from mmdet.registry import MODELS

    model_cfg = copy.deepcopy(cfg.model)
    if num_classes is not None:
        set_num_classes(model_cfg, num_classes)
    with torch.device("meta"):
        model = MODELS.build(model_cfg)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def class_dependent_keys(cfg) -> list[str]:
    """The model's state-dict keys whose shape depends on the class count, in state-dict order."""
    from pipeline.num_classes import model_num_classes

    counts = model_num_classes(cfg.model)
    if not counts:
        raise ValueError("--init-from: the model config sets no num_classes, so there are no class layers to "
                         "re-initialise")
    shapes = _meta_model_shapes(cfg)
    other = _meta_model_shapes(cfg, max(counts) + 1)
    return [k for k, shape in shapes.items() if other.get(k) != shape]


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of a checkpoint file (mmengine's ``state_dict`` entry, or a bare state dict)."""
    from pipeline.checkpoints import load_checkpoint

    ckpt = load_checkpoint(path, map_location="cpu")
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(f"{path}: not a checkpoint (expected a state dict of tensors)")
    return state


def transferable(state: dict[str, torch.Tensor], model: Shapes, reinit: list[str], source) -> dict:
    """The entries of ``state`` to load into a model of state-dict shapes ``model``: all but the ``reinit`` keys,
    each present on both sides with the same shape (else an error naming the key)."""
    keep = set(model) - set(reinit)
    missing = [k for k in model if k in keep and k not in state]
    unexpected = [k for k in state if k not in model]
    for keys, what in ((missing, "lacks {n} weight(s) of the model, e.g. {k}"),
                       (unexpected, "holds {n} weight(s) the model does not have, e.g. {k}")):
        if keys:
            raise DataError(f"--init-from {source}: the checkpoint {what.format(n=len(keys), k=keys[0])} "
                            "(a checkpoint of another architecture?)")
    for k in model:
        if k in keep and tuple(state[k].shape) != model[k]:
            raise DataError(f"--init-from {source}: {k} has shape {tuple(state[k].shape)} in the checkpoint but "
                            f"{model[k]} in the model")
    return {k: v for k, v in state.items() if k in keep}


def layer_names(keys: list[str]) -> list[str]:
    """Module names of state-dict keys (``a.b.weight`` and ``a.b.bias`` -> ``a.b``), first-appearance order."""
    return list(dict.fromkeys(k.rsplit(".", 1)[0] for k in keys))


def add_init_from(cfg, checkpoint: str | Path) -> None:
    """Check that ``checkpoint`` fits the config's model but for its class layers, and make the run start from it
    (the :class:`InitFromCheckpoint` hook; it replaces the config's ``load_from``)."""
    reinit = class_dependent_keys(cfg)
    transferable(load_weights(checkpoint), _meta_model_shapes(cfg), reinit, checkpoint)
    cfg.load_from = None
    cfg.custom_hooks = [*(cfg.get("custom_hooks") or []),
                        dict(type="InitFromCheckpoint", checkpoint=str(checkpoint), reinit=reinit)]
    imports = dict(cfg.get("custom_imports") or {"allow_failed_imports": False})
    imports["imports"] = [*imports.get("imports", []), __name__]  # the work dir's config registers the hook
    cfg.custom_imports = imports


@HOOKS.register_module()
class InitFromCheckpoint(Hook):
    """Before the first iteration, load every weight of ``checkpoint`` but the ``reinit`` keys into the model (a
    resumed run, already past iteration 0, keeps its own weights)."""

    priority = "VERY_HIGH"

    def __init__(self, checkpoint: str, reinit: list[str]):
        self.checkpoint = checkpoint
        self.reinit = list(reinit)

    def before_train(self, runner) -> None:
        if runner.iter > 0:
            runner.logger.info(f"resumed at iteration {runner.iter}: --init-from {self.checkpoint} not applied")
            return
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        state = transferable(load_weights(self.checkpoint), shapes, self.reinit, self.checkpoint)
        model.load_state_dict(state, strict=False)  # the keys left out are exactly self.reinit (checked above)
        runner.logger.info(f"initialised from {self.checkpoint}: {len(state)} weights loaded; re-initialised for "
                           f"the new class count: {', '.join(layer_names(self.reinit))}")
