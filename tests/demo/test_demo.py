"""The README's first command must really fetch and write, and keep values out of the pod."""

import io
import re

from emulator import demo


def test_demo_runs_the_whole_path_and_prints_the_files_an_app_reads() -> None:
    out = io.StringIO()
    assert demo.run(out) == 0
    text = out.getvalue()
    pod_part, _, files_part = text.partition("== running the init container")
    # The files hold the values, with the modes asked for.
    assert re.search(r"-- api-key  -r--r----- ", files_part)
    assert "postgres://shop:s3cr3t-db-password@db.internal:5432/shop" in files_part
    assert "\nfirst-password\n" in files_part  # db-password@1, a pinned version
    # The webhook's answer (the admitted pod) names secrets but holds no value.
    assert "kind: Pod" in pod_part
    for value in ("s3cr3t-db-password", "first-password", "sample-api-key-0123", "db.internal"):
        assert value not in pod_part
    assert "== Sakura API calls made: 4" in text
