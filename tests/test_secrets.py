"""One secret policy, through the CLI against a real influxd that requires authentication.

Credentials given as URL userinfo log in (HTTP Basic auth); with influxd answering 401 or down,
no password, token or userinfo appears on stdout, stderr, in the state dir (run records, state,
the metrics textfile), the export dir or a captured webhook payload.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest
from helpers.auth import ADMIN, ADMIN_PASSWORD
from helpers.world import World, run_cli

from coinpredict.base import redact
from coinpredict.base.config import load_settings
from coinpredict.base.errors import StoreError
from coinpredict.replay.server import ReplayServer
from coinpredict.store.http import InfluxHTTP

WRONG_PASSWORD = "Wr0ng-Pw_3kd8"
HOOK_USER, HOOK_PASSWORD = "hookuser", "H00k-Pw_5mz1"
HOOK_PATH_TOKEN, HOOK_QUERY_TOKEN = "T0kenInPath4711", "T0kenInQuery0815"
DATA = Path(__file__).parent / "data"


def _files_text(*roots: Path) -> dict[str, str]:
    out = {}
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file():
                out[str(path)] = path.read_bytes().decode("utf-8", "replace")
    return out


def _leaks(text: str) -> list[str]:
    needles = (
        ADMIN_PASSWORD,
        WRONG_PASSWORD,
        HOOK_PASSWORD,
        HOOK_PATH_TOKEN,
        HOOK_QUERY_TOKEN,
        f"{ADMIN}:",
        f"{HOOK_USER}:",
        "@127.0.0.1",
    )
    return [n for n in needles if n in text]


def test_userinfo_logs_in_and_no_secret_leaves_the_process(auth_env, auth_influxd, hook, tmp_path):
    webhook = (
        f"http://{HOOK_USER}:{HOOK_PASSWORD}@127.0.0.1:{hook.port}/hooks/{HOOK_PATH_TOKEN}"
        f"?token={HOOK_QUERY_TOKEN}"
    )
    env = {
        **auth_env,
        "COINPREDICT_SYMBOLS": "BTC/USDT,ETH/USDT",
        "COINPREDICT_ALERT_WEBHOOK": webhook,
    }
    outputs: list[str] = []

    def cli(*args: str, code: int | tuple[int, ...], **overrides: str) -> None:
        got = run_cli(list(args), {**env, **overrides})
        outputs.extend([got.stdout, got.stderr])
        codes = code if isinstance(code, tuple) else (code,)
        assert got.returncode in codes, (args, got.returncode, got.stdout, got.stderr)
        assert "Traceback" not in got.stderr

    # credentials as userinfo log in: init creates the databases through Basic auth
    cli("init", code=0)
    http = InfluxHTTP(env["COINPREDICT_INFLUX_URL"])
    world = World(env, http)
    now = int(time.time() * 1000)
    world.up_to_date(world.series("BTC/USDT"), now)  # ETH has no data: hard_stale, alerted
    cli("export", code=0)
    cli("status", "--json", code=2)
    cli("monitor", code=2)
    assert len(hook.bodies) >= 1
    expected = "Basic " + base64.b64encode(f"{HOOK_USER}:{HOOK_PASSWORD}".encode()).decode()
    assert set(hook.auth) == {expected}  # the webhook's userinfo is its Basic auth
    cli("config", code=0)
    cli("config", "--json", code=0)

    # influxd answers 401 (wrong password in the userinfo), then is down
    wrong = auth_influxd.url_as(ADMIN, WRONG_PASSWORD)
    down = f"http://{ADMIN}:{ADMIN_PASSWORD}@127.0.0.1:9"
    cli("init", code=1, COINPREDICT_INFLUX_URL=wrong)
    cli("status", "--json", code=3, COINPREDICT_INFLUX_URL=down)
    for url in (wrong, down):
        cli("export", code=1, COINPREDICT_INFLUX_URL=url)
        cli("-v", "monitor", code=(2, 3), COINPREDICT_INFLUX_URL=url)
        with ReplayServer(DATA) as server:
            cli("cycle", code=1, COINPREDICT_INFLUX_URL=url, COINPREDICT_EXCHANGE_URL=server.url)
    assert any("refused the credentials (HTTP 401)" in o for o in outputs)
    assert any("is unreachable" in o for o in outputs)
    events = [p["event"] for p in hook.payloads()]
    assert "influxdb_unreachable" in events

    state, www = Path(env["COINPREDICT_STATE_DIR"]), Path(env["COINPREDICT_EXPORT_DIR"])
    files = _files_text(state, www)
    assert (www / "status.json").is_file() and (state / "metrics" / "coinpredict.prom").is_file()
    assert any(p.endswith(".jsonl") for p in files)  # run records were written
    found = {where: _leaks(text) for where, text in files.items() if _leaks(text)}
    found.update({f"output {i}": _leaks(t) for i, t in enumerate(outputs) if _leaks(t)})
    found.update({f"webhook {i}": _leaks(b.decode()) for i, b in enumerate(hook.bodies)})
    assert not {k: v for k, v in found.items() if v}


def test_the_client_sends_userinfo_as_basic_auth_and_never_names_it(auth_influxd):
    good = InfluxHTTP(auth_influxd.url_as(ADMIN, ADMIN_PASSWORD))
    assert good.url == auth_influxd.url
    assert good.query("SHOW DATABASES") is not None
    bad = InfluxHTTP(auth_influxd.url_as(ADMIN, WRONG_PASSWORD))
    with pytest.raises(StoreError) as err:
        bad.query("SHOW DATABASES")
    assert "HTTP 401" in str(err.value) and not _leaks(str(err.value))


def test_config_moves_userinfo_to_credentials_and_masks_them(tmp_path):
    env = {
        "COINPREDICT_INFLUX_URL": f"http://{ADMIN}:{ADMIN_PASSWORD}@db.example:8086",
        "COINPREDICT_ALERT_WEBHOOK": f"https://hooks.example/x/{HOOK_PATH_TOKEN}",
        "COINPREDICT_STATE_DIR": str(tmp_path / "s"),
        "COINPREDICT_EXPORT_DIR": str(tmp_path / "w"),
        "COINPREDICT_CONFIG": "",
    }
    s = load_settings(environ=env)
    assert s.influx_url == "http://db.example:8086"
    assert (s.influx_username, s.influx_password) == (ADMIN, ADMIN_PASSWORD)
    shown = json.dumps(s.public_dict()) + repr(s)
    assert not _leaks(shown) and "https://hooks.example/***" in shown
    got = run_cli(["config", "--json"], env)
    assert got.returncode == 0 and not _leaks(got.stdout + got.stderr)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("at http://u:pw@host:8086/x down", "at http://***@host:8086/x down"),
        ("at http://u:p@ss@host/x", "at http://***@host/x"),
        ("GET /query?u=a&p=hunter22&db=x", "GET /query?u=a&p=***&db=x"),
        (
            "https://h/hook?api_key=abc&x=1&Signature=zz",
            "https://h/hook?api_key=***&x=1&Signature=***",
        ),
        ("Authorization: Bearer abc123def456", "Authorization: Bearer ***"),
        ("Token expired", "Token expired"),
        ("mail me at a@b.c", "mail me at a@b.c"),
    ],
)
def test_the_redactor_masks_every_credential_form(text, expected):
    assert redact.redact(text) == expected


def test_registered_values_are_masked_in_every_encoding():
    redact.register("s3cr@t/Value")
    out = redact.redact('x s3cr@t/Value y s3cr%40t%2FValue z "s3cr@t/Value"')
    assert "s3cr" not in out
