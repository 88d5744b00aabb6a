"""The batch price table (lambdas/shared/prices.json) and the cost estimate Finalize writes into summary.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lambdas.shared.model_families import MODEL_ID_PREFIXES, UNPRICED_MODEL_PREFIXES, family_of, price_published
from lambdas.shared.pricing import PRICES_FILE, PriceTable
from stacks.config import DEFAULT_ALLOWED_MODEL_IDS, PROJECT_ROOT

CLAUDE_3_HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"  # on-demand $0.25 / $1.25 per 1M tokens


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return PriceTable.load()


def test_batch_price_is_the_on_demand_price_times_the_discount_of_the_file(table: PriceTable) -> None:
    # GIVEN the shipped price file (batch = 50% of on-demand)
    assert json.loads(PRICES_FILE.read_text())["batch_discount"] == 0.5
    # WHEN estimating 2M input and 1M output tokens of Claude 3 Haiku in two jobs
    estimate = table.estimate(CLAUDE_3_HAIKU, [(0, 1_500_000, 600_000, False), (1, 500_000, 400_000, False)])
    # THEN the total is (2 x 0.25 + 1 x 1.25) / 2 dollars, split per job, with its price source
    assert estimate["total_usd"] == pytest.approx(0.875)
    assert [job["usd"] for job in estimate["jobs"]] == [pytest.approx(0.5625), pytest.approx(0.3125)]
    assert estimate["batch_per_1m"] == {"input": 0.125, "output": 0.625}
    assert (estimate["priced_as"], estimate["source"]) == (CLAUDE_3_HAIKU, "lambdas/shared/prices.json")
    assert estimate["message"].startswith("estimated cost $0.8750 at batch prices")


def test_on_demand_jobs_are_priced_at_the_on_demand_rate_without_the_batch_discount(table: PriceTable) -> None:
    # GIVEN a planned job that ran as a batch job, one that ran on demand (index 1), and a resubmission job that
    # shares index 1 (resubmission jobs are always batch jobs)
    jobs = [(0, 1_000_000, 1_000_000, False), (1, 1_000_000, 1_000_000, False), (1, 1_000_000, 1_000_000, True)]
    # WHEN estimating the run's cost
    estimate = table.estimate(CLAUDE_3_HAIKU, jobs, on_demand_jobs={1})
    # THEN the on-demand job costs the full on-demand price (0.25 + 1.25) and the two batch jobs half of it
    assert [(job["on_demand"], job["usd"]) for job in estimate["jobs"]] == [
        (False, pytest.approx(0.75)),
        (True, pytest.approx(1.5)),
        (False, pytest.approx(0.75)),
    ]
    assert estimate["total_usd"] == pytest.approx(3.0)
    # AND the message says which rate applied to what
    assert "1 on-demand job(s) at the on-demand prices (no batch discount)" in estimate["message"]


@pytest.mark.parametrize(
    "model_id",
    [
        "us.anthropic.claude-3-haiku-20240307-v1:0",
        "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0",
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/eu.anthropic.claude-3-haiku-20240307-v1:0",
    ],
)
def test_profiles_and_arns_are_priced_by_the_model_they_name(table: PriceTable, model_id: str) -> None:
    # GIVEN an inference-profile id or an ARN / WHEN looking up its price / THEN it is its foundation model's
    found = table.price_for(model_id)
    assert found is not None and found[0] == CLAUDE_3_HAIKU


def test_unknown_model_gets_no_estimate_but_says_where_to_add_it(table: PriceTable) -> None:
    # GIVEN a model the table does not list (an application inference profile names no model)
    model_id = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123"
    # WHEN estimating / THEN no number is guessed, and the message names the model and the file
    estimate = table.estimate(model_id, [(0, 1000, 1000, False)])
    assert estimate["total_usd"] is None and estimate["jobs"] == []
    assert estimate["message"].startswith(f"no price for model {model_id}: add it to prices.json")


def test_overrides_replace_or_add_models_and_name_their_source(tmp_path: Path) -> None:
    # GIVEN cdk.json prices (as Finalize receives them in PRICES) for a listed model and a new one
    overrides = {
        CLAUDE_3_HAIKU: {"input_per_1m": 1.0, "output_per_1m": 2.0},
        "acme.model-v1:0": {"input_per_1m": 4.0, "output_per_1m": 8.0, "batch_discount": 1.0},
    }
    # WHEN loading the table with them
    table = PriceTable.load(overrides=json.dumps(overrides))
    # THEN they win over the file, keep the file's discount unless they set their own, and say where they come from
    haiku = table.estimate(CLAUDE_3_HAIKU, [(0, 1_000_000, 1_000_000, False)])
    assert haiku["total_usd"] == pytest.approx(1.5) and haiku["source"] == "cdk.json prices"
    assert table.estimate("acme.model-v1:0", [(0, 1_000_000, 0, False)])["total_usd"] == pytest.approx(4.0)


@pytest.mark.parametrize(
    "models",
    [{"m.x-v1": {"input_per_1m": 1.0}}, {"m.x-v1": {"input_per_1m": -1, "output_per_1m": 1}}, {"m.x-v1": 3}],
)
def test_a_malformed_price_file_fails_naming_the_entry(tmp_path: Path, models: dict[str, object]) -> None:
    # GIVEN a price file with a malformed entry / WHEN loading it / THEN the error names the entry and the shape
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"batch_discount": 0.5, "models": models}))
    with pytest.raises(ValueError, match=r"prices.json models.m.x-v1"):
        PriceTable.load(path)


def test_every_allowed_model_and_every_registry_prefix_has_a_price(table: PriceTable) -> None:
    # GIVEN the allowedModelIds of cdk.json and of the defaults, and the model-family registry's id prefixes
    allowed = json.loads((PROJECT_ROOT / "cdk.json").read_text())["context"]["allowedModelIds"]
    # WHEN looking up their prices / THEN every allowed model has one, and every family prefix has at least one model,
    # but the prefixes the registry marks as unpriced (no public price: their bots carry the operator's)
    assert [m for m in [*allowed, *DEFAULT_ALLOWED_MODEL_IDS] if table.price_for(m) is None] == []
    priced_prefixes = [p for p in MODEL_ID_PREFIXES if p not in UNPRICED_MODEL_PREFIXES]
    assert [p for p in priced_prefixes if not any(m.startswith(p) for m in table.models)] == []
    # AND every priced model is one the registry can run
    assert all(family_of(model_id) for model_id in table.models)


def test_only_the_marked_models_go_without_a_price_and_the_mark_goes_with_a_price(table: PriceTable) -> None:
    # GIVEN the registry's unpriced models (Nova Multimodal Embeddings: no public price found)
    assert UNPRICED_MODEL_PREFIXES == ("amazon.nova-2-multimodal-embeddings",)
    # WHEN compared with the registry and the price file
    # THEN each is a model of the registry, none is priced in the file (a price there must remove the mark), and no
    # model id can be unpriced unless it is marked
    assert all(prefix in MODEL_ID_PREFIXES for prefix in UNPRICED_MODEL_PREFIXES)
    assert [m for m in table.models if m.startswith(UNPRICED_MODEL_PREFIXES)] == []
    assert [m for m in table.models if not price_published(m)] == []


@pytest.mark.parametrize(
    ("model_id", "published"),
    [
        ("amazon.nova-2-multimodal-embeddings-v1:0", False),
        ("us.amazon.nova-2-multimodal-embeddings-v1:0", False),
        ("arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-2-multimodal-embeddings-v1:0", False),
        ("amazon.titan-embed-text-v2:0", True),
        ("amazon.nova-lite-v1:0", True),
        ("arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123", True),
    ],
)
def test_price_published_reads_profiles_and_arns_by_their_model(model_id: str, published: bool) -> None:
    # GIVEN a model id in any of its forms WHEN asked whether its price is published THEN its model decides
    assert price_published(model_id) is published
