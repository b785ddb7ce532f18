"""`make infer-slurm` on a real Slurm cluster (tools/local_slurm.sh; skipped with the reason when none is up): the
rows of `make infer`, a shard cancelled midway and the rerun completing it, requests the partition can never run."""
import re
import subprocess
import time

import pyarrow.parquet as pq
import pytest

from tests.helpers import INFER_ENV, REPO, make_infer_args, merged_rows, prepare_infer_case, run_make
from tests.slurm import slurm_cluster  # noqa: F401  (the fixture)

SLURM_ENV = {"CPUS_PER_TASK": "1", "POLL_S": "1"}


def _queued(job_name: str) -> str:
    return subprocess.run(["squeue", "-h", "-r", "-n", job_name, "-o", "%K|%t"], capture_output=True, text=True,
                          check=True).stdout


@pytest.mark.timeout(240)
def test_infer_slurm_3_shards_cancelled_one_rerun_gives_the_rows_of_make_infer(slurm_cluster, tmp_path_factory):
    import os

    root = tmp_path_factory.getbasetemp()
    reference = pq.read_table(prepare_infer_case(root))
    out = root / "slurm" / "validation"
    job_name = f"infer-{out.parent.name}"
    args = ["infer-slurm", "SHARDS=3", f"PARTITION={slurm_cluster.partition}", *make_infer_args(root, out)]
    run = subprocess.Popen(["make", *args], cwd=REPO, env=dict(os.environ, **INFER_ENV, **SLURM_ENV),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while "1|R" not in _queued(job_name):  # shard 1 has started: cancel it before it can finish
        assert time.monotonic() < deadline and run.poll() is None, "shard 1 never started"
        time.sleep(0.2)
    subprocess.run(["scancel", f"{_job_id(job_name)}_1"], check=True)
    stdout, stderr = run.communicate(timeout=150)
    assert run.returncode != 0
    log = out / "logs" / "shard-001-of-003.log"
    assert f"error: 1 of 3 shards missing in {out}/merged; see {log}" in stderr
    assert re.search(rf"infer-slurm: 2/3 shards done, 0 running, 0 pending, failed: shard 1 \({log}\)", stdout)
    assert not (out / "merged" / "shard-001-of-003.parquet").exists()

    rerun = run_make(*args, timeout=150, env=SLURM_ENV)
    assert "shards 1 of 3" in rerun.stdout and f"complete: 3 shards in {out}/merged" in rerun.stdout
    assert merged_rows(out, 3).equals(reference) and reference.num_rows > 0
    assert _queued(job_name) == ""


def _job_id(job_name: str) -> str:
    return subprocess.run(["squeue", "-h", "-n", job_name, "-o", "%F"], capture_output=True, text=True,
                          check=True).stdout.split()[0]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("asked", ["CPUS_PER_TASK", "GRES", "MEM", "PARTITION", "TIME"])
def test_a_request_no_node_can_run_stops_at_once(slurm_cluster, tmp_path, asked):
    too_much = {"CPUS_PER_TASK": str(slurm_cluster.cpus + 1), "GRES": "gpu:no-such-type",
                "MEM": f"{slurm_cluster.memory_mb + 1}M", "PARTITION": "no-such-partition", "TIME": "30-00:00:00"}
    if asked == "TIME" and slurm_cluster.max_time == "infinite":
        pytest.skip(f"partition {slurm_cluster.partition} has no time limit")
    out = tmp_path / "never" / "validation"
    started = time.monotonic()
    args = [f"PARTITION={slurm_cluster.partition}", "CPUS_PER_TASK=1", f"{asked}={too_much[asked]}"]
    result = run_make("infer-slurm", "SHARDS=2", *make_infer_args(tmp_path, out), *args, timeout=60, check=False,
                      env={"POLL_S": "1"})
    assert result.returncode == 2 and time.monotonic() - started < 60
    flag = {"CPUS_PER_TASK": "--cpus-per-task", "GRES": "--gres", "MEM": "--mem", "PARTITION": "--partition",
            "TIME": "--time"}[asked]
    asked_for = f"{too_much[asked]}:1" if asked == "GRES" else too_much[asked]
    assert f"{flag}={asked_for}" in result.stderr and "can never run this request" in result.stderr
    assert "it has" in result.stderr
    assert _queued(f"infer-{out.parent.name}") == ""
