"""The model gateway stack: the ModelGateway construct and its outputs."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from constructs import Construct

from stacks.config import FunctionConfig, GatewayConfig, ObservabilityConfig, StorageConfig
from stacks.constructs.model_gateway import ModelGateway
from stacks.constructs.observability import GatewayObservability


class GatewayStack(cdk.Stack):
    """``gateway`` (ModelGateway) and ``observability`` (dashboard, alarms; ``observability`` defaults to
    ``ObservabilityConfig()``: no alarm mail); outputs ``ApiUrl`` and ``MediaBucketName``."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        cfg: GatewayConfig,
        function_settings: FunctionConfig,
        storage: StorageConfig,
        observability: ObservabilityConfig | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, id_, **kwargs)
        self.gateway = ModelGateway(self, "ModelGateway", cfg=cfg, function_settings=function_settings, storage=storage)
        cdk.CfnOutput(
            self,
            "ApiUrl",
            value=self.gateway.api.url,
            description="Gateway base URL: POST <url>poe/<bot>, <url>v1/chat/completions",
        )
        cdk.CfnOutput(
            self,
            "MediaBucketName",
            value=self.gateway.media_bucket.bucket.bucket_name,
            description="Generated images and videos",
        )
        self.observability = GatewayObservability(
            self,
            "Observability",
            api=self.gateway.api,
            function=self.gateway.function,
            bots=cfg.bots,
            cfg=observability or ObservabilityConfig(),
        )
