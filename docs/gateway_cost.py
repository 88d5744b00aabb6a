"""The gateway's monthly cost on Lambda and on Fargate at a steady request rate, from list prices.

``python docs/gateway_cost.py`` prints the cost table of docs/gateway/compute.md;
tests/unit/test_gateway_cost.py checks that the page shows this output. Standard library only.

Prices: US East (N. Virginia), on-demand list prices of the AWS pricing pages named in PRICE_SOURCES, checked on
2026-12-06 (the Lambda Arm tiers: the AWS Compute Blog, "Introducing tiered pricing for AWS Lambda"; API Gateway's
REST tiers above the first 333 million calls as last published, not re-checked). The workload: every request
streams its answer for ANSWER_SECONDS; requests arrive at a steady rate around the clock (730 hours a month). Free
tiers, data transfer out to the internet (the same for both options) and CloudWatch are left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

HOURS_PER_MONTH = 730
ANSWER_SECONDS = 20  # one streamed answer
RATES = (10, 100, 1_000)  # requests per second

# --- list prices (USD, us-east-1) ----------------------------------------------------------------------------------
PRICE_SOURCES = {
    "lambda": "AWS Lambda Pricing (Arm: duration per GB-second in tiers by monthly GB-seconds; requests)",
    "apigw": "Amazon API Gateway Pricing (REST APIs: API calls received, in tiers by monthly calls)",
    "fargate": "AWS Fargate Pricing (Linux/ARM: per vCPU-hour and per GB-hour)",
    "alb": "Elastic Load Balancing Pricing (Application Load Balancer: per hour and per LCU-hour)",
    "nat": "Amazon VPC Pricing (NAT gateway: per hour and per GB processed; public IPv4 address per hour)",
}
# Lambda, Arm: (GB-seconds in the tier, USD per GB-second); requests USD per million.
LAMBDA_ARM_TIERS = ((7.5e9, 0.0000133334), (11.25e9, 0.0000120001), (math.inf, 0.0000106667))
LAMBDA_REQUEST_PER_MILLION = 0.20
# Response streaming: the first 6 MB of each streamed response are free; a text answer is a few KB.
LAMBDA_STREAM_FREE_BYTES = 6 * 1024 * 1024
# API Gateway REST: (calls in the tier, USD per million).
APIGW_REST_TIERS = ((333e6, 3.50), (667e6, 2.80), (19e9, 2.38), (math.inf, 1.51))
FARGATE_ARM_VCPU_HOUR = 0.03238
FARGATE_ARM_GB_HOUR = 0.00356
ALB_HOUR = 0.0225
ALB_LCU_HOUR = 0.008
# One LCU: 25 new connections per second, 3,000 active connections per minute, 1 GB processed per hour (EC2, container
# and IP targets), 1,000 rule evaluations per second (the first 10 rules free: the gateway has one).
LCU_NEW_CONNECTIONS_PER_SECOND = 25
LCU_ACTIVE_CONNECTIONS = 3_000
LCU_GB_PER_HOUR = 1.0
NAT_HOUR = 0.045
NAT_GB = 0.045
PUBLIC_IPV4_HOUR = 0.005

# --- the deployment (cdk.json defaults) and the assumptions ---------------------------------------------------------
LAMBDA_MEMORY_GB = 1.0  # gatewayMemoryMb 1024
TASK_VCPU, TASK_GB = 1.0, 2.0  # gatewayTaskCpu 1024, gatewayTaskMemoryMb 2048
MIN_TASKS = 2  # gatewayMinTasks
AZS = 2  # the created VPC: one NAT gateway and one load balancer node per Availability Zone
# Assumptions, not measurements (bench/ measures what a task sustains): streams one vCPU of uvicorn serves at the
# autoscaling CPU target, and bytes per request through the load balancer (prompt in, server-sent events out) and
# through NAT to Bedrock (prompt out, event stream in).
STREAMS_PER_VCPU = 100
CLIENT_KB_PER_REQUEST = 50
BEDROCK_KB_PER_REQUEST = 20


def tiered(quantity: float, tiers: tuple[tuple[float, float], ...], unit: float = 1.0) -> float:
    """The price of ``quantity`` through consecutive ``(size, price per unit)`` tiers; ``unit`` divides quantities."""
    total, left = 0.0, quantity
    for size, price in tiers:
        used = min(left, size)
        total += used / unit * price
        left -= used
        if left <= 0:
            break
    return total


@dataclass(frozen=True)
class Cost:
    rate: int  # requests per second
    lambda_compute: float
    lambda_requests: float
    apigw: float
    tasks: int
    fargate: float
    lcus: float
    alb: float
    nat: float

    @property
    def lambda_total(self) -> float:
        return self.lambda_compute + self.lambda_requests + self.apigw

    @property
    def fargate_total(self) -> float:
        return self.fargate + self.alb + self.nat


def monthly(rate: float) -> Cost:
    """Both options' monthly cost at ``rate`` requests per second."""
    requests = rate * HOURS_PER_MONTH * 3600
    gb_seconds = requests * ANSWER_SECONDS * LAMBDA_MEMORY_GB
    concurrent = rate * ANSWER_SECONDS  # streams open at any time (Little's law)
    tasks = max(MIN_TASKS, math.ceil(concurrent / (STREAMS_PER_VCPU * TASK_VCPU)))
    lcus = max(
        rate / LCU_NEW_CONNECTIONS_PER_SECOND,  # every request on a new connection: the worst case
        concurrent / LCU_ACTIVE_CONNECTIONS,
        rate * 3600 * CLIENT_KB_PER_REQUEST / 1e6 / LCU_GB_PER_HOUR,
    )
    nat_gb_per_hour = rate * 3600 * BEDROCK_KB_PER_REQUEST / 1e6
    return Cost(
        rate=int(rate),
        lambda_compute=tiered(gb_seconds, LAMBDA_ARM_TIERS),
        lambda_requests=requests / 1e6 * LAMBDA_REQUEST_PER_MILLION,
        apigw=tiered(requests, APIGW_REST_TIERS, unit=1e6),
        tasks=tasks,
        fargate=tasks * (TASK_VCPU * FARGATE_ARM_VCPU_HOUR + TASK_GB * FARGATE_ARM_GB_HOUR) * HOURS_PER_MONTH,
        lcus=lcus,
        alb=(ALB_HOUR + lcus * ALB_LCU_HOUR + AZS * PUBLIC_IPV4_HOUR) * HOURS_PER_MONTH,
        nat=(AZS * (NAT_HOUR + PUBLIC_IPV4_HOUR) + nat_gb_per_hour * NAT_GB) * HOURS_PER_MONTH,
    )


def break_even() -> float:
    """The request rate (per second, two decimals) above which Fargate costs less than Lambda."""
    low, high = 0.0, float(RATES[0])
    for _ in range(60):
        middle = (low + high) / 2
        cost = monthly(middle)
        low, high = (middle, high) if cost.lambda_total < cost.fargate_total else (low, middle)
    return round(high, 2)


def _usd(value: float) -> str:
    return f"${value:,.0f}"


def markdown() -> str:
    """The docs table: per rate, each option's parts and total per month."""
    lines = [
        "| Requests/s | Lambda GB-s (arm64, 1 GB) | Lambda requests | API Gateway REST | **Lambda total** "
        "| Fargate tasks (1 vCPU, 2 GB arm64) | ALB (hours, LCU, IPv4) | NAT (2 gateways + GB) | **Fargate total** |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for rate in RATES:
        c = monthly(rate)
        lines.append(
            f"| {rate:,} | {_usd(c.lambda_compute)} | {_usd(c.lambda_requests)} | {_usd(c.apigw)} "
            f"| **{_usd(c.lambda_total)}** | {c.tasks} tasks: {_usd(c.fargate)} | {c.lcus:,.1f} LCU: {_usd(c.alb)} "
            f"| {_usd(c.nat)} | **{_usd(c.fargate_total)}** |"
        )
    lines.append("")
    lines.append(f"Fargate costs less above {break_even()} requests per second (with these assumptions).")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown())
