"""Per-bot EMF metrics of the gateway (Powertools ``single_metric``), in the function's metrics namespace.

Names and dimensions are the ones the gateway dashboard reads (``stacks/constructs/observability.py``): the dimensions
given here, plus Powertools' ``service``.
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


def emit(name: str, value: float, unit: str, **dimensions: str) -> None:
    """One metric value with ``dimensions`` (``bot=...``, ``error_class=...``); never fails the answer it describes
    (``unit``: a Powertools ``MetricUnit`` name)."""
    if os.environ.get("POWERTOOLS_METRICS_DISABLED", "").lower() == "true":  # single_metric ignores the setting
        return
    try:
        from aws_lambda_powertools.metrics import MetricUnit, single_metric

        namespace = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "BedrockGateway")
        with single_metric(name=name, unit=MetricUnit[unit], value=value, namespace=namespace) as metric:
            for key, dimension in dimensions.items():
                metric.add_dimension(name=key, value=dimension)
    except Exception:  # a metric never fails an answer
        logger.debug("metric not emitted", metric=name, dimensions=dimensions)
