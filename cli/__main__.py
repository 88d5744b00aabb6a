"""``python -m cli batch | emulator | gateway | keys | smoke``: the user commands.

See docs/getting-started.md, docs/batch/running.md and docs/gateway/keys.md."""

from __future__ import annotations

import argparse
import os
import sys

from cli import batch, emulator, keys, smoke
from cli import gateway as gateway_cli


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")  # synth runs on Node 20 here
    parser = argparse.ArgumentParser(prog="python -m cli", description="Bedrock batch inference and gateway tools")
    commands = parser.add_subparsers(dest="command", required=True)
    batch.add_parser(commands)
    emulator.add_parser(commands)
    gateway_cli.add_parser(commands)
    keys.add_parser(commands)
    smoke.add_parser(commands)
    args = parser.parse_args(argv)
    return run_command(args)


def run_command(args: argparse.Namespace) -> int:
    """Run the chosen command. What an AWS target lacks (credentials, region, stack, model access) is one line and
    exit 2, never a traceback: ``AwsSetupError`` from any target, and the botocore errors ``cli.aws_errors.explain``
    knows from ``--target aws`` (locally they would be bugs, and keep their traceback)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from cli.aws_errors import EXIT_SETUP, AwsSetupError, explain

    try:
        return int(args.func(args))
    except AwsSetupError as exc:
        message: str | None = str(exc)
    except (BotoCoreError, ClientError) as exc:
        message = explain(exc) if getattr(args, "target", None) == "aws" else None
        if message is None:
            raise
    print(f"error: {message}", file=sys.stderr)
    return EXIT_SETUP


if __name__ == "__main__":
    sys.exit(main())
