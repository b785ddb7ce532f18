"""Every config in configs/ builds, runs one training step and one prediction on CPU; the CLI helpers of
pipeline.train.

The real configs are shrunk for CPU (ResNet-18 / ResNeXt-50 with 16 base channels, 32-channel FPN and heads,
images at most 96 px, no pretrained weights) and pointed at the mini dataset: Open Images configs through
``--prepared-dir/--img-root``, COCO configs at the COCO export of ``make prepare``. x101_tsd keeps its deformable
convolutions (mmcv's DCN has a CPU kernel). New COCO configs whose shrunk model and data another config already
runs are not run twice. The original TSD recipes are pinned here too.
"""
import copy
import re

import pytest
import torch
from mmdet.registry import DATASETS, MODELS
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.runner import Runner

import pipeline  # noqa: F401  (registers the plugin)
from pipeline.train import (CONFIG_DIR, TrainRunner, available_configs, check_data, load_config, main, parse_args,
                            resolve_config, set_data_paths)

CONFIGS = available_configs()
MINI_NAMES = ("Vegetable", "Zucchini", "Football", "Banana", "Carrot", "Lemon", "Pumpkin", "Tomato", "Fruit",
              "Tennis ball", "Squash", "Ball", "Apple")
MINI_CLASSES = len(MINI_NAMES)
REAL = ["r50_tsd", "r101_tsd", "r152_tsd", "x101_tsd", "cascade_r50_tsd", "r50_baseline"]
COCO = ["coco_r50_tsd", "coco_r50_baseline", "coco_mask_r50_tsd", "coco_cascade_r50_tsd", "coco_r101_tsd",
        "coco_r152_tsd", "coco_x101_tsd", "coco_cascade_r101_tsd"]
# shrink makes these the model of another config that runs (test_x101_differs_... covers coco_x101_tsd's changes)
COVERED = ["coco_r101_tsd", "coco_r152_tsd", "coco_cascade_r101_tsd", "coco_x101_tsd"]
MINI = ["mini_tsd", "mini_baseline", "mini_mask_tsd"]


def test_the_listed_configs_exist():
    assert sorted(CONFIGS) == sorted(REAL + COCO + MINI)


def visit(node, fn):
    """Call ``fn`` on every dict inside ``node`` (depth first)."""
    if isinstance(node, dict):
        fn(node)
        for value in node.values():
            visit(value, fn)
    elif isinstance(node, (list, tuple)):
        for value in node:
            visit(value, fn)


def shrink(cfg: Config, mini_prepared, mini_data) -> None:
    """CPU-sized model (16-channel backbone, 32-channel FPN and heads, 64-wide fc, few RoIs), small images and
    the mini classes (in place)."""
    backbone = cfg.model.backbone
    if backbone.type == "ResNeXt":
        backbone.update(depth=50, groups=4, base_width=4, base_channels=16)
    else:
        backbone.update(depth=18, base_channels=16)
    backbone.init_cfg = None
    cfg.model.neck.in_channels = [16, 32, 64, 128] if backbone.depth == 18 else [64, 128, 256, 512]
    narrow = {"in_channels": 32, "out_channels": 32, "feat_channels": 32, "conv_out_channels": 32,
              "fc_out_channels": 64}

    def small(node):
        for key, value in narrow.items():
            if isinstance(node.get(key), int) and node[key] >= 64:
                node[key] = value
        if str(node.get("type", "")).startswith("TSD") and "fc_out_channels" in node:
            node["offset_fc_channels"] = 32
        if node.get("type") == "RandomSampler":
            node["num"] = 32
        if node.get("type") in ("Resize", "RandomResize"):
            node.clear()
            node.update(type="Resize", scale=(96, 96), keep_ratio=True)
        if "num_classes" in node:
            node["num_classes"] = MINI_CLASSES
        if node.get("type") == "CocoDataset":
            node.update(data_root="", metainfo=dict(classes=MINI_NAMES))
            split = "validation" if node.get("test_mode") else "train"
            node["ann_file"] = str(mini_prepared / "coco" / f"{split}.json")
            node["data_prefix"] = dict(img=str(mini_data / split) + "/")

    for key in ("model", "train_dataloader", "val_dataloader"):
        visit(cfg[key], small)
    cfg.model.train_cfg.rpn_proposal.update(nms_pre=200, max_per_img=64)
    cfg.model.test_cfg.rpn.update(nms_pre=200, max_per_img=32)


def batch_of(dataset_cfg, indices):
    dataset = DATASETS.build(dataset_cfg)
    return pseudo_collate([dataset[i] for i in indices])


@pytest.mark.parametrize("name", [name for name in CONFIGS if name not in COVERED])
def test_config_trains_one_step_and_predicts(name, mini_prepared, mini_data):
    cfg = load_config(name)
    if "prepared_dir" in cfg:
        set_data_paths(cfg, str(mini_prepared), str(mini_data))
    init_default_scope(cfg.default_scope)
    shrink(cfg, mini_prepared, mini_data)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    optim_wrapper = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))

    model.train()
    before = [p.detach().clone() for p in model.parameters()]
    losses = model.train_step(batch_of(cfg.train_dataloader.dataset, [0, 1]), optim_wrapper)
    assert losses["loss"].isfinite()
    if "TSD" in cfg.model.roi_head.type:
        names = {key.split(".")[-1] for key in losses}  # cascade stages log s0.loss_..., s1.loss_...
        assert {"loss_tsd_cls", "loss_tsd_bbox", "loss_pc_cls", "loss_pc_loc"} <= names
    unchanged = [name for (name, param), old in zip(model.named_parameters(), before)
                 if name.startswith(("rpn_head", "roi_head")) and torch.equal(param, old)]
    assert not unchanged

    model.eval()
    with torch.no_grad():  # as mmengine's ValLoop and TestLoop run it
        samples = model.val_step(batch_of(cfg.val_dataloader.dataset, [0]))
    pred = samples[0].pred_instances
    height, width = samples[0].ori_shape
    assert len(pred.bboxes) > 0 and pred.bboxes.shape[1] == 4
    boxes = pred.bboxes.numpy()
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
    assert ((pred.labels >= 0) & (pred.labels < MINI_CLASSES)).all()
    if "Mask" in cfg.model.type:
        assert pred.masks.shape[1:] == (height, width)


@pytest.mark.parametrize("name", REAL + COCO)
def test_real_configs_name_pretrained_backbones(name):
    cfg = Config.fromfile(str(resolve_config(name)))
    checkpoint = cfg.model.backbone.init_cfg.checkpoint
    assert checkpoint.startswith(("torchvision://", "open-mmlab://"))


@pytest.mark.parametrize("name", MINI)
def test_mini_configs_start_from_random_weights(name):
    cfg = Config.fromfile(str(resolve_config(name)))
    found = []
    visit(cfg.model, lambda node: found.append(node) if node.get("type") == "Pretrained" else None)
    assert cfg.model.backbone.init_cfg is None and not found


@pytest.mark.parametrize("name", REAL)
def test_open_images_recipe(name):
    cfg = Config.fromfile(str(resolve_config(name)))
    lr_per_image = cfg.optim_wrapper.optimizer.lr / cfg.auto_scale_lr.base_batch_size
    assert lr_per_image == pytest.approx(0.00125) and cfg.auto_scale_lr.enable
    assert cfg.optim_wrapper.optimizer.momentum == 0.9 and cfg.optim_wrapper.optimizer.weight_decay == 1e-4
    assert cfg.optim_wrapper.clip_grad.max_norm == 35
    assert cfg.param_scheduler[0].type == "LinearLR"
    assert cfg.train_dataloader.sampler.type == "OpenImagesClassAwareSampler"
    assert cfg.train_dataloader.dataset.num_classes == 500
    heads = cfg.model.roi_head.bbox_head
    for head in heads if isinstance(heads, list) else [heads]:
        assert head.num_classes == 500
        if "TSD" in head.type:
            assert head.cls_pc_margin == head.loc_pc_margin == 0.3
    assert cfg.model.test_cfg.rcnn.score_thr <= 0.001 and cfg.model.test_cfg.rcnn.max_per_img >= 300


# The original COCO recipes (Sense-X/TSD configs/TSD_configs/): epochs, lr steps; lr 0.04 at 32 images throughout.
COCO_SCHEDULES = {"coco_r50_tsd": (14, [9, 12]), "coco_r50_baseline": (14, [9, 12]),
                  "coco_mask_r50_tsd": (14, [9, 12]), "coco_r101_tsd": (14, [9, 12]), "coco_r152_tsd": (14, [9, 12]),
                  "coco_cascade_r50_tsd": (21, [17, 20]), "coco_cascade_r101_tsd": (21, [17, 20]),
                  "coco_x101_tsd": (34, [24, 33])}


@pytest.mark.parametrize("name", COCO)
def test_coco_recipe_is_the_original(name):
    cfg = Config.fromfile(str(resolve_config(name)))
    epochs, steps = COCO_SCHEDULES[name]
    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.type, optimizer.lr, optimizer.momentum, optimizer.weight_decay) == ("SGD", 0.04, 0.9, 1e-4)
    assert cfg.auto_scale_lr == dict(enable=True, base_batch_size=32)
    assert cfg.optim_wrapper.clip_grad.max_norm == 35
    warm_up, decay = cfg.param_scheduler
    assert warm_up == dict(type="LinearLR", start_factor=1 / 32, by_epoch=True, begin=0, end=1,
                           convert_to_iter_based=True)
    assert decay == dict(type="MultiStepLR", begin=0, end=epochs, by_epoch=True, milestones=steps, gamma=0.1)
    assert cfg.train_cfg.max_epochs == epochs


@pytest.mark.parametrize("name", ["cascade_r50_tsd", "coco_cascade_r50_tsd", "coco_cascade_r101_tsd"])
def test_tsd_cascades_weigh_every_stage_as_the_original(name):
    roi_head = Config.fromfile(str(resolve_config(name))).model.roi_head
    assert roi_head.type == "TSDCascadeRoIHead" and roi_head.stage_loss_weights == [1, 1, 1]


def lr_per_iteration(cfg: Config, batch_size: int, num_images: int, work_dir) -> list[list[float]]:
    """The learning rate of every iteration, by epoch, as mmengine 0.10.7's Runner builds the config's schedule
    (auto_scale_lr at ``batch_size``, epoch-based schedulers converted with the real epoch length) and its
    ParamSchedulerHook steps it (iteration-based after each iteration, epoch-based after each epoch)."""
    runner = Runner(model=torch.nn.Linear(1, 1), work_dir=str(work_dir), train_cfg=cfg.train_cfg,
                    train_dataloader=dict(dataset=list(range(num_images)), batch_size=batch_size, num_workers=0,
                                          sampler=dict(type="DefaultSampler", shuffle=False)),
                    optim_wrapper=cfg.optim_wrapper, param_scheduler=cfg.param_scheduler,
                    auto_scale_lr=cfg.auto_scale_lr)
    runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    runner.scale_lr(runner.optim_wrapper, runner.auto_scale_lr)
    schedulers = runner.build_param_scheduler(runner.param_schedulers)
    epochs = []
    for _ in range(cfg.train_cfg.max_epochs):
        epochs.append([])
        for _ in range(len(runner.train_dataloader)):
            epochs[-1].append(runner.optim_wrapper.get_lr()["lr"][0])
            runner.optim_wrapper.optimizer.step()  # no gradients: changes nothing
            for scheduler in schedulers:
                if not scheduler.by_epoch:
                    scheduler.step()
        for scheduler in schedulers:
            if scheduler.by_epoch:
                scheduler.step()
    return epochs


@pytest.mark.parametrize("batch_size", [32, 16])
def test_warm_up_lasts_one_epoch_at_any_batch_size(batch_size, tmp_path):
    """The original: 0.04 at 32 images, linear from 1/32 of it over 3,600 iterations of 32 images (one COCO epoch),
    lr / 10 at epochs 9 and 12 of 14. Here at 32 and 16 images per batch over 160 images (5 or 10 iterations)."""
    epochs = lr_per_iteration(Config.fromfile(str(resolve_config("coco_r50_tsd"))), batch_size, 160, tmp_path)
    lr = 0.04 * batch_size / 32
    first = epochs[0]
    assert len(first) == 160 // batch_size
    assert first[0] == pytest.approx(lr / 32) and first[-1] == pytest.approx(lr)
    steps = [b - a for a, b in zip(first, first[1:])]
    assert steps == pytest.approx([steps[0]] * len(steps))  # linear
    assert [epoch[0] / lr for epoch in epochs[1:]] == pytest.approx([1] * 8 + [0.1] * 3 + [0.01] * 2)
    assert all(len(set(epoch)) == 1 for epoch in epochs[1:])


@pytest.mark.parametrize("r50_name, x101_name", [("r50_tsd", "x101_tsd"), ("coco_r50_tsd", "coco_x101_tsd")])
def test_x101_differs_from_r50_only_in_backbone_scales_and_schedule(r50_name, x101_name):
    r50 = Config.fromfile(str(resolve_config(r50_name))).to_dict()
    x101 = Config.fromfile(str(resolve_config(x101_name))).to_dict()
    assert x101["model"]["backbone"] == Config.fromfile(str(resolve_config("x101_tsd"))).to_dict()["model"]["backbone"]
    assert x101["model"]["backbone"]["dcn"] == dict(type="DCN", deform_groups=1, fallback_on_stride=False)
    assert x101["model"]["backbone"]["stage_with_dcn"] == (False, True, True, True)
    assert any(t["type"] == "RandomResize" for t in x101["train_dataloader"]["dataset"]["pipeline"])
    for cfg in (r50, x101):
        del cfg["model"]["backbone"], cfg["train_dataloader"]["dataset"]["pipeline"], cfg["train_pipeline"]
        del cfg["train_cfg"], cfg["param_scheduler"]  # COCO X-101: 34 epochs
    del x101["resnext101_64x4d_dcn"]  # the backbone piece both X-101 configs merge in
    assert r50 == x101


def test_data_errors_come_before_training(mini_prepared, mini_data, tmp_path):
    cfg = load_config("r50_tsd", prepared_dir=str(mini_prepared), img_root=str(mini_data))
    with pytest.raises(ValueError, match=f"num_classes=500 but {mini_prepared / 'classes.csv'} lists 13"):
        check_data(cfg)
    for name in ("mini_tsd", "mini_mask_tsd"):
        check_data(load_config(name, prepared_dir=str(mini_prepared), img_root=str(mini_data)))
    with pytest.raises(FileNotFoundError, match="make prepare"):
        check_data(load_config("mini_tsd", prepared_dir=str(tmp_path / "none")))
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'none' / 'coco' / 'train.json'}.*make prepare"):
        check_data(load_config("mini_mask_tsd", prepared_dir=str(tmp_path / "none")))


def test_data_paths_move_everywhere(tmp_path):
    cfg = load_config("mini_mask_tsd", prepared_dir=str(tmp_path / "p"), img_root=str(tmp_path / "img"),
                      work_dir=tmp_path / "w")
    assert cfg.train_dataloader.dataset.ann_file == str(tmp_path / "p" / "coco" / "train.json")
    assert cfg.train_dataloader.dataset.data_prefix.img == str(tmp_path / "img" / "train") + "/"
    cfg = load_config("mini_tsd", prepared_dir=str(tmp_path / "p"), img_root=str(tmp_path / "img"))
    assert cfg.val_evaluator.prepared_dir == cfg.test_dataloader.dataset.prepared_dir == str(tmp_path / "p")
    assert cfg.train_dataloader.dataset.img_dir == str(tmp_path / "img" / "train")
    assert cfg.work_dir == "work/models/mini_tsd"


def test_missing_config_lists_the_available_ones(capsys):
    with pytest.raises(FileNotFoundError) as error:
        resolve_config("r51_tsd")
    assert "r51_tsd" in str(error.value) and "r50_tsd" in str(error.value) and "mini_tsd" in str(error.value)
    assert resolve_config("mini_tsd") == CONFIG_DIR / "mini_tsd.py"
    assert main(["r51_tsd"]) == 2
    assert re.search("^error: config not found: r51_tsd; available configs .*r50_tsd", capsys.readouterr().err)


def test_cli_arguments():
    args = parse_args(["mini_tsd", "--work-dir", "w", "--resume", "--seed", "3",
                       "--cfg-options", "train_cfg.max_iters=5", "model.backbone.depth=34"])
    assert (args.config, args.work_dir, args.resume, args.seed, args.launcher) == ("mini_tsd", "w", True, 3, "none")
    assert args.cfg_options == {"train_cfg.max_iters": 5, "model.backbone.depth": 34}
    cfg = load_config(args.config, args.work_dir, args.cfg_options, seed=args.seed)
    assert cfg.train_cfg.max_iters == 5 and cfg.randomness.seed == 3 and cfg.work_dir == "w"
    with pytest.raises(SystemExit):
        parse_args(["mini_tsd", "--launcher", "pytorch"])  # only under torchrun
    with pytest.raises(SystemExit):
        parse_args(["mini_tsd", "--launcher", "slurm"])  # only under srun


def test_amp_needs_a_gpu():
    if torch.cuda.is_available():
        assert load_config("mini_tsd", amp=True).optim_wrapper.type == "AmpOptimWrapper"
    else:
        with pytest.raises(ValueError, match="GPU"):
            load_config("mini_tsd", amp=True)


def test_input_mistakes_are_one_line_training_failures_keep_their_traceback(mini_prepared, mini_data, tmp_path,
                                                                            monkeypatch, capsys):
    data = ["--work-dir", str(tmp_path / "w"), "--prepared-dir", str(mini_prepared), "--img-root", str(mini_data)]
    assert main(["mini_tsd", *data, "--cfg-options", "model.type=NoSuchDetector"]) == 2
    assert re.match(r"error: NoSuchDetector is not in the mmdet::model registry", capsys.readouterr().err)

    def out_of_memory(runner):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(TrainRunner, "train", out_of_memory)
    with pytest.raises(torch.OutOfMemoryError, match="Tried to allocate"):
        main(["mini_tsd", *data])


def test_mini_mask_classes_match_the_prepared_class_file(mini_prepared):
    cfg = Config.fromfile(str(resolve_config("mini_mask_tsd")))
    rows = [line.split(",", 1) for line in (mini_prepared / "classes.csv").read_text().splitlines()]
    for loader in (cfg.train_dataloader, cfg.val_dataloader):
        assert list(loader.dataset.metainfo.classes) == [name for _, name in rows]
        assert list(loader.dataset.metainfo.mids) == [mid for mid, _ in rows]
    assert cfg.model.roi_head.bbox_head.num_classes == cfg.model.roi_head.mask_head.num_classes == len(rows)
