from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ci_eval.dataset import load_instances
from ci_eval.errors import InputError
from ci_eval.instances import fingerprint, select
from ci_eval.predictions import load_predictions
from tests.conftest import INSTANCES, rows


def test_jsonl_json_and_parquet_load_the_same(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    as_json = tmp_path / "d.json"
    as_json.write_text(json.dumps(rows()))
    as_parquet = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(rows()), as_parquet)
    loaded = [load_instances(str(p)) for p in (INSTANCES, as_json, as_parquet)]
    assert len(loaded[0]) == 6
    assert loaded[0] == loaded[1] == loaded[2]
    assert loaded[0][0].FAIL_TO_PASS == ["tests/test_stats.py::test_median_even"]  # JSON string decoded
    assert fingerprint(loaded[0]) == fingerprint(loaded[2])


def test_bad_row_names_the_row_and_the_field(tmp_path: Path) -> None:
    bad = rows()
    del bad[2]["base_commit"]
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in bad))
    with pytest.raises(InputError) as err:
        load_instances(str(path))
    message = str(err.value)
    assert "row 3" in message and "ci-eval-fixtures__calc-3" in message and "'base_commit'" in message
    assert "\n" not in message


def test_malformed_json_line_and_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps(rows()[0]) + "\n{not json\n")
    with pytest.raises(InputError, match="line 2 is not JSON"):
        load_instances(str(path))
    path.write_text(json.dumps(rows()[0]) + "\n" + json.dumps(rows()[0]) + "\n")
    with pytest.raises(InputError, match="appears twice"):
        load_instances(str(path))


def test_unknown_instance_ids_are_listed() -> None:
    instances = load_instances(str(INSTANCES))
    with pytest.raises(InputError, match="unknown instance ids: nope-1, nope-2"):
        select(instances, ["ci-eval-fixtures__calc-1", "nope-1", "nope-2"])
    assert [i.instance_id for i in select(instances, ["ci-eval-fixtures__calc-2"])] == ["ci-eval-fixtures__calc-2"]
    # two ids in one value: the line says to repeat the flag
    with pytest.raises(InputError, match="repeat the flag: --instance-ids A --instance-ids B"):
        select(instances, ["ci-eval-fixtures__calc-1,ci-eval-fixtures__calc-2"])


def test_unreachable_hub_is_one_line() -> None:
    with pytest.raises(InputError) as err:
        load_instances("SWE-bench/SWE-bench_Verified-not-cached", "test")
    assert "--dataset FILE" in str(err.value) and "\n" not in str(err.value)


def test_predictions_official_formats(tmp_path: Path) -> None:
    instances = load_instances(str(INSTANCES))[:2]
    preds = [{"instance_id": i.instance_id, "model_name_or_path": "m", "model_patch": f"p{n}"}
             for n, i in enumerate(instances)]
    as_list = tmp_path / "p.json"
    as_list.write_text(json.dumps(preds))
    as_dict = tmp_path / "d.json"
    as_dict.write_text(json.dumps({p["instance_id"]: p for p in preds}))
    expected = {instances[0].instance_id: "p0", instances[1].instance_id: "p1"}
    assert load_predictions(str(as_list), instances) == expected == load_predictions(str(as_dict), instances)
    assert load_predictions("gold", instances)[instances[0].instance_id] == instances[0].patch
    with pytest.raises(InputError, match="no prediction for 1 planned instance"):
        load_predictions(str(as_list), load_instances(str(INSTANCES))[:3])


def test_malformed_predictions_line_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "preds.jsonl"
    path.write_text('{"instance_id": "a", "model_patch": ""}\n{oops\n')
    with pytest.raises(InputError, match="line 2 is not JSON"):
        load_predictions(str(path), load_instances(str(INSTANCES))[:1])


CLASSIC = ("instance_id", "repo", "base_commit", "patch", "test_patch", "problem_statement", "hints_text",
           "created_at", "version", "FAIL_TO_PASS", "PASS_TO_PASS", "environment_setup_commit", "difficulty")


def test_classic_rows_get_swebenchs_image_and_parser_and_plan_like_the_new_ones(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from ci_eval.cli import main

    # Real Verified ids and repositories: the names the official harness derives.
    real = {"django__django-11099": ("django/django", "parse_log_django"),
            "sympy__sympy-20590": ("sympy/sympy", "parse_log_sympy"),
            "pytest-dev__pytest-5221": ("pytest-dev/pytest", "parse_log_pytest"),
            "sphinx-doc__sphinx-8721": ("sphinx-doc/sphinx", "parse_log_pytest_v2")}
    base = {k: v for k, v in rows()[0].items() if k in CLASSIC}
    for iid, (repo, parser) in real.items():
        inst = load_one(tmp_path, {**base, "instance_id": iid, "repo": repo})
        assert inst.image == f"swebench/sweb.eval.x86_64.{iid.replace('__', '_1776_')}:latest"
        assert inst.log_parser == parser and inst.eval_script == ""

    # The fixtures' repositories are not swebench's: their rows keep their own log_parser.
    classic = tmp_path / "classic.jsonl"
    classic.write_text("".join(json.dumps({k: v for k, v in r.items() if k in (*CLASSIC, "log_parser")}) + "\n"
                               for r in rows()))
    from ci_eval.dataset import load_instances
    from ci_eval.partition import balance

    # they split like the new ones…
    assert balance(load_instances(str(classic)), 2) == balance(load_instances(str(INSTANCES)), 2)
    # …but cannot be graded: the plan job says so, before any shard installs Ollama and the model
    planned = CliRunner().invoke(main, ["plan", "--of", "2", "--dataset", str(classic)])
    assert planned.exit_code == 2 and "no eval_script" in planned.output
    assert planned.output.strip().count("\n") == 0
    graded = CliRunner().invoke(main, ["shard", "--index", "0", "--of", "1", "--dataset", str(classic),
                                       "--predictions", "gold", "--sandbox", "local", "--output", str(tmp_path / "o")])
    assert graded.exit_code == 2 and "no eval_script" in graded.output  # said before any work, in one line
    unknown = tmp_path / "unknown.jsonl"
    unknown.write_text(json.dumps({**base, "instance_id": "acme__rocket-1", "repo": "acme/rocket"}) + "\n")
    with pytest.raises(InputError, match=r"row 1 \(acme__rocket-1\).*no parser for repository 'acme/rocket'"):
        load_instances(str(unknown))


def load_one(tmp_path: Path, row: dict[str, object]) -> Any:
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps(row) + "\n")
    return load_instances(str(path))[0]


def test_a_rows_image_is_a_docker_reference_in_the_allowed_namespace(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from ci_eval.cli import main

    def plan(image: str, *flags: str) -> Any:
        dataset = tmp_path / "images.jsonl"
        dataset.write_text(json.dumps({**rows()[0], "image": image}) + "\n")
        return CliRunner().invoke(main, ["plan", "--of", "1", "--dataset", str(dataset), *flags])

    shell = plan("evil.example/x:latest; rm -rf /")
    assert shell.exit_code == 2 and "is not a Docker image reference" in shell.output
    assert shell.output.count("\n") == 1
    outside = plan("evil.example/x:latest")
    assert outside.exit_code == 2 and "outside the official swebench/ namespace" in outside.output
    assert "--image-pattern" in outside.output
    assert plan("evil.example/x:latest", "--image-pattern", r"evil\.example/.*").exit_code == 0
    assert plan("swebench/sweb.eval.x86_64.django_1776_django-11099:latest").exit_code == 0
    assert plan("ci-eval-fixtures/calc:1.0").exit_code == 0  # the bundled demo's own


def test_an_image_template_names_every_image_and_is_their_allow_list(tmp_path: Path) -> None:
    from ci_eval.planfile import make_plan
    from ci_eval.shard import run_shard
    from tests.conftest import settings

    template = "ghcr.io/epoch-research/swe-bench.eval.x86_64.{instance_id}:latest"
    given = settings(tmp_path, image_template=template, predictions="gold", sandbox="local")
    plan = make_plan(given, 1)
    assert {i.image for i in plan.instances} == {
        f"ghcr.io/epoch-research/swe-bench.eval.x86_64.{i.instance_id}:latest" for i in plan.instances}
    assert given.config_hash() != settings(tmp_path, predictions="gold", sandbox="local").config_hash()
    # other images, other data: a baseline made with the official images is set aside, not compared
    assert plan.dataset_fingerprint != make_plan(settings(tmp_path), 1).dataset_fingerprint
    assert "image_template" not in settings(tmp_path).hashed()  # unset: earlier runs keep their hash
    forged = plan.model_copy(update={"instances": [plan.instances[0].model_copy(
        update={"image": "ghcr.io/mallory/anything:latest"}), *plan.instances[1:]]})
    path = tmp_path / "plan.json"
    path.write_text(forged.model_dump_json())
    with pytest.raises(InputError, match="outside --image-template's registry"):
        run_shard(given, 0, plan_file=path)
    with pytest.raises(InputError, match="not a Docker image reference"):
        make_plan(settings(tmp_path, image_template="Not An Image/{instance_id}"), 1)
