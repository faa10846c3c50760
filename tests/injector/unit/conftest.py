"""Each test starts with nothing remembered from annotation text (`injector.webhook.text_memo`):
a test's review is a first one, as it would be alone, whatever ran before it in the process
(mutation testing forks each mutant from a process that has run the tests once)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from injector.webhook.annotations import forget_remembered


@pytest.fixture(autouse=True)
def nothing_remembered() -> Iterator[None]:
    forget_remembered()
    yield
