"""The model gateway on containers (``gatewayCompute=fargate``): the same FastAPI app as the Lambda function, run by
uvicorn on ECS Fargate (arm64) behind an internet-facing Application Load Balancer with TLS.

```
client ─HTTPS 443─> ALB (ACM certificate; HTTP 80 redirects to 443; access logs to a bucket)
                     └─ target group (HTTP 8080, health check GET /health) ─> Fargate tasks in private subnets
                                      uvicorn (uvloop, httptools, one worker per vCPU) lambdas.gateway.app:app
                                      ─> Bedrock, media bucket, access-key secret (the task role: grant_gateway_app)
```
Only the load balancer's security group reaches the tasks; the tasks reach AWS over HTTPS through NAT. Autoscaling
follows CPU and the ALB's requests per task, between ``gatewayMinTasks`` and ``gatewayMaxTasks``.

Metrics: the app's per-bot EMF records go over UDP to a CloudWatch agent container in the same task (its EMF
listener), which writes them to their own log group (``metrics_log_group``) as EMF, where CloudWatch makes them
metrics; the app does not print them, so the awslogs driver is not counted on to extract them and none is counted
twice (docs/gateway/fargate-metrics.md).
"""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks.config import FunctionConfig, GatewayConfig, GatewayServiceConfig, StorageConfig
from stacks.constructs.batch_network import add_flow_logs
from stacks.constructs.data_bucket import ACCESS_LOG_EXPIRATION
from stacks.constructs.gateway_batch_api import BatchApiTarget
from stacks.constructs.gateway_keys import GatewayKeys
from stacks.constructs.model_gateway import (
    APP,
    GATEWAY_TIMEOUT,
    PORT,
    access_key_secret,
    grant_gateway_app,
    media_bucket,
)
from stacks.constructs.nag import acknowledge
from stacks.constructs.python_function import PROJECT_ROOT, retention

DOCKERFILE = "lambdas/gateway/Dockerfile"
CONTAINER_ROOT = "/app"  # the Dockerfile's WORKDIR
BOTS_FILE_IN_IMAGE = f"{CONTAINER_ROOT}/gateway-bots.json"  # where the Dockerfile copies the bot file
# The image's build context, as Docker ignore patterns: the app's code and requirements (the bot file is added).
IMAGE_CONTEXT = ("*", "!lambdas", "!requirements-gateway.txt", "**/__pycache__", "**/*.pyc")
CPU_TARGET_PERCENT = 60  # scale out before uvicorn's event loops saturate: streamed answers are CPU-light but bursty
HTTPS_PORT = 443
HTTP_PORT = 80
# ALB guide, "Connection idle timeout": the targets' keep-alive must outlast the load balancer's idle timeout, or the
# ALB may send a request on a connection the target is closing (a 502).
KEEP_ALIVE_SECONDS = GATEWAY_TIMEOUT.to_seconds() + 5
SERVICE = "model-gateway"  # the Powertools service name, as the Lambda function's
METRICS_NAMESPACE = "BedrockGateway"  # the Lambda function's metrics namespace (ModelGateway)
# The CloudWatch agent, pinned (EMF needs 1.230621.0 or later); ``logs.metrics_collected.emf`` with no address: it
# listens for EMF on UDP and TCP port 25888.
AGENT_IMAGE = "public.ecr.aws/cloudwatch-agent/cloudwatch-agent:1.300059.0b1207"
AGENT_CONFIG: dict[str, Any] = {"logs": {"metrics_collected": {"emf": {}}}}
EMF_PORT = 25888
EMF_ENDPOINT = f"udp://127.0.0.1:{EMF_PORT}"  # the task's containers share one network namespace (awsvpc)


def uvicorn_command(workers: int) -> list[str]:
    """The container's command: ``python -m cli gateway``'s server (uvicorn with uvloop and httptools) with
    ``workers`` processes, listening for the load balancer on every interface of the task."""
    return [
        "python",
        "-m",
        "uvicorn",
        "--host",
        "0.0.0.0",
        "--port",
        str(PORT),
        "--workers",
        str(workers),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--timeout-keep-alive",
        str(KEEP_ALIVE_SECONDS),
        "--no-server-header",
        APP,
    ]


class GatewayService(Construct):
    """``media_bucket`` (DataBucket), ``access_keys`` (the secret), ``vpc``, ``cluster``, ``task_definition``,
    ``task_role``, ``execution_role``, ``service`` (FargateService), ``load_balancer``, ``target_group``,
    ``access_logs_bucket`` (the ALB's access logs), ``log_group`` (the containers' logs), ``agent`` (the CloudWatch
    agent container) and ``metrics_log_group`` (the EMF records it writes).

    ``settings.vpc`` None: a VPC with public subnets (the load balancer, NAT gateways) and private subnets (the tasks)
    in two Availability Zones, with flow logs. Otherwise the given VPC and subnets (their routes are the owner's).
    ``existing_media_bucket``, ``encryption_key`` and ``batch`` as for ``ModelGateway``; the access-log bucket stays
    SSE-S3, the only encryption ALB access logs support."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        cfg: GatewayConfig,
        settings: GatewayServiceConfig,
        function_settings: FunctionConfig,
        storage: StorageConfig,
        existing_media_bucket: s3.IBucket | None = None,
        encryption_key: kms.IKey | None = None,
        batch: BatchApiTarget | None = None,
    ) -> None:
        super().__init__(scope, id_)
        self.media_bucket = media_bucket(
            self, cfg=cfg, storage=storage, existing_bucket=existing_media_bucket, encryption_key=encryption_key
        )
        self.access_keys = access_key_secret(self, encryption_key=encryption_key)
        self.team_keys = GatewayKeys(self, "TeamKeys", cfg=cfg.keys, encryption_key=encryption_key)
        self.vpc, public, private = self._network(settings, function_settings, encryption_key)

        self.cluster = ecs.Cluster(self, "Cluster", vpc=self.vpc, container_insights_v2=ecs.ContainerInsights.ENABLED)
        self.execution_role = iam.Role(
            self,
            "ExecutionRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description="Task execution role of the model gateway: pulls the image and writes the container logs",
        )
        stack = cdk.Stack.of(self)
        # Amazon ECS developer guide, "Amazon ECS task IAM role": the trust names this account's ECS resources only.
        self.task_role = iam.Role(
            self,
            "TaskRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com").with_conditions(
                {
                    "StringEquals": {"aws:SourceAccount": stack.account},
                    "ArnLike": {"aws:SourceArn": f"arn:{stack.partition}:ecs:{stack.region}:{stack.account}:*"},
                }
            ),
            description="Task role of the model gateway: what the app does with Bedrock, S3 and Secrets Manager",
        )
        grant_gateway_app(
            self.task_role,
            cfg=cfg,
            bucket=self.media_bucket.bucket,
            access_keys=self.access_keys,
            encryption_key=encryption_key,
            team_keys=self.team_keys,
            batch=batch,
        )
        self.task_definition = ecs.FargateTaskDefinition(
            self,
            "TaskDefinition",
            cpu=settings.task_cpu,
            memory_limit_mib=settings.task_memory_mb,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ecs.CpuArchitecture.ARM64, operating_system_family=ecs.OperatingSystemFamily.LINUX
            ),
            task_role=self.task_role,
            execution_role=self.execution_role,
        )
        self.log_group = logs.LogGroup(
            self, "Logs", retention=retention(function_settings), encryption_key=encryption_key
        )
        image = ecs.ContainerImage.from_asset(
            str(PROJECT_ROOT),
            file=DOCKERFILE,
            platform=ecr_assets.Platform.LINUX_ARM64,
            exclude=[*IMAGE_CONTEXT[:1], f"!{cfg.bots_file}", *IMAGE_CONTEXT[1:]],
            ignore_mode=cdk.IgnoreMode.DOCKER,
            build_args={"BOTS_FILE": cfg.bots_file},
        )
        # The app's EMF records, written by the agent (its own log group: only EMF, the metrics' source)
        self.metrics_log_group = logs.LogGroup(
            self, "MetricsLogs", retention=retention(function_settings), encryption_key=encryption_key
        )
        self.agent = self.task_definition.add_container(
            "CloudWatchAgent",
            image=ecs.ContainerImage.from_registry(AGENT_IMAGE),
            environment={"CW_CONFIG_CONTENT": json.dumps(AGENT_CONFIG)},
            logging=ecs.LogDrivers.aws_logs(stream_prefix="cloudwatch-agent", log_group=self.log_group),
            essential=False,  # without it the answers go on; only their metrics wait for the agent's restart
        )
        # The agent writes with the task role: log streams and events in the metrics log group, nothing else
        self.metrics_log_group.grant_write(self.task_role)
        self.container = self.task_definition.add_container(
            "Gateway",
            image=image,
            command=uvicorn_command(settings.workers),
            port_mappings=[ecs.PortMapping(container_port=PORT)],
            logging=ecs.LogDrivers.aws_logs(stream_prefix="gateway", log_group=self.log_group),
            environment={
                "GATEWAY_BOTS_FILE": BOTS_FILE_IN_IMAGE,
                "GATEWAY_MEDIA_BUCKET": self.media_bucket.bucket.bucket_name,
                "GATEWAY_ACCESS_KEYS_SECRET_ARN": self.access_keys.secret_arn,
                "GATEWAY_ACCOUNT_ID": cdk.Aws.ACCOUNT_ID,
                "GATEWAY_EMF_AGENT_ENDPOINT": EMF_ENDPOINT,
                "GATEWAY_EMF_LOG_GROUP": self.metrics_log_group.log_group_name,
                # a task serves hundreds of streams: reading each at most this often is what lets one vCPU hold them
                "GATEWAY_STREAM_INTERVAL_MS": str(settings.stream_interval_ms),
                "AWS_DEFAULT_REGION": cdk.Aws.REGION,
                **self.team_keys.environment,
                **(batch.environment if batch else {}),
                "POWERTOOLS_SERVICE_NAME": SERVICE,
                "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
                "POWERTOOLS_LOG_LEVEL": "INFO",
                # No X-Ray daemon runs next to the app: the tracer stays off rather than sending to nowhere.
                "POWERTOOLS_TRACE_DISABLED": "true",
            },
        )
        self.container.add_container_dependencies(
            ecs.ContainerDependency(container=self.agent, condition=ecs.ContainerDependencyCondition.START)
        )
        acknowledge(
            self.execution_role,
            "AwsSolutions-IAM5[Resource::*]",
            "ecr:GetAuthorizationToken (pulling the image from the CDK assets repository) supports no resource-level "
            "permissions; the layer and image actions are limited to that repository.",
        )
        acknowledge(
            self.task_definition,
            "AwsSolutions-ECS2",
            "The environment holds no secrets: the bot file's path, the media bucket's name, the access-key secret's "
            "ARN (the keys are read from Secrets Manager at run time), the team-key table's name and the admin-key "
            "secret's ARN, the account, the region, Powertools settings, the metrics log group's name and the "
            "agent's address; the agent's: its configuration.",
        )

        self.access_logs_bucket = s3.Bucket(
            self,
            "LoadBalancerLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            lifecycle_rules=[s3.LifecycleRule(id="ExpireAccessLogs", expiration=ACCESS_LOG_EXPIRATION)],
        )
        acknowledge(
            self.access_logs_bucket,
            "AwsSolutions-S1",
            "This bucket receives the load balancer's access logs; logging the access to the access logs would only "
            "record Elastic Load Balancing's own deliveries.",
        )
        balancer_group = ec2.SecurityGroup(
            self,
            "LoadBalancerSecurityGroup",
            vpc=self.vpc,
            description="Model gateway load balancer: HTTPS (and HTTP, redirected) from clients",
            allow_all_outbound=False,
        )
        task_group = ec2.SecurityGroup(
            self,
            "TaskSecurityGroup",
            vpc=self.vpc,
            description="Model gateway tasks: the app port from the load balancer only, HTTPS out to AWS",
            allow_all_outbound=False,
        )
        task_group.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(HTTPS_PORT), "Bedrock, S3, Secrets Manager")
        self.load_balancer = elbv2.ApplicationLoadBalancer(
            self,
            "LoadBalancer",
            vpc=self.vpc,
            internet_facing=True,
            vpc_subnets=public,
            security_group=balancer_group,
            idle_timeout=GATEWAY_TIMEOUT,  # a streamed answer may pause; the Lambda option allows 15 minutes too
            drop_invalid_header_fields=True,
        )
        self.load_balancer.log_access_logs(self.access_logs_bucket, prefix="load-balancer")
        for port in (HTTPS_PORT, HTTP_PORT):
            balancer_group.add_ingress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(port), f"clients on {port}")
        acknowledge(
            balancer_group,
            "AwsSolutions-EC23",
            "The gateway is a public API: bot platforms (Poe) and OpenAI clients call it from changing addresses. "
            "Port 80 only redirects to 443; every request needs a valid access key (checked by the app).",
        )
        listener = self.load_balancer.add_listener(
            "Https",
            port=HTTPS_PORT,
            protocol=elbv2.ApplicationProtocol.HTTPS,
            certificates=[elbv2.ListenerCertificate.from_arn(settings.certificate_arn)],
            ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS,
            open=False,
        )
        self.load_balancer.add_redirect(source_port=HTTP_PORT, target_port=HTTPS_PORT, open=False)

        self.service = ecs.FargateService(
            self,
            "Service",
            cluster=self.cluster,
            task_definition=self.task_definition,
            desired_count=settings.min_tasks,
            min_healthy_percent=100,
            max_healthy_percent=200,
            assign_public_ip=False,
            vpc_subnets=private,
            security_groups=[task_group],
            circuit_breaker=ecs.DeploymentCircuitBreaker(rollback=True),
            platform_version=ecs.FargatePlatformVersion.LATEST,
            health_check_grace_period=cdk.Duration.seconds(60),
        )
        self.target_group = listener.add_targets(
            "Tasks",
            port=PORT,
            protocol=elbv2.ApplicationProtocol.HTTP,
            targets=[self.service],
            health_check=elbv2.HealthCheck(path="/health", healthy_http_codes="200"),
            deregistration_delay=cdk.Duration.seconds(120),  # in-flight streams finish while a task drains
        )
        scaling = self.service.auto_scale_task_count(min_capacity=settings.min_tasks, max_capacity=settings.max_tasks)
        scaling.scale_on_cpu_utilization("Cpu", target_utilization_percent=CPU_TARGET_PERCENT)
        scaling.scale_on_request_count(
            "Requests", requests_per_target=settings.requests_per_task, target_group=self.target_group
        )
        self.url = f"https://{self.load_balancer.load_balancer_dns_name}/"

    def _network(
        self, settings: GatewayServiceConfig, function_settings: FunctionConfig, encryption_key: kms.IKey | None
    ) -> tuple[ec2.IVpc, ec2.SubnetSelection, ec2.SubnetSelection]:
        """The VPC, the load balancer's subnets and the tasks' subnets."""
        if settings.vpc is None:
            vpc = ec2.Vpc(
                self,
                "Vpc",
                max_azs=2,
                nat_gateways=2,  # one per Availability Zone: the tasks of one zone do not depend on the other
                subnet_configuration=[
                    ec2.SubnetConfiguration(name="LoadBalancer", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
                    ec2.SubnetConfiguration(name="Tasks", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=20),
                ],
            )
            add_flow_logs(
                self,
                vpc,
                settings=function_settings,
                encryption_key=encryption_key,
                description="Delivers the flow logs of the model gateway's VPC",
            )
            return (
                vpc,
                ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
                ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            )
        existing = settings.vpc
        imported = ec2.Vpc.from_vpc_attributes(self, "Vpc", vpc_id=existing.vpc_id, availability_zones=cdk.Fn.get_azs())

        def pick(kind: str, ids: tuple[str, ...]) -> ec2.SubnetSelection:
            return ec2.SubnetSelection(
                subnets=[ec2.Subnet.from_subnet_id(self, f"{kind}{i}", subnet) for i, subnet in enumerate(ids)]
            )

        return imported, pick("Public", existing.public_subnet_ids), pick("Private", existing.private_subnet_ids)
