from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ci_eval.cli import main
from ci_eval.errors import InputError
from ci_eval.instances import Instance
from ci_eval.sharding import DIFFICULTY_COST, costs_for, plan, shard_ids
from tests.conftest import INSTANCES, rows


def synthetic(n: int, repos: int = 7, with_difficulty: bool = False) -> list[Instance]:
    base = rows()[0]
    labels = list(DIFFICULTY_COST)
    return [
        Instance.model_validate({
            **base, "instance_id": f"org__repo{k % repos}-{k:04d}", "repo": f"org/repo{k % repos}",
            "version": str(k % 3), "difficulty": labels[(k * 7) % 4] if with_difficulty else None,
        })
        for k in range(n)
    ]


@pytest.mark.parametrize(("n", "of"), [(500, 10), (500, 7), (6, 4), (3, 5), (1, 1)])
def test_count_plan_is_disjoint_covering_and_even(n: int, of: int) -> None:
    instances = synthetic(n)
    shards = plan(list(reversed(instances)), of)
    flat = [i for s in shards for i in s]
    assert sorted(flat) == sorted(i.instance_id for i in instances) and len(flat) == len(set(flat))
    sizes = [len(s) for s in shards]
    assert len(shards) == of and max(sizes) - min(sizes) <= 1
    assert shards == plan(instances, of)  # input order does not matter


def test_cost_plan_balances_time_and_keeps_families_together() -> None:
    instances = synthetic(500, with_difficulty=True)
    costs = costs_for(instances)
    shards = plan(instances, 10, costs)
    flat = [i for s in shards for i in s]
    assert sorted(flat) == sorted(i.instance_id for i in instances) and len(flat) == len(set(flat))
    loads = [sum(costs[i] for i in s) for s in shards]
    count_loads = [sum(costs[i] for i in s) for s in plan(instances, 10)]
    assert max(loads) / min(loads) < 1.2
    assert max(loads) - min(loads) <= max(count_loads) - min(count_loads)
    family = {i.instance_id: i.family for i in instances}
    split = sum(len({n for n, s in enumerate(shards) for i in s if family[i] == f}) - 1
                for f in set(family.values()))
    assert split <= 10  # 21 families over 10 shards: few are cut


def test_timings_file_prior(tmp_path: Path) -> None:
    instances = synthetic(20)
    slow = instances[0].instance_id
    timings = tmp_path / "timings.json"
    timings.write_text(json.dumps({i.instance_id: 1000.0 if i.instance_id == slow else 1.0 for i in instances}))
    shards = plan(instances, 2, costs_for(instances, timings))
    alone = next(s for s in shards if slow in s)
    assert alone == [slow]  # it outweighs all the others together


def test_index_out_of_range_is_one_line() -> None:
    with pytest.raises(InputError, match=r"shard index 4 is out of range: --of 4 has 0..3"):
        shard_ids(plan(synthetic(8), 4), 4)


def test_plan_command_prints_matrix_and_writes_plan(tmp_path: Path) -> None:
    out = tmp_path / "plan.json"
    result = CliRunner().invoke(main, ["plan", "--of", "4", "--dataset", str(INSTANCES), "--output", str(out)])
    assert result.exit_code == 0, result.output
    matrix = json.loads(result.stdout)
    assert [e["index"] for e in matrix["include"]] == [0, 1, 2, 3]
    written = json.loads(out.read_text())
    assert sum(e["size"] for e in matrix["include"]) == 6 == sum(len(s) for s in written["shards"])


def test_a_report_is_a_timings_prior(tmp_path: Path) -> None:
    instances = synthetic(20)
    times = {i.instance_id: {"time": 1000.0 if n == 0 else 1.0} for n, i in enumerate(instances)}
    report = {"schema_version": 1, "instances": times}
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    shards = plan(instances, 2, costs_for(instances, path))
    assert instances[0].instance_id in shards[0] and len(shards[0]) == 1
    path.write_text("[1, 2]")
    with pytest.raises(InputError, match=r"expected a report\.json or a JSON object"):
        costs_for(instances, path)
