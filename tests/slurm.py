"""The Slurm cluster the tests may use (`tools/local_slurm.sh start`), or a skip saying why there is none.

Use the `slurm_cluster` fixture (import it into the test module): it yields a `SlurmCluster` describing the default
partition, and skips the test with a reason when Slurm is not installed or no node of it is up.
"""
import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pytest


@dataclass(frozen=True)
class SlurmCluster:
    """The default partition of a running cluster: its name, and what its largest node has."""

    partition: str
    cpus: int
    gpus: int
    memory_mb: int
    max_time: str


def _sinfo(fields: str) -> list[list[str]]:
    out = subprocess.run(["sinfo", "-h", "-o", fields], capture_output=True, text=True, timeout=20, check=True)
    return [line.split() for line in out.stdout.splitlines() if line.strip()]


def _gpus(gres: str) -> int:
    """The GPU count of a sinfo %G field such as `gpu:2`, `gpu:a100:4(S:0-1)` or `(null)`."""
    for item in gres.split(","):
        parts = item.split("(")[0].split(":")
        if parts[0] == "gpu" and parts[-1].isdigit():
            return int(parts[-1])
    return 0


def _daemon_logs() -> list[Path]:
    """The log files of slurmctld and slurmd, as the running cluster's configuration names them."""
    out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=20)
    found = re.findall(r"^Slurm(?:ctld|d)LogFile\s*=\s*(/\S+)", out.stdout, re.MULTILINE)
    return [Path(path) for path in found]


def job_report(job: str, output: Path) -> str:
    """What a failed job left: the last lines of its output file and the daemons' log lines that name it."""
    lines = [f"--- {output} (last 40 lines)"]
    lines += output.read_text(errors="replace").splitlines()[-40:] if output.is_file() else ["(missing)"]
    mention = re.compile(rf"\b(JobId={job}|job {job}|JOB {job}|\[{job}\.[a-z0-9]+\])\b", re.IGNORECASE)
    for log in _daemon_logs():
        try:
            lines += [f"--- {log}"] + [line for line in log.read_text(errors="replace").splitlines()
                                         if mention.search(line)][-40:]
        except OSError as err:
            lines.append(f"--- {log}: {err}")
    return "\n".join(lines)


@lru_cache(maxsize=1)
def find_cluster() -> tuple[SlurmCluster | None, str]:
    """The running cluster's default partition, or None and the reason there is none."""
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return None, "Slurm is not installed (apt-get install slurmctld slurmd slurm-client munge)"
    try:
        rows = _sinfo("%P %t %c %m %G %l")
    except (subprocess.SubprocessError, OSError) as err:
        return None, f"Slurm is not running (sudo tools/local_slurm.sh start): {err}"
    up = [row for row in rows if row[0].endswith("*") and row[1].rstrip("*~#") in ("idle", "mix", "alloc")]
    if not up:
        return None, f"no node of the default Slurm partition is up: {rows}"
    cpus = max(int(row[2].rstrip("+")) for row in up)
    memory = max(int(row[3].rstrip("+")) for row in up)
    gpus = max(_gpus(row[4]) for row in up)
    return SlurmCluster(up[0][0].rstrip("*"), cpus, gpus, memory, up[0][5]), ""


@pytest.fixture(scope="session")
def slurm_cluster() -> SlurmCluster:
    """The running Slurm cluster's default partition; skips the test with the reason when there is none."""
    cluster, reason = find_cluster()
    if cluster is None:
        pytest.skip(reason)
    return cluster
