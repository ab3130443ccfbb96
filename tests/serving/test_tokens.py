"""Named tokens from a mounted file, rotated without a restart; the environment tokens when no file is set."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import polars as pl
import pytest
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient

from ml.lake.tables import PREDICTIONS_TABLE
from serving.app import create_app
from serving.config import ConfigError, ServingConfig
from serving.tokens import TokenFileError, Tokens, TokenSet, parse_tokens
from tests.conftest import ADMIN_TOKEN, TOKEN, Served, bearer
from tests.serving.server_process import running_server, wait_for
from tests.serving.test_api import flight

PARTNER_A = "a-token-of-partner-a"
PARTNER_B = "a-token-of-partner-b"
OPS = "the-operators-admin-token"


def write(path: Path, tokens: dict[str, object], as_json: bool = False) -> Path:
    """Replace the file as the kubelet updates a Secret volume: a new file renamed over the old."""
    text = json.dumps(tokens) if as_json else "".join(f"{k}: {v}\n" for k, v in tokens.items())
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    temporary.write_text(text)
    temporary.replace(path)
    return path


class Clock:
    """A clock the test moves, so "at most once a second" is checked without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_file_is_a_yaml_or_json_mapping_of_names_to_tokens(tmp_path: Path) -> None:
    assert parse_tokens("partner-a: tok-a\npartner_b.2: 'tok-b'\n", "f").tokens == {
        "partner-a": "tok-a",
        "partner_b.2": "tok-b",
    }
    assert parse_tokens('{"partner-a": "tok-a"}', "f").tokens == {"partner-a": "tok-a"}


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("", "non-empty mapping"),
        ("- a\n- b\n", "non-empty mapping"),
        ("partner: 12345678\n", "must be a non-empty string"),
        ("partner: ''\n", "must be a non-empty string"),
        ("partner: 'two words'\n", "without spaces"),
        ("'has space': secret-1\n", "is not 1-64 letters"),
        ("a: secret-1\nb: secret-1\n", "share a token"),
        ("a: [unclosed\n", "neither YAML nor JSON"),
    ],
)
def test_an_unusable_file_is_refused_naming_the_entry_and_never_a_token(text: str, complaint: str) -> None:
    with pytest.raises(TokenFileError, match=complaint) as refused:
        parse_tokens(text, "/run/tokens.yaml")
    message = str(refused.value)
    assert "/run/tokens.yaml" in message
    assert not any(secret in message for secret in ("12345678", "secret-1", "two words"))


def test_a_rotated_file_is_read_within_a_second_and_a_bad_edit_keeps_the_tokens_before(
    tmp_path: Path,
) -> None:
    clients = write(tmp_path / "tokens.yaml", {"partner-a": PARTNER_A})
    clock = Clock()
    tokens = Tokens(clients, TokenSet({"admin": OPS}), clock=clock)
    registry = CollectorRegistry()
    tokens.register(registry)

    def reloads(outcome: str) -> float:
        labels = {"role": "client", "outcome": outcome}
        return registry.get_sample_value("serving_token_reloads_total", labels) or 0.0

    assert tokens.identify(PARTNER_A) == ("client", "partner-a")
    assert tokens.identify(OPS) == ("admin", "admin")
    write(clients, {"partner-b": PARTNER_B}, as_json=True)
    clock.now += 0.5  # not looked at again yet: at most once per second
    assert tokens.identify(PARTNER_A) == ("client", "partner-a")
    clock.now += 0.6
    assert tokens.identify(PARTNER_A) is None
    assert tokens.identify(PARTNER_B) == ("client", "partner-b")
    # A half-written file, a removed one, or one that makes a client an admin: refused, counted, logged.
    for bad in ("partner-b: [", None, f"partner-b: {OPS}\n"):
        if bad is None:
            clients.unlink()
        else:
            clients.write_text(bad)
        clock.now += 1.1
        assert tokens.identify(PARTNER_B) == ("client", "partner-b")
        assert tokens.identify(OPS) == ("admin", "admin")
    assert reloads("refused") == 3
    write(clients, {"partner-a": PARTNER_A, "partner-b": PARTNER_B})  # both during a rotation
    clock.now += 1.1
    assert [tokens.identify(t) for t in (PARTNER_A, PARTNER_B)] == [
        ("client", "partner-a"),
        ("client", "partner-b"),
    ]
    assert reloads("loaded") == 2


def test_an_edit_in_place_is_seen_too(tmp_path: Path) -> None:
    clients = tmp_path / "tokens.json"
    clients.write_text(json.dumps({"partner-a": PARTNER_A}))
    clock = Clock()
    tokens = Tokens(clients, TokenSet({"admin": OPS}), clock=clock)
    clients.write_text(json.dumps({"partner-a": PARTNER_B + "-longer"}))
    clock.now += 1.1
    assert tokens.identify(PARTNER_B + "-longer") == ("client", "partner-a")


def test_the_environment_tokens_serve_when_no_file_is_set_and_a_file_replaces_them(tmp_path: Path) -> None:
    lake = {"PLATFORM_LAKE_URI": str(tmp_path / "lake")}
    config = ServingConfig.from_env(
        {**lake, "PLATFORM_SERVING_TOKEN": "c", "PLATFORM_SERVING_ADMIN_TOKEN": "a"}
    )
    tokens = Tokens.from_config(config)
    assert (tokens.identify("c"), tokens.identify("a")) == (("client", "default"), ("admin", "admin"))
    files = {
        "PLATFORM_SERVING_TOKENS_FILE": str(write(tmp_path / "clients.yaml", {"partner-a": PARTNER_A})),
        "PLATFORM_SERVING_ADMIN_TOKENS_FILE": str(write(tmp_path / "admins.yaml", {"ops": OPS})),
    }
    config = ServingConfig.from_env({**lake, **files})
    assert Tokens.from_config(config).identify(OPS) == ("admin", "ops")
    with pytest.raises(ConfigError, match="not both"):
        ServingConfig.from_env({**lake, **files, "PLATFORM_SERVING_TOKEN": "c"})
    with pytest.raises(ConfigError, match="PLATFORM_SERVING_ADMIN_TOKEN"):
        ServingConfig.from_env(
            {**lake, "PLATFORM_SERVING_TOKENS_FILE": files["PLATFORM_SERVING_TOKENS_FILE"]}
        )
    # At start-up an unusable file stops the server instead of serving with no tokens.
    missing = ServingConfig.from_env(
        {**lake, **files, "PLATFORM_SERVING_TOKENS_FILE": str(tmp_path / "none")}
    )
    with pytest.raises(ConfigError, match="cannot read"):
        Tokens.from_config(missing)
    both = ServingConfig.from_env(
        {**lake, **files, "PLATFORM_SERVING_ADMIN_TOKENS_FILE": str(write(tmp_path / "a2", {"x": PARTNER_A}))}
    )
    with pytest.raises(ConfigError, match="both a client and an admin"):
        Tokens.from_config(both)


def test_the_app_takes_named_tokens_and_keeps_the_roles_apart(served: Served, tmp_path: Path) -> None:
    clients = write(tmp_path / "clients.yaml", {"partner-a": PARTNER_A, "partner-b": PARTNER_B})
    admins = write(tmp_path / "admins.yaml", {"ops": OPS})
    config = served.config(token="", admin_token="", tokens_file=clients, admin_tokens_file=admins)
    with TestClient(create_app(config)) as client:
        for token in (PARTNER_A, PARTNER_B):
            assert (
                client.post("/v1/predict", json={"flights": [flight()]}, headers=bearer(token)).status_code
                == 200
            )
        assert (
            client.post("/v1/predict", json={"flights": [flight()]}, headers=bearer(TOKEN)).status_code == 401
        )
        assert (
            client.post("/v1/predict", json={"flights": [flight()]}, headers=bearer(OPS)).status_code == 403
        )
        assert client.post("/v1/admin/reload", headers=bearer(PARTNER_A)).status_code == 403
        assert client.post("/v1/admin/reload", headers=bearer(OPS)).status_code == 200
        assert client.post("/v1/admin/reload", headers=bearer(ADMIN_TOKEN)).status_code == 401


def test_a_token_rotated_in_the_file_of_a_running_server_and_the_log_names_the_client(
    served: Served, tmp_path: Path
) -> None:
    clients = write(tmp_path / "clients.yaml", {"partner-a": PARTNER_A})
    admins = write(tmp_path / "admins.yaml", {"ops": OPS})
    with running_server(
        served, tmp_path / "server", TOKENS_FILE=str(clients), ADMIN_TOKENS_FILE=str(admins)
    ) as server:
        before = f"rotation-a-{uuid.uuid4().hex}"
        assert server.predict([flight()], PARTNER_A, before).status == 200
        write(clients, {"partner-b": PARTNER_B})
        started = time.monotonic()
        wait_for(
            lambda: server.predict([flight()], PARTNER_A).status == 401, 5, "the old token to be refused"
        )
        assert time.monotonic() - started < 2.5  # looked at once a second
        after = f"rotation-b-{uuid.uuid4().hex}"
        assert server.predict([flight(), flight(carrier="B6")], PARTNER_B, after).status == 200
        assert server.request("POST", "/v1/admin/reload", headers=bearer(OPS)).status == 200
        assert server.stop() in (0, -15)
        log = server.stderr()
    assert "client tokens reloaded" in log and "partner-b" in log
    assert not any(token in log for token in (PARTNER_A, PARTNER_B, OPS))
    rows = served.platform.store.read(PREDICTIONS_TABLE).filter(pl.col("request_id").is_in([before, after]))
    assert sorted(rows["request_id"].to_list()) == sorted([before, after, after])
    names = dict(rows.select("request_id", "client").unique().iter_rows())
    assert names == {before: "partner-a", after: "partner-b"}
