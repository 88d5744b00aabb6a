"""gatewayCompute and the Fargate settings: lambda by default, fargate only with a certificate, task sizes Fargate
accepts, an existing VPC's subnets, and errors that name the key, the value and the fix."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stacks.config import FARGATE_KEYS, FARGATE_TASK_SIZES, GatewayConfig
from stacks.config.fargate import STREAM_INTERVAL

CERTIFICATE = "arn:aws:acm:us-east-1:123456789012:certificate/11111111-2222-3333-4444-555555555555"
FARGATE = {"gatewayCompute": "fargate", "gatewayCertificateArn": CERTIFICATE}


def test_lambda_is_the_default_and_has_no_service_settings() -> None:
    # GIVEN no gatewayCompute / WHEN reading the config / THEN the gateway runs on Lambda
    cfg = GatewayConfig.from_context({})
    assert cfg.compute == "lambda" and cfg.service is None


def test_fargate_settings_are_cast_from_strings() -> None:
    # GIVEN -c values (strings) for every Fargate key
    context = {
        **FARGATE,
        "gatewayTaskCpu": "4096",
        "gatewayTaskMemoryMb": "8192",
        "gatewayMinTasks": "2",
        "gatewayMaxTasks": "20",
        "gatewayRequestsPerTask": "1200",
    }
    # WHEN reading the config
    service = GatewayConfig.from_context(context).service
    # THEN they are numbers, uvicorn gets one worker per vCPU, and the region is the certificate's
    assert service is not None
    assert (service.task_cpu, service.task_memory_mb, service.min_tasks, service.max_tasks) == (4096, 8192, 2, 20)
    assert service.requests_per_task == 1200 and service.workers == 4 and service.region == "us-east-1"
    assert service.vpc is None  # the stack creates one


def test_read_pacing_defaults_on_for_fargate_and_may_be_turned_off() -> None:
    # GIVEN the Fargate option without and with gatewayStreamIntervalMs (as -c passes it)
    default = GatewayConfig.from_context(FARGATE).service
    off = GatewayConfig.from_context({**FARGATE, "gatewayStreamIntervalMs": "0"}).service
    # THEN the task paces its reads by default, and 0 turns it off
    assert default is not None and default.stream_interval_ms == STREAM_INTERVAL.default > 0
    assert off is not None and off.stream_interval_ms == 0


def test_a_quarter_vcpu_task_still_runs_one_worker() -> None:
    # GIVEN the smallest Fargate task / THEN one uvicorn worker, and memory defaults to what that size allows
    service = GatewayConfig.from_context({**FARGATE, "gatewayTaskCpu": "256"}).service
    assert service is not None and service.workers == 1 and service.task_memory_mb == 2048


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"gatewayCompute": "fargate"}, "gatewayCertificateArn must be the ARN of an ACM certificate"),
        ({**FARGATE, "gatewayCertificateArn": "arn:aws:iam::123456789012:server-certificate/x"}, "ACM certificate"),
        ({"gatewayCompute": "ecs"}, "gatewayCompute must be one of lambda, fargate, got 'ecs'"),
        ({**FARGATE, "gatewayTaskCpu": "3000"}, "gatewayTaskCpu must be Fargate CPU units: 256, 512"),
        ({**FARGATE, "gatewayTaskMemoryMb": "1024"}, "gatewayTaskMemoryMb must be a memory size Fargate allows"),
        ({**FARGATE, "gatewayMinTasks": "0"}, "gatewayMinTasks must be an integer between 1 and 1000"),
        ({**FARGATE, "gatewayMinTasks": "5", "gatewayMaxTasks": "4"}, "gatewayMaxTasks must be an integer between 5"),
        ({**FARGATE, "gatewayVpc": '{"vpcId": "vpc-0123456789abcdef0"}'}, "gatewayVpc must be"),
        ({**FARGATE, "gatewayVpc": "not json"}, "gatewayVpc must be a JSON object"),
        ({"gatewayCertificateArn": CERTIFICATE}, "apply to gatewayCompute=fargate only"),
        ({**FARGATE, "gatewayStreamIntervalMs": "-5"}, "gatewayStreamIntervalMs must be an integer between 0 and 1000"),
        ({**FARGATE, "gatewayStreamIntervalMs": "2000"}, "gatewayStreamIntervalMs must be an integer between 0 and"),
        ({"gatewayStreamIntervalMs": "50"}, "apply to gatewayCompute=fargate only"),
        ({"gatewayTaskCpu": "1024"}, "gatewayTaskCpu apply to gatewayCompute=fargate only"),
    ],
)
def test_bad_values_name_the_key_and_the_fix(context: dict[str, Any], message: str) -> None:
    # GIVEN a bad or misplaced Fargate setting / WHEN reading the config / THEN the error names it
    with pytest.raises(ValueError, match="cdk.json") as error:
        GatewayConfig.from_context(context)
    assert message in str(error.value)


def test_an_existing_vpc_needs_two_public_subnets() -> None:
    # GIVEN an existing VPC with a single public subnet (an ALB needs two Availability Zones)
    vpc: dict[str, Any] = {
        "vpcId": "vpc-0123456789abcdef0",
        "publicSubnetIds": ["subnet-0aaaaaaa1"],
        "privateSubnetIds": ["subnet-0bbbbbbb1"],
    }
    # WHEN reading the config / THEN it fails naming the key; with two it passes and keeps the ids
    with pytest.raises(ValueError, match="gatewayVpc must be"):
        GatewayConfig.from_context({**FARGATE, "gatewayVpc": json.dumps(vpc)})
    vpc["publicSubnetIds"].append("subnet-0aaaaaaa2")
    service = GatewayConfig.from_context({**FARGATE, "gatewayVpc": vpc}).service
    assert service is not None and service.vpc is not None
    assert service.vpc.public_subnet_ids == ("subnet-0aaaaaaa1", "subnet-0aaaaaaa2")
    assert service.vpc.private_subnet_ids == ("subnet-0bbbbbbb1",)


def test_every_fargate_size_pairs_cpu_with_the_memory_fargate_lists() -> None:
    # GIVEN the table / THEN it has the documented end points of each CPU size (MiB)
    ends = {cpu: (sizes[0], sizes[-1]) for cpu, sizes in FARGATE_TASK_SIZES.items()}
    assert ends == {
        256: (512, 2048),
        512: (1024, 4096),
        1024: (2048, 8192),
        2048: (4096, 16384),
        4096: (8192, 30720),
        8192: (16384, 61440),
        16384: (32768, 122880),
    }
    assert set(FARGATE_KEYS) >= {"gatewayCertificateArn", "gatewayVpc"}
