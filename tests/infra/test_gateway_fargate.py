"""GatewayStack with ``gatewayCompute=fargate``: the same app on ECS Fargate (arm64) behind an Application Load Balancer
with TLS, autoscaling, the Lambda's grants on the task role, only the load balancer reaching the tasks, ALB metrics on
the dashboard, and cdk-nag and cfn-lint clean.

One app for the module (synth starts jsii and runs cdk-nag), built as ``app.py`` builds it, keys passed as strings, as
``-c`` passes them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_iam as iam
from aws_cdk.assertions import Template

from stacks.config import ObservabilityConfig
from stacks.config.fargate import STREAM_INTERVAL
from stacks.constructs.gateway_service import AGENT_IMAGE, DOCKERFILE, KEEP_ALIVE_SECONDS
from stacks.constructs.model_gateway import APP, PORT
from stacks.constructs.observability import GatewayObservability
from stacks.synth import build_app, gateway_stack
from tests.infra.conftest import Gateway, cfn_lint, synth_gateway
from tests.infra.iam_usage import task_role_modules, ungranted_calls, unused_grants

BOTS_FILE = "tests/infra/data/gateway_bots.json"
CERTIFICATE = "arn:aws:acm:eu-west-1:123456789012:certificate/11111111-2222-3333-4444-555555555555"
CONTEXT = {
    "gatewayBotsFile": BOTS_FILE,
    "gatewayCompute": "fargate",
    "gatewayCertificateArn": CERTIFICATE,
    "gatewayTaskCpu": "2048",
    "gatewayTaskMemoryMb": "5120",
    "gatewayMinTasks": "3",
    "gatewayMaxTasks": "12",
    "gatewayRequestsPerTask": "900",
}
EXISTING_VPC = {
    "vpcId": "vpc-0123456789abcdef0",
    "publicSubnetIds": ["subnet-0aaaaaaaaaaaaaaa1", "subnet-0aaaaaaaaaaaaaaa2"],
    "privateSubnetIds": ["subnet-0bbbbbbbbbbbbbbb1", "subnet-0bbbbbbbbbbbbbbb2"],
}


@pytest.fixture(scope="module")
def fargate(tmp_path_factory: pytest.TempPathFactory) -> Gateway:
    return synth_gateway(CONTEXT, tmp_path_factory.mktemp("fargate-assembly"))


@pytest.fixture(scope="module")
def existing_vpc(tmp_path_factory: pytest.TempPathFactory) -> Gateway:
    return synth_gateway({**CONTEXT, "gatewayVpc": json.dumps(EXISTING_VPC)}, tmp_path_factory.mktemp("fargate-vpc"))


def test_fargate_replaces_the_function_and_the_rest_api(fargate: Gateway) -> None:
    # GIVEN gatewayCompute=fargate / THEN no Lambda function and no REST API, but one ECS service and one ALB
    assert fargate.of_type("AWS::Lambda::Function") == {}
    assert fargate.of_type("AWS::ApiGateway::RestApi") == {}
    assert len(fargate.of_type("AWS::ECS::Service")) == 1
    assert len(fargate.of_type("AWS::ElasticLoadBalancingV2::LoadBalancer")) == 1
    # AND the stack deploys to the certificate's region (an ALB takes certificates of its own region only)
    assert fargate.stack.region == "eu-west-1"
    # AND `stack.gateway` names the way to the Fargate construct instead of failing obscurely
    with pytest.raises(AttributeError, match="GatewayStack.service"):
        _ = fargate.stack.gateway


def test_the_task_is_arm64_and_sized_from_config(fargate: Gateway) -> None:
    # GIVEN the task definition
    (task,) = fargate.of_type("AWS::ECS::TaskDefinition").values()
    # THEN it is a Fargate arm64 task with the configured CPU and memory
    assert task["RequiresCompatibilities"] == ["FARGATE"]
    assert task["RuntimePlatform"] == {"CpuArchitecture": "ARM64", "OperatingSystemFamily": "LINUX"}
    assert (task["Cpu"], task["Memory"]) == ("2048", "5120")
    # AND its container runs uvicorn with uvloop and httptools, one worker per vCPU, serving the gateway app
    container = gateway_container(task)
    command = container["Command"]
    assert command[:3] == ["python", "-m", "uvicorn"] and command[-1] == APP
    options = dict(zip(command[3:-2:2], command[4:-1:2], strict=True))
    assert options["--workers"] == "2" and options["--loop"] == "uvloop" and options["--http"] == "httptools"
    assert options["--port"] == str(PORT) and container["PortMappings"][0]["ContainerPort"] == PORT
    # AND uvicorn keeps idle connections longer than the load balancer does (no 502 on a reused connection)
    (balancer,) = fargate.of_type("AWS::ElasticLoadBalancingV2::LoadBalancer").values()
    idle = {a["Key"]: a["Value"] for a in balancer["LoadBalancerAttributes"]}["idle_timeout.timeout_seconds"]
    assert int(options["--timeout-keep-alive"]) == KEEP_ALIVE_SECONDS > int(idle)
    # AND the app finds its bot file, bucket and secret as on Lambda, with the tracer off (no X-Ray daemon)
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env["GATEWAY_BOTS_FILE"] == "/app/gateway-bots.json" and env["POWERTOOLS_TRACE_DISABLED"] == "true"
    assert {"GATEWAY_MEDIA_BUCKET", "GATEWAY_ACCESS_KEYS_SECRET_ARN", "POWERTOOLS_METRICS_NAMESPACE"} <= set(env)
    assert container["LogConfiguration"]["LogDriver"] == "awslogs"


def test_the_task_paces_its_reads_with_the_configured_interval(fargate: Gateway) -> None:
    # GIVEN the Fargate task, gatewayStreamIntervalMs not set in the context
    (task,) = fargate.of_type("AWS::ECS::TaskDefinition").values()
    env = {e["Name"]: e["Value"] for e in gateway_container(task)["Environment"]}
    # THEN the app reads its answers' connections paced at the setting's default (lambdas.gateway.pacing)
    assert env["GATEWAY_STREAM_INTERVAL_MS"] == str(STREAM_INTERVAL.default) != "0"


def test_a_configured_stream_interval_reaches_the_task(tmp_path: Path) -> None:
    # GIVEN gatewayStreamIntervalMs=0 (pacing off), passed as -c passes it
    gateway = synth_gateway({**CONTEXT, "gatewayStreamIntervalMs": "0"}, tmp_path)
    # WHEN the task is synthesized
    (task,) = gateway.of_type("AWS::ECS::TaskDefinition").values()
    env = {e["Name"]: e["Value"] for e in gateway_container(task)["Environment"]}
    # THEN the task reads every event as it arrives
    assert env["GATEWAY_STREAM_INTERVAL_MS"] == "0"


def gateway_container(task: Mapping[str, Any]) -> Mapping[str, Any]:
    (container,) = [c for c in task["ContainerDefinitions"] if c["Name"] == "Gateway"]
    return container


def test_the_apps_emf_records_go_to_a_cloudwatch_agent_in_the_task(fargate: Gateway) -> None:
    # GIVEN the task definition, its roles and log groups
    (task,) = fargate.of_type("AWS::ECS::TaskDefinition").values()
    (agent,) = [c for c in task["ContainerDefinitions"] if c["Name"] == "CloudWatchAgent"]
    app = gateway_container(task)
    # THEN a CloudWatch agent container, pinned, runs beside the app with EMF collection on (its UDP/TCP listener)
    assert agent["Image"] == AGENT_IMAGE and not AGENT_IMAGE.endswith(":latest")
    config = {e["Name"]: e["Value"] for e in agent["Environment"]}["CW_CONFIG_CONTENT"]
    assert json.loads(config) == {"logs": {"metrics_collected": {"emf": {}}}}
    assert agent["Essential"] is False and agent["LogConfiguration"]["LogDriver"] == "awslogs"
    # AND the app sends its records to that listener (started first), for a log group of their own
    env = {e["Name"]: e["Value"] for e in app["Environment"]}
    assert env["GATEWAY_EMF_AGENT_ENDPOINT"] == "udp://127.0.0.1:25888"
    assert app["DependsOn"] == [{"ContainerName": "CloudWatchAgent", "Condition": "START"}]
    groups = fargate.of_type("AWS::Logs::LogGroup")
    metrics_group = env["GATEWAY_EMF_LOG_GROUP"]["Ref"]
    assert metrics_group in groups and metrics_group != app["LogConfiguration"]["Options"]["awslogs-group"]["Ref"]
    assert "RetentionInDays" in groups[metrics_group]
    # AND the task role may write log streams and events to that group only (the agent uses the task role)
    role = task["TaskRoleArn"]["Fn::GetAtt"][0]
    writes = [
        s
        for policy in fargate.of_type("AWS::IAM::Policy").values()
        if {"Ref": role} in policy["Roles"]
        for s in policy["PolicyDocument"]["Statement"]
        if any(str(a).startswith("logs:") for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]]))
    ]
    assert [sorted(s["Action"]) for s in writes] == [["logs:CreateLogStream", "logs:PutLogEvents"]]
    assert writes[0]["Resource"] == {"Fn::GetAtt": [metrics_group, "Arn"]}


def test_the_image_is_built_from_the_gateway_dockerfile_with_a_small_context(fargate: Gateway) -> None:
    # GIVEN the stack's asset manifest (synth stages the build context; no Docker runs)
    stack_artifact = fargate.assembly.get_stack_by_name(fargate.stack.stack_name)
    manifest = json.loads(
        Path(fargate.assembly.directory, f"{stack_artifact.stack_name}.assets.json").read_text(encoding="utf-8")
    )
    (image,) = manifest["dockerImages"].values()
    source = image["source"]
    # THEN the image builds from the gateway Dockerfile for arm64 with the configured bot file
    assert source["dockerFile"] == DOCKERFILE and source["platform"] == "linux/arm64"
    assert source["dockerBuildArgs"] == {"BOTS_FILE": BOTS_FILE}
    # AND the staged context holds the app, its requirements and the bot file, nothing else of the project
    context = Path(fargate.assembly.directory, source["directory"])
    assert sorted(p.name for p in context.iterdir()) == ["lambdas", "requirements-gateway.txt", "tests"]
    assert (context / BOTS_FILE).is_file() and (context / DOCKERFILE).is_file()
    assert [p.name for p in (context / "tests").rglob("*") if p.is_file()] == [Path(BOTS_FILE).name]
    # AND the Dockerfile copies that bot file to where GATEWAY_BOTS_FILE points
    assert "COPY ${BOTS_FILE} ./gateway-bots.json" in (context / DOCKERFILE).read_text(encoding="utf-8")


def test_https_with_the_configured_certificate_and_http_redirects(fargate: Gateway) -> None:
    # GIVEN the listeners
    listeners = {int(p["Port"]): p for p in fargate.of_type("AWS::ElasticLoadBalancingV2::Listener").values()}
    # THEN 443 is HTTPS with the certificate from config and a TLS 1.3 policy
    https = listeners[443]
    assert https["Protocol"] == "HTTPS"
    assert https["Certificates"] == [{"CertificateArn": CERTIFICATE}]
    assert https["SslPolicy"].startswith("ELBSecurityPolicy-TLS13")
    # AND 80 only redirects to 443
    (action,) = listeners[80]["DefaultActions"]
    assert action["Type"] == "redirect"
    assert action["RedirectConfig"]["Protocol"] == "HTTPS" and action["RedirectConfig"]["Port"] == "443"
    assert set(listeners) == {80, 443}


def test_health_checks_on_get_health(fargate: Gateway) -> None:
    # GIVEN the target group / THEN it checks GET /health on the app's port, the tasks registered by IP
    (group,) = fargate.of_type("AWS::ElasticLoadBalancingV2::TargetGroup").values()
    assert group["HealthCheckPath"] == "/health" and group["Matcher"] == {"HttpCode": "200"}
    assert group["Port"] == PORT and group["TargetType"] == "ip"


def test_only_the_load_balancer_reaches_the_tasks(fargate: Gateway) -> None:
    # GIVEN the security groups of the tasks and of the load balancer
    service = fargate.stack.service
    assert service is not None
    (service_props,) = fargate.of_type("AWS::ECS::Service").values()
    network = service_props["NetworkConfiguration"]["AwsvpcConfiguration"]
    (task_group,) = [g["Fn::GetAtt"][0] for g in network["SecurityGroups"]]
    balancer_group = fargate.of_type("AWS::ElasticLoadBalancingV2::LoadBalancer")
    (balancer,) = balancer_group.values()
    (alb_group,) = [g["Fn::GetAtt"][0] for g in balancer["SecurityGroups"]]
    # THEN the tasks have no public IP and take the app's port from the load balancer's group only
    assert network["AssignPublicIp"] == "DISABLED"
    task_ingress = [
        *fargate.of_type("AWS::EC2::SecurityGroup")[task_group].get("SecurityGroupIngress", []),
        *(
            rule
            for rule in fargate.of_type("AWS::EC2::SecurityGroupIngress").values()
            if rule["GroupId"] == {"Fn::GetAtt": [task_group, "GroupId"]}
        ),
    ]
    assert [(r["SourceSecurityGroupId"], r["FromPort"], r["ToPort"]) for r in task_ingress] == [
        ({"Fn::GetAtt": [alb_group, "GroupId"]}, PORT, PORT)
    ]
    # AND the tasks send HTTPS only; the load balancer sends only to the tasks' port
    task_egress = fargate.of_type("AWS::EC2::SecurityGroup")[task_group]["SecurityGroupEgress"]
    assert [(r["IpProtocol"], r["FromPort"]) for r in task_egress] == [("tcp", 443)]
    alb_egress = [
        *fargate.of_type("AWS::EC2::SecurityGroup")[alb_group].get("SecurityGroupEgress", []),
        *(
            rule
            for rule in fargate.of_type("AWS::EC2::SecurityGroupEgress").values()
            if rule["GroupId"] == {"Fn::GetAtt": [alb_group, "GroupId"]}
        ),
    ]
    assert [(r.get("DestinationSecurityGroupId"), r["FromPort"]) for r in alb_egress] == [
        ({"Fn::GetAtt": [task_group, "GroupId"]}, PORT)
    ]
    # AND the load balancer takes 443 and 80 (the redirect) from anywhere, nothing else
    alb_ingress = fargate.of_type("AWS::EC2::SecurityGroup")[alb_group]["SecurityGroupIngress"]
    assert sorted((r["CidrIp"], r["FromPort"]) for r in alb_ingress) == [("0.0.0.0/0", 80), ("0.0.0.0/0", 443)]


def test_tasks_run_in_private_subnets_of_a_created_vpc_with_nat_and_flow_logs(fargate: Gateway) -> None:
    # GIVEN no gatewayVpc / THEN the stack creates a VPC with NAT gateways and flow logs
    assert len(fargate.of_type("AWS::EC2::VPC")) == 1
    assert len(fargate.of_type("AWS::EC2::NatGateway")) == 2
    assert len(fargate.of_type("AWS::EC2::FlowLog")) == 1
    # AND the tasks' subnets are not the load balancer's (public) ones
    (service,) = fargate.of_type("AWS::ECS::Service").values()
    (balancer,) = fargate.of_type("AWS::ElasticLoadBalancingV2::LoadBalancer").values()
    task_subnets = {s["Ref"] for s in service["NetworkConfiguration"]["AwsvpcConfiguration"]["Subnets"]}
    alb_subnets = {s["Ref"] for s in balancer["Subnets"]}
    assert task_subnets and alb_subnets and not task_subnets & alb_subnets
    assert all("Tasks" in s for s in task_subnets) and all("LoadBalancer" in s for s in alb_subnets)
    assert balancer["Scheme"] == "internet-facing"


def test_an_existing_vpc_is_used_as_given(existing_vpc: Gateway) -> None:
    # GIVEN gatewayVpc with an existing VPC's subnets / THEN no VPC is created
    assert existing_vpc.of_type("AWS::EC2::VPC") == {} and existing_vpc.of_type("AWS::EC2::NatGateway") == {}
    (service,) = existing_vpc.of_type("AWS::ECS::Service").values()
    (balancer,) = existing_vpc.of_type("AWS::ElasticLoadBalancingV2::LoadBalancer").values()
    # AND the tasks run in the private subnets, the load balancer in the public ones
    assert service["NetworkConfiguration"]["AwsvpcConfiguration"]["Subnets"] == EXISTING_VPC["privateSubnetIds"]
    assert balancer["Subnets"] == EXISTING_VPC["publicSubnetIds"]
    groups = existing_vpc.of_type("AWS::EC2::SecurityGroup").values()
    assert {g["VpcId"] for g in groups} == {EXISTING_VPC["vpcId"]}


def test_autoscaling_on_cpu_and_requests_per_task_within_configured_bounds(fargate: Gateway) -> None:
    # GIVEN the scalable target and its policies
    (target,) = fargate.of_type("AWS::ApplicationAutoScaling::ScalableTarget").values()
    policies = fargate.of_type("AWS::ApplicationAutoScaling::ScalingPolicy").values()
    metrics = {
        p["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"]["PredefinedMetricType"]: p[
            "TargetTrackingScalingPolicyConfiguration"
        ]["TargetValue"]
        for p in policies
    }
    # THEN the task count stays between gatewayMinTasks and gatewayMaxTasks, starting at the minimum
    assert (target["MinCapacity"], target["MaxCapacity"]) == (3, 12)
    (service,) = fargate.of_type("AWS::ECS::Service").values()
    assert service["DesiredCount"] == 3
    # AND it tracks CPU and the ALB's requests per task (gatewayRequestsPerTask)
    assert metrics == {"ECSServiceAverageCPUUtilization": 60, "ALBRequestCountPerTarget": 900}


def test_load_balancer_access_logs_go_to_an_sse_s3_bucket(fargate: Gateway) -> None:
    # GIVEN the load balancer's attributes
    (balancer,) = fargate.of_type("AWS::ElasticLoadBalancingV2::LoadBalancer").values()
    attributes = {a["Key"]: a["Value"] for a in balancer["LoadBalancerAttributes"]}
    service = fargate.stack.service
    assert service is not None
    bucket_id = fargate.logical_id(service.access_logs_bucket)
    # THEN access logs are on, into the access-log bucket, which is SSE-S3 (the only encryption ALB logs support)
    assert attributes["access_logs.s3.enabled"] == "true"
    assert attributes["access_logs.s3.bucket"] == {"Ref": bucket_id}
    assert attributes["routing.http.drop_invalid_header_fields.enabled"] == "true"
    encryption = fargate.of_type("AWS::S3::Bucket")[bucket_id]["BucketEncryption"]
    assert encryption["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "AES256"
    }


def _role_grants(template: Mapping[str, Any], role: str) -> set[tuple[str, str]]:
    """(action, resource) pairs of ``role``; the logical ids of the media bucket, the secrets and the key table made
    neutral."""
    resources = template["Resources"]
    found = set()
    for resource in resources.values():
        if resource["Type"] not in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            continue
        if {"Ref": role} not in resource["Properties"].get("Roles", []):
            continue
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
            for action in statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]:
                for arn in (
                    statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
                ):
                    text = json.dumps(arn, sort_keys=True)
                    for kind in ("MediaBucket", "AccessKeys", "TeamKeysTable", "TeamKeysAdminKey"):
                        for logical_id in resources:
                            if kind in logical_id and logical_id in text:
                                text = text.replace(logical_id, kind)
                    # a stack with a known region renders format_arn's partition as "aws"
                    found.add((action, text.replace('"arn:", {"Ref": "AWS::Partition"}, ":', '"arn:aws:')))
    return found


def test_the_task_role_has_the_lambda_functions_grants(fargate: Gateway, tmp_path: Path) -> None:
    # GIVEN the same bots deployed on Lambda in the same region
    app, _ = build_app({"gatewayBotsFile": BOTS_FILE}, skip_bundling=True, outdir=str(tmp_path), gateway=True)
    lambda_stack = gateway_stack(app)
    lambda_template = Template.from_stack(lambda_stack).to_json()
    function_role = lambda_stack.resolve(lambda_stack.gateway.function.role.role_name)["Ref"]
    service = fargate.stack.service
    assert service is not None
    task_role = fargate.logical_id(service.task_role)
    # WHEN comparing the grants (the Lambda's own logs and X-Ray actions aside)
    lambda_grants = {
        (action, arn)
        for action, arn in _role_grants(lambda_template, function_role)
        if not action.startswith(("logs:", "xray:"))
    }
    metrics_group = fargate.logical_id(service.metrics_log_group)
    agent_writes = {("logs:CreateLogStream", metrics_group), ("logs:PutLogEvents", metrics_group)}
    task_grants = {
        grant
        for grant in _role_grants(fargate.template.to_json(), task_role)
        if (grant[0], metrics_group if metrics_group in grant[1] else "") not in agent_writes
    }
    # THEN the task role may do what the function may, on the same resources, and nothing more (but the writes of
    # the CloudWatch agent container to the metrics log group, which the Lambda function's runtime does for it)
    assert task_grants == lambda_grants
    assert {"bedrock:InvokeModelWithResponseStream", "secretsmanager:GetSecretValue"} <= {a for a, _ in task_grants}


def test_every_task_role_grant_is_used_by_the_app(fargate: Gateway) -> None:
    # GIVEN the template / WHEN iam_usage derives the task role's use from the container's command
    template = fargate.template.to_json()
    service = fargate.stack.service
    assert service is not None
    # THEN the task role serves the gateway app, and no role has an unused grant
    assert task_role_modules(template["Resources"]) == {fargate.logical_id(service.task_role): "lambdas.gateway.app"}
    assert unused_grants(template) == []
    # AND the app calls nothing it is not granted, but ApplyGuardrail (no bot of this file has a guardrail)
    assert [m.split(": ")[1].split(" ")[0] for m in ungranted_calls(template)] == ["bedrock:ApplyGuardrail"]


def test_a_task_role_grant_no_code_uses_fails_the_check(tmp_path: Path) -> None:
    # GIVEN the Fargate gateway whose task role may also read a Bedrock batch job, which the app never does
    app, _ = build_app(CONTEXT, skip_bundling=True, outdir=str(tmp_path), gateway=True)
    stack = gateway_stack(app)
    assert stack.service is not None
    stack.service.task_role.add_to_principal_policy(
        iam.PolicyStatement(
            actions=["bedrock:GetModelInvocationJob"],
            resources=["arn:aws:bedrock:eu-west-1:123456789012:model-invocation-job/abcd1234"],
        )
    )
    template = Template.from_stack(stack).to_json()
    # WHEN the check runs / THEN it names that role and action
    role = stack.resolve(stack.service.task_role.role_name)["Ref"]
    assert unused_grants(template) == [f"{role}: bedrock:GetModelInvocationJob"]


def test_dashboard_and_alarms_read_the_load_balancer_and_the_service(fargate: Gateway) -> None:
    # GIVEN the dashboard body and the alarms
    (dashboard,) = fargate.of_type("AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["DashboardBody"])
    alarms = fargate.stack.observability.alarms
    # THEN requests, errors and latency come from the ALB, capacity from the ECS service; nothing from API Gateway
    for metric in ("RequestCount", "HTTPCode_Target_5XX_Count", "HTTPCode_ELB_5XX_Count", "TargetResponseTime"):
        assert metric in body
    assert "AWS/ApplicationELB" in body and "AWS/ECS" in body and "AWS/ApiGateway" not in body
    assert "ActiveConnectionCount" in body and "RequestCountPerTarget" in body
    # AND the alarms are the error rates plus unhealthy tasks and rejected connections (no Lambda alarms), and the
    # team keys' budget alarm
    assert set(alarms) == {"Gateway5xxRate", "Gateway4xxRate", "UnhealthyTasks", "RejectedConnections", "TeamKeyBudget"}


def test_outputs_name_the_https_url(fargate: Gateway) -> None:
    # GIVEN the stack outputs / THEN ApiUrl is https:// on the load balancer's DNS name
    outputs = fargate.template.to_json()["Outputs"]
    url = outputs["ApiUrl"]["Value"]["Fn::Join"][1]
    assert url[0] == "https://" and "DNSName" in url[1]["Fn::GetAtt"] and url[2] == "/"
    assert {"MediaBucketName", "AccessKeysSecretArn"} <= set(outputs)


def test_synth_is_cdk_nag_and_cfn_lint_clean(fargate: Gateway, tmp_path: Path) -> None:
    # GIVEN the synthesized assembly (the fixture's synth raised on any unacknowledged finding)
    report = json.loads((Path(fargate.assembly.directory) / "validation-report.json").read_text())
    violations = [v for plugin in report["pluginReports"] for v in plugin["violations"]]
    # THEN cdk-nag reports nothing, and cfn-lint accepts the gateway template
    assert violations == []
    assert cfn_lint({"BedrockModelGateway": fargate.template.to_json()}, tmp_path) == ""


def test_observability_takes_one_compute_or_the_other() -> None:
    # GIVEN a stack / WHEN the gateway observability gets neither the Lambda parts nor the service
    stack = cdk.Stack(cdk.App(), "Scratch")
    # THEN it refuses, naming what it takes
    with pytest.raises(ValueError, match="api and function \\(Lambda\\) or service \\(Fargate\\)"):
        GatewayObservability(stack, "Observability", bots=[], cfg=ObservabilityConfig())
