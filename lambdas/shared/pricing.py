"""Estimated cost of a batch run from token counts and a price table the user edits (``lambdas/shared/prices.json``).

Prices are on-demand USD per 1M tokens, by foundation-model id; batch jobs are billed at on-demand times the file's
``batch_discount`` (0.5: batch inference costs half of on-demand). An inference-profile id or an ARN is priced by the
model it names (``us.anthropic.claude-...`` -> ``anthropic.claude-...``), unless the table lists the id itself. A model
the table does not list gets no estimate and a message saying where to add it: a guessed price would look like a fact.

``overrides`` (cdk.json ``prices``, passed to Finalize as ``PRICES``) replace or add models without editing the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lambdas.shared.model_families import ModelRef

PRICES_FILE = Path(__file__).with_name("prices.json")
PRICES_FILE_NAME = "prices.json"
OVERRIDES_SOURCE = "cdk.json prices"
TOKENS_PER_UNIT = 1_000_000


@dataclass(frozen=True)
class ModelPrice:
    """On-demand USD per 1M tokens, and the batch discount factor that applies to this model."""

    input_per_1m: float
    output_per_1m: float
    batch_discount: float
    source: str

    @property
    def batch_input_per_1m(self) -> float:
        return self.input_per_1m * self.batch_discount

    @property
    def batch_output_per_1m(self) -> float:
        return self.output_per_1m * self.batch_discount

    def batch_cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.batch_input_per_1m + output_tokens * self.batch_output_per_1m) / TOKENS_PER_UNIT

    def on_demand_cost(self, input_tokens: int, output_tokens: int) -> float:
        """Records a prepared run sends on demand (a model's group under the minimum of a batch job): no discount."""
        return (input_tokens * self.input_per_1m + output_tokens * self.output_per_1m) / TOKENS_PER_UNIT


@dataclass(frozen=True)
class PriceTable:
    batch_discount: float
    models: dict[str, ModelPrice] = field(default_factory=dict)
    currency: str = "USD"

    @classmethod
    def load(cls, path: Path = PRICES_FILE, overrides: str | dict[str, Any] | None = None) -> PriceTable:
        """The table in ``path`` with ``overrides`` applied (a JSON text or mapping: model id -> prices)."""
        raw = json.loads(path.read_text())
        discount = _number(raw.get("batch_discount", 0.5), f"{path.name} batch_discount", high=1.0)
        source = f"lambdas/shared/{PRICES_FILE_NAME}" if path == PRICES_FILE else str(path)
        models = {
            model_id: _model_price(entry, discount, source, f"{path.name} models.{model_id}")
            for model_id, entry in raw.get("models", {}).items()
        }
        extra: dict[str, Any] = {}
        if isinstance(overrides, str) and overrides.strip():
            extra = json.loads(overrides)
        elif isinstance(overrides, dict):
            extra = overrides
        for model_id, entry in extra.items():
            models[model_id] = _model_price(entry, discount, OVERRIDES_SOURCE, f"{OVERRIDES_SOURCE}.{model_id}")
        return cls(batch_discount=discount, models=models, currency=str(raw.get("currency", "USD")))

    def price_for(self, model_id: str) -> tuple[str, ModelPrice] | None:
        """The table key and price of ``model_id``: the id as given, then without its ARN, then its foundation model."""
        ref = ModelRef.parse(model_id)
        for key in dict.fromkeys((model_id, ref.resource_id, ref.base_model_id)):
            if key in self.models:
                return key, self.models[key]
        return None

    def estimate(self, model_id: str, jobs: list[tuple[int, int, int, bool]]) -> dict[str, Any]:
        """The ``estimated_cost`` section of summary.json for ``jobs`` as (index, input tokens, output tokens,
        resubmission) tuples; ``total_usd`` is None when the model has no price."""
        input_tokens = sum(job[1] for job in jobs)
        output_tokens = sum(job[2] for job in jobs)
        found = self.price_for(model_id)
        if found is None:
            return {
                "currency": self.currency,
                "total_usd": None,
                "priced_as": None,
                "source": None,
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "jobs": [],
                "message": f"no price for model {model_id}: add it to {PRICES_FILE_NAME} "
                f"(lambdas/shared/{PRICES_FILE_NAME}, or the prices of cdk.json)",
            }
        key, price = found
        total = price.batch_cost(input_tokens, output_tokens)
        return {
            "currency": self.currency,
            "total_usd": round(total, 6),
            "priced_as": key,
            "source": price.source,
            "batch_discount": price.batch_discount,
            "on_demand_per_1m": {"input": price.input_per_1m, "output": price.output_per_1m},
            "batch_per_1m": {"input": price.batch_input_per_1m, "output": price.batch_output_per_1m},
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "jobs": [
                {
                    "index": index,
                    "resubmission": resubmission,
                    "input_tokens": tokens_in,
                    "output_tokens": tokens_out,
                    "usd": round(price.batch_cost(tokens_in, tokens_out), 6),
                }
                for index, tokens_in, tokens_out, resubmission in jobs
            ],
            "message": f"estimated cost {format_usd(total)} at batch prices ({price.batch_discount:g} x on-demand "
            f"of {key}, from {price.source})",
        }

    def estimate_model(
        self, model_id: str, batch_tokens: tuple[int, int], on_demand_tokens: tuple[int, int] = (0, 0)
    ) -> tuple[float | None, str]:
        """(USD or None, how it was priced) of one model of a prepared run: its batch jobs' (input, output) tokens at
        batch prices, its on-demand records' tokens at on-demand prices (no batch discount)."""
        found = self.price_for(model_id)
        if found is None:
            return None, (
                f"no price for model {model_id}: add it to {PRICES_FILE_NAME} (lambdas/shared/{PRICES_FILE_NAME}, or "
                "the prices of cdk.json)"
            )
        key, price = found
        total = price.batch_cost(*batch_tokens) + price.on_demand_cost(*on_demand_tokens)
        how = f"batch tokens at {price.batch_discount:g} x on-demand of {key}"
        if any(on_demand_tokens):
            how += ", on-demand records' tokens at the on-demand price (no batch discount)"
        return round(total, 6), f"{format_usd(total)}: {how}, from {price.source}"


def format_usd(amount: float) -> str:
    return f"${amount:,.4f}" if amount < 1 else f"${amount:,.2f}"


def _number(value: Any, where: str, *, high: float | None = None) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or value < 0
        or (high is not None and value > high)
    ):
        limit = f" and at most {high:g}" if high is not None else ""
        raise ValueError(f"{where} must be a number >= 0{limit}, got {value!r}")
    return float(value)


def _model_price(entry: Any, default_discount: float, source: str, where: str) -> ModelPrice:
    if not isinstance(entry, dict) or not {"input_per_1m", "output_per_1m"} <= entry.keys():
        raise ValueError(f'{where} must be {{"input_per_1m": <USD>, "output_per_1m": <USD>}}, got {entry!r}')
    return ModelPrice(
        input_per_1m=_number(entry["input_per_1m"], f"{where}.input_per_1m"),
        output_per_1m=_number(entry["output_per_1m"], f"{where}.output_per_1m"),
        batch_discount=_number(entry.get("batch_discount", default_discount), f"{where}.batch_discount", high=1.0),
        source=source,
    )
