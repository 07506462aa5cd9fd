"""AWS and HTTP failures as one line each: the cause, the fix, and the exit code (cli/README.md).

``describe`` knows botocore's and requests' exceptions by name and shape, so ``--help`` never pays
for importing either; anything it does not know is reported as one line as well (exit 1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from plenrich.context import PARTIAL, USAGE

LOCAL_HINT = "for the local stack: plenrich --env-file FILE (the file `make run` names)"

_XML_CODE = re.compile(r"<Code>([A-Za-z0-9.]+)</Code>")

# ClientError codes by what the operator has to do about them.
_NOT_FOUND_QUEUE = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}
_NOT_FOUND = {"ResourceNotFoundException", "NotFound", "NoSuchEntity"}
_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthorizationError"}
_BAD_CREDENTIALS = {
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidSignatureException",
}


@dataclass(frozen=True)
class Failure:
    """One line for stderr and the exit code it ends with. ``stops``: every later request would
    fail the same way (no region or credentials, an endpoint, queue or table that is not there,
    access denied), so a command working through many items stops at the first."""

    line: str
    code: int
    stops: bool = True


def _names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def _client_error(exc: BaseException) -> Failure:
    response = getattr(exc, "response", None) or {}
    error = response.get("Error") or {}
    code = str(error.get("Code") or "")
    message = " ".join(str(error.get("Message") or "").split())
    if code.isdigit():  # an error body the SDK could not parse (e.g. XML to a JSON client)
        found = _XML_CODE.search(message)
        code = found.group(1) if found else {"403": "AccessDenied", "404": "NotFound"}.get(code, code)
        message = ""
    operation = getattr(exc, "operation_name", "") or "the request"
    if code in _NOT_FOUND_QUEUE:
        return Failure(
            f"queue not found ({operation}): check the queue URL flag or variable, the region and "
            f"the account ({LOCAL_HINT})",
            USAGE,
        )
    if code in _NOT_FOUND:
        return Failure(
            f"{code} ({operation}): {message or 'not found'}; check --ledger-table / LEDGER_TABLE_NAME, "
            "the region and the account",
            USAGE,
        )
    if code in _DENIED:
        return Failure(
            f"access denied ({operation}): these credentials may not {operation}; use a role or profile "
            "that may (the stack's operator policy), or check AWS_PROFILE",
            PARTIAL,
        )
    if code in _BAD_CREDENTIALS:
        return Failure(
            f"AWS rejected the credentials ({code}): refresh them (aws sso login / new keys) or pick "
            f"another AWS_PROFILE; {LOCAL_HINT}",
            USAGE,
        )
    return Failure(
        f"AWS {operation} failed: {code or 'error'}: {message[:200] or 'no message'}", PARTIAL, stops=False
    )


def _http_error(exc: BaseException) -> Failure:
    status = getattr(exc, "status", None)
    if status is None:
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
    if status in (401, 403):
        return Failure(
            f"PowerLeads answered {status}: token rejected; set a valid POWERLEADS_TOKEN or "
            "POWERLEADS_TOKEN_SECRET_ID (and POWERLEADS_API_BASE_URL for the sandbox)",
            PARTIAL,
        )
    return Failure(
        f"PowerLeads request failed: {type(exc).__name__}" + (f" {status}" if status else ""),
        PARTIAL,
        stops=False,
    )


def describe(exc: BaseException, endpoint: str | None = None) -> Failure:
    """The one line for ``exc`` (never its traceback, never a request's headers or body)."""
    names = _names(exc)
    where = endpoint or "AWS"
    if "NoRegionError" in names:
        return Failure(
            "no AWS region: pass --region or set AWS_DEFAULT_REGION (or region in the AWS_PROFILE)", USAGE
        )
    if names & {"NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"}:
        return Failure(
            "no AWS credentials: set AWS_PROFILE (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY); "
            + LOCAL_HINT,
            USAGE,
        )
    if names & {"TokenRetrievalError", "SSOTokenLoadError", "UnauthorizedSSOTokenError"}:
        return Failure(
            "the AWS SSO session has expired: run aws sso login (or pick another AWS_PROFILE)", USAGE
        )
    if names & {"EndpointConnectionError", "ConnectTimeoutError", "ProxyConnectionError"}:
        return Failure(
            f"cannot reach {where}: is the endpoint up (the local stack: make run)? "
            "check --endpoint-url / AWS_ENDPOINT_URL and the network",
            PARTIAL,
        )
    if "ReadTimeoutError" in names:
        return Failure(
            f"{where} did not answer in time: retry, or check --endpoint-url / AWS_ENDPOINT_URL",
            PARTIAL,
            stops=False,
        )
    if "ClientError" in names:
        return _client_error(exc)
    if "PowerLeadsError" in names or "HTTPError" in names:
        return _http_error(exc)
    if "ConnectionError" in names and "requests" in type(exc).__module__:
        return Failure("cannot reach PowerLeads: check POWERLEADS_API_BASE_URL and the network", PARTIAL)
    return Failure(f"unexpected {type(exc).__name__}: {str(exc)[:200]}", PARTIAL, stops=False)


UPSTREAM_WORDS = {
    401: "token rejected; set a valid POWERLEADS_TOKEN or POWERLEADS_TOKEN_SECRET_ID",
    403: "the token may not read this location (its scopes or the location's install)",
    404: "location or calendar not found upstream",
    422: "the request was refused as invalid",
    429: "rate limited; the next run resumes here",
}


# What the reconciler's log names (the exception's class: botocore names a modelled AWS error's
# class after its code) -> what is wrong and what to check.
AWS_WORDS = {
    "EndpointConnectionError": "cannot reach AWS; check AWS_ENDPOINT_URL / --endpoint-url and the network",
    "ConnectTimeoutError": "cannot reach AWS; check AWS_ENDPOINT_URL / --endpoint-url and the network",
    "ReadTimeoutError": "AWS did not answer in time; the next run retries",
    "ResourceNotFoundException": "no such table; check LEDGER_TABLE_NAME, the region and the account",
    "QueueDoesNotExist": "no such queue; check INGEST_QUEUE_URL, the region and the account",
    "NoCredentialsError": "no AWS credentials; set AWS_PROFILE (or --env-file FILE for the local stack)",
    "ClientError": "AWS refused the request; check these credentials may use the ledger table and the "
    "ingest queue (AWS_PROFILE)",
}


def upstream_reason(fields: dict[str, object]) -> str:
    """Why one location's sweep failed, in words, from the reconciler's log fields."""
    status = fields.get("status")
    error = str(fields.get("error") or "error")
    if error in AWS_WORDS:
        return f"{fields.get('message', 'failed')}: {error}: {AWS_WORDS[error]}"
    if isinstance(status, int):
        words = UPSTREAM_WORDS.get(status) or (
            "PowerLeads unavailable; the next run resumes here" if status >= 500 else error
        )
        return f"upstream {status}: {words}"
    if error in ("UpstreamUnavailable", "ConnectionError", "Timeout"):
        return f"PowerLeads unreachable ({error}): check POWERLEADS_API_BASE_URL; the next run resumes here"
    return f"{fields.get('message', 'failed')}: {error}"
