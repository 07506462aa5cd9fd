"""OAuth refresh races over the wire: moto server (Secrets Manager) + the sandbox PowerLeads API.

Each ``OAuthTokens`` below is a separate "container": its own boto3 client, its own HTTP session,
its own in-memory cache. They share only the secret and the upstream, as Lambda containers do.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
import requests

from appointment_enricher.aws.sdk import BACKEND_CONFIG
from appointment_enricher.powerleads.oauth import OAuthTokens
from dev.fakes.faultproxy import Fault, FaultProxy
from dev.fakes.sandbox import SandboxServer
from dev.stack.awslocal import DUMMY_ACCESS_KEY, DUMMY_SECRET_KEY, REGION, start_moto_server
from tests.fakes import FakeClock

pytestmark = pytest.mark.integration

CLIENT_ID = "app-client-1"
CLIENT_SECRET = "app-secret-1"
LOCATION = "0007BWpSzSwfiuSl0tR2"  # owns the sample appointments
APPOINTMENT = "ocQHyuzHvysMo5N5VsXc"
COMPANY = "Co5mP4nY1d"
CONTAINERS = 6
LIFETIME = 3600


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    server, url = start_moto_server()
    yield url
    server.stop()


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    with SandboxServer(access_token_expires_in=LIFETIME) as server:
        yield server


def secrets_client(url: str) -> Any:
    return boto3.client(
        "secretsmanager",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=DUMMY_ACCESS_KEY,
        aws_secret_access_key=DUMMY_SECRET_KEY,
    )


def make_secret(url: str, oauth: dict[str, Any]) -> str:
    name = f"powerleads/oauth-{threading.get_ident()}-{id(oauth)}"
    return str(secrets_client(url).create_secret(Name=name, SecretString=json.dumps({"oauth": oauth}))["ARN"])


def container(secret_id: str, url: str, sandbox: SandboxServer, clock: FakeClock) -> OAuthTokens:
    return OAuthTokens(
        secret_id, secrets_client(url), requests.Session(), sandbox.url, epoch=clock, poll_seconds=0.02
    )


def race(containers: list[OAuthTokens], location_id: str) -> list[str]:
    barrier = threading.Barrier(len(containers))

    def run(tokens: OAuthTokens) -> str:
        barrier.wait()
        return tokens.token_for(location_id)

    with ThreadPoolExecutor(len(containers)) as pool:
        return list(pool.map(run, containers))


def fetch(sandbox: SandboxServer, token: str, event_id: str = APPOINTMENT) -> int:
    response = requests.get(
        f"{sandbox.url}/calendars/events/appointments/{event_id}",
        headers={"Authorization": f"Bearer {token}", "Version": "2021-04-15"},
        timeout=5,
    )
    return response.status_code


def stored(url: str, secret_id: str) -> dict[str, Any]:
    oauth: dict[str, Any] = json.loads(
        secrets_client(url).get_secret_value(SecretId=secret_id, VersionStage="AWSCURRENT")["SecretString"]
    )["oauth"]
    return oauth


def test_containers_racing_across_expiries_refresh_once_per_expiry(
    moto_url: str, sandbox: SandboxServer
) -> None:
    sandbox.add_oauth_client(CLIENT_ID, CLIENT_SECRET, "rt-initial", location_id=LOCATION)
    secret_id = make_secret(
        moto_url,
        {
            "clientId": CLIENT_ID,
            "clientSecret": CLIENT_SECRET,
            "refreshToken": "rt-initial",
            "userType": "Location",
            "locationId": LOCATION,
        },
    )
    clock = FakeClock(1_800_000_000.0)
    fleet = [container(secret_id, moto_url, sandbox, clock) for _ in range(CONTAINERS)]

    seen: list[str] = []
    for expiry in range(1, 4):  # no token yet, then two expiries
        tokens = race(fleet, LOCATION)
        assert sandbox.oauth_refresh_count == expiry
        assert sandbox.oauth_reuse_count == 0
        assert len(set(tokens)) == 1, "every container uses the one refreshed token"
        assert tokens[0] not in seen
        seen.append(tokens[0])
        assert fetch(sandbox, tokens[0]) == 200
        assert sum(t.refreshes for t in fleet) == expiry

        # Inside the validity window: cached, no refresh, no reuse.
        clock.advance(LIFETIME - 400)
        assert race(fleet, LOCATION) == tokens
        assert sandbox.oauth_refresh_count == expiry
        clock.advance(200)  # now inside the 5-minute margin: next round refreshes

    saved = stored(moto_url, secret_id)
    assert saved["refreshToken"] != "rt-initial"
    assert saved["accessToken"] == seen[-1]
    assert "refreshLease" not in saved
    assert sandbox.count("/oauth/token") == 3


def test_a_container_with_a_stale_cache_uses_the_token_another_one_saved(
    moto_url: str, sandbox: SandboxServer
) -> None:
    sandbox.add_oauth_client(CLIENT_ID, CLIENT_SECRET, "rt-1", location_id=LOCATION)
    secret_id = make_secret(
        moto_url,
        {
            "clientId": CLIENT_ID,
            "clientSecret": CLIENT_SECRET,
            "refreshToken": "rt-1",
            "userType": "Location",
        },
    )
    clock = FakeClock(1_800_000_000.0)
    first, second = (container(secret_id, moto_url, sandbox, clock) for _ in range(2))
    token = first.token_for(LOCATION)
    assert second.token_for(LOCATION) == token
    clock.advance(LIFETIME)
    renewed = first.token_for(LOCATION)
    assert second.token_for(LOCATION) == renewed != token
    assert (sandbox.oauth_refresh_count, sandbox.oauth_reuse_count) == (2, 0)


def test_agency_token_yields_cached_location_tokens(moto_url: str, sandbox: SandboxServer) -> None:
    sandbox.add_oauth_client(CLIENT_ID, CLIENT_SECRET, "rt-agency", user_type="Company", company_id=COMPANY)
    secret_id = make_secret(
        moto_url,
        {
            "clientId": CLIENT_ID,
            "clientSecret": CLIENT_SECRET,
            "refreshToken": "rt-agency",
            "userType": "Company",
            "companyId": COMPANY,
        },
    )
    clock = FakeClock(1_800_000_000.0)
    fleet = [container(secret_id, moto_url, sandbox, clock) for _ in range(3)]
    other = "ve9EPM428h8vShlRW1KT"

    tokens = race(fleet, LOCATION)
    assert sandbox.oauth_refresh_count == 1 and sandbox.oauth_reuse_count == 0
    assert fetch(sandbox, tokens[0]) == 200  # a Location token for the appointment's location
    for tokens_source in fleet:
        assert tokens_source.token_for(LOCATION) in tokens  # cached per container
    other_token = fleet[0].token_for(other)
    assert other_token not in tokens
    assert sandbox.count("/oauth/locationToken") == len(fleet) + 1

    # A 401 for a location drops only that location's token.
    fleet[0].invalidate(LOCATION)
    assert fleet[0].token_for(LOCATION) != tokens[0]
    assert fleet[0].token_for(other) == other_token
    assert sandbox.oauth_refresh_count == 1


def test_a_throttled_put_secret_value_keeps_the_grant_alive(moto_url: str, sandbox: SandboxServer) -> None:
    sandbox.add_oauth_client(CLIENT_ID, CLIENT_SECRET, "rt-1", location_id=LOCATION)
    oauth = {
        "clientId": CLIENT_ID,
        "clientSecret": CLIENT_SECRET,
        "refreshToken": "rt-1",
        "userType": "Location",
    }
    secret_id = make_secret(moto_url, oauth)
    # Put 1 takes the lease; puts 2-5 (the write-back and botocore's three standard-mode retries)
    # are throttled, so the save fails for now; put 6 is our retry on a later lookup.
    proxy = FaultProxy(moto_url, operations=("PutSecretValue",)).start()
    proxy.queue([Fault.passthrough(), *[Fault.throttle()] * 4])
    clock, counted = FakeClock(1_800_000_000.0), []
    client = boto3.client(
        "secretsmanager",
        endpoint_url=proxy.url,
        region_name=REGION,
        aws_access_key_id=DUMMY_ACCESS_KEY,
        aws_secret_access_key=DUMMY_SECRET_KEY,
        config=BACKEND_CONFIG,
    )
    try:
        first = OAuthTokens(
            secret_id,
            client,
            requests.Session(),
            sandbox.url,
            epoch=clock,
            monotonic=clock,
            count=counted.append,
        )
        token = first.token_for(LOCATION)
        assert fetch(sandbox, token) == 200  # the container keeps working on the rotated grant
        assert (counted, proxy.stats.requests["PutSecretValue"]) == (["OAuthWriteBackFailed"], 5)
        assert stored(moto_url, secret_id)["refreshToken"] == "rt-1"  # spent, not yet replaced
        clock.advance(2)  # past the first backoff: the next lookup saves the rotation
        assert first.token_for(LOCATION) == token
        saved = stored(moto_url, secret_id)
        assert saved["refreshToken"] != "rt-1" and "refreshLease" not in saved
    finally:
        proxy.stop()
    clock.advance(LIFETIME)  # another container refreshes with what was saved
    assert container(secret_id, moto_url, sandbox, clock).token_for(LOCATION) != token
    assert (sandbox.oauth_refresh_count, sandbox.oauth_reuse_count) == (2, 0)
