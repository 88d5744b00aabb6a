"""``python -m cli gateway``: the model gateway under uvicorn, locally against the Bedrock emulator.

    python -m cli gateway --port 8080
    # Poe:    POST http://127.0.0.1:8080/poe/<bot>          Authorization: Bearer <key>
    # OpenAI: OPENAI_BASE_URL=http://127.0.0.1:8080/v1 OPENAI_API_KEY=<key>

``--target local`` (default) starts the emulator (with a moto server beside it holding the media bucket and the
team-key table) and points the app's clients at them through ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME`` /
``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL_DYNAMODB``; with the Batch API (the default, ``--no-batch`` to start
faster without it) the emulator and the moto server are the local runtime's (``local.runner.LocalRuntime``: the
synthesized batch state machine in moto's Step Functions, its handlers in-process), so ``/v1/batches`` runs real
batch runs locally. ``--target aws`` serves the same app against the Bedrock of your current AWS credentials (set
``GATEWAY_MEDIA_BUCKET`` for image and video bots, ``GATEWAY_BATCH_BUCKET`` and ``GATEWAY_BATCH_STATE_MACHINE_ARN``
for the Batch API).
"""

from __future__ import annotations

import argparse
import os
import secrets
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from cli.batch import EXIT_BAD_INPUT, FAULTS_HELP, fail
from local.process import temporary_environment, wait_until_interrupted

MEDIA_BUCKET = "gateway-media"  # in the local moto S3: generated images and videos
FAKE_AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def add_parser(commands: Any) -> None:
    p = commands.add_parser("gateway", help="serve the model gateway (Poe + OpenAI-compatible), locally by default")
    p.add_argument("--port", type=int, default=8080, help="gateway port (default 8080; 0: any free port)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--target", choices=("local", "aws"), default="local", help="local emulator (default) or AWS")
    p.add_argument("--emulator-port", type=int, default=0, help="Bedrock emulator port (default: any free port)")
    p.add_argument("--s3-port", type=int, default=0, help="moto S3 port beside the emulator (default: any free port)")
    p.add_argument("--faults", default="", metavar="SPEC", help=FAULTS_HELP)
    p.add_argument("--access-key", help="the key clients send (default: $GATEWAY_ACCESS_KEY or a new random one)")
    p.add_argument("--admin-key", help="the admin key of /admin/ (default: $GATEWAY_ADMIN_KEY or a new random one)")
    p.add_argument("--ask", metavar="PROMPT", help="stream one answer through the Poe route, print it and stop")
    p.add_argument("--bot", default="router-claude", help="the bot --ask talks to (default: router-claude)")
    p.add_argument(
        "--no-batch",
        action="store_true",
        help="local: no Batch API (/v1/batches answers 501), so no batch state machine is synthesized at start",
    )
    p.set_defaults(func=run)


@dataclass(frozen=True)
class RunningGateway:
    url: str
    access_key: str
    emulator_url: str | None
    models: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # bot -> (model id, region)
    admin_key: str = ""  # the admin API's key (team keys); empty: the admin API is off


@contextmanager
def local_gateway(
    port: int = 0,
    *,
    host: str = "127.0.0.1",
    target: str = "local",
    emulator_port: int = 0,
    s3_port: int = 0,
    faults: dict[str, Any] | None = None,
    access_key: str | None = None,
    log_level: str = "warning",
    admin_key: str | None = None,
    batch: bool = False,
    step_seconds: float = 1.0,
) -> Iterator[RunningGateway]:
    """The gateway served by uvicorn from a background thread (and, for ``local``, the emulator it talks to).
    ``log_level``: uvicorn's (``info``, as the deployed function's ``python -m uvicorn`` runs, logs each request).
    ``batch`` (local): the Batch API over a local runtime (the synthesized state machine, handlers in-process), whose
    emulator keeps each batch job status ``step_seconds``."""
    import logging

    import uvicorn

    from lambdas.gateway.app import create_app
    from lambdas.gateway.config import GatewaySettings

    key = access_key or os.environ.get("GATEWAY_ACCESS_KEY") or secrets.token_urlsafe(24)[:32]
    with ExitStack() as stack:
        env = {"GATEWAY_ACCESS_KEY": key}
        emulator_url = None
        if target == "local":
            from local.emulator.standalone import standalone
            from local.key_table import create_key_table

            logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's S3 server logs every request
            for name, value in FAKE_AWS_ENV.items():
                os.environ.setdefault(name, value)
            if batch:
                runtime = stack.enter_context(local_batch_runtime(step_seconds))
                emulator = runtime.emulator
                moto_url = runtime.http_endpoint()  # the runtime's own moto state, over HTTP
                env |= {
                    "AWS_ENDPOINT_URL_SFN": moto_url,
                    "GATEWAY_BATCH_BUCKET": runtime.bucket,
                    "GATEWAY_BATCH_STATE_MACHINE_ARN": runtime.state_machine_arn,
                    "GATEWAY_BATCH_REGION": LOCAL_REGION,
                }
                _s3_client(moto_url).create_bucket(Bucket=MEDIA_BUCKET)
            else:
                emulator = stack.enter_context(standalone(emulator_port, host=host, s3_port=s3_port, step_seconds=1))
                moto_url = emulator.state.s3.meta.endpoint_url  # a moto server: its DynamoDB holds the team-key table
                emulator.state.s3.create_bucket(Bucket=MEDIA_BUCKET)
            emulator.state.faults.update(faults or {})
            emulator_url = emulator.endpoint_url
            admin = admin_key or os.environ.get("GATEWAY_ADMIN_KEY") or secrets.token_urlsafe(24)[:32]
            env |= {
                "AWS_ENDPOINT_URL_DYNAMODB": moto_url,
                "GATEWAY_KEYS_TABLE": create_key_table(moto_url),
                "GATEWAY_ADMIN_KEY": admin,
                "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": emulator_url,
                "AWS_ENDPOINT_URL_S3": moto_url,
                "GATEWAY_MEDIA_BUCKET": MEDIA_BUCKET,
                "GATEWAY_VIDEO_POLL_SECONDS": "1",
            }
        else:  # missing credentials or region: cli.aws_errors.AwsSetupError, one line from cli.__main__
            from cli.aws_errors import aws_session

            session = aws_session()
            if not os.environ.get("GATEWAY_ACCOUNT_ID"):  # account-less router ARNs in bots.json name this account's
                env["GATEWAY_ACCOUNT_ID"] = session.client("sts").get_caller_identity()["Account"]
        stack.enter_context(temporary_environment(env))
        settings = GatewaySettings.from_env()
        app = create_app(settings)
        server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="on"))
        thread = threading.Thread(target=server.run, name="gateway", daemon=True)
        thread.start()
        stack.callback(thread.join, 10)
        stack.callback(setattr, server, "should_exit", True)
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the gateway did not start on {host}:{port}")
            time.sleep(0.02)
        bound = server.servers[0].sockets[0].getsockname()[1]
        models = {name: (bot.model_id, bot.region) for name, bot in settings.bots.items()}
        yield RunningGateway(f"http://{host}:{bound}", key, emulator_url, models, settings.team_keys.admin_key)


LOCAL_REGION = "us-east-1"  # the local runtime's region (local.runner.REGION)


@contextmanager
def local_batch_runtime(step_seconds: float) -> Iterator[Any]:
    """The local runtime the Batch API runs batches on (``local.runner.LocalRuntime``)."""
    from local.runner import LocalRuntime, RuntimeOptions

    with LocalRuntime(RuntimeOptions(step_seconds=step_seconds)) as runtime:
        yield runtime


def _s3_client(endpoint: str) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name=LOCAL_REGION)


def run(args: argparse.Namespace) -> int:
    if args.ask:  # one answer on the terminal: keep the gateway's own logs and metrics out of it
        os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
        os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    from lambdas.gateway.config import BotConfigError
    from local.emulator.faults import FaultSpecError, parse_faults

    try:
        faults = parse_faults(args.faults)
    except FaultSpecError as exc:
        return fail(f"--faults: {exc}", EXIT_BAD_INPUT)
    try:
        gateway = local_gateway(
            0 if args.ask else args.port,
            host=args.host,
            target=args.target,
            emulator_port=args.emulator_port,
            s3_port=args.s3_port,
            faults=faults,
            access_key=args.access_key,
            admin_key=args.admin_key,
            batch=not args.no_batch and not args.ask,  # --ask: one answer, no batch runtime to start
        )
        with gateway as running:
            if args.ask:
                return ask(running, args.bot, args.ask)
            print(f"Gateway:     {running.url}  (target: {args.target})")
            if running.emulator_url:
                print(f"Emulator:    {running.emulator_url}  (text answers echo the last user message)")
            print(f"Access key:  {running.access_key}")
            if running.admin_key:
                print(f"Admin key:   {running.admin_key}   (team keys: python -m cli keys create <team> --help)")
            print(f"Poe:         POST {running.url}/poe/<bot>   (Authorization: Bearer <access key>)")
            print(f"OpenAI:      OPENAI_BASE_URL={running.url}/v1 OPENAI_API_KEY={running.access_key}")
            print(f"Bots:        curl -H 'Authorization: Bearer {running.access_key}' {running.url}/v1/models")
            if not args.no_batch:
                print(f"Batch API:   {running.url}/v1/files, {running.url}/v1/batches  (runs on the local runtime)")
            wait_until_interrupted()
    except BotConfigError as exc:
        return fail(str(exc), EXIT_BAD_INPUT)
    return 0


class GatewayHttpError(Exception):
    """The gateway answered a request with an HTTP error status (before any stream)."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"the gateway answered {status}: {body[:300]}")
        self.status = status
        self.body = body


def post_stream(base_url: str, path: str, body: dict[str, Any], access_key: str) -> Iterator[tuple[str, str]]:
    """POST ``body`` as JSON to ``base_url`` + ``path`` (http or https, the base may carry a path such as an API
    stage) and yield the server-sent events as (event name, data) pairs as they arrive; an error status raises
    ``GatewayHttpError``. Stdlib only: no client library."""
    import http.client
    import json
    from urllib.parse import urlsplit

    url = urlsplit(base_url)
    kind = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
    connection = kind(url.hostname or "127.0.0.1", url.port, timeout=120)
    headers = {"Authorization": f"Bearer {access_key}", "Content-Type": "application/json"}
    try:
        connection.request("POST", f"{url.path.rstrip('/')}{path}", body=json.dumps(body), headers=headers)
        response = connection.getresponse()
        if response.status != 200:
            raise GatewayHttpError(response.status, response.read().decode(errors="replace"))
        event = ""
        for raw in response:
            line = raw.decode().rstrip("\r\n")
            if line.startswith("event: "):
                event = line[len("event: ") :]
            elif line.startswith("data: "):
                yield event, line[len("data: ") :]
                event = ""
    finally:
        connection.close()


def poe_query(prompt: str) -> dict[str, Any]:
    """A Poe protocol ``query`` request with one user message."""
    return {
        "version": "1.2",
        "type": "query",
        "query": [{"role": "user", "content": prompt, "content_type": "text/markdown"}],
        "user_id": "u-demo",
        "conversation_id": "c-demo",
        "message_id": "m-demo",
    }


def ask(running: RunningGateway, bot: str, prompt: str) -> int:
    """One Poe query over real HTTP, printing each text event as it arrives.

    Bedrock refusing the bot's model (no model access) raises ``AwsSetupError``: one line and exit 2."""
    import itertools
    import json

    from cli.aws_errors import AwsSetupError, model_access_fix, names_model_access

    def no_model_access() -> AwsSetupError:
        model_id, region = running.models.get(bot, (f"of bot '{bot}'", ""))
        return AwsSetupError(model_access_fix(model_id, region or None))

    code = 0
    try:
        events = post_stream(running.url, f"/poe/{bot}", poe_query(prompt), running.access_key)
        first = next(events, None)
        print(f"gateway {running.url}/poe/{bot} streams (Poe SSE events):")
        for event, raw in itertools.chain([first] if first else [], events):
            data = json.loads(raw)
            if event == "text":
                print(data["text"], end="", flush=True)
            elif event == "error":
                if names_model_access(data.get("text")):
                    print(flush=True)
                    raise no_model_access()
                print(f"\n[error] {data.get('text')}", flush=True)
                code = 1
            elif event == "json" and (data.get("bedrock") or {}).get("invoked_model_id"):  # a router's choice
                print(f"\n[routed to {data['bedrock']['invoked_model_id']}]", end="", flush=True)
            elif event in ("meta", "done"):
                print(f"[{event}]" if event == "meta" else "\n[done]", end=" " if event == "meta" else "\n")
    except GatewayHttpError as exc:
        if names_model_access(exc.body):
            raise no_model_access() from None
        return fail(str(exc), 1)
    return code
