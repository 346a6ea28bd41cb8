from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from ci_eval.cli import main
from ci_eval.errors import InputError
from ci_eval.instances import Instance
from ci_eval.partition import DIFFICULTY_STEPS, balance, costs_for, run_order, shard_ids
from tests.conftest import INSTANCES, rows


def synthetic(n: int, repos: int = 7, with_difficulty: bool = False) -> list[Instance]:
    base = rows()[0]
    labels = list(DIFFICULTY_STEPS)
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
    shards = balance(list(reversed(instances)), of)
    flat = [i for s in shards for i in s]
    assert sorted(flat) == sorted(i.instance_id for i in instances) and len(flat) == len(set(flat))
    sizes = [len(s) for s in shards]
    assert len(shards) == of and max(sizes) - min(sizes) <= 1
    assert shards == balance(instances, of)  # input order does not matter


def test_cost_plan_balances_time_and_keeps_families_together() -> None:
    instances = synthetic(500, with_difficulty=True)
    costs = costs_for(instances)
    shards = balance(instances, 10, costs)
    flat = [i for s in shards for i in s]
    assert sorted(flat) == sorted(i.instance_id for i in instances) and len(flat) == len(set(flat))
    loads = [sum(costs[i] for i in s) for s in shards]
    assert max(loads) <= 1.05 * sum(loads) / 10  # within 5% of the ideal makespan
    family = {i.instance_id: i.family for i in instances}
    split = sum(len({n for n, s in enumerate(shards) for i in s if family[i] == f}) - 1
                for f in set(family.values()))
    assert split <= 10  # 21 families over 10 shards: few are cut


@pytest.mark.parametrize("of", [5, 10, 20, 50])
def test_big_families_are_cut_into_few_pieces_at_every_shard_count(of: int) -> None:
    """One repository+version family worth several shards (django's 3.0, say) is cut into about
    cost / fair share pieces, not dealt one instance per shard."""
    big = [Instance.model_validate({**rows()[0], "instance_id": f"django__django-{k:05d}", "repo": "django/django",
                                    "version": "3.0", "difficulty": "15 min - 1 hour"}) for k in range(200)]
    instances = big + synthetic(300, repos=30, with_difficulty=True)
    # a spread of 1 to 8 (the partitioner's test, whatever numbers the prior of the day has)
    spread = {"<15 min fix": 450.0, "15 min - 1 hour": 900.0, "1-4 hours": 1800.0, ">4 hours": 3600.0}
    costs = {i.instance_id: spread[i.difficulty or ""] for i in instances}
    shards = balance(instances, of, costs)
    fair = sum(costs.values()) / of
    big_cost = sum(costs[i.instance_id] for i in big)
    holding = sum(any(i.startswith("django") for i in s) for s in shards)
    assert holding <= math.ceil(big_cost / fair) + 1
    assert max(sum(costs[i] for i in s) for s in shards) <= 1.05 * fair


def test_a_shard_runs_family_by_family_costliest_family_first_and_bad_timings(tmp_path: Path) -> None:
    costs = {"a1": 9.0, "b1": 8.0, "a2": 1.0, "b2": 7.0, "c1": 5.0}
    family = {"a1": "A", "a2": "A", "b1": "B", "b2": "B", "c1": "C"}  # B costs 15, A 10, C 5
    assert run_order(list(costs), costs, family) == ["b1", "b2", "a1", "a2", "c1"]
    assert run_order(["x", "y"], {}, {"x": "F", "y": "F"}) == ["x", "y"]  # no prior: by id
    instances = synthetic(4)
    timings = tmp_path / "t.json"
    for bad in ("NaN", "Infinity", "-1"):
        timings.write_text(f'{{"{instances[0].instance_id}": {bad}}}')
        with pytest.raises(InputError, match="finite and not negative"):
            costs_for(instances, timings)
    # another dataset's ids do not enter the mean the unknown instances get
    timings.write_text(json.dumps({instances[0].instance_id: 10.0, "other__repo-1": 10_000.0}))
    assert costs_for(instances, timings)[instances[1].instance_id] == 10.0


def test_shard_count_is_capped_and_chosen_from_a_budget(tmp_path: Path) -> None:
    runner = CliRunner()
    too_many = runner.invoke(main, ["plan", "--of", "7", "--dataset", str(INSTANCES)])
    assert too_many.exit_code == 2 and "1 to 6" in too_many.output
    chosen = runner.invoke(main, ["plan", "--budget-minutes", "55", "--dataset", str(INSTANCES)])
    assert chosen.exit_code == 0, chosen.output
    # the fixtures' prior: 4 x (25 steps x 70 s + 4 min) and 2 x (30 steps x 70 s + 4 min), ~33 and
    # ~39 min, two at a time (a model stream per worker); 55 minutes less 15 of setup hold two each
    assert len(json.loads(chosen.stdout)["include"]) == 3
    wider = runner.invoke(main, ["plan", "--budget-minutes", "90", "--dataset", str(INSTANCES)])
    assert len(json.loads(wider.stdout)["include"]) == 2
    roomy = runner.invoke(main, ["plan", "--budget-minutes", "200", "--dataset", str(INSTANCES)])
    assert len(json.loads(roomy.stdout)["include"]) == 1
    # one model stream per shard: one instance at a time, twice the shards
    one = runner.invoke(main, ["plan", "--budget-minutes", "55", "--model-slots", "1", "--dataset", str(INSTANCES)])
    assert one.exit_code == 0 and len(json.loads(one.stdout)["include"]) == 6, one.output
    # more model slots than workers: the workers still make only two requests at a time
    slots = runner.invoke(main, ["plan", "--budget-minutes", "55", "--model-slots", "4", "--dataset", str(INSTANCES)])
    assert slots.exit_code == 0 and len(json.loads(slots.stdout)["include"]) == 3, slots.output


def test_a_timings_file_puts_an_instance_that_outweighs_the_rest_alone(tmp_path: Path) -> None:
    instances = synthetic(20)
    slow = instances[0].instance_id
    timings = tmp_path / "timings.json"
    timings.write_text(json.dumps({i.instance_id: 1000.0 if i.instance_id == slow else 1.0 for i in instances}))
    shards = balance(instances, 2, costs_for(instances, timings))
    alone = next(s for s in shards if slow in s)
    assert alone == [slow]  # it outweighs all the others together


def test_index_out_of_range_is_one_line() -> None:
    with pytest.raises(InputError, match=r"shard index 4 is out of range: --of 4 has 0..3"):
        shard_ids(balance(synthetic(8), 4), 4)


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
    times = {i.instance_id: {"repo": i.repo, "status": "resolved", "time": 1000.0 if n == 0 else 1.0}
             for n, i in enumerate(instances)}
    report = {"schema_version": 1, "identity": {}, "shards": {"of": 1, "present": [0], "missing": [], "attempts": {}},
              "totals": {"planned": 20, "attempted": 20, "by_status": {"resolved": 20}},
              "resolve_rate": {"resolved": 20, "planned": 20, "rate": 1.0, "ci95": [0.8, 1.0]},
              "model_failures": {}, "infrastructure_failures": {"count": 0, "instances": []}, "per_repo": {},
              "usage": {}, "instances": times}
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    shards = balance(instances, 2, costs_for(instances, path))
    assert instances[0].instance_id in shards[0] and len(shards[0]) == 1
    for bad in ("[1, 2]", json.dumps({"schema_version": 1, "instances": times})):  # not a report of this shape
        path.write_text(bad)
        with pytest.raises(InputError, match=r"expected a report\.json or a JSON object"):
            costs_for(instances, path)


def test_shards_run_from_the_plan_file_without_the_dataset(tmp_path: Path) -> None:
    from ci_eval.report.aggregate import aggregate
    from ci_eval.shard import run_shard
    from tests.conftest import FIXTURES, settings

    dataset = tmp_path / "dataset.jsonl"
    dataset.write_text(INSTANCES.read_text())
    plan_file = tmp_path / "plan.json"
    made = CliRunner().invoke(main, ["plan", "--of", "2", "--dataset", str(dataset), "--output", str(plan_file)])
    assert made.exit_code == 0, made.output
    dataset.unlink()  # the shards never read it again
    for index in (0, 1):
        cfg = settings(tmp_path / f"s{index}", dataset="unused.jsonl", predictions="gold", sandbox="local",
                       repos_dir=FIXTURES / "repos", output=tmp_path / "artifacts" / f"shard-{index}")
        result = run_shard(cfg, index, plan_file=plan_file)
        assert set(result.counts) == {"resolved"}
    report = aggregate([tmp_path / "artifacts"], tmp_path / "report").report.model_dump(mode="json")
    assert report["resolve_rate"]["resolved"] == 6 and report["identity"]["dataset"] == str(dataset)
    with pytest.raises(InputError, match="leave --of out"):
        run_shard(cfg, 0, 3, plan_file=plan_file)
    plan_file.write_text('{"plan_version": 1, "shards": "x"}')
    with pytest.raises(InputError, match="is not a ci-eval plan"):
        run_shard(cfg, 0, plan_file=plan_file)


def test_a_thin_timings_file_is_a_logged_warning_not_a_print(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                              caplog: pytest.LogCaptureFixture,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Library use is quiet (the warning goes to logging); the CLI shows it as one line."""
    monkeypatch.setattr(logging.getLogger("ci_eval"), "handlers", [logging.NullHandler()])  # as a library's user
    instances = synthetic(10)
    timings = tmp_path / "t.json"
    timings.write_text(json.dumps({instances[0].instance_id: 5.0}))
    with caplog.at_level("WARNING", logger="ci_eval"):
        costs_for(instances, timings)
    assert [r.getMessage() for r in caplog.records if "knows 1 of the 10" in r.getMessage()]
    assert capsys.readouterr().err == ""
    dataset = tmp_path / "d.jsonl"
    dataset.write_text("".join(json.dumps(i.model_dump()) + "\n" for i in instances))
    result = CliRunner().invoke(main, ["plan", "--of", "2", "--dataset", str(dataset), "--timings", str(timings)])
    assert result.exit_code == 0, result.output
    assert "ci-eval: warning: timings file" in result.stderr


def test_a_plan_past_githubs_job_limit_says_so_and_what_fits(tmp_path: Path) -> None:
    from tests.conftest import INSTANCES, rows

    timings = tmp_path / "timings.json"
    timings.write_text(json.dumps({row["instance_id"]: 4 * 3600 for row in rows()}))  # 4 hours each
    slow = CliRunner().invoke(main, ["plan", "--of", "1", "--dataset", str(INSTANCES), "--timings", str(timings)])
    assert slow.exit_code == 0, slow.output
    assert "past GitHub's 6-hour job limit" in slow.stderr and "--budget-minutes 300" in slow.stderr
    quick = CliRunner().invoke(main, ["plan", "--of", "3", "--dataset", str(INSTANCES)])
    assert quick.exit_code == 0 and "job limit" not in quick.stderr


def test_a_shards_results_come_family_by_family(tmp_path: Path) -> None:
    """A real shard (gold patches, local sandbox, one worker): with a prior that would interleave
    the two fixture families costliest first, the instances run one family after the other."""
    from ci_eval.shard import run_shard
    from ci_eval.shard_folder import read_records
    from tests.conftest import settings

    interleaved = ["calc-1", "textkit-4", "calc-2", "textkit-5", "calc-3", "textkit-6"]
    prior = {f"ci-eval-fixtures__{name}": float(100 - 10 * n) for n, name in enumerate(interleaved)}
    timings = tmp_path / "timings.json"
    timings.write_text(json.dumps(prior))  # costliest first: calc-1, textkit-4, calc-2, textkit-5, …
    done = run_shard(settings(tmp_path, predictions="gold", sandbox="local", workers=1), 0, 1, timings)
    ran = [r.instance_id for r in read_records(done.folder / "results.jsonl")]
    families = [iid.split("__")[1].split("-")[0] for iid in ran]
    assert families == ["calc"] * 3 + ["textkit"] * 3, ran  # calc costs 240, textkit 210
    assert ran[:3] == sorted(ran[:3], key=lambda i: -prior[i])  # the longest first within one


def test_a_dataset_without_difficulty_plans_and_runs(tmp_path: Path) -> None:
    """Rows shaped like SWE-bench Lite's or SWE-bench-Live's have no difficulty column: the plan
    prices them at a stated default instead of a traceback, and a shard runs from it."""
    from tests.conftest import INSTANCES

    plain = tmp_path / "lite.jsonl"
    plain.write_text("".join(json.dumps({k: v for k, v in json.loads(line).items() if k != "difficulty"}) + "\n"
                             for line in INSTANCES.read_text().splitlines()))
    cli = CliRunner()
    budget = cli.invoke(main, ["plan", "--dataset", str(plain), "--budget-minutes", "60", "--output",
                               str(tmp_path / "plan.json")])
    assert budget.exit_code == 0 and json.loads(budget.stdout)["include"], budget.output
    fixed = cli.invoke(main, ["plan", "--dataset", str(plain), "--of", "2", "--output", str(tmp_path / "p2.json")])
    assert fixed.exit_code == 0, fixed.output
    shard = cli.invoke(main, ["shard", "--index", "0", "--plan", str(tmp_path / "p2.json"), "--predictions", "gold",
                              "--sandbox", "local", "--repos-dir", str(INSTANCES.parent / "repos"), "--output",
                              str(tmp_path / "out")])
    assert shard.exit_code == 0 and "resolved" in shard.output, shard.output
