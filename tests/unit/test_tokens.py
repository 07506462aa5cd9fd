"""Where tokens come from: plain secret, per-location map, OAuth delegation, re-read after 401."""

from __future__ import annotations

import json
import threading

import pytest

from appointment_enricher.powerleads.tokens import SecretTokens, StaticTokens, TokenUnavailable


class Fetcher:
    def __init__(self, value: str) -> None:
        self.value = value
        self.calls: list[bool] = []

    def __call__(self, secret_id: str, force: bool) -> str:
        self.calls.append(force)
        return self.value


def test_plain_secret_is_the_token_for_every_location() -> None:
    tokens = SecretTokens("s", Fetcher("  tok-1 \n"))
    assert tokens.token_for("loc-a") == "tok-1"
    assert tokens.token_for("loc-b") == "tok-1"


def test_per_location_map_with_default() -> None:
    doc = {"default": "tok-default", "locations": {"loc-a": "tok-a"}}
    tokens = SecretTokens("s", Fetcher(json.dumps(doc)))
    assert tokens.token_for("loc-a") == "tok-a"
    assert tokens.token_for("loc-b") == "tok-default"


def test_map_without_a_match_or_default_is_unavailable_and_names_no_token() -> None:
    tokens = SecretTokens("s", Fetcher(json.dumps({"locations": {"loc-a": "tok-a"}})))
    with pytest.raises(TokenUnavailable, match="loc-b") as info:
        tokens.token_for("loc-b")
    assert "tok-a" not in str(info.value)


@pytest.mark.parametrize("value", ["", "{not json"])
def test_empty_or_broken_secret_is_unavailable(value: str) -> None:
    with pytest.raises(TokenUnavailable):
        SecretTokens("s", Fetcher(value)).token_for("loc")


class CachingFetcher:
    """Powertools' provider in small: the first read goes out (and waits for ``release``), later
    ones come from the cache; ``reads`` counts what went out."""

    def __init__(self, value: str) -> None:
        self.value = value
        self.cached: str | None = None
        self.reads = 0
        self.reading = threading.Event()
        self.second = threading.Event()
        self.release = threading.Event()

    def __call__(self, secret_id: str, force: bool) -> str:
        if self.cached is not None and not force:
            return self.cached
        self.reads += 1
        if self.reads > 1:
            self.second.set()
        self.reading.set()
        assert self.release.wait(10)
        self.cached = self.value
        return self.value


def test_prefetch_fills_the_cache_and_a_lookup_during_it_waits_for_that_read() -> None:
    fetch = CachingFetcher("tok-1")
    tokens = SecretTokens("s", fetch)
    prefetch = threading.Thread(target=tokens.prefetch)
    prefetch.start()
    assert fetch.reading.wait(10)
    got: list[str] = []
    lookup = threading.Thread(target=lambda: got.append(tokens.token_for("loc")))
    lookup.start()
    # Half a second for a lookup without the single read to start its own (then it fails here).
    assert not fetch.second.wait(0.5)
    fetch.release.set()
    prefetch.join(10)
    lookup.join(10)
    assert got == ["tok-1"] and fetch.reads == 1


def test_a_failed_prefetch_says_nothing_and_the_lookup_reports_it() -> None:
    tokens = SecretTokens("s", Fetcher("{not json"))
    tokens.prefetch()  # nothing raised: the fetch that needs the token reports it
    with pytest.raises(TokenUnavailable, match="invalid JSON"):
        tokens.token_for("loc")


def test_invalidate_forces_the_next_read_past_the_cache() -> None:
    fetch = Fetcher("tok")
    tokens = SecretTokens("s", fetch)
    tokens.token_for("loc")
    tokens.invalidate("loc")
    tokens.token_for("loc")
    tokens.token_for("loc")
    assert fetch.calls == [False, True, False]


class FakeOAuth:
    def __init__(self) -> None:
        self.invalidated: list[str] = []

    def token_for(self, location_id: str, *, deadline: float | None = None) -> str:
        return f"oauth-{location_id}"

    def invalidate(self, location_id: str) -> None:
        self.invalidated.append(location_id)


def test_oauth_documents_are_delegated_once_and_invalidation_follows() -> None:
    doc = {"oauth": {"clientId": "c", "clientSecret": "s", "refreshToken": "r"}}
    built: list[FakeOAuth] = []

    def factory() -> FakeOAuth:
        built.append(FakeOAuth())
        return built[-1]

    fetch = Fetcher(json.dumps(doc))
    tokens = SecretTokens("s", fetch, oauth_factory=factory)
    assert tokens.token_for("loc-a") == "oauth-loc-a"
    assert tokens.token_for("loc-b") == "oauth-loc-b"
    tokens.invalidate("loc-a")
    assert len(built) == 1
    assert built[0].invalidated == ["loc-a"]
    assert len(fetch.calls) == 1  # the OAuth source reads the secret itself from then on
    tokens.prefetch()  # per-location tokens: nothing to read ahead
    assert len(fetch.calls) == 1


def test_incomplete_oauth_document_is_unavailable() -> None:
    doc = {"oauth": {"clientId": "c"}}
    tokens = SecretTokens("s", Fetcher(json.dumps(doc)), oauth_factory=FakeOAuth)
    with pytest.raises(TokenUnavailable, match="incomplete OAuth"):
        tokens.token_for("loc")


def test_token_sources_hide_tokens_in_repr() -> None:
    assert "secret-value" not in repr(StaticTokens("secret-value"))


@pytest.mark.parametrize(
    "document",
    [
        {"default": "tok-secret\n"},
        {"locations": {"loc": "tok secret"}, "default": "ok"},
        {"default": "tok-s\u00e9cret"},
        {"default": 12345},
    ],
)
def test_a_token_no_header_can_carry_is_refused_when_read(document: dict[str, object]) -> None:
    tokens = SecretTokens("s", Fetcher(json.dumps(document)))
    with pytest.raises(TokenUnavailable, match="HTTP header") as raised:
        tokens.token_for("loc")
    message = str(raised.value)
    assert message.startswith("secret s ")
    assert not any(bad in message for bad in ("tok-", "tok secret", "12345"))
    assert raised.value.__cause__ is None


def test_a_plain_secret_with_a_trailing_newline_is_the_token_without_it() -> None:
    assert SecretTokens("s", Fetcher("tok-1\n")).token_for("loc") == "tok-1"


def test_a_static_token_is_validated_at_cold_start() -> None:
    with pytest.raises(TokenUnavailable, match="POWERLEADS_TOKEN"):
        StaticTokens("tok\n")


# ---- one builder for the enricher's and the reconciler's token source -----------------------


def test_both_composition_roots_build_the_token_source_in_one_place(monkeypatch: pytest.MonkeyPatch) -> None:
    import ast  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    from appointment_enricher.powerleads import wiring as token_wiring  # noqa: PLC0415

    package = Path(token_wiring.__file__).parents[1]
    for root in ("enrich/wiring.py", "reconcile/wiring.py"):
        tree = ast.parse((package / root).read_text())
        called = {
            n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
        }
        assert "build_token_source" in called, root
        assert not called & {"SecretTokens", "StaticTokens", "OAuthTokens"}, root

    session = object()
    plain = token_wiring.build_token_source(
        secret_id=None,
        token="tok",
        base_url="https://x",
        session=session,
        count=print,  # type: ignore[arg-type]
    )
    assert isinstance(plain, StaticTokens) and plain.token_for("L") == "tok"
    counted: list[str] = []
    monkeypatch.setattr(token_wiring, "secretsmanager_client", object)
    secret = token_wiring.build_token_source(
        secret_id="sec",
        token=None,
        base_url="https://x",
        session=session,
        count=counted.append,  # type: ignore[arg-type]
    )
    assert isinstance(secret, SecretTokens)
    assert secret._oauth_factory is not None
    oauth = secret._oauth_factory()
    assert type(oauth).__name__ == "OAuthTokens" and oauth.session is session  # type: ignore[attr-defined]
