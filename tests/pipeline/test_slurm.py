"""The Slurm targets on a real cluster (`sudo tools/local_slurm.sh start`: one node, two fake GPUs), skipped with the
reason where none is up. One file, so that with several pytest workers its tests run one after another on the one
cluster (a job waits for the node the other test's jobs hold).

- `make infer-slurm`: the rows of `make infer`, a shard cancelled midway and the rerun completing it, requests the
  partition can never run stop at once.
- `make train-slurm GPUS=2`: a batch job of two srun tasks on CPU (gloo), requeued once it wrote its first
  checkpoint; the restarted job resumes by itself and ends with the iterations and images of an uninterrupted
  two-process run. An unschedulable request stops at once, naming what was asked."""
import os
import re
import subprocess
import time

import pyarrow.parquet as pq
import pytest

from pipeline.checkpoints import load_checkpoint
from tests.helpers import INFER_ENV, REPO, make_infer_args, merged_rows, prepare_infer_case, run_make
from tests.pipeline.train_runs import (CHECKPOINT_EVERY, ITERS, PER_PROCESS_BATCH, make_train, sampler_order,
                                       trained, write_config)
from tests.slurm import job_report, slurm_cluster  # noqa: F401  (the fixture)


# ---------------------------------------------------------------- make infer-slurm

SLURM_ENV = {"CPUS_PER_TASK": "1", "POLL_S": "1"}


def _queued(job_name: str) -> str:
    return subprocess.run(["squeue", "-h", "-r", "-n", job_name, "-o", "%K|%t"], capture_output=True, text=True,
                          check=True).stdout


@pytest.mark.timeout(240)
def test_infer_slurm_3_shards_cancelled_one_rerun_gives_the_rows_of_make_infer(slurm_cluster, tmp_path_factory):
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


# ---------------------------------------------------------------- make train-slurm

TASKS = 2


def job_ids(name: str) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-n", name, "-o", "%i"], capture_output=True, text=True, timeout=20)
    return out.stdout.split()


def job_state(job: str) -> str:
    out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True, timeout=20)
    return out.stdout.strip()


def job_steps(job: str) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-s", "-j", job, "-o", "%i"], capture_output=True, text=True, timeout=20)
    return out.stdout.split()


def nodes_idle() -> bool:
    out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=20)
    return set(out.stdout.split()) == {"idle"}


REQUEUE_SETTLE_S = 2  # how long the requeued job stays pending with its node idle before the test starts it


@pytest.mark.timeout(400)
def test_train_slurm_requeued_job_resumes(slurm_cluster, mini_data, mini_prepared, tmp_path):  # noqa: F811
    if slurm_cluster.cpus < TASKS or slurm_cluster.gpus < TASKS:
        pytest.skip(f"the partition's node has {slurm_cluster.cpus} CPUs and {slurm_cluster.gpus} GPUs; "
                    f"{TASKS} tasks need {TASKS} of each")
    config = write_config(tmp_path / "configs")
    name = f"oid-tsd-test-{tmp_path.name}"
    run = make_train("train-slurm", config, tmp_path / "w", mini_data, mini_prepared, f"GPUS={TASKS}",
                     f"PARTITION={slurm_cluster.partition}", f"MODEL={name}", popen=True,
                     env={"CPUS_PER_TASK": "1", "GPUS_PER_NODE": str(TASKS)})
    work_dir = tmp_path / "w" / "models" / name
    deadline = time.monotonic() + 240
    try:
        while not (work_dir / f"iter_{CHECKPOINT_EVERY}.pth").is_file():
            assert run.poll() is None, run.stdout.read()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.2)
        (job,) = job_ids(name)
        subprocess.run(["scontrol", "requeue", job], check=True, timeout=20)
        # Slurm holds a requeued job back for two minutes, time for the node to clean up after the killed run;
        # here it starts once it is pending again, no step of it is left and the node has been idle for a while
        settled_since = None
        while settled_since is None or time.monotonic() - settled_since < REQUEUE_SETTLE_S:
            assert time.monotonic() < deadline, f"job {job} not requeued within 240 s"
            settled = job_state(job) == "PENDING" and not job_steps(job) and nodes_idle()
            settled_since = (settled_since or time.monotonic()) if settled else None
            time.sleep(0.2)
        subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True, timeout=20)
        out, _ = run.communicate(timeout=300)
    finally:
        for job in job_ids(name):
            subprocess.run(["scancel", job], timeout=20)
    assert run.returncode == 0, out[-3000:] + "\n" + job_report(job, work_dir / f"slurm-{job}.out")
    log = (work_dir / f"slurm-{job}.out").read_text()
    assert "resuming from the last checkpoint" in log and "resumed epoch: 0, iter: " in log, log[-3000:]

    order = sampler_order(config, mini_prepared, mini_data)
    for rank in range(TASKS):  # one draw sequence; rank r takes its positions r, r + TASKS, ...
        expected = {s: order[(s - 1) * TASKS * PER_PROCESS_BATCH + rank:s * TASKS * PER_PROCESS_BATCH:TASKS]
                    for s in range(1, ITERS + 1)}
        assert trained(work_dir, rank) == expected, rank
    final = load_checkpoint(work_dir / f"iter_{ITERS}.pth")
    assert final["meta"]["iter"] == ITERS and not any(k.startswith("module.") for k in final["state_dict"])
    assert re.search(r"batch 4 \(2 processes x 2 images\)", log)


def test_train_slurm_unschedulable_request_stops_at_once(slurm_cluster, mini_data, mini_prepared,  # noqa: F811
                                                         tmp_path):
    config = write_config(tmp_path / "configs")
    cpus = slurm_cluster.cpus + 1
    start = time.monotonic()
    run = make_train("train-slurm", config, tmp_path / "w", mini_data, mini_prepared, "GPUS=1",
                     f"PARTITION={slurm_cluster.partition}", env={"CPUS_PER_TASK": str(cpus)}, timeout=60)
    assert run.returncode == 2 and time.monotonic() - start < 60
    assert run.stderr.startswith(f"error: partition {slurm_cluster.partition} cannot run 1 node(s) x 1 tasks of "
                                 f"{cpus} CPUs and GRES gpu"), run.stderr
    assert not job_ids("mini_tsd_recorded")
