"""Images are decoded in the frame of their stored pixels, where the Open Images boxes are: a JPEG's EXIF
orientation tag is ignored by training, inference and the pictures of submit.show."""
from pathlib import Path

import mmcv
import numpy as np
import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope
from PIL import Image

from contracts.files import image_files
import pipeline  # noqa: F401  (registers the datasets and transforms)
from pipeline.datasets import OpenImagesPreparedDataset
from pipeline.infer import Variant, VariantLoader
from submit import show
from tests.helpers import REPO

ROTATE_90_CW = 6  # EXIF Orientation: the viewer turns the stored pixels 90 degrees clockwise
ORIENTATION_TAG = 0x0112
# every config that reads images: the runnable ones and the dataset bases
CONFIGS = sorted([*(REPO / "configs").glob("*.py"), *(REPO / "configs" / "released").glob("*.py"),
                  *(REPO / "configs" / "_base_" / "datasets").glob("*.py")])


@pytest.fixture(autouse=True, scope="module")
def mmdet_scope():
    init_default_scope("mmdet")


def stored_pixels(path: Path) -> np.ndarray:
    """The JPEG's pixels as stored (RGB, PIL does not apply EXIF orientation unless asked)."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


@pytest.fixture(scope="module")
def tagged(mini_data, tmp_path_factory) -> tuple[str, Path]:
    """A validation image of the mini dataset re-saved with EXIF orientation 6, alone in its folder."""
    images = image_files(mini_data / "validation")
    image_id = next(i for i in sorted(images) if len(set(Image.open(images[i]).size)) == 2)  # a turn changes it
    path = tmp_path_factory.mktemp("tagged") / f"{image_id}.jpg"
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = ROTATE_90_CW
    with Image.open(images[image_id]) as image:
        image.save(path, exif=exif.tobytes(), quality=95)
    with Image.open(path) as image:
        assert image.getexif()[ORIENTATION_TAG] == ROTATE_90_CW
    height, width = stored_pixels(path).shape[:2]
    assert mmcv.imread(str(path), flag="color").shape == (width, height, 3)  # mmcv's default would turn it
    return image_id, path


def load_steps(steps) -> list[dict]:
    return [step for step in steps if step["type"] == "LoadImageFromFile"]


def all_load_steps(node) -> list[dict]:
    """Every LoadImageFromFile dict anywhere in a config (pipelines, TTA, datasets wrapped in others)."""
    if isinstance(node, dict):
        found = [node] if node.get("type") == "LoadImageFromFile" else []
        return found + [step for value in node.values() for step in all_load_steps(value)]
    if isinstance(node, (list, tuple)):
        return [step for value in node for step in all_load_steps(value)]
    return []


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(REPO / "configs")) for p in CONFIGS])
def test_every_config_decodes_in_the_stored_frame(path):
    steps = all_load_steps(Config.fromfile(str(path), import_custom_modules=False).to_dict())
    assert steps, f"{path}: no LoadImageFromFile"
    assert [step.get("color_type") for step in steps] == ["color_ignore_orientation"] * len(steps)


def test_training_pipeline_gives_stored_pixels_and_boxes_in_their_frame(mini_prepared, tagged):
    image_id, path = tagged
    cfg = Config.fromfile(str(REPO / "configs" / "mini_tsd.py"))
    steps = cfg.train_dataloader.dataset.pipeline[:2]
    assert [s["type"] for s in steps] == ["LoadImageFromFile", "LoadOpenImagesAnnotations"]
    dataset = OpenImagesPreparedDataset(prepared_dir=str(mini_prepared), split="validation", img_dir=str(path.parent),
                                        test_mode=True, pipeline=steps)
    index = next(i for i in range(len(dataset)) if dataset.get_data_info(i)["img_id"] == image_id)
    info, item = dataset.get_data_info(index), dataset[index]
    expected = stored_pixels(path)
    height, width = expected.shape[:2]
    assert item["img_path"] == str(path)
    np.testing.assert_array_equal(item["img"], expected[..., ::-1])  # BGR
    assert item["img_shape"] == item["ori_shape"] == (height, width)
    boxes = np.array([i["bbox"] for i in info["instances"]], np.float32) * np.float32([width, height, width, height])
    np.testing.assert_allclose(item["gt_bboxes"].numpy(), boxes, rtol=1e-6)


def test_inference_loader_gives_stored_pixels(tagged):
    _, path = tagged
    cfg = Config.fromfile(str(REPO / "configs" / "mini_tsd.py"))
    assert load_steps(cfg.test_dataloader.dataset.pipeline)[0]["color_type"] == "color_ignore_orientation"
    expected = stored_pixels(path)
    height, width = expected.shape[:2]
    packed, = VariantLoader(cfg, [Variant(scale=min(height, width), flip=False)])(path)
    assert packed["data_samples"].ori_shape == (height, width)
    np.testing.assert_array_equal(packed["inputs"].permute(1, 2, 0).numpy(), expected[..., ::-1])


def test_show_draws_on_stored_pixels(tagged, tmp_path):
    image_id, path = tagged
    expected = stored_pixels(path)
    scene = show.Scene(image_id=image_id, marks=())
    picture, = show.render([scene], path.parent, tmp_path)
    np.testing.assert_array_equal(stored_pixels(tmp_path / picture.file), expected)

