"""The bash-only agent: the model proposes one command, the sandbox runs it, until it submits.
It is one agent of the Python seam (`attempt.py`), made as any other is."""

from __future__ import annotations

import re

from ci_eval.agent_config import AgentConfig
from ci_eval.attempt import Agent, Attempt, Options, cut_middle
from ci_eval.contracts.shard import Step
from ci_eval.contracts.status import ErrorKind, ExitReason
from ci_eval.errors import InfraError
from ci_eval.model import Message

SUBMIT = "COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"
BASH_BLOCK = re.compile(r"```bash[ \t]*\n(.*?)```", re.DOTALL)
ELIDED = "[this output was removed to keep the conversation inside the model's context window]"
_PER_MESSAGE_TOKENS = 8  # what a chat template adds around each message
MAX_FORMAT_ERRORS = 3  # replies in a row without exactly one command end the attempt
# A compaction elides down to this share of the window: low enough that the next one is many
# steps away, high enough to keep the recent exchanges (benchmarks/model_time.py).
LOW_WATER = 0.5


class TokenCounter:
    """What a request costs in prompt tokens, without the model's tokenizer: learned from the
    server's own counts.

    A text the server has not counted yet costs at most a token per UTF-8 byte of its text (no
    byte-level tokenizer makes more, and digits come close: a fixed bytes-per-token guess let 40
    steps of numeric output pass the window) and _PER_MESSAGE_TOKENS for its chat template. Each
    request's reported prompt tokens teach what its texts cost: the texts counted before keep
    their counts, the rest of the prompt is shared among the new ones by their bytes (copies of
    one text alike), and a reply costs its own completion tokens and a template. So the texts
    that travel together (the system prompt and the issue, a reply and the observation after it,
    the stubs of one compaction) add up to what the server counted, and a compaction that keeps
    the replies and elides observations knows what it kept, instead of a token a byte for each:
    at an 8192 window, bytes for everything dropped every earlier exchange at each compaction.
    A request that extends the last one costs what the server counted for that one, plus its new
    messages. A prompt reported smaller than the one it extends is not a count of the whole
    prompt (Ollama 0.30 counted only the uncached tokens until ollama/ollama#16428): from then on
    nothing more is learned.
    """

    def __init__(self) -> None:
        self.known: dict[str, int] = {}  # text -> tokens, as the server's counts share them out
        self.trusted = True
        self.last: tuple[list[str], int] = ([], 0)  # the last request's texts and prompt tokens

    def estimate(self, messages: list[Message]) -> int:
        texts = [m["content"] for m in messages]
        before, counted = self.last
        if self.trusted and before and texts[: len(before)] == before:  # appended to: the counted start is exact
            return counted + sum(map(self.cost, texts[len(before):]))
        return sum(map(self.cost, texts))

    def cost(self, text: str) -> int:
        return self.known.get(text, _bound(text))

    def observe(self, messages: list[Message], prompt_tokens: int, reply: str = "", reply_tokens: int = 0) -> None:
        """Learn from a request's reported prompt tokens, and from the reply's own tokens (it
        joins the next request as a message)."""
        texts = [m["content"] for m in messages]
        before, counted = self.last
        if prompt_tokens < counted and texts[: len(before)] == before:
            self.trusted = False
        if prompt_tokens <= 0 or not self.trusted:
            return
        self.last = (texts, prompt_tokens)
        new = [t for t in texts if t not in self.known]  # each occurrence: a stub can repeat
        rest = prompt_tokens - sum(self.known[t] for t in texts if t in self.known)
        weight = sum(len(t.encode()) + 1 for t in new)
        shares = {text: rest * (len(text.encode()) + 1) // weight for text in new}  # a copy's
        if new:  # what rounding left goes to the longest, so the shares add up to the count
            longest = max(new, key=len)
            shares[longest] += -(-(rest - sum(shares[t] for t in new)) // new.count(longest))
        for text, share in shares.items():  # never beyond what any text of its bytes can cost
            self.known[text] = min(_bound(text), max(_floor(text), share))
        if reply and reply_tokens > 0 and reply not in self.known:
            self.known[reply] = min(_bound(reply), reply_tokens + _PER_MESSAGE_TOKENS)


def _bound(text: str) -> int:
    """The most tokens a message can cost: its template, and a token per byte of its text."""
    return len(text.encode()) + _PER_MESSAGE_TOKENS


def _floor(text: str) -> int:
    """The fewest tokens a message can cost: a token per 32 bytes of text (no tokenizer averages
    longer tokens over a text), nothing for a template that may add nothing."""
    return len(text.encode()) // 32


class Context:
    """What the model is sent: the conversation, append-only between rare compactions.

    A model server reuses only the exact leading part of the previous request (llama.cpp and
    Ollama; for hybrid Mamba models such as Granite 4.0 H the recurrent state can only continue
    it), so a request that appends to the last costs only its new tokens. When the next request
    would not fit `budget`, one compaction (`compact`) cuts it down to `low_water` of it and
    appending starts again; what it left stays as it is, so even a compaction keeps the system
    prompt, the issue and the exchanges elided before.
    """

    def __init__(self, messages: list[Message], budget: int, counter: TokenCounter,
                 low_water: float = LOW_WATER) -> None:
        self.messages = [dict(m) for m in messages]
        self.budget, self.counter, self.low_water = budget, counter, low_water
        self.compactions = 0
        self.sent: list[Message] = []  # the last request
        self.sent_chars = 0  # over every request
        self.repeated_chars = 0  # … of which the start of the request before had the same

    def append(self, message: Message) -> None:
        self.messages.append(dict(message))

    def request(self) -> list[Message]:
        if self.counter.estimate(self.messages) > self.budget:
            self.messages = compact(self.messages, int(self.budget * self.low_water), self.budget, self.counter)
            self.compactions += 1
        request = [dict(m) for m in self.messages]
        self.sent_chars += _chars(request)
        self.repeated_chars += repeated_prefix(self.sent, request)
        self.sent = request
        return [dict(m) for m in request]


def compact(messages: list[Message], target: int, budget: int, counter: TokenCounter) -> list[Message]:
    """The conversation cut to `target` tokens: the oldest observations are elided first, while
    the model's replies stay (they carry its plan: a model that finds its own steps gone starts
    over), then the oldest elided exchanges are dropped whole (their stubs still cost tokens);
    the system prompt, the issue and the last exchange stay, cut in the middle only when they
    alone exceed `budget`."""
    out = [dict(m) for m in messages]
    for i in range(2, len(out) - 2):
        if counter.estimate(out) <= target:
            return out
        if out[i]["role"] == "user" and out[i]["content"] != ELIDED:
            out[i]["content"] = ELIDED
    while counter.estimate(out) > target and len(out) > 4:
        del out[2:4]  # a reply and its observation: the roles still alternate
    while (over := counter.estimate(out) - budget) > 0:
        longest = max(range(len(out)), key=lambda k: len(out[k]["content"]))
        content = out[longest]["content"]
        keep = len(content) - over - 200  # an unknown text costs a token a byte: cut bytes
        if keep < 200:
            raise InfraError(f"--context-window leaves {budget} prompt tokens: too few for the system prompt and "
                             "the issue", kind=ErrorKind.CONTEXT, transient=False)
        out[longest]["content"] = cut_middle(content, keep)
    return out


def repeated_prefix(before: list[Message], after: list[Message]) -> int:
    """How many characters at the start of `after` repeat the start of `before` (roles and
    contents in order): what a server's prompt cache can reuse."""
    same = 0
    for old, new in zip(before, after, strict=False):
        if old["role"] != new["role"]:
            break
        if old["content"] != new["content"]:
            return same + len(old["role"]) + _common_start(old["content"], new["content"])
        same += len(new["role"]) + len(new["content"])
    return same


def _common_start(a: str, b: str) -> int:
    """The length of the longest common prefix, by bisection over slice comparisons (in C)."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        mid = (low + high + 1) // 2
        if a[:mid] == b[:mid]:
            low = mid
        else:
            high = mid - 1
    return low


def _chars(messages: list[Message]) -> int:
    return sum(len(m["role"]) + len(m["content"]) for m in messages)


def bash_agent(options: Options) -> Agent:
    """ci-eval's own agent, as any agent is made (`agent = "ci_eval.agent:bash_agent"`)."""

    async def agent(attempt: Attempt) -> ExitReason:
        return await BashAgent(attempt, options.agent_config).run()

    return agent


class BashAgent:
    """One attempt of the bash-only agent, holding its own state (the conversation as sent, the
    format errors in a row), as mini-swe-agent's DefaultAgent does: run → step → query → execute."""

    def __init__(self, attempt: Attempt, agent_config: AgentConfig) -> None:
        self.attempt, self.agent_config, self.limits = attempt, agent_config, attempt.limits
        self.context = Context([], self.limits.context_window - self.limits.max_tokens, TokenCounter())
        self.format_errors_in_a_row = 0

    async def run(self) -> ExitReason:
        """The loop, to a submission or a limit: one command per reply, its output the next message."""
        self.say({"role": "system", "content": self.agent_config.render("system")})
        self.say({"role": "user", "content": self.agent_config.render(
            "instance", problem_statement=self.attempt.task.problem_statement)})
        try:
            while not (reason := self.attempt.limit_hit()):
                if ended := await self.step():
                    return ended
            return reason
        finally:
            self.tally()

    async def step(self) -> ExitReason | None:
        """One reply and, when it holds exactly one command, that command run (None: go on)."""
        commands = BASH_BLOCK.findall(await self.query())
        if len(commands) != 1:
            return self.format_error(len(commands))
        self.format_errors_in_a_row = 0
        return await self.execute(commands[0].strip())

    async def query(self) -> str:
        """One model call; the server's count of its prompt teaches the context's bound."""
        request = self.context.request()
        reply = await self.attempt.complete(request)
        self.context.counter.observe(request, reply.prompt_tokens, reply.content, reply.completion_tokens)
        self.say({"role": "assistant", "content": reply.content})
        return reply.content

    async def execute(self, command: str) -> ExitReason | None:
        out, step = await self.attempt.execute(command)
        if submitted(out.output):
            return ExitReason.SUBMITTED
        self.say({"role": "user", "content": self.observation(step)})
        return None

    def format_error(self, found: int) -> ExitReason | None:
        self.attempt.trajectory.stats.format_errors += 1
        self.format_errors_in_a_row += 1
        if self.format_errors_in_a_row >= MAX_FORMAT_ERRORS:
            return ExitReason.FORMAT_ERRORS
        self.say({"role": "user", "content": self.agent_config.render("format_error", found=found)})
        return None

    def observation(self, step: Step) -> str:
        """What the model is told of the command it ran."""
        if step.timed_out:
            return self.agent_config.render("timeout", seconds=f"{self.limits.command_timeout:g}", output=step.output)
        return self.agent_config.render("observation", returncode=step.returncode, output=step.output)

    def say(self, message: Message) -> None:
        """A message joins the conversation: whole in the trajectory, appended to the context."""
        self.attempt.say(message)
        self.context.append(message)

    def tally(self) -> None:
        """The conversation's compactions and prompt reuse, into the attempt's stats."""
        stats = self.attempt.trajectory.stats
        stats.compactions = self.context.compactions
        stats.sent_chars, stats.repeated_chars = self.context.sent_chars, self.context.repeated_chars


def submitted(output: str) -> bool:
    return output.lstrip().startswith(SUBMIT)
