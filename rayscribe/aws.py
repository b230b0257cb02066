"""boto3 clients for the queue path, built in one place so every call shares the retry policy from settings.

Transient failures (throttling, 5xx, connection errors) are retried by botocore itself with the configured retry
mode (``standard`` or ``adaptive``, which also rate-limits the client) and exponential backoff; code above never
loops on them. Region, credentials and endpoint come from the standard ``AWS_*`` variables (``AWS_ENDPOINT_URL``
and ``AWS_ENDPOINT_URL_SQS`` / ``_S3`` point at a stand-in such as moto), so there is no endpoint parameter; the
same names in ``.env`` count too (:func:`rayscribe.config.aws.apply_aws_env`, the environment wins).
"""

from __future__ import annotations

import functools
import os
import threading
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

from rayscribe.config.aws import apply_aws_env
from rayscribe.config.queue import QueueSettings
from rayscribe.errors import RayscribeError

# Error codes that mean "this will not get better by trying again" for S3 reads.
MISSING_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "404", "NotFound"})
DENIED_CODES = frozenset({"AccessDenied", "403", "AllAccessDisabled", "InvalidObjectState"})

_local = threading.local()


class AwsError(RayscribeError):
    """An AWS call failed after botocore's retries, or AWS is not configured; the message says what to do."""


def client_config(settings: QueueSettings) -> Config:
    # botocore's "max_attempts" counts retries only; "total_max_attempts" counts the first try too, as the setting
    # (and AWS_MAX_ATTEMPTS) does.
    return Config(retries={"mode": settings.aws_retry_mode, "total_max_attempts": settings.aws_max_attempts},
                  connect_timeout=10, read_timeout=max(30, settings.wait_seconds + 10))


def client(service: str, settings: QueueSettings) -> Any:
    """A client for ``service`` (``sqs`` or ``s3``), one per thread and settings (boto3 sessions are not
    thread-safe; clients made from one are)."""
    _aws_env_from_dotenv(os.getcwd())
    # The endpoint variables are part of the key: a client made before AWS_ENDPOINT_URL changed (a test pointing
    # at a fault-injecting proxy, say) must not be handed out afterwards.
    # So are the region and the identity: a client is never handed out for another account or region.
    endpoints = tuple(os.environ.get(v) for v in ("AWS_ENDPOINT_URL", f"AWS_ENDPOINT_URL_{service.upper()}",
                                                  "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE",
                                                  "AWS_ACCESS_KEY_ID"))
    key = (service, settings.aws_retry_mode, settings.aws_max_attempts, settings.wait_seconds, endpoints)
    cache: dict[tuple[Any, ...], Any] = getattr(_local, "clients", None) or {}
    _local.clients = cache
    if key not in cache:
        try:
            cache[key] = boto3.session.Session().client(service, config=client_config(settings))
        except NoRegionError:
            raise AwsError("no AWS region configured; set AWS_DEFAULT_REGION (e.g. us-east-1) or AWS_PROFILE, "
                           "in the environment or .env") from None
    return cache[key]


@functools.lru_cache(maxsize=8)
def _aws_env_from_dotenv(cwd: str) -> None:
    """``.env``'s ``AWS_*`` values into the environment, once per working directory (``.env`` is read from it)."""
    apply_aws_env()


def error_code(exc: BaseException) -> str:
    """The AWS error code of a ClientError (``NoSuchKey``, ``AWS.SimpleQueueService.NonExistentQueue``...)."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def describe(exc: BaseException) -> str:
    """One line for a botocore error, with a hint for the usual set-up mistakes."""
    if isinstance(exc, NoCredentialsError):
        return ("no AWS credentials found; set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_PROFILE (in the "
                "environment or .env)")
    if isinstance(exc, NoRegionError):
        return "no AWS region configured; set AWS_DEFAULT_REGION (in the environment or .env)"
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return f"{err.get('Code', '?')}: {err.get('Message', '') or exc}"
    if isinstance(exc, BotoCoreError):
        return f"{type(exc).__name__}: {exc} (check AWS_ENDPOINT_URL and the network)"
    return f"{type(exc).__name__}: {exc}"
