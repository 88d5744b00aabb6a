"""docs/gateway_cost.py: the Lambda-or-Fargate cost table of docs/gateway/compute.md is its output, and its
arithmetic follows the prices it names."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cost() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gateway_cost", ROOT / "docs" / "gateway_cost.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_docs_table_is_the_scripts_output(cost: ModuleType) -> None:
    # GIVEN the docs page's block between the gateway-cost markers
    text = (ROOT / "docs" / "gateway" / "compute.md").read_text(encoding="utf-8")
    start, end = "<!-- gateway-cost:start -->\n", "\n<!-- gateway-cost:end -->"
    block = text[text.index(start) + len(start) : text.index(end)]
    # WHEN the script renders the table / THEN the page shows exactly that (rerun the script after a price change)
    assert block == cost.markdown()


def test_lambda_at_10_requests_per_second_is_priced_by_hand(cost: ModuleType) -> None:
    # GIVEN 10 requests/s for 730 hours, each streaming 20 s on a 1 GB arm64 function
    requests = 10 * 730 * 3600
    # WHEN the script prices it / THEN GB-seconds, requests and REST calls are the first tiers' list prices
    c = cost.monthly(10)
    assert c.lambda_compute == pytest.approx(requests * 20 * 1.0 * 0.0000133334)
    assert c.lambda_requests == pytest.approx(requests / 1e6 * 0.20)
    assert c.apigw == pytest.approx(requests / 1e6 * 3.50)


def test_fargate_at_10_requests_per_second_is_priced_by_hand(cost: ModuleType) -> None:
    # GIVEN 200 concurrent streams (10/s x 20 s): 2 tasks of 1 vCPU / 2 GB at 100 streams per vCPU
    c = cost.monthly(10)
    # THEN tasks, ALB (hour, LCU by processed bytes: 10 x 3600 x 50 KB = 1.8 GB/h, two IPv4) and NAT follow the prices
    assert c.tasks == 2
    assert c.fargate == pytest.approx(2 * (0.03238 + 2 * 0.00356) * 730)
    assert c.lcus == pytest.approx(1.8)
    assert c.alb == pytest.approx((0.0225 + 1.8 * 0.008 + 2 * 0.005) * 730)
    assert c.nat == pytest.approx((2 * (0.045 + 0.005) + 10 * 3600 * 20 / 1e6 * 0.045) * 730)


def test_tiers_apply_in_order(cost: ModuleType) -> None:
    # GIVEN 10 billion GB-seconds / THEN 7.5 billion at the first Arm price and 2.5 billion at the second
    assert cost.tiered(10e9, cost.LAMBDA_ARM_TIERS) == pytest.approx(7.5e9 * 0.0000133334 + 2.5e9 * 0.0000120001)


def test_the_break_even_is_where_both_cost_the_same(cost: ModuleType) -> None:
    # GIVEN the break-even rate / THEN Lambda is cheaper just below it and Fargate just above it
    rate = cost.break_even()
    below, above = cost.monthly(rate - 0.01), cost.monthly(rate + 0.01)
    assert below.lambda_total < below.fargate_total and above.fargate_total < above.lambda_total
