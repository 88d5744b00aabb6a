"""Per-bot EMF metrics of the gateway, in the function's metrics namespace.

Names and dimensions are the ones the gateway dashboard reads (``stacks/constructs/observability.py``): the dimensions
given here, plus Powertools' ``service``. Metrics that share their dimensions go out as one EMF record (an answer's
usage: four metrics, one record), not one record each.
"""

from __future__ import annotations

import os

from lambdas.shared.observability import logger

TIME_TO_FIRST_TOKEN = "TimeToFirstToken"  # ms from the request reaching the bot to its first streamed token
GUARDRAIL_INTERVENTIONS = "GuardrailInterventions"  # answers or prompts a Bedrock guardrail blocked
BEDROCK_ERRORS = "BedrockErrors"  # Bedrock failures by ``error_class`` (the OpenAI error type they map to), all bots
COST = "CostUSD"  # estimated cost of an answer from the bot's prices (USD; unit Count: CloudWatch has no currency)
INPUT_TOKENS = "InputTokens"  # per answer, per bot (cache reads and writes included)
OUTPUT_TOKENS = "OutputTokens"
REQUESTS = "Requests"  # answers, per team key (with COST and the tokens, dimension ``key``)
BUDGET_USED_PERCENT = "BudgetUsedPercent"  # a team key's month spend over its monthly budget, after each answer

Metric = tuple[str, float, str]  # (name, value, unit: a Powertools ``MetricUnit`` name)


def emit(name: str, value: float, unit: str, **dimensions: str) -> None:
    """One metric value with ``dimensions`` (``bot=...``, ``error_class=...``); never fails the answer it describes
    (``unit``: a Powertools ``MetricUnit`` name)."""
    emit_record([(name, value, unit)], **dimensions)


def emit_record(values: list[Metric], **dimensions: str) -> None:
    """``values`` as one EMF record with ``dimensions`` (and ``service``), printed at once: each metric is published
    as if emitted alone with these dimensions. Never fails the answer it describes."""
    try:
        from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

        # EphemeralMetrics: no state shared with the handler's ``metrics`` singleton; it honours
        # POWERTOOLS_METRICS_DISABLED (nothing printed) and takes POWERTOOLS_SERVICE_NAME as the ``service`` dimension
        record = EphemeralMetrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "BedrockGateway"))
        for key, dimension in dimensions.items():
            record.add_dimension(name=key, value=dimension)
        for name, value, unit in values:
            record.add_metric(name=name, unit=MetricUnit[unit], value=value)
        record.flush_metrics()
    except Exception:  # a metric never fails an answer
        logger.debug("metrics not emitted", metrics=[name for name, _, _ in values], dimensions=dimensions)
