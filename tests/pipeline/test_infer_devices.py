"""`make infer GPUS=N`: N shard processes at once (CPU processes here), the rows of one process, failures named."""
import pyarrow.parquet as pq
import pytest

from tests.helpers import make_infer_args, merged_rows, prepare_infer_case, run_make


@pytest.mark.timeout(150)
def test_make_infer_gpus_2_gives_the_rows_of_one_process(tmp_path_factory):
    root = tmp_path_factory.getbasetemp()
    reference = pq.read_table(prepare_infer_case(root))
    out = root / "infer-gpus-2"
    result = run_make("infer", "GPUS=2", *make_infer_args(root, out), timeout=120)
    assert "2 shard processes (cpu)" in result.stderr and f"complete: 2 shards in {out}" in result.stdout
    assert merged_rows(out, 2).equals(reference)
    assert reference.num_rows > 0
    assert sorted(p.name for p in (out / "logs").iterdir()) == ["shard-000-of-002.log", "shard-001-of-002.log"]
    assert not (out / ".partial").exists()
