"""``python -m data_prep.download --out DIR``: the Challenge 2019 annotations and images, whole or a subset, in the
folder layout ``make prepare DATA=DIR`` reads; a rerun fetches only what is missing. Exit status 1 when an image
is missing from the bucket or failed (the manifest says which and why)."""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from contracts.classes import read_classes
from contracts.cli import entry_point
from contracts.files import DataError, atomic_output
from contracts.hierarchy import Hierarchy

from . import annotations, images, subset

METADATA = Path(__file__).resolve().parents[1] / "metadata"
CACHE = ".download"  # the whole annotation files and the journal, beside the layout
SAMPLE_SUBMISSION = "sample_submission.csv"
KAGGLE_COMPETITION = "open-images-2019-object-detection"
DEFAULT_JOBS = 32


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m data_prep.download", description=__doc__.split("\n\n")[0],
        epilog="Images come from s3://BUCKET/{train,validation}/<ImageID>.jpg and challenge2018/ (the Kaggle test "
               "set) with unsigned requests; docs/download.md has the details and the orientation note.")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="the dataset folder to write")
    p.add_argument("--splits", nargs="+", choices=subset.SPLITS, default=list(subset.SPLITS),
                   help="splits to fetch (default: all three)")
    p.add_argument("--classes", nargs="+", metavar="NAME_OR_MID",
                   help="only images with a box of these classes (display names in any case, or MIDs) or of their "
                        "hierarchy descendants; train and validation only")
    p.add_argument("--max-per-class", type=int, metavar="N",
                   help="at most N images per class (the first N by ImageID, a random hex id)")
    p.add_argument("--max-images", type=int, metavar="N", help="at most N images per split, sampled with --seed")
    p.add_argument("--seed", type=int, default=0, help="seed of the --max-images sample (default 0)")
    p.add_argument("--image-list", type=Path, metavar="FILE",
                   help="only these images: lines 'split/ImageID', the official downloader's format")
    p.add_argument("--jobs", type=int, default=DEFAULT_JOBS, metavar="N",
                   help=f"concurrent requests (default {DEFAULT_JOBS})")
    p.add_argument("--s3-endpoint", metavar="URL", help="S3 endpoint of a mirror or local server (default: AWS)")
    p.add_argument("--bucket", default=images.DEFAULT_BUCKET, help=f"bucket (default {images.DEFAULT_BUCKET})")
    p.add_argument("--annotations-url", default=annotations.DEFAULT_URL, metavar="URL",
                   help=f"where the annotation files are published (default {annotations.DEFAULT_URL})")
    p.add_argument("--tarballs", action="store_true",
                   help="whole train/validation splits from the bucket's tarballs (tar/train_{0..f}.tar.gz, "
                        "tar/validation.tar.gz), then the images they lack one by one")
    p.add_argument("--no-space-check", action="store_true",
                   help="start even when the free disk space looks too small")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    for flag in ("max_per_class", "max_images", "jobs"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1, got {value}")


def writable_folder(out: Path) -> None:
    """Create ``out`` and make sure a file can be written there, or say why not in one line."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        raise DataError(f"{out}: cannot write the dataset here ({e.strerror or e})") from None


def requested(args: argparse.Namespace) -> subset.Subset:
    classes = None
    if args.classes:
        class_list = read_classes(METADATA / annotations.CLASS_FILE)
        classes = subset.resolve_classes(args.classes, class_list,
                                         Hierarchy.from_json(METADATA / annotations.HIERARCHY_FILE))
    image_list = subset.read_image_list(args.image_list) if args.image_list else None
    return subset.Subset(classes, args.max_per_class, args.max_images, args.seed, image_list)


def fetch_annotations(base: str, out: Path, name: str) -> Path:
    """The whole file in the cache (fetched once), returned."""
    cached = out / CACHE / name
    if annotations.fetch(base + name, cached):
        say(f"fetched {name} ({cached.stat().st_size / 1e6:,.1f} MB)")
    return cached


def choose_images(args, wanted: subset.Subset, client, out: Path) -> tuple[dict[str, list[str]], dict[str, int]]:
    """The ImageIDs of each split (writing its annotation CSVs filtered to them) and the listed test sizes."""
    base = args.annotations_url.rstrip("/") + "/"
    for name in (annotations.CLASS_FILE, annotations.HIERARCHY_FILE):
        annotations.copy(fetch_annotations(base, out, name), out / name)
    chosen: dict[str, list[str]] = {}
    test_sizes: dict[str, int] = {}
    for split in args.splits:
        if split == "test":
            test_sizes = images.list_keys(client, args.bucket, "test")
            chosen[split] = subset.select(None, test_sizes, wanted, split)
        else:
            box_file, label_file = (fetch_annotations(base, out, n) for n in annotations.SPLIT_FILES[split])
            chosen[split] = subset.select(box_file, None, wanted, split)
            for cached in (box_file, label_file):
                if wanted.whole:
                    annotations.copy(cached, out / cached.name)
                else:
                    annotations.filter_csv(cached, out / cached.name, set(chosen[split]))
        say(f"{split}: {len(chosen[split]):,} images")
    return chosen, test_sizes


def check_space(out: Path, todo: Sequence[tuple[str, str]], test_sizes: dict[str, int]) -> None:
    """Stop before starting when the images asked for (listed sizes, else the split's mean size) will not fit."""
    need = sum(test_sizes.get(image_id, 0) if split == "test"
               else images.SPLIT_BYTES[split] / images.SPLIT_IMAGES[split] for split, image_id in todo)
    free = shutil.disk_usage(out).free
    if need > free:
        raise DataError(f"{out}: {len(todo):,} images need about {_size(need)} and {_size(free)} are free "
                        f"(--no-space-check to start anyway)")


def _size(n: float) -> str:
    return f"{n / 1e9:,.1f} GB" if n >= 1e9 else f"{n / 1e6:,.1f} MB"


def from_tarballs(args, wanted: subset.Subset, client, out: Path, chosen: dict[str, list[str]],
                  journal: images.Journal) -> None:
    for split in (s for s in chosen if s in images.TARBALLS):
        placed = images.fetch_tarballs(client, args.bucket, out, split, chosen[split], journal, out / CACHE)
        say(f"{split}: {placed:,} images from {len(images.TARBALLS[split])} tarball(s)")


def kaggle_sample_submission(dest: Path) -> bool:
    """``sample_submission.csv`` from the Kaggle CLI, when it is installed and configured."""
    config = Path(os.environ.get("KAGGLE_CONFIG_DIR", Path.home() / ".kaggle")) / "kaggle.json"
    if not shutil.which("kaggle") or not (config.is_file() or os.environ.get("KAGGLE_KEY")):
        return False
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        run = subprocess.run(["kaggle", "competitions", "download", "-c", KAGGLE_COMPETITION, "-f",
                              SAMPLE_SUBMISSION, "-p", tmp], capture_output=True, text=True)
        got = sorted(Path(tmp).iterdir())
        if run.returncode != 0 or not got:
            say(f"the Kaggle CLI failed ({(run.stderr or run.stdout).strip().splitlines()[-1:]})")
            return False
        if zipfile.is_zipfile(got[0]):
            with zipfile.ZipFile(got[0]) as z, atomic_output(dest) as f:
                f.write(z.read(SAMPLE_SUBMISSION))
        else:
            os.replace(got[0], dest)
    return True


def write_sample_submission(out: Path, test_ids: Sequence[str], whole: bool) -> None:
    dest = out / SAMPLE_SUBMISSION
    if whole and kaggle_sample_submission(dest):
        say(f"{SAMPLE_SUBMISSION}: from the Kaggle CLI")
        return
    with atomic_output(dest) as f:
        f.write(("ImageId,PredictionString\n" + "".join(f"{i},\n" for i in sorted(test_ids))).encode())
    say(f"{SAMPLE_SUBMISSION}: written from the {len(test_ids):,} test images present "
        f"({'the Kaggle CLI is not installed or configured' if whole else 'a subset'})")


def summary(entries: Sequence[images.Entry], splits: Sequence[str]) -> list[str]:
    counts = Counter((e.split, e.status) for e in entries)
    lines = [f"{split}: {counts[split, images.DONE]:,} done, {counts[split, images.MISSING]:,} missing, "
             f"{counts[split, images.FAILED]:,} failed" for split in splits]
    done = [e for e in entries if e.status == images.DONE]
    turned = sum(e.orientation != 1 for e in done)
    lines.append(f"EXIF orientation other than 1: {turned:,} of {len(done):,} images (the boxes are in the stored "
                 f"frame, which the pipeline decodes: docs/download.md)")
    lines += [f"{e.status}: {e.split}/{e.image_id}: {e.reason}" for e in entries if e.status != images.DONE][:20]
    return lines


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(parser, args)
    wanted = requested(args)
    if args.tarballs and not wanted.whole:
        raise DataError("--tarballs is for whole splits: drop --classes, --max-per-class, --max-images, --image-list")
    out = args.out
    writable_folder(out)
    client = images.s3_client(args.s3_endpoint, args.jobs)
    chosen, test_sizes = choose_images(args, wanted, client, out)
    journal = images.Journal(out / CACHE / images.JOURNAL)
    try:
        present = images.present_entries(out, chosen, journal)
        todo = [(split, i) for split, ids in chosen.items() for i in ids if (split, i) not in present]
        if not args.no_space_check:
            check_space(out, todo, test_sizes)
        if args.tarballs:
            from_tarballs(args, wanted, client, out, chosen, journal)
            present = images.present_entries(out, chosen, journal)
            todo = [(split, i) for split, ids in chosen.items() for i in ids if (split, i) not in present]
        say(f"{len(present):,} present, downloading the remaining {len(todo):,}")
        fetched = images.download(client, args.bucket, out, todo, journal, args.jobs, not args.no_progress)
    finally:
        journal.close()
    entries = [*present.values(), *fetched]
    images.write_manifest(out / images.MANIFEST, entries)
    if "test" in chosen:
        done = [e.image_id for e in entries if e.split == "test" and e.status == images.DONE]
        write_sample_submission(out, done, wanted.whole)
    for line in summary(entries, args.splits):
        say(line)
    say(f"manifest: {out / images.MANIFEST}")
    return 1 if any(e.status != images.DONE for e in entries) else 0


if __name__ == "__main__":
    sys.exit(main())
