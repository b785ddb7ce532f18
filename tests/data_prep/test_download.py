"""python -m data_prep.download against a local S3 (moto's server) and a loopback HTTP server for the annotation
files, both behind a proxy that injects faults, serving the mini dataset: the folder written is the one
`make prepare` reads, faults are retried or recorded, a killed run resumes to the same bytes, subsets are exact."""
import concurrent.futures as cf
import csv
import hashlib
import http.client
import io
import http.server
import logging
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import boto3
import pandas as pd
import pytest
from moto.server import ThreadedMotoServer
from PIL import Image

from contracts.files import image_files
from contracts.hierarchy import Hierarchy
from data_prep.download import annotations
from data_prep.download.__main__ import main
from tests.helpers import METADATA, REPO

BUCKET = "open-images-dataset"
ANNOTATION_FILES = [annotations.CLASS_FILE, annotations.HIERARCHY_FILE,
                    *(name for names in annotations.SPLIT_FILES.values() for name in names)]
SPLIT_PREFIX = {"train": "train", "validation": "validation", "test": "challenge2018"}
pytestmark = pytest.mark.timeout(120)


class FaultyHandler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files`` (path -> bytes) or forwards to ``server.upstream``; ``server.faults[path]`` is a
    queue of faults, one per request: '503', 'cut' (half the body, then the connection closes) or 'truncate'
    (a consistent response of the first half of the body)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        server = self.server
        path = self.path.split("?", 1)[0]
        with server.lock:
            server.requests[path] += 1
            fault = server.faults[path].pop(0) if server.faults.get(path) else None
        time.sleep(server.delay if path.endswith(".jpg") else 0)
        if fault == "503":
            return self.reply(503, {"Content-Type": "text/plain"}, b"slow down")
        if server.upstream is None:
            body = server.files.get(path)
            status, headers = (200, {"Content-Type": "application/octet-stream"}) if body is not None else (404, {})
            body = body if body is not None else b"not found"
        else:
            status, headers, body = self.forward()
        if fault == "truncate":
            body = body[: len(body) // 2]
        if fault == "cut":
            self.send_response(status)
            for name, value in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return None
        return self.reply(status, headers, body)

    def do_HEAD(self):
        status, headers, _ = self.forward("HEAD")
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()

    def forward(self, method="GET"):
        connection = http.client.HTTPConnection(*self.server.upstream, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        connection.request(method, self.path, headers=headers)
        response = connection.getresponse()
        body = response.read()
        dropped = ("transfer-encoding", "connection", "date", "server") + (("content-length",) if body else ())
        kept = {k: v for k, v in response.getheaders() if k.lower() not in dropped}
        connection.close()
        return response.status, kept, body

    def reply(self, status, headers, body):
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


def start_server(files=None, upstream=None):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FaultyHandler)
    server.daemon_threads = True
    server.files, server.upstream, server.delay = files, upstream, 0.0
    server.faults, server.requests, server.lock = {}, defaultdict(int), threading.Lock()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def url(server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


class Served:
    """The mini dataset in a local bucket and on a local web server, each behind a fault proxy."""

    def __init__(self, mini_data: Path):
        self.mini = mini_data
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.moto.start()
        host, port = self.moto.get_host_and_port()
        self.client = boto3.client("s3", endpoint_url=f"http://{host}:{port}", region_name="us-east-1",
                                   aws_access_key_id="test", aws_secret_access_key="test")
        self.client.create_bucket(Bucket=BUCKET, ACL="public-read")  # as the CVDF bucket: anonymous reads
        self.images = {split: image_files(mini_data / split) for split in SPLIT_PREFIX}
        self.missing = sorted(self.images["train"])[3]  # listed in the CSVs, absent from the bucket
        self.corrupt = sorted(self.images["validation"])[5]  # a truncated JPEG in the bucket
        self.turned = sorted(self.images["test"])[0]  # stored with EXIF orientation 6
        exif = Image.Exif()
        exif[0x0112] = 6
        with Image.open(self.images["test"][self.turned]) as image, io.BytesIO() as buffer:
            image.save(buffer, format="JPEG", exif=exif.tobytes())
            self.turned_bytes = buffer.getvalue()
        with cf.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda key: self.put(f"{SPLIT_PREFIX[key[0]]}/{key[1]}.jpg", self.stored(key)),
                          [(split, i) for split, ids in self.images.items() for i in ids if i != self.missing]))
        self.s3 = start_server(upstream=(host, port))
        self.web = start_server(files={f"/challenge_2019/{name}": (mini_data / name).read_bytes()
                                       for name in ANNOTATION_FILES})

    def stored(self, key: tuple[str, str]) -> bytes:
        """The bytes the bucket holds for (split, ImageID)."""
        split, image_id = key
        data = self.turned_bytes if image_id == self.turned else self.images[split][image_id].read_bytes()
        return data[: len(data) // 2] if image_id == self.corrupt else data

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=BUCKET, Key=key, Body=data, ACL="public-read")

    def args(self, out: Path, *extra: str) -> list[str]:
        return ["--out", str(out), "--s3-endpoint", url(self.s3), "--annotations-url",
                url(self.web) + "/challenge_2019/", "--jobs", "8", "--no-progress", *extra]

    def image_path(self, split: str, image_id: str) -> str:
        return f"/{BUCKET}/{SPLIT_PREFIX[split]}/{image_id}.jpg"

    def close(self):
        self.s3.shutdown()
        self.web.shutdown()
        self.moto.stop()


@pytest.fixture(scope="module")
def served(mini_data):
    served = Served(mini_data)
    yield served
    served.close()


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` but the cache, by relative path."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and ".download" not in p.parts}


def manifest(out: Path) -> dict[tuple[str, str], dict]:
    with open(out / "download-manifest.csv", newline="") as f:
        return {(row["split"], row["image_id"]): row for row in csv.DictReader(f)}


@pytest.fixture(scope="module")
def full(served, tmp_path_factory):
    """The whole mini dataset fetched through faults: 503 twice, cut responses, a truncated body once."""
    train, validation = sorted(served.images["train"]), sorted(served.images["validation"])
    faults = {
        "/challenge_2019/challenge-2019-validation-detection-bbox.csv": ["503", "503"],
        "/challenge_2019/challenge-2019-train-detection-human-imagelabels.csv": ["cut"],
        served.image_path("train", train[0]): ["503", "503"],
        served.image_path("train", train[1]): ["cut"],
        served.image_path("validation", validation[0]): ["truncate"],
    }
    served.web.faults.update({k: list(v) for k, v in faults.items() if k.startswith("/challenge_2019/")})
    served.s3.faults.update({k: list(v) for k, v in faults.items() if not k.startswith("/challenge_2019/")})
    out = tmp_path_factory.mktemp("download") / "oid2019"
    with pytest.MonkeyPatch.context() as patch:  # the annotation retries' backoff, 0.5 s doubling, at 1/50
        patch.setattr(annotations, "RETRY_WAIT", 0.01)
        status = main(served.args(out))
    return out, status, faults


def test_full_download_writes_the_prepare_layout_and_records_faults(served, full, capsys):
    out, status, faults = full
    assert status == 1  # one key missing, one image that never decodes
    for path, queued in faults.items():  # each fault was met, then the file fetched again
        server = served.web if path.startswith("/challenge_2019/") else served.s3
        assert server.requests[path] == len(queued) + 1, path
    got = tree(out)
    for name in ANNOTATION_FILES:
        assert got.pop(name) == (served.mini / name).read_bytes(), name
    rows = manifest(out)
    for split, files in served.images.items():
        for image_id, path in files.items():
            row = rows.pop((split, image_id))
            if image_id == served.missing:
                assert row["status"] == "missing" and "no such key" in row["reason"]
            elif image_id == served.corrupt:
                assert row["status"] == "failed" and "does not decode" in row["reason"]
                assert served.s3.requests[served.image_path(split, image_id)] == 3  # fetched again, then given up
            else:
                data = got.pop(f"{split}/{image_id}.jpg")
                assert data == (served.turned_bytes if image_id == served.turned else path.read_bytes())
                orientation = "6" if image_id == served.turned else "1"
                assert (row["status"], row["size"], row["sha256"], row["orientation"]) == \
                    ("done", str(len(data)), hashlib.sha256(data).hexdigest(), orientation)
    assert rows == {}
    test_ids = sorted(served.images["test"])
    assert got.pop("sample_submission.csv").decode() == "ImageId,PredictionString\n" + "".join(
        f"{i},\n" for i in test_ids)
    assert list(got) == ["download-manifest.csv"]

    prepared = out.parent / "prepared"
    run = subprocess.run([sys.executable, "-m", "data_prep", "--data-dir", str(out), "--out-dir", str(prepared)],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert pd.read_parquet(prepared / "validation" / "images.parquet")["ImageID"].nunique() == \
        len(served.images["validation"]) - 1  # the failed image has no file: its rows are dropped

    capsys.readouterr()
    assert main(served.args(out)) == 1
    err = capsys.readouterr().err
    assert f"{sum(map(len, served.images.values())) - 2:,} present, downloading the remaining 2" in err
    assert f"EXIF orientation other than 1: 1 of {sum(map(len, served.images.values())) - 2:,} images" in err


def test_kill_midway_then_rerun_gives_the_bytes_of_a_clean_run(served, tmp_path):
    args = ["--splits", "validation", "test", "--max-images", "25", "--seed", "3"]
    clean = tmp_path / "clean"
    status = main(served.args(clean, *args))
    served.s3.delay = 0.05
    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "data_prep.download", *served.args(killed, *args)],
                               cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = killed / ".download" / "journal.csv"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (journal.is_file() and journal.read_text().count("\n") >= 10):
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    served.s3.delay = 0.0
    assert not (killed / "download-manifest.csv").exists()
    assert 10 <= len(image_files(killed / "validation")) + len(image_files(killed / "test")) < 49
    assert main(served.args(killed, *args)) == status
    assert tree(killed) == tree(clean)


def test_subset_by_class_takes_descendants_and_caps_each_class(served, mini_data, tmp_path):
    out = tmp_path / "subset"
    assert main(served.args(out, "--splits", "validation", "--classes", "vEGETABLE", "--max-per-class", "2")) == 0
    hierarchy = Hierarchy.from_json(METADATA / annotations.HIERARCHY_FILE)
    names = pd.read_csv(mini_data / annotations.CLASS_FILE, header=None, names=["MID", "Name"])
    vegetable = names.loc[names["Name"] == "Vegetable", "MID"].item()
    chosen = {vegetable} | hierarchy.descendants(vegetable)
    boxes_file, labels_file = annotations.SPLIT_FILES["validation"]
    boxes = pd.read_csv(mini_data / boxes_file)
    expected = sorted(set().union(*(sorted(set(boxes.loc[boxes["LabelName"] == mid, "ImageID"]))[:2]
                                    for mid in chosen)))
    assert len(chosen) > 1 and len(expected) > 2
    assert sorted(image_files(out / "validation")) == expected
    for name in (boxes_file, labels_file):
        lines = (mini_data / name).read_text().splitlines(keepends=True)
        assert (out / name).read_text() == lines[0] + "".join(l for l in lines[1:] if l.split(",")[0] in expected)
    assert not (out / "train").exists() and not (out / "sample_submission.csv").exists()


def test_image_list_in_the_official_format(served, tmp_path):
    wanted = sorted(served.images["test"])[:4]
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"test/{i}\n" for i in wanted))
    out = tmp_path / "listed"
    assert main(served.args(out, "--splits", "test", "--image-list", str(listing))) == 0
    assert sorted(image_files(out / "test")) == wanted
    assert (out / "sample_submission.csv").read_text().splitlines()[1:] == [f"{i}," for i in wanted]


def test_tarballs_then_the_images_they_lack(served, tmp_path):
    validation = sorted(served.images["validation"])
    absent = validation[1]  # not in the tarball: fetched on its own
    with io.BytesIO() as buffer:
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for image_id in validation:
                if image_id != absent:
                    data = served.stored(("validation", image_id))
                    member = tarfile.TarInfo(f"validation/{image_id}.jpg")
                    member.size = len(data)
                    tar.addfile(member, io.BytesIO(data))
        served.put("tar/validation.tar.gz", buffer.getvalue())
    served.s3.requests.clear()
    out = tmp_path / "mirror"
    assert main(served.args(out, "--splits", "validation", "--tarballs")) == 1  # the corrupt image fails
    rows = manifest(out)
    for image_id in validation:
        path = served.image_path("validation", image_id)
        if image_id == served.corrupt:
            assert rows["validation", image_id]["status"] == "failed"
            continue
        assert (out / "validation" / f"{image_id}.jpg").read_bytes() == served.stored(("validation", image_id))
        assert rows["validation", image_id]["status"] == "done"
        assert served.s3.requests[path] == (1 if image_id == absent else 0), image_id
    assert (out / ".download" / "tar" / "validation.tar.gz.done").is_file()
    assert not (out / ".download" / "tar" / "validation.tar.gz").exists()


def test_unknown_class_lists_the_closest_names(served, tmp_path, capsys):
    assert main(served.args(tmp_path / "x", "--classes", "Zuchini")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --classes: unknown class 'Zuchini' (closest: Zucchini")
    assert not (tmp_path / "x").exists()


def test_target_that_cannot_be_written_is_one_line_error(served, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(served.args(blocker / "oid2019", "--splits", "validation")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{blocker / 'oid2019'}: cannot write the dataset here" in err


def test_stops_before_the_images_when_they_will_not_fit(served, tmp_path, capsys, monkeypatch):
    import data_prep.download.__main__ as cli

    free = cli.shutil.disk_usage(tmp_path)._replace(free=10**6)
    monkeypatch.setattr(cli.shutil, "disk_usage", lambda path: free)
    out = tmp_path / "small-disk"
    assert main(served.args(out, "--splits", "test")) == 2
    size = sum(len(served.stored(("test", i))) for i in served.images["test"])
    assert f"error: {out}: 60 images need about {size / 1e6:,.1f} MB and 1.0 MB are free" in capsys.readouterr().err
    assert not (out / "test").exists()
