"""What an ``--target aws`` command lacks (credentials, region, the stack, model access), said in one line with the fix.

``cli.__main__`` prints ``error: <line>`` for an ``AwsSetupError`` or a botocore error that ``explain`` knows, and
exits 2 without a traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import (
    ClientError,
    CredentialRetrievalError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
    SSOTokenLoadError,
    TokenRetrievalError,
    UnauthorizedSSOTokenError,
)

EXIT_SETUP = 2  # the same code as bad input: the command cannot run as the machine is set up

NO_CREDENTIALS = "no AWS credentials found: run `aws configure` (or `aws sso login`) or set AWS_PROFILE"
NO_REGION = (
    "no AWS region set: set AWS_DEFAULT_REGION (e.g. us-east-1) or `region` in your AWS profile (`aws configure`)"
)
EXPIRED_CREDENTIALS = (
    "your AWS credentials are expired or invalid ({detail}): refresh them (`aws sso login`, or new temporary "
    "credentials) or set AWS_PROFILE to a working profile"
)
# Credential problems the services answer with (AWS "Common Errors"; STS answers ExpiredToken).
CREDENTIAL_ERROR_CODES = frozenset(
    {
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "IncompleteSignature",
        "SignatureDoesNotMatch",
        "InvalidSignatureException",
    }
)
# What Bedrock says when the account has no access to a model (the message of AccessDeniedException on
# CreateModelInvocationJob, InvokeModel, Converse, ...); lower case, matched in any error text.
MODEL_ACCESS_HINTS = (
    "don't have access to the model",
    "do not have access to the model",
    "model access is denied",
    "your account is not authorized to invoke this api operation",  # ValidationException, model not enabled there
    "not authorized to perform the required aws marketplace actions",
)


class AwsSetupError(Exception):
    """Something a command needs is missing (AWS credentials, region, a stack, model access, a priced model); the
    message is one line naming it and the fix."""


def model_access_fix(model_id: str, region: str | None) -> str:
    where = f" in region {region}" if region else ""
    return (
        f"no access to model {model_id}{where}: enable it in the Amazon Bedrock console (Model access){where}, "
        "and for an inference profile in every region it routes to"
    )


def names_model_access(text: str | None) -> bool:
    """Does an error text (a Bedrock error message, a job's message, a Lambda error) say model access is missing?"""
    # Imported here, not at the top: the gateway's modules create the shared logger, whose level a command sets first
    from lambdas.gateway.errors import BEDROCK_ERRORS

    # the gateway's own answer to AccessDeniedException (it keeps Bedrock's message, which names its role, to its log)
    gateway_hint = BEDROCK_ERRORS["AccessDeniedException"].advice.split(".")[0].lower()
    lowered = (text or "").lower()
    return any(hint in lowered for hint in (*MODEL_ACCESS_HINTS, gateway_hint))


def check_session(session: Any) -> None:
    """Region and credentials present (read locally, no call): else an AwsSetupError with the fix."""
    if not session.region_name:
        raise AwsSetupError(NO_REGION)
    if session.get_credentials() is None:
        raise AwsSetupError(NO_CREDENTIALS)


def aws_session(profile: str | None = None) -> Any:
    """A boto3 session with a region and credentials, or an AwsSetupError saying which is missing."""
    import boto3

    try:
        session = boto3.session.Session(profile_name=profile)
    except ProfileNotFound as exc:
        raise AwsSetupError(f"{exc}: fix AWS_PROFILE or add the profile with `aws configure --profile NAME`") from None
    check_session(session)
    return session


def explain(error: BaseException) -> str | None:
    """One line for a botocore error the user can fix (credentials, region), or None for anything else."""
    if isinstance(error, NoCredentialsError | PartialCredentialsError):
        return NO_CREDENTIALS
    if isinstance(error, NoRegionError):
        return NO_REGION
    if isinstance(error, UnauthorizedSSOTokenError | SSOTokenLoadError | TokenRetrievalError):
        return EXPIRED_CREDENTIALS.format(detail=str(error))
    if isinstance(error, CredentialRetrievalError):
        return EXPIRED_CREDENTIALS.format(detail=str(error))
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        code = str(details.get("Code", ""))
        if code in CREDENTIAL_ERROR_CODES:
            return EXPIRED_CREDENTIALS.format(detail=f"{code}: {details.get('Message', '')}".rstrip(": "))
        if code == "RequestExpired":
            return "AWS rejected the request as too old (RequestExpired): set this machine's clock right and retry"
    return None
