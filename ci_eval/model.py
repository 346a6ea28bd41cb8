"""The OpenAI-compatible client: bounded retries with backoff, usage and latency per call."""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass
from typing import Any, Protocol

from tenacity import AsyncRetrying, retry_if_exception_type, stop_before_delay, wait_exponential

from ci_eval.contracts.shard import ModelCall, ModelUsage
from ci_eval.contracts.status import ErrorKind
from ci_eval.errors import InfraError, InputError, one_line
from ci_eval.redact import redact_url

Message = dict[str, str]
RETRIES = 4  # the client library's retries of one request, with its own backoff


@dataclass(frozen=True)
class Reply:
    content: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    cached_tokens: int | None = None  # of prompt_tokens, reused from the server's cache, when it says


class Model(Protocol):
    async def complete(self, messages: list[Message], seed: int) -> Reply: ...


class Usage(ModelUsage):
    """Running totals over every call of one attempt: the trajectory's usage, as it grows."""

    def add(self, reply: Reply) -> None:
        self.calls += 1
        self.prompt_tokens += reply.prompt_tokens
        self.completion_tokens += reply.completion_tokens
        self.seconds += reply.seconds
        if reply.cached_tokens is not None:
            self.cached_tokens = (self.cached_tokens or 0) + reply.cached_tokens
        self.per_call.append(ModelCall(prompt_tokens=reply.prompt_tokens, cached_tokens=reply.cached_tokens,
                                       completion_tokens=reply.completion_tokens, seconds=round(reply.seconds, 3)))

    def reprocessed(self) -> int:
        """Mark each call's prompt seconds and whether it processed its whole prompt again (a cache
        miss: for a hybrid model such as Granite 4.0 H a broken prefix means all of it); return how
        many did. Where the server reports cached tokens, a call that extends the one before and
        took under half of that one's prompt from the cache. Where it does not, the call's speed:
        its seconds less its generation (at the fastest seconds per generated token of the
        attempt, so prompt time is never overstated) took at least half of what the whole prompt
        costs at the first call's rate (which nothing could have cached), though the call added
        under half of its prompt. A compaction's shorter prompt is not a miss."""
        calls = self.per_call
        if not calls:
            return 0
        generating = [c.seconds / c.completion_tokens for c in calls if c.completion_tokens > 0]
        per_token = min(generating, default=0.0)
        for c in calls:
            c.prompt_seconds = round(max(0.0, c.seconds - c.completion_tokens * per_token), 3)
        first = calls[0]
        rate = (first.prompt_seconds or 0.0) / first.prompt_tokens if first.prompt_tokens else 0.0
        missed = 0
        for before, call in itertools.pairwise(calls):
            grew = call.prompt_tokens - before.prompt_tokens
            if grew <= 0:  # a compaction: the cut start is processed again, as expected
                call.reprocessed = False
                continue
            if call.cached_tokens is not None:
                miss = call.cached_tokens < 0.5 * before.prompt_tokens
            else:
                miss = bool(rate) and grew < 0.5 * call.prompt_tokens and \
                    (call.prompt_seconds or 0.0) >= 0.5 * call.prompt_tokens * rate
            call.reprocessed = miss
            missed += miss
        return missed


class OpenAIModel:
    """Any server speaking the OpenAI chat API: Ollama, llama.cpp, vLLM, LM Studio, a hosted API.

    Retries are the client library's own: connection errors, timeouts, 408/409/429 and 5xx,
    with exponential backoff and jitter that honours Retry-After, RETRIES times at most. What
    still fails is an infrastructure error, never a wrong answer.
    """

    def __init__(self, *, base_url: str, model: str, api_key: str, request_timeout: float, slots: int,
                 temperature: float, max_tokens: int, fold_system_prompt: bool, retries: int = RETRIES) -> None:
        from openai import AsyncOpenAI

        self.slots = asyncio.Semaphore(slots)  # requests in flight at most
        self.name = model
        self.where = redact_url(base_url)
        self.temperature, self.max_tokens, self.fold_system_prompt = temperature, max_tokens, fold_system_prompt
        # Local servers ignore the key; the client insists on one, so an unused stand-in.
        self.client = AsyncOpenAI(base_url=base_url, api_key=api_key or "not-needed", timeout=request_timeout,
                                  max_retries=retries)

    async def check(self) -> None:
        """Fail before any work when the server is down or does not serve the model."""
        import openai

        try:  # one try: a mistyped --base-url answers at once, not after the client's retries
            served = [m.id async for m in self.client.with_options(max_retries=0).models.list()]
        except openai.APIError as exc:
            raise InputError(
                f"cannot reach the model server at {self.where} ({_reason(exc)}); start it "
                "(ollama serve), pass --base-url, or run a local model with --local-model"
            ) from None
        if served and self.name not in served:
            raise InputError(f"{self.where} does not serve model {self.name!r} (it serves: {', '.join(served[:10])}); "
                             f"pull it (ollama pull {self.name}) or pass --model")

    async def wait_until_up(self, minutes: float) -> bool:
        """Probe the server with backoff (1 s doubling to 30 s) until it answers or `minutes` pass."""
        import openai

        probe = self.client.with_options(max_retries=0, timeout=10)
        try:
            async for attempt in AsyncRetrying(retry=retry_if_exception_type(openai.APIError),
                                               wait=wait_exponential(multiplier=1, max=30),
                                               stop=stop_before_delay(minutes * 60), reraise=True):
                with attempt:
                    await probe.models.list()
        except openai.APIError:
            return False
        return True

    async def complete(self, messages: list[Message], seed: int) -> Reply:
        if self.fold_system_prompt:
            messages = fold_system(messages)
        async with self.slots:
            start = time.monotonic()
            response = await self._create(messages, seed)
            seconds = time.monotonic() - start
        usage = response.usage
        content = response.choices[0].message.content if response.choices else None
        return Reply(content or "", usage.prompt_tokens if usage else 0, usage.completion_tokens if usage else 0,
                     seconds, cached_tokens(response))

    async def _create(self, messages: list[Message], seed: int) -> Any:
        import openai

        try:
            return await self.client.chat.completions.create(
                model=self.name, messages=messages,  # type: ignore[arg-type]
                temperature=self.temperature, max_tokens=self.max_tokens, seed=seed,
            )
        except (openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError) as exc:
            raise InfraError(f"model server {self.where} failed after retries: {_reason(exc)}",
                             kind=ErrorKind.MODEL) from None
        except openai.APIStatusError as exc:
            # 400 (context too long, bad request), 401, 404 (no such model): retrying will not help.
            # kind model_refused: the server is up, so the shard does not wait for it to come back
            raise InfraError(f"model server {self.where} refused the request: {_reason(exc)}",
                             kind=ErrorKind.MODEL_REFUSED,
                             transient=False) from None

    async def close(self) -> None:
        await self.client.close()


def describe_server(base_url: str, model: str, api_key: str, timeout: float = 5.0) -> dict[str, str | None]:
    """What serves the model, as the server says it: Ollama's /api/version and the model's digest
    in /api/tags, llama.cpp's /props, else the OpenAI API's owner of the model. A baseline run
    made by another server version or another digest of the same model is set aside (compare
    like with like). One quick try each: a server that does not answer here is "unknown"."""
    import requests

    root = base_url.rstrip("/").removesuffix("/v1")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def get(path: str) -> Any:
        try:
            answer = requests.get(root + path, headers=headers, timeout=timeout)
            return answer.json() if answer.ok else None
        except (requests.RequestException, ValueError):
            return None

    version = get("/api/version")
    if isinstance(version, dict) and isinstance(version.get("version"), str):
        tags = get("/api/tags") or {}
        digests = [m.get("digest") for m in tags.get("models", []) if isinstance(m, dict)
                   and model in (m.get("name"), m.get("model"))]
        return {"server": f"ollama {version['version']}", "model_digest": str(digests[0]) if digests else None}
    props = get("/props")
    if isinstance(props, dict) and props.get("build_info"):
        return {"server": f"llama.cpp {props['build_info']}", "model_digest": None}
    listed = get("/v1/models")
    owners = [m.get("owned_by") for m in (listed or {}).get("data", []) if isinstance(m, dict) and m.get("id") == model]
    return {"server": f"openai-compatible ({owners[0]})" if owners and owners[0] else "unknown", "model_digest": None}


def fold_system(messages: list[Message]) -> list[Message]:
    """The system text opens the first user turn (as Gemma 3's own template does), for servers
    whose chat format drops system messages; it stays first, so the cached prefix is the same."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    rest = [dict(m) for m in messages if m["role"] != "system"]
    if system and rest and rest[0]["role"] == "user":
        rest[0]["content"] = f"{system}\n\n{rest[0]['content']}"
    elif system:
        rest.insert(0, {"role": "user", "content": system})
    return rest


def cached_tokens(response: Any) -> int | None:
    """The prompt tokens the server took from its cache, where it says: OpenAI's and vLLM's
    `usage.prompt_tokens_details.cached_tokens`, llama.cpp's `timings.cache_n`; Ollama says nothing."""
    details = getattr(response.usage, "prompt_tokens_details", None)
    if details is not None and isinstance(getattr(details, "cached_tokens", None), int):
        return int(details.cached_tokens)
    timings = (getattr(response, "model_extra", None) or {}).get("timings")
    if isinstance(timings, dict) and isinstance(timings.get("cache_n"), int):
        return int(timings["cache_n"])
    return None


def _reason(exc: BaseException) -> str:
    return one_line(exc, 300)
