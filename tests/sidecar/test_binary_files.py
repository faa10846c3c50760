"""Binary files (`encoding-FILE: base64`), chosen names and the base64 filters, in the init
container: the real entry point against the emulator over HTTP, and the writer's own messages.
"""

from __future__ import annotations

import base64
import json
import random
import textwrap
from pathlib import Path

import pytest
from support.sidecar_harness import (
    ACCESS_SECRET,
    ACCESS_TOKEN,
    make_plan,
    run_main,
    secret_file,
    snapshot,
    template_file,
    visible,
)
from support.values import VAULT

from contract import FileSpec, Plan, SecretRef, SecretVersion
from contract.broker import FetchedSecret
from emulator import Emulator, EmulatorConfig
from sidecar import writer
from sidecar.errors import EXIT_BAD_VALUE, BadEncoding, TemplateFailed
from sidecar.fetched import Values

KEYSTORE = random.Random(23).randbytes(46 * 1024)
"""A keystore's size (a JKS with a chain and a key is a few KiB to tens of KiB), every byte
value present; base64 with line breaks keeps it under Sakura's 64 KiB a value."""
KEYSTORE_TEXT = "\n".join(textwrap.wrap(base64.b64encode(KEYSTORE).decode(), 76)) + "\n"
PGPASS = "db:5432:shop:app:pgpass-Secret-41x\n"
BROKEN = "bm90LWJhc2U2NC-Hidden!"
"""Not base64 ('-' and '!'): the error must name the secret, never this text."""
BUNDLE = {"keystore": base64.b64encode(b"\x00\xfe\xed\xfe\xed").decode(), "alias": "app"}


def _binary(name: str, ref: str) -> FileSpec:
    return FileSpec(name, 0o440, secret=SecretRef.parse(ref), encoding="base64")


@pytest.fixture
def emulator() -> Emulator:
    secrets = {"ks": KEYSTORE_TEXT, "pgpass": PGPASS, "broken": BROKEN, "bundle": BUNDLE}
    seed = {"vaults": [{"id": VAULT, "name": "binary", "secrets": secrets}]}
    return Emulator(
        EmulatorConfig(access_token=ACCESS_TOKEN, access_token_secret=ACCESS_SECRET, seed=seed)
    )


def _run(direct_env: dict[str, str], plan: Plan, capsys, termination_log):  # type: ignore[no-untyped-def]
    return run_main({**direct_env, "SAKURA_SECRETS_PLAN": plan.to_json()}, capsys, termination_log)


def test_a_keystore_round_trips_byte_for_byte_under_a_chosen_name(
    direct_env: dict[str, str],
    secrets_dir: Path,
    termination_log: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert len(KEYSTORE_TEXT) < 64 * 1024 and len(set(KEYSTORE)) == 256
    plan = make_plan(
        secrets_dir,
        _binary("app.jks", "ks"),
        _binary("key.der", "bundle#keystore"),
        secret_file(".pgpass", "pgpass", 0o600),
    )
    outcome = _run(direct_env, plan, capsys, termination_log)

    assert outcome.code == 0, outcome.stderr
    files = snapshot(secrets_dir)
    assert files["app.jks"] == (KEYSTORE, 0o440)
    assert files["key.der"] == (b"\x00\xfe\xed\xfe\xed", 0o440)
    assert files[".pgpass"] == (PGPASS.encode(), 0o600)
    assert (secrets_dir / ".pgpass").is_symlink()  # in the set, switched with the others
    assert visible(secrets_dir) == [".pgpass", ".sakura-secrets.json", "app.jks", "key.der"]


def test_a_value_that_is_not_base64_names_the_secret_and_never_the_value(
    direct_env: dict[str, str],
    secrets_dir: Path,
    termination_log: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    plan = make_plan(secrets_dir, _binary("app.jks", "broken"), secret_file("p", "pgpass"))
    outcome = _run(direct_env, plan, capsys, termination_log)

    assert outcome.code == EXIT_BAD_VALUE
    assert outcome.termination == (
        "sakura-secrets-init: bad encoding: secret 'broken' is not valid base64 (only A-Z, a-z, "
        "0-9, '+', '/' and '=' padding, the length a multiple of 4), and file 'app.jks' is "
        "written decoded (sakura-secrets.io/encoding-FILE: base64); store the value "
        "base64-encoded (e.g. the output of base64 -w0), or remove that annotation to write the "
        "value as it is\n"
    )
    assert BROKEN not in outcome.termination + outcome.stderr
    assert visible(secrets_dir) == []  # nothing half-done: not even the good file


def _values(**named: str) -> Values:
    return {SecretVersion(n): FetchedSecret(n, None, 1, v) for n, v in named.items()}


@pytest.mark.parametrize("text", ["QUJD", "QU\nJD\n", " QUJD ", "QUJDRA==", ""])
def test_base64_with_line_breaks_decodes(tmp_path: Path, text: str) -> None:
    [content] = writer.contents(make_plan(tmp_path, _binary("f", "v")), _values(v=text))
    assert content.data == base64.b64decode("".join(text.split()))


@pytest.mark.parametrize(
    "text", ["QUJ", "QUJD=", "QUJD====", "QU*D", "QUJDRA", "Q-_D", "ÄÖÜ=", "QUI=QUJD"]
)
def test_anything_else_is_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(BadEncoding) as caught:
        writer.contents(
            make_plan(tmp_path, _binary("f", "v@2")),
            {SecretVersion("v", 2): FetchedSecret("v", 2, 2, text)},
        )
    assert str(caught.value).startswith("secret 'v@2' is not valid base64 (only A-Z")
    assert caught.value.exit_code == EXIT_BAD_VALUE


def test_the_template_filters_decode_and_encode_text(tmp_path: Path) -> None:
    source = '{{ secret("pem") | b64decode }}|{{ secret("pw") | b64encode }}'
    plan = make_plan(tmp_path, template_file("t", source))
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n"
    [content] = writer.contents(plan, _values(pem=base64.b64encode(pem.encode()).decode(), pw="é"))
    assert content.data == f"{pem}|w6k=".encode()


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (
            "not base64!",
            "not valid base64 (only A-Z, a-z, 0-9, '+', '/' and '=' padding, the length a "
            "multiple of 4)",
        ),
        (
            base64.b64encode(b"\xff\xfe").decode(),
            "the decoded bytes are not UTF-8 text, which a template cannot hold; write a binary "
            "value with secret-FILE and encoding-FILE: base64 instead",
        ),
    ],
)
def test_a_filter_failure_keeps_its_own_words(tmp_path: Path, value: str, reason: str) -> None:
    plan = make_plan(tmp_path, template_file("t", '{{ secret("v") | b64decode }}'))
    with pytest.raises(TemplateFailed) as caught:
        writer.contents(plan, _values(v=value))
    assert str(caught.value) == (
        f"template file 't' failed to render at line 1: EncodingError: {reason}; "
        "fix the sakura-secrets.io/template-t annotation"
    )
    assert value not in str(caught.value)


def test_rotation_switches_a_chosen_name_with_the_set(tmp_path: Path) -> None:
    plan = make_plan(tmp_path, _binary("app.jks", "ks"), secret_file(".pgpass", "pgpass"))
    for round_ in (b"one", b"two"):
        values = _values(ks=base64.b64encode(round_).decode(), pgpass=round_.decode())
        writer.switch(str(tmp_path), writer.contents(plan, values), uid=None, gid=None)
        assert (tmp_path / "app.jks").read_bytes() == round_
        assert (tmp_path / ".pgpass").read_bytes() == round_
        assert (tmp_path / ".pgpass").resolve().parent == (tmp_path / "..data").resolve()


def test_a_plan_with_a_binary_file_is_format_2_and_reads_back(tmp_path: Path) -> None:
    binary = make_plan(tmp_path, _binary("app.jks", "ks"), secret_file(".pgpass", "pgpass"))
    data = json.loads(binary.to_json())
    assert data["format"] == 2
    assert [f.get("encoding") for f in data["files"]] == ["base64", None]
    assert Plan.from_json(binary.to_json()) == binary
    text = make_plan(tmp_path, secret_file(".pgpass", "pgpass")).to_json()
    assert json.loads(text)["format"] == 1 and "encoding" not in text
