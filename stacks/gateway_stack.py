"""The model gateway stack: the ModelGateway construct and its outputs."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from constructs import Construct

from stacks.config import FunctionConfig, GatewayConfig, ObservabilityConfig, SecurityConfig, StorageConfig
from stacks.constructs.encryption_key import EncryptionKey
from stacks.constructs.gateway_batch_api import BatchApiTarget
from stacks.constructs.gateway_service import GatewayService
from stacks.constructs.invocation_logging import ModelInvocationLogging
from stacks.constructs.model_gateway import ModelGateway
from stacks.constructs.observability import GatewayObservability
from stacks.constructs.python_function import retention


class GatewayStack(cdk.Stack):
    """``gateway`` (ModelGateway: Lambda behind API Gateway, ``gatewayCompute=lambda``, the default) or ``service``
    (GatewayService: ECS Fargate behind an Application Load Balancer, ``gatewayCompute=fargate``; None otherwise), and
    ``observability`` (dashboard, alarms; ``observability`` defaults to ``ObservabilityConfig()``: no alarm mail);
    outputs ``ApiUrl``, ``MediaBucketName``, ``AccessKeysSecretArn`` and ``AdminKeySecretArn``.

    ``security.kms_key`` (``kmsKey``): the gateway's own customer-managed key (``"create"``) or the given key encrypts
    the media bucket and the log groups (``encryption_key``; None without ``kmsKey``). ``cfg.model_invocation_logging``
    adds ``invocation_logging`` (ModelInvocationLogging; None when off). ``batch`` (the batch stack's bucket and state
    machine, passed by ``stacks.synth.build_app``) serves the OpenAI Batch API; None: its routes answer 501."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        cfg: GatewayConfig,
        function_settings: FunctionConfig,
        storage: StorageConfig,
        observability: ObservabilityConfig | None = None,
        security: SecurityConfig | None = None,
        batch: BatchApiTarget | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, id_, **kwargs)
        security = security or SecurityConfig()
        self.encryption_key = (
            EncryptionKey(
                self,
                "EncryptionKey",
                security=security,
                description="Encrypts the model gateway's media bucket and logs",
                bedrock_batch_jobs=False,
            ).key
            if security.uses_kms
            else None
        )
        self._gateway: ModelGateway | None = None
        self.service: GatewayService | None = None
        compute: ModelGateway | GatewayService
        if cfg.service is not None:  # gatewayCompute=fargate
            compute = self.service = GatewayService(
                self,
                "GatewayService",
                cfg=cfg,
                settings=cfg.service,
                function_settings=function_settings,
                storage=storage,
                encryption_key=self.encryption_key,
                batch=batch,
            )
            url = self.service.url
        else:
            compute = self._gateway = ModelGateway(
                self,
                "ModelGateway",
                cfg=cfg,
                function_settings=function_settings,
                storage=storage,
                encryption_key=self.encryption_key,
                batch=batch,
            )
            url = self._gateway.api.url
        self.invocation_logging = (
            ModelInvocationLogging(
                self,
                "ModelInvocationLogging",
                retention=retention(function_settings),
                encryption_key=self.encryption_key,
            )
            if cfg.model_invocation_logging
            else None
        )
        cdk.CfnOutput(
            self,
            "ApiUrl",
            value=url,
            description="Gateway base URL: POST <url>poe/<bot>, <url>v1/chat/completions",
        )
        cdk.CfnOutput(
            self,
            "MediaBucketName",
            value=compute.media_bucket.bucket.bucket_name,
            description="Generated images and videos",
        )
        cdk.CfnOutput(
            self,
            "AccessKeysSecretArn",
            value=compute.access_keys.secret_arn,
            description='The access keys {"<access_key_ref>": "<key>"}: set with put-secret-value; read by cli smoke',
        )
        cdk.CfnOutput(
            self,
            "AdminKeySecretArn",
            value=compute.team_keys.admin_key.secret_arn,
            description="The admin key of /admin/ (team keys; docs/gateway/keys.md): read by cli keys --target aws",
        )
        self.observability = GatewayObservability(
            self,
            "Observability",
            api=self._gateway.api if self._gateway else None,
            function=self._gateway.function if self._gateway else None,
            service=self.service,
            bots=cfg.bots,
            cfg=observability or ObservabilityConfig(),
            key_budget_alarm_percent=cfg.keys.budget_alarm_percent,
        )

    @property
    def gateway(self) -> ModelGateway:
        """The Lambda gateway (``gatewayCompute=lambda``); with ``fargate`` the gateway is ``service``."""
        if self._gateway is None:
            raise AttributeError("gatewayCompute is fargate: the gateway is GatewayStack.service (GatewayService)")
        return self._gateway
