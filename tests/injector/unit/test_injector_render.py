"""`render -f pod.yaml`: the same review, offline."""

from __future__ import annotations

import pytest
import yaml
from support.admission_harness import P, settings, validate_pod

from contract import Plan
from injector.operations.errors import PreviewDenied, PreviewError
from injector.operations.render import OFFLINE_WARNING, render_pod
from injector.webhook.errors import Denied

POD = f"""\
apiVersion: v1
kind: Pod
metadata:
  name: shop-api
  namespace: shop
  annotations:
    {P}inject: "true"
    {P}secret-db-password: db-password@2
    {P}template-dsn: |
      postgres://{{{{ secret("db#user") }}}}@db
spec:
  securityContext: {{runAsUser: 1000}}
  containers:
  - name: app
    image: nginx
"""


def test_render_prints_the_mutated_pod_with_the_offline_warning() -> None:
    text = render_pod(POD, settings())
    assert text.startswith(f"# warning: {OFFLINE_WARNING}\n")
    rendered = yaml.safe_load(text)
    validate_pod(rendered)
    assert rendered["metadata"]["annotations"][f"{P}status"] == "injected"
    assert rendered["spec"]["initContainers"][0]["name"] == "sakura-secrets-init"
    env = {e["name"]: e.get("value") for e in rendered["spec"]["initContainers"][0]["env"]}
    assert "db-password" in env["SAKURA_SECRETS_PLAN"]
    # the multi-line CA bundle stays readable
    assert "SAKURA_SECRETS_BROKER_CA\n      value: |\n        -----BEGIN CERTIFICATE-----" in text


def test_render_reports_a_denial() -> None:
    bad = POD.replace(f"{P}secret-db-password", f"{P}secret-.db")
    with pytest.raises(PreviewDenied) as caught:
        render_pod(bad, settings())
    assert f"{P}secret-.db" in caught.value.message
    assert isinstance(caught.value, Denied)  # the CLI catches Denied


def test_render_leaves_a_pod_that_is_not_injected_alone_and_says_why() -> None:
    text = render_pod(POD.replace("namespace: shop", "namespace: kube-system"), settings())
    assert text.startswith("# not injected: namespace kube-system is never injected\n")
    assert yaml.safe_load(text) == yaml.safe_load(POD.replace("shop\n", "kube-system\n", 1))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("kind: [", "not YAML"),
        ("", "found 0"),
        (POD + "---\n" + POD, "found 2"),
        ("apiVersion: apps/v1\nkind: Deployment\n", "'Deployment'"),
        ("- a\n", "Pod manifest"),
        ("apiVersion: v1\nkind: Pod\nmetadata: {}\n", "spec"),
    ],
)
def test_render_refuses_what_is_not_one_pod(text: str, fragment: str) -> None:
    with pytest.raises(PreviewError, match=fragment):
        render_pod(text, settings())


def test_render_injects_a_pod_that_istio_injected_first() -> None:
    meshed = POD + (
        "  - name: istio-proxy\n"
        "    image: istio/proxyv2:1.26\n"
        "    securityContext: {runAsUser: 1337, runAsGroup: 1337}\n"
    )
    text = render_pod(meshed, settings())
    assert text.startswith(f"# warning: {OFFLINE_WARNING}\n")  # the only warning
    rendered = yaml.safe_load(text)
    validate_pod(rendered)
    app, proxy = rendered["spec"]["containers"]
    assert app["volumeMounts"] == [
        {"name": "sakura-secrets", "mountPath": "/sakura/secrets", "readOnly": True}
    ]
    assert "volumeMounts" not in proxy
    init = rendered["spec"]["initContainers"][0]["securityContext"]
    assert (init["runAsUser"], init["runAsGroup"]) == (1000, 1000)


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (
            f"secret-{'f' * 57}",
            f"FILE {'f' * 57!r} has 57 characters, more than the 56 a secret-FILE annotation",
        ),
        ("secret-db.", "FILE 'db.' ends with '.', and Kubernetes requires an annotation key"),
    ],
)
def test_render_refuses_a_key_the_api_server_would(key: str, message: str) -> None:
    with pytest.raises(PreviewDenied) as caught:
        render_pod(POD.replace(f"{P}secret-db-password", P + key), settings())
    assert caught.value.message.startswith(f"annotation {P}{key}: {message}")


def test_render_shows_a_binary_file_under_a_chosen_name() -> None:
    """Issue 23: the plan in the rendered pod carries the decoded file and the chosen names."""
    pod = POD.replace(
        f"    {P}secret-db-password: db-password@2\n",
        f"    {P}secret-db-password: db-password@2\n"
        f"    {P}file-name-db-password: .pgpass\n"
        f"    {P}secret-jks: keystore\n"
        f"    {P}encoding-jks: base64\n"
        f"    {P}file-name-jks: app.jks\n",
    )
    rendered = yaml.safe_load(render_pod(pod, settings()))
    env = {e["name"]: e.get("value") for e in rendered["spec"]["initContainers"][0]["env"]}
    plan = Plan.from_json(env["SAKURA_SECRETS_PLAN"])
    assert [(f.name, f.encoding) for f in plan.files] == [
        (".pgpass", None),
        ("app.jks", "base64"),
        ("dsn", None),
    ]


def test_render_denies_an_unknown_filter_as_the_webhook_does() -> None:
    pod = POD.replace('secret("db#user") }}', 'secret("db#user") | b64decod }}')
    with pytest.raises(PreviewDenied) as caught:
        render_pod(pod, settings())
    assert caught.value.message == (
        f"annotation {P}template-dsn: the template uses the filter 'b64decod', which is not a "
        "known filter; did you mean 'b64decode'? the filters a template may use are listed in "
        "docs/annotations.md (Templates)"
    )
