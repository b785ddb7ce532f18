"""The annotation files: streamed over HTTP to disk with retries, and a subset's copies filtered to its images."""
from __future__ import annotations

import http.client
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Collection
from pathlib import Path

from contracts.files import DataError, atomic_output

DEFAULT_URL = "https://storage.googleapis.com/openimages/challenge_2019/"
CLASS_FILE = "challenge-2019-classes-description-500.csv"
HIERARCHY_FILE = "challenge-2019-label500-hierarchy.json"
SPLIT_FILES = {split: (f"challenge-2019-{split}-detection-bbox.csv",
                       f"challenge-2019-{split}-detection-human-imagelabels.csv")
               for split in ("train", "validation")}
CHUNK = 1 << 20
ATTEMPTS = 6
RETRY_WAIT = 0.5  # seconds before the second attempt, doubled after each failure
TIMEOUT = 60


def retry_wait(attempt: int) -> float:
    """Seconds to wait after failed attempt ``attempt`` (0-based): exponential backoff, capped at 30 s."""
    return min(30.0, RETRY_WAIT * 2 ** attempt)


def fetch(url: str, dest: Path) -> bool:
    """Stream ``url`` to ``dest`` (temporary name, renamed when whole); False when ``dest`` is already there.
    Server errors (5xx, 429), dropped connections and short bodies are retried with backoff; 4xx is an error."""
    if dest.is_file():
        return False
    error: Exception | None = None
    for attempt in range(ATTEMPTS):
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT) as response, atomic_output(dest) as out:
                expected, received = response.headers.get("Content-Length"), 0
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    received += len(chunk)
                if expected is not None and received != int(expected):
                    raise http.client.IncompleteRead(b"", int(expected) - received)
            return True
        except urllib.error.HTTPError as e:
            if e.code < 500 and e.code != 429:
                raise DataError(f"{url}: HTTP {e.code} {e.reason}") from None
            error = e
        except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
            error = e
        if attempt + 1 < ATTEMPTS:
            time.sleep(retry_wait(attempt))
    raise DataError(f"{url}: failed after {ATTEMPTS} attempts ({error})")


def copy(source: Path, dest: Path) -> None:
    """``source`` to ``dest`` byte for byte, atomically."""
    with open(source, "rb") as f, atomic_output(dest) as out:
        shutil.copyfileobj(f, out, CHUNK)


def filter_csv(source: Path, dest: Path, image_ids: Collection[str]) -> int:
    """Copy ``source`` to ``dest`` keeping the header and the rows whose first column (ImageID) is in
    ``image_ids``, byte for byte, streamed; returns the number of data rows kept."""
    kept = 0
    wanted = {i.encode() for i in image_ids}
    with open(source, "rb") as f, atomic_output(dest) as out:
        out.write(f.readline())
        for line in f:
            if line.split(b",", 1)[0] in wanted:
                out.write(line)
                kept += 1
    return kept
