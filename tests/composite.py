"""Plays a composite action's steps in order, as a GitHub runner does: each step's `if:`
evaluated (success(), always(), ==, !=, &&, ||, !, format(), contains(), toJSON(), the contexts,
`*` filters), its `${{ }}` expressions filled in, `run:` steps in bash with their own GITHUB_OUTPUT, `uses:` steps by
stand-ins the test gives, and the action's outputs evaluated at the end.

It is strict where a runner is lenient: a reference to an input the action does not declare, to
a step that does not come earlier, or to a context it does not know fails the test, so that a
wrong input name or output reference is found here and not on a user's runner.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

StandIn = Callable[[dict[str, str]], dict[str, str]]  # a `uses:` step: its `with:` in, its outputs out
_TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<op>==|!=|&&|\|\||!|\(|\)|,)|(?P<word>[\w.\-*]+))")


@dataclass
class Played:
    outputs: dict[str, str]
    steps: list[tuple[str, str]]  # (step, "success" | "failure" | "skipped")
    logs: dict[str, str] = field(default_factory=dict)  # stdout + stderr of each run step


@dataclass
class Player:
    temp: Path
    github: dict[str, Any]
    stand_ins: dict[str, StandIn]
    env: dict[str, str] = field(default_factory=dict)
    replaced: dict[str, dict[str, str]] = field(default_factory=dict)  # run steps by id: their outputs
    needs: dict[str, Any] = field(default_factory=dict)  # a job's `needs` context, for job conditions
    runner_os: str = "Linux"
    runner_arch: str = "X64"
    step_env: dict[str, str] = field(default_factory=dict)  # the env of the `uses:` step played last

    def play(self, action: Path, inputs: dict[str, str]) -> Played:
        data = yaml.safe_load(action.read_text())
        declared = data.get("inputs", {})
        unknown = sorted(set(inputs) - set(declared))
        assert not unknown, f"{action}: no such input {unknown}"
        self.action, self.inputs = action, {}
        self.done: dict[str, dict[str, str]] = {}
        self.known_steps = [s.get("id") for s in data["runs"]["steps"]]
        self.position = 0
        for name, spec in declared.items():
            self.inputs[name] = inputs[name] if name in inputs else self.fill(str(spec.get("default", "")))
        played = Played({}, [])
        status = "success"
        for n, step in enumerate(data["runs"]["steps"]):
            self.position = n
            label = step.get("id") or step.get("name") or f"step {n}"
            if not self.truthy(self.evaluate(str(step.get("if", "success()")), status)):
                played.steps.append((label, "skipped"))
                continue
            ok = self.run(step, played, label)
            played.steps.append((label, "success" if ok else "failure"))
            if not ok and not step.get("continue-on-error"):
                status = "failure"
        self.position = len(data["runs"]["steps"])
        played.outputs = {name: self.fill(str(spec["value"])) for name, spec in data.get("outputs", {}).items()}
        return played

    def run(self, step: dict[str, Any], played: Played, label: str) -> bool:
        outputs: dict[str, str] = {}
        if step.get("id") in self.replaced:
            self.done[step["id"]] = self.replaced[step["id"]]
            return True
        if "uses" in step:
            name = step["uses"].split("@")[0]
            assert name in self.stand_ins, f"no stand-in for {name}"
            self.step_env = {k: self.fill(str(v)) for k, v in step.get("env", {}).items()}  # what the action sees
            outputs = self.stand_ins[name]({k: self.fill(str(v)) for k, v in step.get("with", {}).items()})
            ok = True
        else:
            output_file = self.temp / f"output-{label}"
            output_file.write_text("")
            env = {**os.environ, **self.env, "RUNNER_TEMP": str(self.temp), "GITHUB_OUTPUT": str(output_file),
                   "GITHUB_ACTION_PATH": str(self.action.parent), "GITHUB_STEP_SUMMARY": str(self.temp / "summary.md"),
                   "GITHUB_RUN_ATTEMPT": str(self.github.get("run_attempt", "1"))}
            env.update({k: self.fill(str(v)) for k, v in step.get("env", {}).items()})
            done = subprocess.run(["bash", "-e", "-c", step["run"]], env=env, capture_output=True, text=True,
                                  timeout=900)
            played.logs[label] = done.stdout + done.stderr
            outputs = dict(line.split("=", 1) for line in output_file.read_text().splitlines() if "=" in line)
            ok = done.returncode == 0
        if step.get("id"):
            self.done[step["id"]] = outputs
        return ok

    # --- expressions ------------------------------------------------------------------------

    def fill(self, text: str) -> str:
        return re.sub(r"\$\{\{(.*?)\}\}", lambda m: _text(self.evaluate(m.group(1), "success")), text)

    def evaluate(self, expression: str, status: str) -> Any:
        expression = expression.strip()
        if expression.startswith("${{") and expression.endswith("}}"):
            expression = expression[3:-2]
        tokens = [next(v for v in m.groupdict().values() if v is not None) for m in _TOKEN.finditer(expression)]
        self.tokens, self.status = tokens, status
        value = self.either()
        assert not self.tokens, f"cannot read {expression!r} from {self.tokens[0]!r}"
        return value

    def either(self) -> Any:
        return self.chain("||", self.both, lambda left, right: left if self.truthy(left) else right)

    def both(self) -> Any:
        return self.chain("&&", self.compare, lambda left, right: right if self.truthy(left) else left)

    def chain(self, op: str, operand: Callable[[], Any], combine: Callable[[Any, Any], Any]) -> Any:
        """`operand (op operand)*`, left to right; GitHub's || and && yield an operand, not a bool."""
        value = operand()
        while self.tokens[:1] == [op]:
            self.tokens.pop(0)
            value = combine(value, operand())
        return value

    def compare(self) -> Any:
        value = self.unary()
        while self.tokens[:1] in (["=="], ["!="]):
            op = self.tokens.pop(0)
            right = self.unary()
            same = _text(value).lower() == _text(right).lower()  # GitHub compares strings case-blind
            value = same if op == "==" else not same
        return value

    def unary(self) -> Any:
        if self.tokens[:1] == ["!"]:
            self.tokens.pop(0)
            return not self.truthy(self.unary())
        if self.tokens[:1] == ["("]:
            self.tokens.pop(0)
            value = self.either()
            assert self.tokens.pop(0) == ")"
            return value
        token = self.tokens.pop(0)
        if token.startswith("'"):
            return token[1:-1].replace("''", "'")
        if self.tokens[:1] == ["("]:
            return self.call(token)
        return self.context(token)

    def call(self, name: str) -> Any:
        self.tokens.pop(0)
        args = []
        while self.tokens[:1] != [")"]:
            args.append(self.either())
            if self.tokens[:1] == [","]:
                self.tokens.pop(0)
        self.tokens.pop(0)
        if name in ("success", "failure", "always", "cancelled"):
            return {"success": self.status == "success", "failure": self.status == "failure", "always": True,
                    "cancelled": False}[name]
        if name == "contains":  # an array holds the item, or a string the substring; case-blind
            haystack, needle = args[0], _text(args[1]).lower()
            if isinstance(haystack, list):
                return any(_text(item).lower() == needle for item in haystack)
            return needle in _text(haystack).lower()
        if name == "toJSON":
            return json.dumps(args[0])
        if name == "format":
            return re.sub(r"\{(\d+)\}", lambda m: _text(args[1 + int(m.group(1))]), _text(args[0]))
        raise AssertionError(f"the player does not know the function {name}()")

    def context(self, path: str) -> Any:
        head, _, rest = path.partition(".")
        if head == "inputs":
            assert rest in self.inputs, f"{self.action}: no input {rest!r}"
            return self.inputs[rest]
        if head == "steps":
            step_id, _, name = rest.partition(".outputs.")
            assert step_id in self.known_steps[: self.position], f"{self.action}: no step {step_id!r} before here"
            return self.done.get(step_id, {}).get(name, "")
        if head == "runner":
            return {"temp": str(self.temp), "os": self.runner_os, "arch": self.runner_arch}[rest]
        if head in ("github", "needs"):
            return _walk(self.github if head == "github" else self.needs, rest.split("."))
        if path in ("true", "false"):
            return path == "true"
        raise AssertionError(f"the player does not know the context {path!r}")

    @staticmethod
    def truthy(value: Any) -> bool:
        return bool(value)  # as GitHub: '' is false, any other string true


def _walk(value: Any, parts: list[str]) -> Any:
    """A context path; `*` maps the rest over an array, as GitHub's object filters do."""
    for n, part in enumerate(parts):
        if part == "*":
            return [_walk(item, parts[n + 1:]) for item in (value if isinstance(value, list) else [])]
        value = value.get(part, "") if isinstance(value, dict) else ""
    return value


def _text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)
