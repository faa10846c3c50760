"""Where `serve` gets its Sakura key: the mounted Secret's directory (`--sakura-credentials-dir`,
re-read when it changes) or, as before, the official environment variables (read once).

Giving both is a start-up error, not a precedence rule to remember: an installation that
mounted the Secret and kept the variables would rotate one and keep using the other.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from injector.broker.key_files import KEY_FILES, PRINCIPAL_FILES, SakuraKeyFiles
from injector.operations.errors import UsageError
from sakura.config import (
    DEFAULT_TOKEN_ENDPOINT,
    ENV_ACCESS_TOKEN,
    ENV_ACCESS_TOKEN_SECRET,
    ENV_PRINCIPAL_ID,
    ENV_PRINCIPAL_KEY_ID,
    ENV_PRIVATE_KEY,
    ENV_PRIVATE_KEY_PATH,
    ENV_TOKEN_ENDPOINT,
    SakuraConfig,
)
from sakura.credentials import ApiKey
from sakura.errors import SakuraConfigError

FLAG = "--sakura-credentials-dir"
VARIABLE = "SAKURA_SECRETS_CREDENTIALS_DIR"


def sakura_credentials(
    directory: str | None, env: Mapping[str, str] | None = None
) -> tuple[SakuraConfig, SakuraKeyFiles | None]:
    """The client's configuration, and the key files when a directory is given (the key the
    config holds is then only the first one read). `env` None: the process's environment.
    UsageError says what to fix."""
    if not directory:
        try:
            return SakuraConfig.from_env(env), None
        except SakuraConfigError as error:
            raise UsageError(
                f"Sakura credentials: {error} (set {FLAG} to the mounted sakura-api-key Secret, "
                "or SAKURA_ACCESS_TOKEN and SAKURA_ACCESS_TOKEN_SECRET)"
            ) from None
    source = os.environ if env is None else env
    names = (
        *ENV_ACCESS_TOKEN,
        *ENV_ACCESS_TOKEN_SECRET,
        *ENV_PRINCIPAL_ID,
        *ENV_PRINCIPAL_KEY_ID,
        *ENV_PRIVATE_KEY,
        *ENV_PRIVATE_KEY_PATH,
    )
    given = [name for name in names if source.get(name, "").strip()]
    if given:
        raise UsageError(
            f"{FLAG} {directory} and the environment ({', '.join(given)}) both give a Sakura "
            f"key: give one; the directory (the mounted sakura-api-key Secret) rotates without a "
            "restart, so remove the variables"
        )
    endpoint = source.get(ENV_TOKEN_ENDPOINT[0], "").strip() or DEFAULT_TOKEN_ENDPOINT
    files = SakuraKeyFiles(Path(directory), token_endpoint=endpoint)
    try:
        key = files.current()
    except ValueError as error:
        raise UsageError(
            f"{FLAG}: {error} (mount the sakura-api-key Secret there; it needs the keys "
            f"{' and '.join(KEY_FILES)}, or {', '.join(PRINCIPAL_FILES)} for a service "
            "principal)"
        ) from None
    if isinstance(key, ApiKey):
        given_key = {
            ENV_ACCESS_TOKEN[0]: key.access_token,
            ENV_ACCESS_TOKEN_SECRET[0]: key.access_token_secret,
        }
    else:
        from sakura.principal import ServicePrincipal

        assert isinstance(key, ServicePrincipal)
        given_key = {
            ENV_PRINCIPAL_ID[0]: key.principal_id,
            ENV_PRINCIPAL_KEY_ID[0]: key.key_id,
            ENV_PRIVATE_KEY[0]: key.private_key_pem,
        }
    with_key = {**source, **given_key}
    try:  # the zone and endpoint as the environment gives them
        return SakuraConfig.from_env(with_key), files
    except SakuraConfigError as error:
        raise UsageError(f"Sakura configuration: {error}") from None
