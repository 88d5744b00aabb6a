"""Per-bot EMF metrics of the gateway, in the function's metrics namespace.

Names and dimensions are the ones the gateway dashboard reads (``stacks/constructs/observability.py``): the dimensions
given here, plus Powertools' ``service``. Metrics that share their dimensions go out as one EMF record (an answer's
usage: four metrics, one record), not one record each.

Where the records go: printed (Powertools' ``flush_metrics``), which Lambda turns into metrics; or, with an
``EmfAgent`` configured (``use_agent``, from ``GatewaySettings.emf_agent``: the Fargate task), sent to the CloudWatch
agent's EMF listener next to the app, which writes them to their log group as EMF and so makes them metrics there.
Then they are not printed: the container's log driver is not counted on to extract them, and a record sent both ways
could be counted twice (docs/gateway/fargate-metrics.md).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

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
MAX_DATAGRAM = 65_507  # the largest UDP payload over IPv4; an EMF record of a few metrics is far below it


@dataclass(frozen=True)
class EmfAgent:
    """The CloudWatch agent's EMF listener (``udp://host:port``) and the log group its records go to."""

    host: str
    port: int
    log_group: str

    @classmethod
    def parse(cls, endpoint: str, log_group: str) -> EmfAgent:
        """From ``GATEWAY_EMF_AGENT_ENDPOINT`` and ``GATEWAY_EMF_LOG_GROUP``; a clear error naming either."""
        parts = urlsplit(endpoint)
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme != "udp" or not parts.hostname or port is None or parts.path not in ("", "/"):
            raise ValueError(
                f"GATEWAY_EMF_AGENT_ENDPOINT must be udp://host:port (the CloudWatch agent's EMF listener, e.g. "
                f"udp://127.0.0.1:25888), got {endpoint!r}; fix it or unset it to print the records"
            )
        if not log_group.strip():
            raise ValueError(
                "GATEWAY_EMF_LOG_GROUP must name the log group the agent writes the EMF records to, got an empty "
                "value; set it with GATEWAY_EMF_AGENT_ENDPOINT"
            )
        return cls(parts.hostname, port, log_group)


class _AgentSink:
    """One UDP socket to the agent: a datagram per record, never blocking an answer (a full socket buffer drops the
    record, logged at debug level, as a metric never fails an answer)."""

    def __init__(self, agent: EmfAgent) -> None:
        self.agent = agent
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.setblocking(False)

    def send(self, record: Mapping[str, Any]) -> None:
        # where the agent writes it: the metadata's LogGroupName, as the EMF client libraries' agent sinks set it
        sent = {**record, "_aws": {**record["_aws"], "LogGroupName": self.agent.log_group}}
        data = json.dumps(sent, separators=(",", ":")).encode() + b"\n"
        if len(data) > MAX_DATAGRAM:
            raise ValueError(f"EMF record of {len(data)} bytes is over one datagram")
        self._socket.sendto(data, (self.agent.host, self.agent.port))

    def close(self) -> None:
        self._socket.close()


_sink: _AgentSink | None = None


def use_agent(agent: EmfAgent | None) -> None:
    """Send the records to ``agent`` from now on; None: print them (the default)."""
    global _sink
    if _sink is not None:
        _sink.close()
    _sink = None if agent is None else _AgentSink(agent)


def emit(name: str, value: float, unit: str, **dimensions: str) -> None:
    """One metric value with ``dimensions`` (``bot=...``, ``error_class=...``); never fails the answer it describes
    (``unit``: a Powertools ``MetricUnit`` name)."""
    emit_record([(name, value, unit)], **dimensions)


def emit_record(values: list[Metric], **dimensions: str) -> None:
    """``values`` as one EMF record with ``dimensions`` (and ``service``), printed at once: each metric is published
    as if emitted alone with these dimensions. Never fails the answer it describes."""
    try:
        from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit
        from aws_lambda_powertools.metrics.functions import is_metrics_disabled

        # EphemeralMetrics: no state shared with the handler's ``metrics`` singleton; it honours
        # POWERTOOLS_METRICS_DISABLED (nothing printed) and takes POWERTOOLS_SERVICE_NAME as the ``service`` dimension
        record = EphemeralMetrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "BedrockGateway"))
        for key, dimension in dimensions.items():
            record.add_dimension(name=key, value=dimension)
        for name, value, unit in values:
            record.add_metric(name=name, unit=MetricUnit[unit], value=value)
        if _sink is None:
            record.flush_metrics()
        elif not is_metrics_disabled():  # as flush_metrics honours POWERTOOLS_METRICS_DISABLED
            _sink.send(record.serialize_metric_set())
    except Exception:  # a metric never fails an answer
        logger.debug("metrics not emitted", metrics=[name for name, _, _ in values], dimensions=dimensions)
