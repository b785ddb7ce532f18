"""The images: parallel unsigned S3 requests, each file verified (it decodes) and renamed into place when whole, a
journal so that a rerun (even after SIGKILL) skips finished files, and the manifest of every image."""
from __future__ import annotations

import concurrent.futures as cf
import csv
import hashlib
import io
import os
import tarfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import astuple, dataclass, fields
from pathlib import Path

import boto3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from PIL import Image
from tqdm.auto import tqdm
from urllib3.exceptions import HTTPError as Urllib3Error

from contracts.files import atomic_output

DEFAULT_BUCKET = "open-images-dataset"
PREFIX = {"train": "train", "validation": "validation", "test": "challenge2018"}  # the Kaggle test set
SPLIT_BYTES = {"train": 513e9, "validation": 12e9, "test": 36e9}  # published totals, for the disk check
SPLIT_IMAGES = {"train": 1_743_042, "validation": 41_620, "test": 99_999}
TARBALLS = {"train": [f"tar/train_{c}.tar.gz" for c in "0123456789abcdef"], "validation": ["tar/validation.tar.gz"]}
DONE, MISSING, FAILED = "done", "missing", "failed"
FETCH_ATTEMPTS = 3  # whole-file attempts (a cut or undecodable body is fetched again); botocore retries each request
ORIENTATION_TAG = 0x0112
MANIFEST = "download-manifest.csv"
JOURNAL = "journal.csv"
PART = ".part"
CHUNK = 1 << 18


@dataclass(frozen=True)
class Entry:
    """One image's line of the manifest."""

    split: str
    image_id: str
    status: str
    size: int = 0
    sha256: str = ""
    orientation: int = 0  # EXIF orientation (1 = as stored; 0 = not downloaded)
    reason: str = ""


FIELDS = [f.name for f in fields(Entry)]


def s3_client(endpoint: str | None, jobs: int):
    """An unsigned S3 client (public bucket) with botocore's adaptive retries (backoff on throttling, 5xx and
    dropped connections) and a connection pool as large as the number of jobs."""
    config = Config(signature_version=UNSIGNED, retries={"max_attempts": 10, "mode": "adaptive"},
                    max_pool_connections=max(10, jobs), connect_timeout=20, read_timeout=60,
                    s3={"addressing_style": "path"} if endpoint else None)
    return boto3.session.Session().client("s3", endpoint_url=endpoint, region_name="us-east-1", config=config)


def list_keys(client, bucket: str, split: str) -> dict[str, int]:
    """ImageID -> size of every ``.jpg`` under the split's folder of the bucket (one listing, paginated)."""
    prefix = PREFIX[split] + "/"
    sizes: dict[str, int] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", ()):
            name = item["Key"][len(prefix):]
            if name.endswith(".jpg") and "/" not in name:
                sizes[name[:-4]] = int(item["Size"])
    return sizes


def inspect(path: Path) -> tuple[int, str, int]:
    """Size, SHA-256 and EXIF orientation of an image file; an image that does not decode raises OSError."""
    data = path.read_bytes()
    return len(data), hashlib.sha256(data).hexdigest(), decode(data)


def decode(data: bytes) -> int:
    """Decode the whole image (a truncated JPEG raises OSError) and return its EXIF orientation (1 when untagged)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return int(image.getexif().get(ORIENTATION_TAG, 1))
    except (OSError, SyntaxError, ValueError) as e:
        raise OSError(f"does not decode ({e})") from None


def fetch_image(client, bucket: str, split: str, image_id: str, dest: Path) -> Entry:
    """Download one image to ``dest`` through ``dest.part``; a missing key is ``missing``, a body that is cut or
    does not decode is fetched again, up to FETCH_ATTEMPTS times, then ``failed`` with the reason."""
    key = f"{PREFIX[split]}/{image_id}.jpg"
    reason = ""
    for _ in range(FETCH_ATTEMPTS):
        try:
            body = client.get_object(Bucket=bucket, Key=key)["Body"]
            data = b"".join(body.iter_chunks(CHUNK))
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                return Entry(split, image_id, MISSING, reason=f"s3://{bucket}/{key}: no such key")
            return Entry(split, image_id, FAILED, reason=f"s3://{bucket}/{key}: {code or e}")  # retried by botocore
        except (BotoCoreError, Urllib3Error, OSError) as e:
            reason = f"s3://{bucket}/{key}: connection dropped ({e})"
            continue
        try:
            orientation = decode(data)
        except OSError as e:
            reason = f"s3://{bucket}/{key}: {e}"
            continue
        return write_image(split, image_id, data, orientation, dest)
    return Entry(split, image_id, FAILED, reason=reason)


def write_image(split: str, image_id: str, data: bytes, orientation: int, dest: Path) -> Entry:
    """Write a decoded image's bytes to ``dest`` through ``dest.part`` (renamed when whole): its done entry."""
    part = dest.with_name(dest.name + PART)
    part.write_bytes(data)
    os.replace(part, dest)
    return Entry(split, image_id, DONE, len(data), hashlib.sha256(data).hexdigest(), orientation)


class Journal:
    """Finished images, one CSV line each, appended as they complete (a line cut by SIGKILL is ignored)."""

    def __init__(self, path: Path):
        self.path = path
        self.entries: dict[tuple[str, str], Entry] = {}
        if path.is_file():
            with open(path, newline="", encoding="utf-8") as f:
                for row in csv.reader(f):
                    if (len(row) == len(FIELDS) and row[2] == DONE and row[3].isdigit() and len(row[4]) == 64
                            and row[5].isdigit()):
                        entry = Entry(row[0], row[1], DONE, int(row[3]), row[4], int(row[5]), row[6])
                        self.entries[entry.split, entry.image_id] = entry
            with open(path, "rb+") as f:  # end the line a kill cut short
                if f.seek(0, os.SEEK_END) and (f.seek(-1, os.SEEK_END), f.read(1))[1] != b"\n":
                    f.write(b"\n")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(path, "a", newline="", encoding="utf-8")
        self.writer = csv.writer(self.file)

    def add(self, entry: Entry) -> None:
        self.entries[entry.split, entry.image_id] = entry
        self.writer.writerow(astuple(entry))
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def present_entries(out: Path, wanted: dict[str, Sequence[str]], journal: Journal) -> dict[tuple[str, str], Entry]:
    """Entries of the wanted images already in place (renamed only when whole): from the journal, or measured
    when the journal lacks them (a kill between rename and journal line)."""
    present: dict[tuple[str, str], Entry] = {}
    for split, ids in wanted.items():
        folder = out / split
        if not folder.is_dir():
            continue
        names = set(os.listdir(folder))
        for image_id in ids:
            if f"{image_id}.jpg" not in names:
                continue
            entry = journal.entries.get((split, image_id))
            if entry is None:
                size, sha, orientation = inspect(folder / f"{image_id}.jpg")
                entry = Entry(split, image_id, DONE, size, sha, orientation)
                journal.add(entry)
            present[split, image_id] = entry
    return present


def download(client, bucket: str, out: Path, todo: Sequence[tuple[str, str]], journal: Journal, jobs: int,
             progress: bool = True) -> list[Entry]:
    """Fetch ``todo`` ((split, ImageID) pairs) with ``jobs`` concurrent requests, one progress bar (files, MB/s,
    ETA); at most 4 x jobs requests are queued at a time, so a split of millions costs no memory."""
    for split in {split for split, _ in todo}:
        (out / split).mkdir(parents=True, exist_ok=True)
    results: list[Entry] = []
    start, received = time.monotonic(), 0
    bar = tqdm(total=len(todo), unit="file", disable=not progress, smoothing=0.05)
    with cf.ThreadPoolExecutor(max_workers=jobs) as pool:
        pending: set[cf.Future] = set()
        queue = iter(todo)
        for split, image_id in _take(queue, 4 * jobs):
            pending.add(pool.submit(fetch_image, client, bucket, split, image_id, out / split / f"{image_id}.jpg"))
        while pending:
            finished, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for future in finished:
                entry = future.result()
                results.append(entry)
                if entry.status == DONE:
                    journal.add(entry)
                    received += entry.size
                bar.update()
                bar.set_postfix_str(f"{received / max(time.monotonic() - start, 1e-9) / 1e6:.1f} MB/s", refresh=False)
            for split, image_id in _take(queue, len(finished)):
                pending.add(pool.submit(fetch_image, client, bucket, split, image_id,
                                        out / split / f"{image_id}.jpg"))
    bar.close()
    return results


def fetch_tarballs(client, bucket: str, out: Path, split: str, wanted: Sequence[str], journal: Journal,
                   cache: Path) -> int:
    """Fill the split's folder from the bucket's tarballs (full mirrors): each is fetched whole (ranged parallel
    parts, renamed when complete), its wanted images verified and renamed into place, and then it is deleted
    (a ``.done`` marker remains, so a rerun skips it). Images absent or undecodable are left to ``download``."""
    folder = out / split
    folder.mkdir(parents=True, exist_ok=True)
    wanted_set, placed = set(wanted), 0
    for key in TARBALLS[split]:
        tarball = cache / key
        marker = tarball.with_name(tarball.name + ".done")
        if marker.is_file():
            continue
        tarball.parent.mkdir(parents=True, exist_ok=True)
        if not tarball.is_file():
            client.download_file(bucket, key, str(tarball))  # s3transfer: a temporary name, renamed when whole
        with tarfile.open(tarball, mode="r|gz") as tar:
            for member in tar:
                image_id, dot, suffix = Path(member.name).name.rpartition(".")
                dest = folder / f"{image_id}.jpg"
                if not member.isfile() or suffix != "jpg" or image_id not in wanted_set or dest.is_file():
                    continue
                data = tar.extractfile(member).read()
                try:
                    orientation = decode(data)
                except OSError:
                    continue
                journal.add(write_image(split, image_id, data, orientation, dest))
                placed += 1
        marker.touch()
        tarball.unlink()
    return placed


def _take(iterator, n: int) -> list:
    return [item for _, item in zip(range(n), iterator)]


def write_manifest(path: Path, entries: Iterable[Entry]) -> None:
    """Every image of the run, sorted by split and ImageID (the same bytes for the same outcome)."""
    order = {split: i for i, split in enumerate(PREFIX)}
    rows = sorted(entries, key=lambda e: (order[e.split], e.image_id))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(FIELDS)
    writer.writerows(astuple(e) for e in rows)
    with atomic_output(path) as f:
        f.write(buffer.getvalue().encode())
