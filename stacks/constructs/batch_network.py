"""The network Bedrock batch jobs run in when ``batchVpc`` is set (CreateModelInvocationJob ``vpcConfig``).

Bedrock creates elastic network interfaces in the given subnets with the given security groups, and reaches the data
bucket through them (Bedrock docs: "Protect batch inference jobs using a VPC"): the VPC needs a route to S3, here an
S3 gateway endpoint in a created VPC.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks.config import BatchVpcConfig, FunctionConfig
from stacks.constructs.nag import acknowledge, acknowledge_wildcard_resource
from stacks.constructs.python_function import retention

HTTPS = ec2.Port.tcp(443)


def add_flow_logs(
    scope: Construct, vpc: ec2.Vpc, *, settings: FunctionConfig, encryption_key: kms.IKey | None, description: str
) -> None:
    """Flow logs of ``vpc`` into a log group (``FlowLogs``) through a delivery role (``FlowLogRole``) that trusts VPC
    Flow Logs for this account's flow logs only (confused-deputy conditions)."""
    flow_logs = logs.LogGroup(scope, "FlowLogs", retention=retention(settings), encryption_key=encryption_key)
    stack = cdk.Stack.of(scope)
    flow_log_role = iam.Role(
        scope,
        "FlowLogRole",
        assumed_by=iam.ServicePrincipal("vpc-flow-logs.amazonaws.com").with_conditions(
            {
                "StringEquals": {"aws:SourceAccount": stack.account},
                "ArnLike": {
                    "aws:SourceArn": stack.format_arn(service="ec2", resource="vpc-flow-log", resource_name="*")
                },
            }
        ),
        description=description,
    )
    vpc.add_flow_log("FlowLog", destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs, flow_log_role))


class BatchNetwork(Construct):
    """``subnet_ids`` and ``security_group`` for the jobs' ``vpcConfig``; ``vpc`` when the stack created it.

    ``{"create": true}``: a VPC with isolated subnets in two Availability Zones (no internet or NAT gateway), an S3
    gateway endpoint on their route tables and flow logs. ``{"vpcId", "subnetIds"}``: the given subnets; their route
    to S3 (an S3 gateway or interface endpoint) is the VPC owner's. The jobs' security group allows no inbound
    traffic and outbound HTTPS only (S3).

    Instead of ``cfg`` (``batchVpc``), constructs in other apps may pass ``existing_vpc`` (an ``ec2.IVpc`` object, e.g.
    a VPC of their own stack) and optionally ``vpc_subnets`` (default: its private subnets); its route to S3 is
    theirs. ``settings`` (the flow logs' retention) is needed only to create a VPC.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        cfg: BatchVpcConfig | None = None,
        settings: FunctionConfig | None = None,
        encryption_key: kms.IKey | None = None,
        existing_vpc: ec2.IVpc | None = None,
        vpc_subnets: ec2.SubnetSelection | None = None,
    ) -> None:
        super().__init__(scope, id_)
        if (cfg is None) == (existing_vpc is None):
            raise ValueError("BatchNetwork takes cfg (batchVpc) or existing_vpc, exactly one of them")
        if vpc_subnets is not None and existing_vpc is None:
            raise ValueError("BatchNetwork: vpc_subnets selects subnets of existing_vpc; pass existing_vpc too")
        self.vpc: ec2.Vpc | None = None
        if existing_vpc is not None:
            vpc: ec2.IVpc = existing_vpc
            pick = vpc_subnets or ec2.SubnetSelection()
            selected = existing_vpc.select_subnets(
                availability_zones=pick.availability_zones,
                one_per_az=pick.one_per_az,
                subnet_filters=pick.subnet_filters,
                subnet_group_name=pick.subnet_group_name,
                subnets=pick.subnets,
                subnet_type=pick.subnet_type,
            )
            self.subnet_ids: list[str] = list(selected.subnet_ids)
        elif cfg is not None and cfg.create:
            self.vpc = ec2.Vpc(
                self,
                "Vpc",
                max_azs=2,
                nat_gateways=0,
                subnet_configuration=[
                    ec2.SubnetConfiguration(name="Jobs", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24)
                ],
                gateway_endpoints={"S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3)},
            )
            add_flow_logs(
                self,
                self.vpc,
                settings=settings or FunctionConfig(),
                encryption_key=encryption_key,
                description="Delivers the flow logs of the Bedrock batch jobs' VPC",
            )
            vpc = self.vpc
            self.subnet_ids = list(self.vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED).subnet_ids)
        elif cfg is not None:
            vpc = ec2.Vpc.from_vpc_attributes(self, "Vpc", vpc_id=str(cfg.vpc_id), availability_zones=cdk.Fn.get_azs())
            self.subnet_ids = list(cfg.subnet_ids)
        self.security_group = ec2.SecurityGroup(
            self,
            "JobSecurityGroup",
            vpc=vpc,
            description="Bedrock batch inference jobs: no inbound, HTTPS out (S3)",
            allow_all_outbound=False,
        )
        self.security_group.add_egress_rule(ec2.Peer.any_ipv4(), HTTPS, "HTTPS to S3 through the VPC's route to it")

    def subnet_arns(self) -> list[str]:
        stack = cdk.Stack.of(self)
        return [stack.format_arn(service="ec2", resource="subnet", resource_name=s) for s in self.subnet_ids]

    def grant_bedrock_jobs(self, role: iam.Role, job_arns: str) -> None:
        """What Bedrock's service role needs for VPC jobs, as the Bedrock docs list it ("Attach VPC permissions to a
        batch inference role"): describe the network, create ENIs tagged for a job in these subnets with this
        security group, and delete or share only such ENIs."""
        stack = cdk.Stack.of(self)
        enis = stack.format_arn(service="ec2", resource="network-interface", resource_name="*")
        role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "ec2:DescribeNetworkInterfaces",
                    "ec2:DescribeVpcs",
                    "ec2:DescribeDhcpOptions",
                    "ec2:DescribeSubnets",
                    "ec2:DescribeSecurityGroups",
                ],
                resources=["*"],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["ec2:CreateNetworkInterface"],
                resources=[
                    enis,
                    *self.subnet_arns(),
                    stack.format_arn(
                        service="ec2", resource="security-group", resource_name=self.security_group.security_group_id
                    ),
                ],
                conditions={
                    "StringEquals": {"aws:RequestTag/BedrockManaged": "true"},
                    "ArnEquals": {"aws:RequestTag/BedrockModelInvocationJobArn": job_arns},
                },
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "ec2:CreateNetworkInterfacePermission",
                    "ec2:DeleteNetworkInterface",
                    "ec2:DeleteNetworkInterfacePermission",
                ],
                resources=["*"],
                conditions={
                    "StringEquals": {"ec2:Subnet": self.subnet_arns()},
                    "ArnEquals": {"ec2:ResourceTag/BedrockModelInvocationJobArn": job_arns},
                },
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["ec2:CreateTags"],
                resources=[enis],
                conditions={
                    "StringEquals": {"ec2:CreateAction": "CreateNetworkInterface"},
                    "ForAllValues:StringEquals": {"aws:TagKeys": ["BedrockManaged", "BedrockModelInvocationJobArn"]},
                },
            )
        )
        acknowledge(
            role,
            "AwsSolutions-IAM5[Resource::*]",
            "EC2 Describe* actions support no resource-level permissions; the ENI permission and deletion actions are "
            "limited by condition to this app's job subnets and to ENIs tagged with one of this account's invocation "
            "jobs, as the Bedrock docs prescribe.",
        )
        acknowledge_wildcard_resource(
            role,
            enis,
            "Bedrock creates the job's ENIs, whose ids are unknown until then; creation requires the BedrockManaged "
            "and job ARN request tags.",
        )
