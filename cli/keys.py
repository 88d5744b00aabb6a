"""``python -m cli keys``: team keys through the gateway's admin API (``docs/gateway/keys.md``).

    python -m cli keys create team-a --bots 'claude-*,nova-micro' --rpm 60 --tpm 100000 --budget 50
    python -m cli keys list | show team-a | update team-a --budget 80 --rpm none | revoke team-a
    python -m cli keys usage team-a --month 2026-03

``--target local`` (default) talks to a running ``python -m cli gateway`` (``--url``, default
http://127.0.0.1:8080) with ``--admin-key`` / ``$GATEWAY_ADMIN_KEY`` (the gateway prints its admin key at start);
``--target aws`` finds the deployed gateway's URL and admin key from the stack's outputs (``ApiUrl``,
``AdminKeySecretArn``) with your AWS credentials. Stdlib HTTP only: no client library.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from cli.aws_target import DEFAULT_GATEWAY_STACK, stack_outputs
from cli.batch import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, fail

LOCAL_URL = "http://127.0.0.1:8080"


def add_parser(commands: Any) -> None:
    p = commands.add_parser("keys", help="team keys of the gateway: create, list, show, update, revoke, usage")
    actions = p.add_subparsers(dest="action", required=True)

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--target", choices=("local", "aws"), default="local", help="local gateway (default) or AWS")
        sub.add_argument("--url", default=LOCAL_URL, help=f"the local gateway (default {LOCAL_URL})")
        sub.add_argument("--admin-key", help="the admin key (default: $GATEWAY_ADMIN_KEY; on AWS: the stack's secret)")
        sub.add_argument("--stack-name", default=DEFAULT_GATEWAY_STACK, help="the gateway stack (--target aws)")

    def limits(sub: argparse.ArgumentParser, removable: bool) -> None:
        none = " ('none' removes it)" if removable else ""
        sub.add_argument("--bots", help=f"bot names or patterns, comma-separated (default: every bot){none}")
        sub.add_argument("--rpm", help=f"requests per minute{none}")
        sub.add_argument("--tpm", help=f"tokens per minute{none}")
        sub.add_argument("--budget", help=f"monthly budget in USD{none}")
        sub.add_argument("--expires", help=f"expiry, ISO 8601 with a zone (2027-01-01T00:00:00Z){none}")

    create = actions.add_parser("create", help="create a key; its secret is printed once")
    create.add_argument("name")
    limits(create, removable=False)
    create.add_argument("--disabled", action="store_true", help="create it disabled")
    common(create)
    listing = actions.add_parser("list", help="every key (never a secret)")
    common(listing)
    for action, help_ in (("show", "one key"), ("revoke", "delete a key: it stops working within 30 s")):
        sub = actions.add_parser(action, help=help_)
        sub.add_argument("name")
        common(sub)
    update = actions.add_parser("update", help="change a key's settings (only those given)")
    update.add_argument("name")
    limits(update, removable=True)
    state = update.add_mutually_exclusive_group()
    state.add_argument("--enable", dest="enabled", action="store_true", default=None)
    state.add_argument("--disable", dest="enabled", action="store_false")
    common(update)
    usage = actions.add_parser("usage", help="a month's requests, tokens and cost, per bot and in total")
    usage.add_argument("name")
    usage.add_argument("--month", default="", help="YYYY-MM (default: this month, UTC)")
    common(usage)
    p.set_defaults(func=run)


class BadOption(ValueError):
    pass


def key_settings(args: argparse.Namespace, *, removable: bool) -> dict[str, Any]:
    """The admin API body fields from the options given ('none' -> null, on update only)."""
    fields: dict[str, Any] = {}
    for option, name, cast in (
        ("bots", "bots", lambda v: [b.strip() for b in v.split(",") if b.strip()]),
        ("rpm", "requests_per_minute", int),
        ("tpm", "tokens_per_minute", int),
        ("budget", "monthly_budget_usd", float),
        ("expires", "expires_at", str),
    ):
        value = getattr(args, option)
        if value is None:
            continue
        if removable and value.strip().lower() == "none":
            fields[name] = None
            continue
        try:
            fields[name] = cast(value)
        except ValueError:
            raise BadOption(f"--{option} {value!r} is not valid: give a number (or 'none' to remove it)") from None
    return fields


@dataclass(frozen=True)
class AdminApi:
    url: str
    admin_key: str

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url.rstrip('/')}{path}", data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.admin_key}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 (http(s) from our options)
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as error:
            raw = error.read()
            try:
                return error.code, json.loads(raw)
            except ValueError:
                return error.code, {"error": raw.decode(errors="replace")[:300]}


def admin_api(args: argparse.Namespace) -> AdminApi:
    if args.target == "local":
        key = args.admin_key or os.environ.get("GATEWAY_ADMIN_KEY", "")
        if not key:
            raise BadOption("no admin key: pass --admin-key or set GATEWAY_ADMIN_KEY (cli gateway prints it at start)")
        return AdminApi(args.url, key)
    from cli.aws_errors import aws_session

    session = aws_session()
    outputs = stack_outputs(session.client("cloudformation"), args.stack_name, ("ApiUrl", "AdminKeySecretArn"))
    secret = session.client("secretsmanager").get_secret_value(SecretId=outputs["AdminKeySecretArn"])["SecretString"]
    return AdminApi(outputs["ApiUrl"], args.admin_key or secret)


def request_of(args: argparse.Namespace) -> tuple[str, str, dict[str, Any] | None]:
    name = quote(getattr(args, "name", "") or "", safe="")
    if args.action == "create":
        return (
            "POST",
            "/admin/keys",
            {"name": args.name, **key_settings(args, removable=False)} | ({"enabled": False} if args.disabled else {}),
        )
    if args.action == "list":
        return "GET", "/admin/keys", None
    if args.action == "show":
        return "GET", f"/admin/keys/{name}", None
    if args.action == "update":
        body = key_settings(args, removable=True) | ({} if args.enabled is None else {"enabled": args.enabled})
        if not body:
            raise BadOption("nothing to update: give --bots, --rpm, --tpm, --budget, --expires, --enable or --disable")
        return "PATCH", f"/admin/keys/{name}", body
    if args.action == "revoke":
        return "DELETE", f"/admin/keys/{name}", None
    query = {"key": args.name} | ({"month": args.month} if args.month else {})
    return "GET", f"/admin/usage?{urlencode(query)}", None


def run(args: argparse.Namespace) -> int:
    try:
        method, path, body = request_of(args)
        api = admin_api(args)
    except BadOption as exc:
        return fail(str(exc), EXIT_BAD_INPUT)
    try:
        status, answer = api.call(method, path, body)
    except urllib.error.URLError as exc:
        return fail(f"cannot reach the gateway at {api.url}: {exc.reason} (is `python -m cli gateway` running?)", 1)
    if status >= 400:
        message = answer.get("error") if isinstance(answer, dict) else answer
        return fail(f"the gateway answered {status}: {message}", EXIT_FAILED)
    if args.action == "revoke":
        print(f"revoked {args.name}: it stops working within 30 seconds")
    else:
        print(json.dumps(answer, indent=2))
    if args.action == "create":
        print("Keep the key now: it is shown this once (the gateway keeps only its hash).", file=sys.stderr)
    return EXIT_OK
