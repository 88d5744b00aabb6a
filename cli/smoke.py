"""``python -m cli smoke``: check a deployment end to end at minimal cost, each step printed as passed or failed.

Steps: one Poe and one OpenAI request through the gateway (its cheapest priced text bot), then a 100-record batch
run (Bedrock's minimum records per job) on the cheapest allowed text model, then the removal of that run's S3 data
(its input under ``inputs/`` and everything under ``runs/<run>/``). Exit 0 when every step passed, 1 when one failed,
2 when one failed for want of setup (model access, the gateway key) or the setup was missing before any step
(credentials, region, stacks: one line from ``cli.__main__``).

``--target aws`` uses the deployed stacks (their CloudFormation outputs) with your credentials and the gateway key
from the stack's Secrets Manager secret (or ``--access-key``); ``--target local`` runs the same steps against the local
runtime (moto + the Bedrock emulator) and the local gateway. The models are computed, not fixed: ``allowedModelIds`` of
``cdk.json`` priced with ``lambdas/shared/prices.json`` (and cdk.json ``prices``), and the bots' own ``prices``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cli.aws_errors import EXIT_SETUP, AwsSetupError, explain, model_access_fix, names_model_access
from cli.batch import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, FAULTS_HELP, fail
from lambdas.shared.models import MIN_RECORDS_PER_JOB

SMOKE_RECORDS = MIN_RECORDS_PER_JOB  # 100: Bedrock's minimum number of records per batch inference job
SMOKE_PROMPT_ID = "joke_about_topic"
SMOKE_MAX_TOKENS = 32  # per answer, batch and gateway: the smallest answer that still shows the model works
SMOKE_INPUT_TOKENS = 20  # a rendered joke_about_topic prompt, about; only used to rank the models by price
SMOKE_PROMPT = "Reply with one short sentence: is this gateway working?"
POLL_SECONDS = {"local": 0.2, "aws": 10.0}  # how often the batch execution is described


@dataclass(frozen=True)
class Step:
    name: str
    passed: bool
    detail: str
    fix: str = ""
    setup: bool = False  # failed for want of setup (model access, the gateway key), not a fault of the deployment

    def line(self) -> str:
        if self.passed:
            return f"PASS  {self.name}: {self.detail}"
        return f"FAIL  {self.name}: {self.detail}" + (f"; fix: {self.fix}" if self.fix else "")


@dataclass(frozen=True)
class Choice:
    """What the smoke test runs on, and why (printed)."""

    model_id: str
    model_reason: str
    bot: str
    bot_reason: str
    key_ref: str
    bot_model: tuple[str, str]  # the bot's model id and region


def add_parser(commands: Any) -> None:
    p = commands.add_parser(
        "smoke", help="check a deployment end to end: a 100-record batch run, one Poe and one OpenAI request"
    )
    p.add_argument("--target", choices=("local", "aws"), default="aws", help="aws (default): the deployed stacks")
    p.add_argument("--stack-name", default="BedrockBatchInference", help="the batch stack (--target aws)")
    p.add_argument("--gateway-stack-name", default="BedrockModelGateway", help="the gateway stack (--target aws)")
    p.add_argument("--model-id", help="batch model (default: the cheapest text model of allowedModelIds)")
    p.add_argument("--bot", help="gateway bot (default: the cheapest priced text bot of the bot file)")
    p.add_argument(
        "--access-key", help="the gateway key to send (default: aws: the bot's key in the stack's secret; local: ours)"
    )
    p.add_argument("--faults", default="", metavar="SPEC", help=f"--target local only: {FAULTS_HELP}")
    p.add_argument("--quiet", action="store_true", help="no batch progress display")
    p.set_defaults(func=run)


# -- what to run on ---------------------------------------------------------------------------------------------------
def project_context() -> dict[str, Any]:
    from stacks.config import PROJECT_ROOT

    return dict(json.loads((PROJECT_ROOT / "cdk.json").read_text()).get("context", {}))


def cheapest_text_model(allowed: Sequence[str], prices: Any) -> tuple[str, float]:
    """The allowed text model whose 100-record smoke run costs least at batch prices (ties: the first listed), and
    that cost. Embedding models and models without a price are left out; none left is an AwsSetupError."""
    from lambdas.shared.model_families import ModelFamilyError, resolve

    ranked = []
    for index, model_id in enumerate(allowed):
        try:
            if resolve(model_id).output_kind != "text":
                continue
        except ModelFamilyError:
            continue
        found = prices.price_for(model_id)
        if found is not None:
            cost = found[1].batch_cost(SMOKE_RECORDS * SMOKE_INPUT_TOKENS, SMOKE_RECORDS * SMOKE_MAX_TOKENS)
            ranked.append((cost, index, model_id))
    if not ranked:
        raise AwsSetupError(
            "no text model of allowedModelIds (cdk.json) has a price in lambdas/shared/prices.json: add one there, "
            "or pass --model-id"
        )
    cost, _index, model_id = min(ranked)
    return model_id, cost


def cheapest_text_bot(bots: Mapping[str, Any]) -> tuple[str, float]:
    """The text bot with prices whose smoke answer costs least (ties: the first in the file), and that cost. Bots
    without prices (prompt routers: the model they pick decides) are left out."""
    ranked = []
    for index, (name, bot) in enumerate(bots.items()):
        prices = bot.prices
        if bot.modality != "text" or not (prices.input_per_1k or prices.output_per_1k):
            continue
        cost = (SMOKE_INPUT_TOKENS * prices.input_per_1k + SMOKE_MAX_TOKENS * prices.output_per_1k) / 1000
        ranked.append((cost, index, name))
    if not ranked:
        raise AwsSetupError("no text bot of the bot file has prices: give one 'prices', or pass --bot")
    cost, _index, name = min(ranked)
    return name, cost


def choose(args: argparse.Namespace) -> Choice:
    from lambdas.gateway.config import load_bots
    from lambdas.shared.pricing import PriceTable, format_usd
    from stacks.config import DEFAULT_GATEWAY_BOTS_FILE, PROJECT_ROOT, AppConfig

    context = project_context()
    try:
        batch = AppConfig.from_context(context).batch
        bots = load_bots(PROJECT_ROOT / str(context.get("gatewayBotsFile", DEFAULT_GATEWAY_BOTS_FILE)))
    except ValueError as exc:  # config.py and BotConfigError name the key or bot, the value and the fix
        raise AwsSetupError(" ".join(str(exc).split())) from None
    if args.model_id:
        model_id, model_reason = args.model_id, "--model-id"
    else:
        overrides = {m: {"input_per_1m": i, "output_per_1m": o} for m, i, o in batch.prices}
        model_id, cost = cheapest_text_model(batch.allowed_model_ids, PriceTable.load(overrides=overrides))
        model_reason = f"the cheapest text model of allowedModelIds, about {format_usd(cost)} for this run"
    if args.bot:
        if args.bot not in bots:
            raise AwsSetupError(f"--bot {args.bot}: no such bot in the bot file; use one of {sorted(bots)}")
        bot, bot_reason = args.bot, "--bot"
    else:
        bot, cost = cheapest_text_bot(bots)
        bot_reason = f"the cheapest priced text bot, about {format_usd(cost * 1000)} per 1,000 answers"
    config = bots[bot]
    return Choice(model_id, model_reason, bot, bot_reason, config.access_key_ref, (config.model_id, config.region))


# -- the steps --------------------------------------------------------------------------------------------------------
def gateway_failure(name: str, error: Exception, choice: Choice, key_fix: str) -> Step:
    """A failed gateway request, with the fix its cause calls for."""
    from cli.gateway import GatewayHttpError

    if isinstance(error, GatewayHttpError):
        if error.status in (401, 403) and not names_model_access(error.body):
            return Step(name, False, f"the gateway refused the key (HTTP {error.status})", key_fix, setup=True)
        detail = f"HTTP {error.status}: {error.body[:200]}"
    else:
        detail = f"{type(error).__name__}: {error}"
    if names_model_access(detail):
        return Step(name, False, detail, model_access_fix(*choice.bot_model), setup=True)
    return Step(name, False, detail, "see the gateway's logs (the function's log group) for this request")


def poe_step(url: str, key: str, choice: Choice, key_fix: str) -> Step:
    from cli.gateway import poe_query, post_stream

    name = "poe request"
    text, done, errors = "", False, []
    try:
        for event, raw in post_stream(url, f"/poe/{choice.bot}", poe_query(SMOKE_PROMPT), key):
            data = json.loads(raw) if raw.startswith("{") else {}
            if event == "text":
                text += str(data.get("text", ""))
            elif event == "error":
                errors.append(str(data.get("text", raw)))
            elif event == "done":
                done = True
    except Exception as exc:  # any failure is this step's result, printed with its fix
        return gateway_failure(name, exc, choice, key_fix)
    if errors:
        return gateway_failure(name, RuntimeError(f"error event: {errors[0]}"), choice, key_fix)
    if not text or not done:
        detail = f"the stream ended without {'text' if not text else 'a done event'}"
        return Step(name, False, detail, "see the gateway's logs (the function's log group) for this request")
    return Step(name, True, f"bot {choice.bot} streamed {len(text)} characters, then done")


def openai_step(url: str, key: str, choice: Choice, key_fix: str) -> Step:
    from cli.gateway import post_stream

    name = "openai request"
    body = {
        "model": choice.bot,
        "messages": [{"role": "user", "content": SMOKE_PROMPT}],
        "max_tokens": SMOKE_MAX_TOKENS,
        "stream": True,
    }
    text, done = "", False
    try:
        for _event, raw in post_stream(url, "/v1/chat/completions", body, key):
            if raw.strip() == "[DONE]":
                done = True
                continue
            chunk = json.loads(raw)
            if chunk.get("error"):
                raise RuntimeError(f"error chunk: {chunk['error'].get('message', chunk['error'])}")
            for item in chunk.get("choices") or []:
                text += str((item.get("delta") or {}).get("content") or "")
    except Exception as exc:  # any failure is this step's result, printed with its fix
        return gateway_failure(name, exc, choice, key_fix)
    if not text or not done:
        detail = f"the stream ended without {'content' if not text else '[DONE]'}"
        return Step(name, False, detail, "see the gateway's logs (the function's log group) for this request")
    return Step(name, True, f"model {choice.bot} streamed {len(text)} characters, then [DONE]")


def smoke_input(directory: Path) -> Path:
    """A CSV of SMOKE_RECORDS topics, named uniquely so that it never replaces an input of the bucket."""
    path = directory / f"smoke-{uuid.uuid4().hex[:12]}.csv"
    path.write_text("topic\n" + "".join(f"smoke test topic {i}\n" for i in range(SMOKE_RECORDS)))
    return path


def batch_steps(target: Any, choice: Choice, *, region: str | None, poll_seconds: float, progress: bool) -> list[Step]:
    """Run the batch on ``target`` (a ``local.executions.StateMachineRuns``), check it, then delete its data; each
    step is printed when it ends. A run left unfinished (Ctrl-C, credentials expiring during the wait) keeps its
    data: the execution still uses it."""
    from cli.progress import BatchProgress

    steps = []
    with tempfile.TemporaryDirectory(prefix="smoke-") as tmp:
        workdir = Path(tmp)
        input_uri = target.upload_input(smoke_input(workdir))
        run_id: str | None = None
        finished = False
        try:
            execution_arn = target.start(
                {
                    "model_id": choice.model_id,
                    "prompt_id": SMOKE_PROMPT_ID,
                    "s3_uri": input_uri,
                    "job_name_prefix": "smoke",
                    "inference_params": {"max_tokens": SMOKE_MAX_TOKENS},
                    "resubmit_failed": False,  # a smoke run reports failures, it does not pay to repeat them
                }
            )
            run_id = target.run_id(execution_arn)
            print(f"...   batch run {run_id} started ({execution_arn})", flush=True)
            with BatchProgress(target, execution_arn, enabled=progress) as display:
                outcome = target.wait(execution_arn, on_tick=display.update, interval=poll_seconds)
            finished = True
            steps.append(report(check_run(target, outcome, run_id, workdir, choice, region)))
        finally:
            if finished or run_id is None:
                steps.append(report(cleanup(target, input_uri, run_id)))
            else:
                print(
                    f"...   cleanup skipped: run {run_id} has not ended; once it has, delete {input_uri} and "
                    f"s3://{target.bucket}/runs/{run_id}/ (aws s3 rm --recursive)",
                    flush=True,
                )
    return steps


def check_run(target: Any, outcome: Any, run_id: str, workdir: Path, choice: Choice, region: str | None) -> Step:
    """The run ended: every one of its rows has an answer, or the step fails naming what went wrong and the fix."""
    name = "batch run"
    try:
        return _check_run(target, outcome, run_id, workdir, choice, region)
    except Exception as exc:  # e.g. summary.json missing: this step's result, not a traceback
        if explain(exc) is not None:
            raise  # credentials expired during the run: one line from cli.__main__
        return Step(name, False, f"{type(exc).__name__}: {exc}", f"see the run's files under runs/{run_id}/")


def _check_run(target: Any, outcome: Any, run_id: str, workdir: Path, choice: Choice, region: str | None) -> Step:
    import pyarrow.parquet as pq

    from cli.batch import denied_model_access

    name = "batch run"
    if outcome.status != "SUCCEEDED":
        detail = f"the execution ended {outcome.status}: {outcome.error_message}"
        if names_model_access(outcome.error_message):
            return Step(name, False, detail, model_access_fix(choice.model_id, region), setup=True)
        fix = f"read the execution's history in the Step Functions console ({outcome.execution_arn})"
        return Step(name, False, detail, fix)
    files = target.download_outputs(run_id, workdir / "output")
    summary = json.loads((workdir / "output" / "summary.json").read_text())
    table = pq.read_table(sorted(f for f in files if f.suffix == ".parquet"))
    answered = table.column("error_code").null_count  # rows without an error carry a response
    if table.num_rows != SMOKE_RECORDS or answered != SMOKE_RECORDS:
        errors = [m for m in table.column("error_message").to_pylist() if m]
        first = f" (first error: {errors[0][:200]})" if errors else ""
        detail = f"{answered} of {SMOKE_RECORDS} rows answered, {table.num_rows} rows written{first}"
        if denied_model_access(summary):
            return Step(name, False, detail, model_access_fix(choice.model_id, region), setup=True)
        return Step(name, False, detail, f"see summary.json of run {run_id} (its jobs' status and message)")
    cost = (summary.get("estimated_cost") or {}).get("message", "")
    return Step(name, True, f"{answered} of {SMOKE_RECORDS} rows answered by {choice.model_id}; {cost}".rstrip("; "))


def cleanup(target: Any, input_uri: str, run_id: str | None) -> Step:
    """Delete the smoke input and everything under ``runs/<run>/``."""
    from lambdas.shared.layout import run_prefix
    from lambdas.shared.s3io import list_keys

    input_key = input_uri.removeprefix(f"s3://{target.bucket}/")
    keys = [input_key]
    where = [input_uri]
    if run_id is not None:
        prefix = f"{run_prefix(run_id)}/"
        keys += [key for key, _size in list_keys(target.s3, target.bucket, prefix)]
        where.append(f"s3://{target.bucket}/{prefix}")
    try:
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1,000 keys
            batch = [{"Key": key} for key in keys[start : start + 1000]]
            answer = target.s3.delete_objects(Bucket=target.bucket, Delete={"Objects": batch, "Quiet": True})
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise RuntimeError(f"{first.get('Key')}: {first.get('Code')} {first.get('Message', '')}".strip())
    except Exception as exc:  # a failed cleanup is this step's result, printed with its fix
        manual = " and ".join(f"aws s3 rm --recursive {uri}" for uri in where)
        return Step("cleanup", False, f"{type(exc).__name__}: {exc}", f"delete the run's data by hand: {manual}")
    return Step("cleanup", True, f"deleted {len(keys)} objects ({', '.join(where)})")


# -- the command ------------------------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    from local.emulator.faults import FaultSpecError, parse_faults

    try:
        faults = parse_faults(args.faults)
    except FaultSpecError as exc:
        return fail(f"--faults: {exc}", EXIT_BAD_INPUT)
    if faults and args.target == "aws":
        return fail("--faults injects emulator faults: it only works with --target local", EXIT_BAD_INPUT)
    choice = choose(args)
    runner = run_on_aws if args.target == "aws" else run_locally
    steps = runner(args, choice, faults)
    failed = [step for step in steps if not step.passed]
    if failed:  # one line on stderr; the steps' lines (stdout) say what failed and the fix
        names = ", ".join(step.name for step in failed)
        print(f"smoke: {len(failed)} of {len(steps)} steps failed: {names}", file=sys.stderr)
        return EXIT_SETUP if any(step.setup for step in failed) else EXIT_FAILED
    print(f"smoke: all {len(steps)} steps passed")
    return EXIT_OK


def report(step: Step) -> Step:
    print(step.line(), flush=True)
    return step


def header(target: str, choice: Choice) -> None:
    print(f"smoke test ({target})")
    print(f"      batch model {choice.model_id}: {choice.model_reason}")
    print(f"      gateway bot {choice.bot}: {choice.bot_reason}")


def gateway_steps(url: str, key: str, choice: Choice, key_fix: str) -> list[Step]:
    return [report(poe_step(url, key, choice, key_fix)), report(openai_step(url, key, choice, key_fix))]


def run_on_aws(args: argparse.Namespace, choice: Choice, faults: dict[str, Any]) -> list[Step]:
    """Missing credentials, region, stacks or gateway key raise AwsSetupError before any step (one line, exit 2)."""
    from cli.aws_errors import aws_session
    from cli.aws_target import AwsBatchTarget, DeployedGateway

    session = aws_session()
    gateway = DeployedGateway.find(session, args.gateway_stack_name)
    batch_target = AwsBatchTarget(session, args.stack_name)
    key = args.access_key or gateway.access_key(session, choice.key_ref)
    key_fix = f"put the bot's key into the gateway's secret: {gateway.put_key_command(choice.key_ref)}"
    header(f"stacks {args.gateway_stack_name} and {args.stack_name} in {session.region_name}", choice)
    print("      the batch run waits for Bedrock, which may keep a job queued for hours (Ctrl-C leaves it running)")
    steps = gateway_steps(gateway.url, key, choice, key_fix)  # seconds; the batch run takes minutes to hours
    return steps + batch_steps(
        batch_target, choice, region=session.region_name, poll_seconds=POLL_SECONDS["aws"], progress=not args.quiet
    )


def run_locally(args: argparse.Namespace, choice: Choice, faults: dict[str, Any]) -> list[Step]:
    from cli.gateway import local_gateway
    from local.runner import REGION, LocalRuntime, RuntimeOptions

    header("local: moto + the Bedrock emulator, and the local gateway", choice)
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")  # the step lines, not the local gateway's own logs
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    key_fix = "send the key the gateway was started with (GATEWAY_ACCESS_KEY), or leave out --access-key"
    with local_gateway(faults=faults) as gateway:  # stopped before the local runtime starts moto's mock
        steps = gateway_steps(gateway.url, args.access_key or gateway.access_key, choice, key_fix)
    with LocalRuntime(RuntimeOptions(step_seconds=0.05, faults=faults)) as runtime:
        return steps + batch_steps(
            runtime, choice, region=REGION, poll_seconds=POLL_SECONDS["local"], progress=not args.quiet
        )
