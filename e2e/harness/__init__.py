"""The end-to-end harness: a real cluster, the project's image, the emulator and the injector.

Everything here is test scaffolding around real processes (kubectl, docker, etcdctl, the
injector and the emulator as subprocesses); docs/e2e.md explains how the pieces fit.
"""
