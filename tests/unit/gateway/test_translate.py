"""Pure translation: chat messages -> Converse request (roles, alternation, system, cache point, limits); cost."""

from __future__ import annotations

from typing import Any

import pytest

from lambdas.gateway.config import BotConfig, Prices
from lambdas.gateway.errors import GatewayError
from lambdas.gateway.translate import (
    ChatMessage,
    ChatRequest,
    PriceBook,
    Usage,
    chat_messages,
    converse_request,
    text_cost,
)

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"


def bot(**fields: Any) -> BotConfig:
    return BotConfig.model_validate({"name": "b", "model_id": HAIKU, **fields})


def chat(*pairs: tuple[str, str], **options: Any) -> ChatRequest:
    return ChatRequest(messages=chat_messages(pairs), **options)


def test_poe_bot_role_becomes_assistant_and_system_becomes_system_blocks() -> None:
    # GIVEN a Poe conversation with a system message, a user turn, a bot turn and a user turn
    request = chat(("system", "Be brief."), ("user", "Hi"), ("bot", "Hello"), ("user", "Tell me"))
    # WHEN it is translated for Converse
    converse = converse_request(bot(), request)
    # THEN roles are user/assistant/user and the system text is a system block
    assert [m["role"] for m in converse["messages"]] == ["user", "assistant", "user"]
    assert converse["system"] == [{"text": "Be brief."}]
    assert converse["modelId"] == HAIKU


def test_consecutive_same_role_messages_merge_and_leading_assistant_turns_drop() -> None:
    # GIVEN a conversation opening with the bot's introduction and two user messages in a row (and a blank one)
    request = chat(("bot", "Welcome!"), ("user", "one"), ("user", "  "), ("user", "two"), ("tool", "ignored"))
    # WHEN it is translated
    messages = converse_request(bot(), request)["messages"]
    # THEN one user message holds both texts, so roles start with user and alternate
    assert messages == [{"role": "user", "content": [{"text": "one"}, {"text": "two"}]}]


def test_a_conversation_without_user_text_is_a_400() -> None:
    # GIVEN only a system message
    # WHEN it is translated THEN a clear 400 says a user message is needed
    with pytest.raises(GatewayError) as error:
        converse_request(bot(), chat(("system", "x")))
    assert error.value.status == 400 and "user message" in error.value.message


def test_request_parameters_stay_within_the_bots_limits() -> None:
    # GIVEN a bot capped at 512 tokens and temperature 0.7, with its own stop sequence
    config = bot(inference={"max_tokens": 512, "max_temperature": 0.7, "stop_sequences": ["END"]})
    # WHEN a request asks for more tokens, a hotter temperature and more stop sequences
    request = chat(("user", "hi"), max_tokens=4096, temperature=1.5, stop_sequences=("a", "b", "c", "d"))
    inference = converse_request(config, request)["inferenceConfig"]
    # THEN the bot's limits win, and the stop sequences are the bot's then the request's, at most 4
    assert inference == {"maxTokens": 512, "temperature": 0.7, "stopSequences": ["END", "a", "b", "c"]}


def test_defaults_apply_when_the_request_sets_nothing() -> None:
    # GIVEN a bot with default temperature and top_p
    config = bot(inference={"max_tokens": 100, "temperature": 0.2, "top_p": 0.9})
    # WHEN a request sets nothing THEN the defaults are sent
    inference = converse_request(config, chat(("user", "hi")))["inferenceConfig"]
    assert inference == {"maxTokens": 100, "temperature": 0.2, "topP": 0.9}


def test_prompt_caching_bots_get_a_cache_point_after_the_system_prompt() -> None:
    # GIVEN a caching bot with a configured system prompt and a request with its own system message
    config = bot(system_prompt="You are helpful.", capabilities={"prompt_caching": True})
    # WHEN translated
    system = converse_request(config, chat(("system", "Extra."), ("user", "hi")))["system"]
    # THEN the configured prompt comes first and a cache point closes the system blocks
    assert system == [{"text": "You are helpful."}, {"text": "Extra."}, {"cachePoint": {"type": "default"}}]


def test_bots_without_prompt_caching_send_no_cache_point() -> None:
    system = converse_request(bot(system_prompt="S"), chat(("user", "hi")))["system"]
    assert system == [{"text": "S"}]


def test_additional_request_fields_pass_through() -> None:
    # GIVEN a reasoning bot configured with Claude's thinking fields
    fields = {"thinking": {"type": "enabled", "budget_tokens": 1024}}
    request = converse_request(bot(additional_request_fields=fields), chat(("user", "hi")))
    # THEN they are sent as additionalModelRequestFields
    assert request["additionalModelRequestFields"] == fields


def test_usage_counts_cache_tokens_in_the_prompt_and_prices_them_separately() -> None:
    # GIVEN Converse usage with cache reads and writes
    usage = Usage.from_converse(
        {"inputTokens": 100, "outputTokens": 50, "cacheReadInputTokens": 1000, "cacheWriteInputTokens": 200}
    )
    prices = Prices(input_per_1k=3.0, output_per_1k=15.0, cache_read_per_1k=0.3, cache_write_per_1k=3.75)
    # WHEN the OpenAI usage and the cost are computed
    # THEN the prompt counts every input token, cached ones are reported, and each kind has its rate
    assert usage.openai() == {
        "prompt_tokens": 1300,
        "completion_tokens": 50,
        "total_tokens": 1350,
        "prompt_tokens_details": {"cached_tokens": 1000},
    }
    assert text_cost(usage, prices) == pytest.approx((100 * 3.0 + 50 * 15.0 + 1000 * 0.3 + 200 * 3.75) / 1000)


def test_router_answers_are_priced_by_the_invoked_model() -> None:
    # GIVEN a router bot without prices and a Haiku bot with prices
    router = bot(name="r", model_id="arn:aws:bedrock:us-east-1:123456789012:default-prompt-router/anthropic.claude:1")
    haiku = bot(name="h", model_id=f"us.{HAIKU}", prices={"input_per_1k": 1.0, "output_per_1k": 2.0})
    book = PriceBook([router, haiku])
    # WHEN the router reports the inference-profile ARN it invoked
    invoked = f"arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.{HAIKU}"
    # THEN the Haiku prices apply; an unknown model falls back to the router's own (zero) prices
    assert book.prices_for(router, invoked).input_per_1k == 1.0
    assert book.prices_for(router, "arn:aws:bedrock:us-east-1::foundation-model/x.unknown-v1:0") == Prices()


def test_chat_messages_keeps_known_roles_only() -> None:
    assert chat_messages([("user", "a"), ("tool", "b"), ("bot", "c")]) == (
        ChatMessage("user", "a"),
        ChatMessage("assistant", "c"),
    )
