"""mini-swe-agent (the PyPI package, 2.x) as a ci-eval agent, through the command seam.

Its own DefaultAgent, its own SWE-bench configuration (`swebench_backticks.yaml`: its prompts,
its ```mswea_bash_command blocks) and its litellm text model; what changes is where it runs and
whom it asks: each command goes through $CI_EVAL_EXEC into ci-eval's sandbox, and the model is
ci-eval's counted endpoint ($OPENAI_BASE_URL). ci-eval's limits are the only ones (mini's step
and cost limits are off): a call past them is refused and the attempt ends as ci-eval's own
agent's would. Exit 0 when mini submitted, 1 otherwise; ci-eval reads the patch from the sandbox.

In an environment of its own (mini-swe-agent brings litellm):

    python -m venv ~/mini && ~/mini/bin/pip install 'mini-swe-agent>=2,<3'
    ci-eval shard --index 0 --of 1 \\
      --agent-command '~/mini/bin/python "$CI_EVAL_CALLER_DIR/examples/agents/mini_swe_agent.py"'
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

os.environ.setdefault("MSWEA_SILENT_STARTUP", "1")  # no banner on ci-eval's logs
os.environ.setdefault("MSWEA_COST_TRACKING", "ignore_errors")  # a local model has no price
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no download of litellm's price list

import yaml
from minisweagent.agents.default import DefaultAgent
from minisweagent.config import get_config_path
from minisweagent.environments.local import LocalEnvironment
from minisweagent.models.litellm_textbased_model import LitellmTextbasedModel


class CiEvalEnvironment(LocalEnvironment):
    """mini's local environment, but every command runs in ci-eval's sandbox."""

    def execute(self, action: dict[str, Any], cwd: str = "", *, timeout: int | None = None) -> dict[str, Any]:
        done = subprocess.run([os.environ["CI_EVAL_EXEC"], action.get("command", "")],
                              capture_output=True, text=True, errors="replace", check=False)
        output = {"output": done.stdout + done.stderr, "returncode": done.returncode, "exception_info": ""}
        self._check_finished(output)  # mini's own rule: raises Submitted on its submit line
        return output


def main() -> int:
    with open(os.environ["CI_EVAL_TASK"], encoding="utf-8") as handle:
        task = json.load(handle)
    config = yaml.safe_load(get_config_path("swebench_backticks").read_text())
    model = LitellmTextbasedModel(**{
        **config["model"],
        "model_name": f"openai/{os.environ['CI_EVAL_MODEL']}",
        "model_kwargs": {"api_base": os.environ["OPENAI_BASE_URL"], "api_key": os.environ["OPENAI_API_KEY"],
                         "drop_params": True},
    })
    environment = CiEvalEnvironment(cwd=task["workdir"])
    agent = DefaultAgent(model, environment, **{**config["agent"], "step_limit": 0, "cost_limit": 0})
    try:
        result = agent.run(task["problem_statement"])
    except Exception as exc:  # a refused call (a limit) ends mini with litellm's error
        print(f"mini-swe-agent stopped: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"mini-swe-agent: {result.get('exit_status')}")
    return 0 if result.get("exit_status") == "Submitted" else 1


if __name__ == "__main__":
    sys.exit(main())
