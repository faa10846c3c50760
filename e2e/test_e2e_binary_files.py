"""Issue 23 on the local cluster: a keystore stored base64-encoded in Sakura is written as its
decoded bytes (`encoding-FILE: base64`) under a chosen name (`file-name-FILE: app.jks`), beside a
`.pgpass` no annotation key could name; the app container reads both. A template with an
unknown filter is denied at creation, naming the filter and the closest known one.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from typing import Any

import pytest
from harness import manifests
from harness.kube import Kube
from harness.manifests import VAULT_ID
from harness.stack import Sakura, Webhook

pytestmark = pytest.mark.cluster

KEYSTORE, PGPASS = "binary-keystore", "binary-pgpass"
"""Made for this test alone."""
NEGATIVE_TTL = 10.0  # BrokerTuning.negative_ttl
SERVICE_ACCOUNT = "keystore-reader"


def test_a_pod_reads_a_decoded_binary_file_and_a_dot_pgpass(
    kube: Kube, webhook: Webhook, node: str, sakura: Sakura
) -> None:
    keystore = secrets.token_bytes(46 * 1024)  # a keystore's size, every byte value likely
    pgpass = f"db:5432:shop:app:pgpass-{secrets.token_hex(8)}"
    encoded = base64.encodebytes(keystore).decode()  # wrapped at 76, as `base64` writes it
    sakura.emulator.store.put(VAULT_ID, KEYSTORE, encoded)
    sakura.emulator.store.put(VAULT_ID, PGPASS, pgpass)
    # a listing of the vault younger than the negative lifetime would still lack the new secrets
    time.sleep(NEGATIVE_TTL + 1)
    ns = webhook.namespace("binary")
    kube.apply(
        manifests.service_account(SERVICE_ACCOUNT, ns),
        *manifests.grant("read", ns, SERVICE_ACCOUNT, manifests.pairs(KEYSTORE, PGPASS)),
    )
    annotations = manifests.pod_annotations(
        {
            "secret-keystore": KEYSTORE,
            "encoding-keystore": "base64",
            "file-name-keystore": "app.jks",
            "secret-pgpass": PGPASS,
            "file-name-pgpass": ".pgpass",
            "file-mode-pgpass": "0600",
        }
    )
    spec = manifests.pod_spec(
        "cd /sakura/secrets && sha256sum app.jks && wc -c < app.jks && stat -L -c '%a %u %n' "
        "app.jks .pgpass && cat .pgpass && echo && echo DONE",
        service_account=SERVICE_ACCOUNT,
        restart="Never",
        run_as=(65532, 65532),
    )
    kube.apply(manifests.pod("keystore", ns, spec, annotations=annotations))

    def finished() -> dict[str, Any] | None:
        pod: dict[str, Any] = kube.get("pod", "keystore", ns)
        return pod if pod["status"].get("phase") in ("Succeeded", "Failed") else None

    pod = kube.wait_for("pod keystore to finish", finished, timeout=180)
    assert pod["status"]["phase"] == "Succeeded", kube.describe("pod", "keystore", ns)
    lines = kube.logs(ns, "keystore", "app").splitlines()
    print(f"[e2e] the app read: {lines[:4]}")
    assert lines[0].split()[0] == hashlib.sha256(keystore).hexdigest()  # byte for byte
    assert lines[1].strip() == str(len(keystore))
    assert lines[2:4] == ["400 65532 app.jks", "600 65532 .pgpass"]
    assert lines[4] == pgpass and lines[-1] == "DONE"

    bad = manifests.pod(
        "bad-filter",
        ns,
        manifests.pod_spec("true", service_account=SERVICE_ACCOUNT, restart="Never"),
        annotations=manifests.pod_annotations(
            {"template-ks": '{{ secret("binary-keystore") | b64decod }}'}
        ),
    )
    denied = kube.create(bad)
    assert denied.returncode != 0, "a template with an unknown filter was admitted"
    assert (
        "annotation sakura-secrets.io/template-ks: the template uses the filter 'b64decod', "
        "which is not a known filter; did you mean 'b64decode'?"
    ) in denied.stderr, denied.stderr
    sakura.emulator.store.delete(VAULT_ID, KEYSTORE)
    sakura.emulator.store.delete(VAULT_ID, PGPASS)
