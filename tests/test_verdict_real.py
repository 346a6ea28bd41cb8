"""The verdict in the conditions real projects meet, through the CLI: one baseline run, repeated
epochs, a changed server, many pushes, no baseline at all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ci_eval.cli import main
from ci_eval.contracts.report import Report
from ci_eval.history import read_report
from ci_eval.report.aggregate import aggregate
from ci_eval.report.stats import spent
from tests.test_aggregate import IDENTITY, shard

IDS = [f"org__repo{n % 3}-{n}" for n in range(30)]


def report(root: Path, name: str, statuses: list[str], epochs: int = 1,
           environment: dict[str, str] | None = None) -> Path:
    """One run's report.json: `statuses` per instance, each epoch the same (temperature 0)."""
    shard(root / name, 0, statuses, plan=[IDS], identity=IDENTITY, epochs=epochs)
    if environment is not None:
        manifest = json.loads((root / name / "manifest.json").read_text())
        (root / name / "manifest.json").write_text(json.dumps({**manifest, "environment": environment}))
    aggregate([root / name], root / f"{name}-report")
    return root / f"{name}-report" / "report.json"


def compare(*args: str) -> tuple[int, str, Report]:
    out_dir = Path(args[-1]).parent.parent / "judged.json"
    result = CliRunner().invoke(main, ["compare", *args, "--output", str(out_dir)])
    return result.exit_code, result.output, read_report(out_dir)


# One baseline run: 9 resolved then 1 not (8 lost, 1 gained, 21 the same).
BASE = ["resolved"] * 14 + ["unresolved"] * 16
NEW = ["resolved"] * 6 + ["unresolved"] * 8 + ["resolved"] + ["unresolved"] * 15


def test_one_baseline_run_is_mcnemars_exact_test_and_epochs_are_one_run(tmp_path: Path) -> None:
    base = report(tmp_path, "base", BASE)
    code, _, judged = compare(str(base), str(report(tmp_path, "new", NEW)))
    c = judged.comparison
    assert c is not None and c.baseline_runs == 1 and c.compared == 30
    # Every discordant pair has the same total (one of two runs), so the weighed statistic is
    # McNemar's: P(Binomial(9, 1/2) <= 1) = 10/512, under 0.8 * alpha spent on a first push.
    assert c.p_worse == pytest.approx(10 / 512, abs=1e-6) and code == 1
    # Four identical epochs a run (temperature 0) are still one observation per instance.
    base4 = report(tmp_path, "base4", BASE, epochs=4)
    _, _, judged4 = compare(str(base4), str(report(tmp_path, "new4", NEW, epochs=4)))
    assert judged4.comparison is not None and judged4.comparison.p_worse == pytest.approx(10 / 512, abs=1e-6)
    assert judged4.comparison.frequencies[IDS[0]].tries == 1


def test_baseline_runs_unlike_this_one_are_set_aside_and_named(tmp_path: Path) -> None:
    old, new = {"server": "ollama 0.14.3"}, {"server": "ollama 0.15.0"}
    history = [report(tmp_path, f"b{k}", BASE, environment=old if k < 2 else new) for k in range(3)]
    _, _, judged = compare(*map(str, history), str(report(tmp_path, "pr", BASE, environment=new)))
    c = judged.comparison
    assert c is not None and c.baseline_runs == 1 and [a.run for a in c.set_aside] == [1, 2]
    assert "server 'ollama 0.14.3', this run 'ollama 0.15.0'" in c.set_aside[0].why
    summary = (tmp_path / "judged.json").read_text()
    assert "ollama 0.14.3" in summary
    # None like it: inconclusive for lack of data, saying why.
    code, _, judged = compare(*map(str, history[:2]), str(report(tmp_path, "pr2", BASE, environment=new)))
    assert code == 3 and judged.verdict is not None and judged.verdict.cause == "lack_of_data"
    assert "no baseline run is like this one" in judged.verdict.reasons[0]


def test_each_push_of_a_pull_request_spends_less_alpha_and_the_summary_says_which(tmp_path: Path) -> None:
    base = report(tmp_path, "base", BASE)
    new = report(tmp_path, "new", NEW)
    first = CliRunner().invoke(main, ["compare", str(base), str(new)])
    third = CliRunner().invoke(main, ["compare", str(base), str(new), "--push", "3"])
    assert first.exit_code == 1 and third.exit_code == 0  # p = 0.0195: under 0.04, over 0.0015
    assert "This is run 3 of this pull request, which may spend alpha 0.00152 of 0.05" in third.stderr
    assert spent(0.05, 1) == pytest.approx(0.04) and sum(spent(0.05, k) for k in range(1, 5000)) <= 0.05


def test_the_first_days_have_a_neutral_headline_and_the_question_is_stated(tmp_path: Path) -> None:
    shard(tmp_path / "alone", 0, ["resolved"] * 3 + ["unresolved"] * 27, plan=[IDS], identity=IDENTITY)
    result = aggregate([tmp_path / "alone"], tmp_path / "r")
    first = result.summary.splitlines()[0]
    assert first == "## · no baseline yet — ci-eval: 3 of 30 resolved (10.0%, 95% CI 3.5% to 25.6%)"
    assert "✅" not in first
    base = report(tmp_path, "base", BASE)
    judged = CliRunner().invoke(main, ["compare", str(base), str(report(tmp_path, "same", BASE))])
    assert "The question: did the compared instances get worse?" in judged.stderr


def test_the_model_servers_identity_is_read_from_its_own_api() -> None:
    """What a baseline is compared by: Ollama's version and the model's digest, or llama.cpp's build."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from ci_eval.model import describe_server

    answers = {"/api/version": {"version": "0.14.3"},
               "/api/tags": {"models": [{"name": "granite4:tiny-h", "digest": "sha256:abc"}]}}

    class Ollama(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(answers.get(self.path, {})).encode()
            self.send_response(200 if self.path in answers else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Ollama)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        assert describe_server(url, "granite4:tiny-h", "") == {"server": "ollama 0.14.3", "model_digest": "sha256:abc"}
        answers.clear()
        answers["/props"] = {"build_info": "b6000-abc"}
        assert describe_server(url, "m", "") == {"server": "llama.cpp b6000-abc", "model_digest": None}
        answers.clear()
        assert describe_server(url, "m", "") == {"server": "unknown", "model_digest": None}
    finally:
        server.shutdown()
    assert describe_server("http://127.0.0.1:9/v1", "m", "", timeout=1) == {"server": "unknown", "model_digest": None}


def test_runs_that_move_together_widen_the_null_or_stop_the_call(tmp_path: Path) -> None:
    """A history whose runs rise and fall together (a run's speed, a shared server) shows more
    run-to-run variation than independent instances allow: the null widens by it, and where the
    runs disagree beyond chance the history is not used to call a regression."""
    wide = [["resolved"] * 20 + ["unresolved"] * 10, ["resolved"] * 8 + ["unresolved"] * 22] * 3
    history = [report(tmp_path, f"w{k}", statuses) for k, statuses in enumerate(wide)]
    low = ["resolved"] * 4 + ["unresolved"] * 26
    _, _, judged = compare(*map(str, history), str(report(tmp_path, "low", low)))
    c = judged.comparison
    # Runs swing by 12 of 30 together: a run at 4 is within the widened null (p 0.09), not a call.
    assert c is not None and c.overdispersion == pytest.approx(12.0) and c.p_worse > 0.05, c
    narrow = [["resolved"] * 20 + ["unresolved"] * 10, ["resolved"] * 14 + ["unresolved"] * 16] * 3
    history = [report(tmp_path, f"n{k}", statuses) for k, statuses in enumerate(narrow)]
    code, output, judged = compare(*map(str, history), str(report(tmp_path, "none", ["unresolved"] * 30)))
    c = judged.comparison
    assert c is not None and c.p_worse < 0.01 and c.p_disagree < 0.01, c
    assert code == 3 and judged.verdict is not None and judged.verdict.cause == "unstable_history", output
    assert "disagree among themselves more than chance allows" in judged.verdict.reasons[0]
