"""Benchmark `python -m data_prep.download` against a plain sequential boto3 loop, both on one local S3 server.

Starts moto's S3 server in its own process, fills a bucket's ``challenge2018/`` folder (the test split) with
synthetic JPEGs of about the real mean size, serves the class file and hierarchy over loopback HTTP, then times
``python -m data_prep.download --splits test`` (parallel requests, verification, manifest) and, as the reference,
a loop of ``get_object`` + write into another folder. Prints files/s and MB/s of both and their ratio.

    python bench/download.py [--images 400] [--jobs 32] [--kb 300] [--latency-ms 0]
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import functools
import http.server
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import boto3
import numpy as np
from botocore import UNSIGNED
from botocore.config import Config
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
METADATA = REPO / "data_prep" / "metadata"
BUCKET = "open-images-dataset"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def jpeg(rng: np.random.Generator, kb: int) -> bytes:
    """A noisy JPEG of roughly ``kb`` kilobytes (noise at q90: about 0.9 bytes per pixel)."""
    side = int((kb * 1000 / 0.9) ** 0.5)
    pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


MOTO = """
import sys, time
from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple
app, latency = DomainDispatcherApplication(create_backend_app), float(sys.argv[2]) / 1000
def delayed(environ, start_response):
    if environ["REQUEST_METHOD"] == "GET":
        time.sleep(latency)
    return app(environ, start_response)
run_simple("127.0.0.1", int(sys.argv[1]), delayed, threaded=True)
"""


def start_moto(port: int, latency_ms: float) -> subprocess.Popen:
    """moto's S3 app in its own process, each GET answered after ``latency_ms`` (a distant server's latency)."""
    server = subprocess.Popen([sys.executable, "-c", MOTO, str(port), str(latency_ms)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return server
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit("the moto server did not start")


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve_metadata(folder: Path) -> http.server.ThreadingHTTPServer:
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def sequential(endpoint: str, out: Path, keys: list[str]) -> int:
    """The reference: one unsigned client, one request after the other, each body written to its file."""
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          config=Config(signature_version=UNSIGNED, s3={"addressing_style": "path"}))
    out.mkdir(parents=True)
    total = 0
    for key in keys:
        data = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        (out / key.rsplit("/", 1)[1]).write_bytes(data)
        total += len(data)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=400, help="number of images (default 400)")
    parser.add_argument("--jobs", type=int, default=32, help="data_prep.download --jobs (default 32)")
    parser.add_argument("--kb", type=int, default=300, help="approximate image size in kB (real mean ~300)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay of each GET by the server (default 0)")
    args = parser.parse_args()

    port = free_port()
    moto = start_moto(port, args.latency_ms)
    endpoint = f"http://127.0.0.1:{port}"
    work = Path(tempfile.mkdtemp(prefix="bench-download-"))
    try:
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench",
                          aws_secret_access_key="bench")
        s3.create_bucket(Bucket=BUCKET, ACL="public-read")
        rng = np.random.default_rng(0)
        keys = [f"challenge2018/{rng.integers(0, 2**63):016x}.jpg" for _ in range(args.images)]
        bodies = [jpeg(rng, args.kb) for _ in keys]
        with cf.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda kb: s3.put_object(Bucket=BUCKET, Key=kb[0], Body=kb[1], ACL="public-read"),
                          zip(keys, bodies)))
        web = serve_metadata(METADATA)
        size = sum(map(len, bodies))
        print(f"{args.images} images, {size / 1e6:.1f} MB, moto S3 server on loopback, {args.latency_ms:g} ms per "
              f"GET, {os.cpu_count()} CPUs")

        start = time.perf_counter()
        sequential(endpoint, work / "reference", keys)
        reference = time.perf_counter() - start

        start = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "data_prep.download", "--out", str(work / "ours"), "--splits",
                              "test", "--jobs", str(args.jobs), "--s3-endpoint", endpoint, "--annotations-url",
                              f"http://127.0.0.1:{web.server_address[1]}/", "--no-progress"],
                             cwd=REPO, capture_output=True, text=True)
        ours = time.perf_counter() - start
        web.shutdown()
        if run.returncode != 0:
            raise SystemExit(run.stderr)
        assert sorted(p.name for p in (work / "ours" / "test").iterdir()) == sorted(k.rsplit("/", 1)[1] for k in keys)

        print(f"\n| {'run':<52} | {'wall s':>7} | {'files/s':>8} | {'MB/s':>7} |")
        print(f"|{'-' * 54}|{'-' * 9}|{'-' * 10}|{'-' * 9}|")
        for name, wall in ((f"python -m data_prep.download --jobs {args.jobs} (whole command)", ours),
                           ("reference: sequential boto3 get_object + write", reference)):
            print(f"| {name:<52} | {wall:7.2f} | {args.images / wall:8.1f} | {size / 1e6 / wall:7.1f} |")
        print(f"| {'ratio ours / reference (throughput)':<52} | {'':7} | {reference / ours:8.2f} | "
              f"{reference / ours:7.2f} |")
    finally:
        moto.kill()
        moto.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
