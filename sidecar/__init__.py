"""The init fetcher: reads the plan the webhook wrote, fetches each secret once, writes the files.

Run as `python -m sidecar` (or `sakura-secrets-fetch`) in the injected init container, and as
`python -m sidecar refresh` in the refresh container of a pod with `refresh-interval`. It must
start fast and stay small, so it never imports kubernetes or starlette; see docs/init-container.md.
"""
