"""The model gateway: a FastAPI app in Lambda (Lambda Web Adapter, response streaming) behind a REGIONAL REST API.

```
client ─> REST API (REGIONAL, stage throttling, access logs, X-Ray)
            ANY / and ANY /{proxy+} ─ LambdaIntegration(STREAM, 15 min) ─> Lambda: run.sh ─> uvicorn
            lambdas.gateway.app:app (under the Lambda Web Adapter layer) ─> Bedrock (the bots' models only)
                                                                          ─> media bucket (generated images/videos)
                                                                          ─> access-key secret (read at run time)
```
Authorization is the app's: each bot's Poe access key lives in the secret, never in the environment.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import region_info
from constructs import Construct, IConstruct

from lambdas.shared.model_families import ACCOUNT_RESOURCE_ARN_KINDS
from stacks.config import (
    WEB_ADAPTER_CHINA_ACCOUNTS,
    WEB_ADAPTER_CHINA_ARCHITECTURES,
    WEB_ADAPTER_LAYER_NAMES,
    WEB_ADAPTER_RELEASE,
    FunctionConfig,
    GatewayBot,
    GatewayConfig,
    StorageConfig,
    base_model_id,
    is_inference_profile,
    parse_model_arn,
    web_adapter_publishers,
)
from stacks.constructs.data_bucket import MULTIPART_UPLOAD_ABORT, DataBucket
from stacks.constructs.encryption_key import grant_key_through, grant_s3_objects_key
from stacks.constructs.gateway_batch_api import BatchApiTarget, grant_batch_api
from stacks.constructs.gateway_keys import GatewayKeys
from stacks.constructs.nag import acknowledge, acknowledge_wildcard_resource
from stacks.constructs.python_function import PythonFunction, retention

GATEWAY_TIMEOUT = cdk.Duration.minutes(15)  # the Lambda and API Gateway streaming maximum
APP = "lambdas.gateway.app:app"  # what run.sh serves with uvicorn
REQUIREMENTS = "requirements-gateway.txt"
# The services the gateway's clients call (lambdas/gateway/clients.py). No sts: Lambda puts the function role's
# credentials in the environment (Lambda developer guide, "Defined runtime environment variables"), which botocore's
# first credential provider reads, so no provider assumes a role (tests/infra/test_lambda_sdk.py).
SDK_SERVICES = ("bedrock-runtime", "s3", "secretsmanager", "dynamodb", "stepfunctions")
RUN_SCRIPT = "stacks/constructs/gateway_run.sh"  # staged as run.sh at the asset root: the function's handler
LAMBDA_TASK_ROOT = "/var/task"
PORT = 8080
# IAM actions and their resource types per the Service Authorization Reference (as cfn-lint's Policies.json carries it):
# Converse/ConverseStream are authorized as InvokeModel/InvokeModelWithResponseStream; CountTokens takes a
# foundation model. StartAsyncInvoke is no IAM action: it needs InvokeModel on the model and on an async-invoke ARN;
# GetAsyncInvoke takes an async-invoke ARN. ListAsyncInvokes takes no resource ('*' only), so it is not granted.
MODEL_ACTIONS = ("bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream", "bedrock:CountTokens")
# Video bots (Nova Reel) start and follow async invocations, whose ids exist only at run time.
ASYNC_INVOKE_ACTIONS = ("bedrock:InvokeModel", "bedrock:GetAsyncInvoke")
# PutObject for the generated images and for what Nova Reel writes on the caller's behalf (StartAsyncInvoke); GetObject
# signs the download URLs. The gateway uploads in one PutObject, never multipart: no AbortMultipartUpload.
MEDIA_ACTIONS = ("s3:GetObject", "s3:PutObject")
# GetSecretValue reads the access keys (lambdas/gateway/app.py); nothing describes the secret.
SECRET_ACTIONS = ("secretsmanager:GetSecretValue",)
# Converse/ConverseStream with guardrailConfig and ApplyGuardrail are authorized as ApplyGuardrail on the guardrail.
GUARDRAIL_ACTIONS = ("bedrock:ApplyGuardrail",)


def web_adapter_layer_arn(scope: Construct, cfg: GatewayConfig, architecture: str) -> str:
    """The Lambda Web Adapter layer (``arn:<partition>:lambda:<region>:<account>:layer:<name>:<version>``) for the
    stack's region and ``architecture``, as ``stacks/config/gateway.py`` (``web_adapter_publishers``) says it is
    published.

    A stack with a region: synth fails, naming the region and the fix, where no layer is published (a commercial
    region the release pipeline does not list, such as me-south-1, GovCloud and the other partitions, arm64 in
    China). A stack without one (env-agnostic synth, the region a token): the account is looked up by the region
    deployed to (``Fn::FindInMap`` on ``AWS::Region``, then the architecture) in a mapping of exactly the published
    layers, so that anywhere else CloudFormation stops before creating anything ("Unable to get mapping for
    WebAdapterLayerPublisher::<region>::<architecture>"). With ``gatewayWebAdapterLayerAccount`` the layer is that
    account's copy, wherever it is."""
    stack = cdk.Stack.of(scope)
    name, version, region = WEB_ADAPTER_LAYER_NAMES[architecture], cfg.web_adapter_layer_version, stack.region
    known = not cdk.Token.is_unresolved(region)
    partition = (known and region_info.RegionInfo.get(region).partition) or cdk.Aws.PARTITION
    if cfg.web_adapter_layer_account is not None:
        account = cfg.web_adapter_layer_account
    elif known:
        account = _web_adapter_publisher(region, architecture)
    else:
        account = _publisher_mapping(stack).find_in_map(cdk.Aws.REGION, _mapping_key(architecture))
    return f"arn:{partition}:lambda:{region}:{account}:layer:{name}:{version}"


def _mapping_key(architecture: str) -> str:
    return architecture.replace("_", "")  # "arm64", "x8664": CloudFormation mapping keys are alphanumeric


def _publisher_mapping(stack: cdk.Stack) -> cdk.CfnMapping:
    """One mapping per stack: region -> architecture -> the account that publishes the layer there."""
    found = stack.node.try_find_child("WebAdapterLayerPublisher")
    if isinstance(found, cdk.CfnMapping):
        return found
    table: dict[str, dict[str, str]] = {}
    for architecture in WEB_ADAPTER_LAYER_NAMES:
        for region, account in web_adapter_publishers(architecture).items():
            table.setdefault(region, {})[_mapping_key(architecture)] = account
    return cdk.CfnMapping(stack, "WebAdapterLayerPublisher", mapping=table)


def _web_adapter_publisher(region: str, architecture: str) -> str:
    """The account that publishes the Lambda Web Adapter layer in ``region`` for ``architecture``; a ValueError
    naming what to do where there is none."""
    partition = region_info.RegionInfo.get(region).partition
    own_copy = (
        "publish a copy of the layer (same name) in your account there and set gatewayWebAdapterLayerAccount "
        "(and gatewayWebAdapterLayerVersion) in cdk.json"
    )
    where = f"{WEB_ADAPTER_LAYER_NAMES[architecture]} ({architecture}, release {WEB_ADAPTER_RELEASE})"
    publishers = web_adapter_publishers(architecture)
    if region in publishers:
        return publishers[region]
    if region in WEB_ADAPTER_CHINA_ACCOUNTS:
        raise ValueError(
            f"the Lambda Web Adapter project publishes no {where} layer in {region}: only "
            f"{', '.join(WEB_ADAPTER_CHINA_ARCHITECTURES)} in China. Set lambdaArchitecture to x86_64 in cdk.json, "
            f"or {own_copy}"
        )
    raise ValueError(
        f"the Lambda Web Adapter project publishes no {where} layer in {region} (partition {partition or 'unknown'}): "
        f"deploy the gateway stack to a region that has it, or {own_copy}"
    )


def bot_model_arns(scope: IConstruct, cfg: GatewayConfig) -> list[str]:
    """The Bedrock ARNs the configured bots may invoke, and nothing else.

    Per bot, in its region (the stack's if it names none): a foundation model's ARN; a system inference profile's ARN
    plus its foundation model in ``bedrockRegions`` and the bot's region (region-less for ``global.``); an ARN as
    given, plus what its ``target_model_ids`` (models of a prompt router or application inference profile) expand
    to; the ``count_tokens_model_id`` foundation model.
    """
    stack = cdk.Stack.of(scope)
    partition = cdk.Aws.PARTITION

    def foundation_model(model_id: str, region: str) -> str:
        return f"arn:{partition}:bedrock:{region}::foundation-model/{model_id}"

    def profile_models(profile_id: str, region: str) -> list[str]:
        base = base_model_id(profile_id)
        regions = dict.fromkeys([*cfg.bedrock_regions, region])
        arns = [foundation_model(base, r) for r in regions]
        if profile_id.startswith("global."):
            arns.append(foundation_model(base, ""))
        return arns

    def expand(model_id: str, region: str) -> list[str]:
        parsed = parse_model_arn(model_id)
        if parsed is not None:
            kind, name, arn_region, account = parsed
            if not account and kind in ACCOUNT_RESOURCE_ARN_KINDS:  # left empty: the stack's account
                model_id = f"arn:{partition}:bedrock:{arn_region or region}:{stack.account}:{kind}/{name}"
            extra = profile_models(name, arn_region or region) if kind == "inference-profile" else []
            return [model_id, *extra]
        if is_inference_profile(model_id):
            profile = f"arn:{partition}:bedrock:{region}:{stack.account}:inference-profile/{model_id}"
            return [profile, *profile_models(model_id, region)]
        return [foundation_model(model_id, region)]

    arns: list[str] = []
    for bot in cfg.bots:
        region = _region(stack, bot)
        for model_id in (bot.model_id, *bot.target_model_ids):
            arns.extend(expand(model_id, region))
        if bot.count_tokens_model_id:
            arns.append(foundation_model(bot.count_tokens_model_id, region))
    return list(dict.fromkeys(arns))


def _region(stack: cdk.Stack, bot: GatewayBot) -> str:
    return bot.region or stack.region


def bot_guardrail_arns(scope: IConstruct, cfg: GatewayConfig) -> list[str]:
    """The ARNs of the bots' guardrails (``arn:<partition>:bedrock:<region>:<account>:guardrail/<id>``): an ARN as
    given, an id in the bot's region (the stack's if it names none) and the stack's account. Empty: no guardrail."""
    stack = cdk.Stack.of(scope)
    arns = [
        bot.guardrail_id
        if bot.guardrail_id.startswith("arn:")
        else stack.format_arn(
            service="bedrock",
            region=_region(stack, bot),
            resource="guardrail",
            resource_name=bot.guardrail_id,
            arn_format=cdk.ArnFormat.SLASH_RESOURCE_NAME,
        )
        for bot in cfg.bots
        if bot.guardrail_id
    ]
    return list(dict.fromkeys(arns))


class ModelGateway(Construct):
    """``function`` (PythonFunction), ``api``, ``media_bucket`` (DataBucket: ``media_bucket.bucket`` is the bucket),
    ``access_keys`` (the secret), ``team_keys`` (GatewayKeys: the team-key table and admin key) and ``access_logs``
    (the API's access log group).

    ``existing_media_bucket`` (any ``s3.IBucket``) replaces the media bucket the construct would create; its expiry of
    generated media is then its owner's. ``encryption_key`` (an existing ``kms.IKey`` whose policy lets CloudWatch Logs
    use it, as ``EncryptionKey`` makes it) encrypts a created media bucket (SSE-KMS), the log groups and the secret;
    the function may use it for media objects through S3. ``batch`` (the batch stack's bucket and state machine)
    serves the OpenAI Batch API over them (``stacks.constructs.gateway_batch_api``); None: the batch routes answer 501.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        cfg: GatewayConfig,
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
        bucket = self.media_bucket.bucket
        self.access_keys = access_key_secret(self, encryption_key=encryption_key)
        self.team_keys = GatewayKeys(self, "TeamKeys", cfg=cfg.keys, encryption_key=encryption_key)

        bots_file = _asset_bots_file(cfg.bots_file)
        extra_files = {"run.sh": RUN_SCRIPT}
        if bots_file != cfg.bots_file:  # a bot file outside lambdas/: stage it so IAM and the app read the same bots
            extra_files[bots_file] = cfg.bots_file
        architecture = function_settings.architecture
        self.function = PythonFunction(
            self,
            "Function",
            handler="run.sh",
            service="model-gateway",
            settings=function_settings,
            metrics_namespace="BedrockGateway",  # the gateway's own metrics, apart from the batch functions'
            encryption_key=encryption_key,
            memory_mb=cfg.memory_mb,
            timeout=GATEWAY_TIMEOUT,
            requirements=REQUIREMENTS,
            extra_files=extra_files,
            bundle_aws_sdk=SDK_SERVICES,
            layers=[
                lambda_.LayerVersion.from_layer_version_arn(
                    self, "WebAdapterLayer", web_adapter_layer_arn(self, cfg, architecture)
                )
            ],
            environment={
                # Lambda Web Adapter ("Zip Packages", "Response Streaming"): wrap the runtime, stream the response.
                "AWS_LAMBDA_EXEC_WRAPPER": "/opt/bootstrap",
                "AWS_LWA_INVOKE_MODE": "response_stream",
                "AWS_LWA_READINESS_CHECK_PATH": "/health",
                "PORT": str(PORT),
                "GATEWAY_BOTS_FILE": f"{LAMBDA_TASK_ROOT}/{bots_file}",
                "GATEWAY_MEDIA_BUCKET": bucket.bucket_name,
                "GATEWAY_ACCESS_KEYS_SECRET_ARN": self.access_keys.secret_arn,
                "GATEWAY_ACCOUNT_ID": cdk.Aws.ACCOUNT_ID,  # fills the account-less router/profile ARNs of bots.json
                **self.team_keys.environment,
                **(batch.environment if batch else {}),
            },
        )
        grant_gateway_app(
            self.function.role,
            cfg=cfg,
            bucket=bucket,
            access_keys=self.access_keys,
            encryption_key=encryption_key,
            team_keys=self.team_keys,
            batch=batch,
        )

        self.access_logs = logs.LogGroup(
            self, "ApiAccessLogs", retention=retention(function_settings), encryption_key=encryption_key
        )
        self.api = apigw.RestApi(
            self,
            "Api",
            description="Model gateway: Poe server bots and an OpenAI-compatible API on Amazon Bedrock (streaming)",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            cloud_watch_role=True,
            deploy_options=apigw.StageOptions(
                access_log_destination=apigw.LogGroupLogDestination(self.access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=False,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=False,
                ),
                logging_level=apigw.MethodLoggingLevel.ERROR,
                metrics_enabled=True,
                tracing_enabled=True,
                throttling_rate_limit=cfg.throttling_rate_limit,
                throttling_burst_limit=cfg.throttling_burst_limit,
            ),
        )
        # The app validates bodies (pydantic) and authenticates; the validator checks the parameters a method declares
        # and the body of methods with a request model (API Gateway validates nothing else).
        validator = self.api.add_request_validator(
            "RequestValidator", validate_request_parameters=True, validate_request_body=True
        )
        integration = apigw.LambdaIntegration(
            self.function.function,
            proxy=True,
            allow_test_invoke=False,
            response_transfer_mode=apigw.ResponseTransferMode.STREAM,
            timeout=GATEWAY_TIMEOUT,
        )
        # Every route of the app (POST /poe/{bot}, /v1/..., GET /health) reaches the function; the app routes.
        self.api.root.add_method("ANY", integration, request_validator=validator)
        self.api.root.add_proxy(any_method=False).add_method("ANY", integration, request_validator=validator)
        self._acknowledge_api()

    def _acknowledge_api(self) -> None:
        acknowledge(
            self.api.deployment_stage,
            "AwsSolutions-APIG3",
            "No WAF web ACL by default: bot platforms (Poe) call from changing addresses, the stage is throttled and "
            "the app rejects requests without a valid access key. Associate a web ACL per deployment if required.",
        )
        reasons = {
            "AwsSolutions-APIG4": "Authorization is done in the app: every request carries a per-bot access key that "
            "the function checks against the keys in Secrets Manager (Poe sends a Bearer key, not IAM or Cognito).",
            "AwsSolutions-COG4": "No Cognito: bot platforms authenticate with the per-bot access keys kept in Secrets "
            "Manager and checked by the app.",
        }
        for method in self.api.methods:
            for finding, reason in reasons.items():
                acknowledge(method, finding, reason)
        role = self.api.node.try_find_child("CloudWatchRole")
        if role is not None:
            acknowledge(
                role,
                "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AmazonAPIGatewayPushToCloudWatchLogs]",
                "API Gateway's account-level CloudWatch role (for the stage's execution logs) uses the AWS managed "
                "policy made for it.",
            )


def _asset_bots_file(bots_file: str) -> str:
    """Where the bot file is in the asset: as is under ``lambdas/`` (staged anyway), else ``gateway-bots.json``."""
    return bots_file if bots_file.startswith("lambdas/") else "gateway-bots.json"


def media_bucket(
    scope: Construct,
    *,
    cfg: GatewayConfig,
    storage: StorageConfig,
    existing_bucket: s3.IBucket | None = None,
    encryption_key: kms.IKey | None = None,
) -> DataBucket:
    """The gateway's media bucket (``MediaBucket`` in ``scope``): generated images and videos, expired after
    ``gatewayMediaExpirationDays``; ``existing_bucket`` instead, whose expiry is then its owner's."""
    return DataBucket(
        scope,
        "MediaBucket",
        settings=storage,
        existing_bucket=existing_bucket,
        encryption_key=encryption_key if existing_bucket is None else None,
        bucket_props=None
        if existing_bucket is not None
        else {
            "server_access_logs_prefix": "media-bucket/",
            "lifecycle_rules": [
                s3.LifecycleRule(id="ExpireMedia", expiration=cdk.Duration.days(cfg.media_expiration_days)),
                s3.LifecycleRule(
                    id="AbortIncompleteMultipartUploads",
                    abort_incomplete_multipart_upload_after=MULTIPART_UPLOAD_ABORT,
                ),
            ],
        },
    )


def access_key_secret(scope: Construct, *, encryption_key: kms.IKey | None = None) -> secretsmanager.Secret:
    """The secret holding the bots' access keys (``AccessKeys`` in ``scope``), read by the app at run time."""
    secret = secretsmanager.Secret(
        scope,
        "AccessKeys",
        encryption_key=encryption_key,
        description='Gateway access keys as JSON {"<access_key_ref>": "<key>"} (refs from the bot file); '
        "set them with put-secret-value",
    )
    acknowledge(
        secret,
        "AwsSolutions-SMG4",
        "The access keys are issued by the bot platform (Poe) per bot and can only be rotated there; an operator "
        "puts the new keys into this secret, so there is no rotation Lambda.",
    )
    return secret


def grant_gateway_app(
    role: iam.IRole,
    *,
    cfg: GatewayConfig,
    bucket: s3.IBucket,
    access_keys: secretsmanager.ISecret,
    encryption_key: kms.IKey | None = None,
    team_keys: GatewayKeys | None = None,
    batch: BatchApiTarget | None = None,
) -> None:
    """What the gateway app does with AWS, granted to ``role`` (the Lambda function's or the Fargate task's): read the
    access keys, invoke the bots' models (and their guardrails and async invocations), write and presign media, use
    the team-key table and read the admin key (``team_keys``), use ``encryption_key`` through S3, Secrets
    Manager and DynamoDB, and serve the Batch API over ``batch``."""
    if batch is not None:
        grant_batch_api(role, batch)
    role.add_to_principal_policy(iam.PolicyStatement(actions=list(SECRET_ACTIONS), resources=[access_keys.secret_arn]))
    if team_keys is not None:
        team_keys.grant(role)
    role.add_to_principal_policy(iam.PolicyStatement(actions=list(MODEL_ACTIONS), resources=bot_model_arns(role, cfg)))
    stack = cdk.Stack.of(role)
    video_regions = dict.fromkeys(_region(stack, bot) for bot in cfg.bots if bot.modality == "video")
    async_invokes = [
        stack.format_arn(
            service="bedrock",
            region=region,
            resource="async-invoke",
            resource_name="*",
            arn_format=cdk.ArnFormat.SLASH_RESOURCE_NAME,
        )
        for region in video_regions
    ]
    if async_invokes:
        role.add_to_principal_policy(iam.PolicyStatement(actions=list(ASYNC_INVOKE_ACTIONS), resources=async_invokes))
        for arn in async_invokes:
            acknowledge_wildcard_resource(
                role,
                arn,
                "Video bots follow their own async invocations (Nova Reel), whose ids exist only after "
                "StartAsyncInvoke; limited to this account and the video bots' regions.",
            )
    guardrails = bot_guardrail_arns(role, cfg)
    if guardrails:  # the configured guardrails only, and no statement without one
        role.add_to_principal_policy(iam.PolicyStatement(actions=list(GUARDRAIL_ACTIONS), resources=guardrails))
    media = bucket.arn_for_objects("*")
    role.add_to_principal_policy(iam.PolicyStatement(actions=list(MEDIA_ACTIONS), resources=[media]))
    acknowledge_wildcard_resource(
        role,
        media,
        "The gateway writes generated images and videos under keys made per request (media/<bot>/<date>/<id>) "
        "and presigns them for download: the object names are only known at run time.",
    )
    if encryption_key is not None:
        grant_s3_objects_key(encryption_key, role)  # write and presign SSE-KMS media
        grant_key_through(encryption_key, role, "secretsmanager", ["kms:Decrypt"])  # the keys
