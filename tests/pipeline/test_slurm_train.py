"""`make train-slurm GPUS=2` on a running Slurm cluster (`tools/local_slurm.sh start`: one node, two fake GPUs):
a batch job of two srun tasks on CPU (gloo), requeued once it wrote its first checkpoint; the restarted job
resumes by itself and ends with the iterations and images of an uninterrupted two-process run. Skipped, with the
reason, where no cluster runs; an unschedulable request stops at once, naming what was asked."""
import re
import subprocess
import time

import pytest

from pipeline.checkpoints import load_checkpoint
from tests.pipeline.train_runs import (CHECKPOINT_EVERY, ITERS, PER_PROCESS_BATCH, make_train, sampler_order,
                                       trained, write_config)
from tests.slurm import job_report, slurm_cluster  # noqa: F401  (fixture)

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
