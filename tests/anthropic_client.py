"""The Anthropic SDK (``anthropic``) asking the gateway over HTTP, for the e2e tests: a client, and a tool loop."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import anthropic
from anthropic.types import Message

MAX_TOOL_ROUNDS = 5


def anthropic_client(base_url: str, key: str, *, bearer: bool = False) -> anthropic.Anthropic:
    """The SDK on ``base_url`` (the gateway's root: the SDK adds ``/v1/messages``) with ``key`` as ``x-api-key``,
    or as ``Authorization: Bearer`` (``bearer``: Claude Code's ``ANTHROPIC_AUTH_TOKEN``); no SDK retries, so each
    error reaches the test as the gateway sent it."""
    if bearer:
        return anthropic.Anthropic(base_url=base_url, api_key=None, auth_token=key, max_retries=0)
    return anthropic.Anthropic(base_url=base_url, api_key=key, max_retries=0)


def tool_loop(
    client: anthropic.Anthropic,
    *,
    model: str,
    prompt: str,
    tools: Sequence[Any],
    run: Callable[[str, Any], str],
    **options: Any,
) -> list[Message]:
    """``messages.create`` until the model stops calling tools, each call answered with ``run(name, input)``; the
    assistant turns go back as the SDK returned them (thinking blocks and their signatures included). Every answer,
    in order."""
    messages: list[Any] = [{"role": "user", "content": prompt}]
    answers: list[Message] = []
    for _ in range(MAX_TOOL_ROUNDS):
        answer = client.messages.create(model=model, messages=messages, tools=tools, **options)
        answers.append(answer)
        if answer.stop_reason != "tool_use":
            return answers
        results = [
            {"type": "tool_result", "tool_use_id": block.id, "content": run(block.name, block.input)}
            for block in answer.content
            if block.type == "tool_use"
        ]
        turn = [block.model_dump(mode="json", exclude_none=True) for block in answer.content]
        messages += [{"role": "assistant", "content": turn}, {"role": "user", "content": results}]
    raise AssertionError(f"the model still called tools after {MAX_TOOL_ROUNDS} rounds")
