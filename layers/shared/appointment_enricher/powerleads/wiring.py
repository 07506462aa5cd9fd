"""The token source of every function that calls PowerLeads, built in one place.

The enricher's and the reconciler's composition roots (``enrich.wiring``, ``reconcile.wiring``) both
call ``build_token_source``: a Secrets Manager secret (a token, a per-location map or an OAuth
app) when a secret id is set, else a plain token. ``oauth`` is imported only when the secret turns
out to hold an OAuth app (it keeps the cold start lean).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..aws.sdk import secretsmanager_client
from .tokens import SecretTokens, StaticTokens, TokenSource, powertools_secret_fetcher

if TYPE_CHECKING:
    from requests import Session


def build_token_source(
    *,
    secret_id: str | None,
    token: str | None,
    base_url: str,
    session: Session,
    count: Callable[[str], None],
) -> TokenSource:
    """``count`` receives the OAuth counters (``OAuthWriteBackFailed``...); ``session`` carries
    OAuth refreshes and location-token exchanges (the functions' one pooled session)."""
    if not secret_id:
        return StaticTokens(token or "")
    secrets = secretsmanager_client()

    def oauth() -> TokenSource:
        from .oauth import OAuthTokens  # noqa: PLC0415 - only OAuth secrets need it

        return OAuthTokens(secret_id, secrets, session, base_url, count=count)

    return SecretTokens(secret_id, powertools_secret_fetcher(client=secrets), oauth_factory=oauth)
