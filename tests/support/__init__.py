"""What the tests share, importable as `support` (pyproject sets pytest's `pythonpath`).

No test module imports another test module or a conftest: what two of them need lives here.

- clock: the one hand-driven clock (`HandClock`), for every time-dependent unit test
- values: the vault IDs the tests of several parts share
- emulator: `EmulatorHandle`, a seeded emulator serving on a real socket
- broker_world: the broker's cluster tests (namespaces, grants, bound tokens, the broker
  over TLS, their values); broker_fakes: a fake Sakura, recording reviews, a fake API
- stub_kube_api: a tiny Kubernetes API on loopback HTTP
- sakura_kit: the Sakura client's tests (seeded emulator, fast clients)
- sidecar_harness: the init container's tests (plans, a broker double, env)
- admission_harness, webhook_harness, connection_harness: the webhook's tests
- manifests: the rendered manifests/ the deployment tests read
"""
