"""Annotation refusals word for word, and the bounds each check draws.

test_injector_parts.py and test_injector_admission.py cover what the annotations produce;
these pin what a user reads when one is wrong, since that message is the whole interface.
"""

from __future__ import annotations

import pytest
from support.admission_harness import P, settings

from contract import Direct
from injector.webhook.annotations import (
    PLANS_PER_INJECTION,
    REMEMBERED_PLAN_BYTES,
    parse_annotations,
)
from injector.webhook.errors import Denied
from injector.webhook.pod.ownership import Owner
from injector.webhook.pod.resources import REFRESH_DEFAULTS, Resources

BASE = {P + "secret-db": "db", P + "vault-id": "110000000001"}
KNOWN = (
    "known keys: inject, vault-id, mount-path, containers, file-mode, run-as-user, "
    "run-as-group, init-first, refresh-interval, credentials-secret, cpu-request, cpu-limit, "
    "memory-request, memory-limit, refresh-cpu-request, refresh-cpu-limit, "
    "refresh-memory-request, refresh-memory-limit, replace-env, secret-FILE, template-FILE, "
    "file-mode-FILE, encoding-FILE, file-name-FILE, env-VAR"
)
MOUNT_FIX = "write an absolute directory such as /sakura/secrets"


def denial(extra: dict[str, str], base: dict[str, str] | None = None, **kw: object) -> str:
    with pytest.raises(Denied) as caught:
        parse_annotations({**(BASE if base is None else base), **extra}, settings(**kw))
    return str(caught.value)


def accepted(  # type: ignore[no-untyped-def]
    extra: dict[str, str], base: dict[str, str] | None = None, **kw: object
):
    return parse_annotations({**(BASE if base is None else base), **extra}, settings(**kw))


@pytest.mark.parametrize("key", ["secret", "template", "secret-", "template-"])
def test_a_file_key_without_a_file_name(key: str) -> None:
    stem = key.rstrip("-")
    assert denial({P + key: "db"}, base={}) == (
        f"annotation {P}{key} names no file; write {P}{stem}-FILE, e.g. {P}{stem}-db-password"
    )


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        ("mount-pth", "did you mean sakura-secrets.io/mount-path? "),
        ("sekret-db", "did you mean sakura-secrets.io/secret-db? "),
        ("sekret-db-pass-word", "did you mean sakura-secrets.io/secret-db-pass-word? "),
        ("zzzz", ""),
    ],
)
def test_an_unknown_key_is_named_with_the_closest_known_one(key: str, hint: str) -> None:
    assert denial({P + key: "x"}) == (
        f"annotation {P}{key} is not a known annotation; {hint}{KNOWN}"
    )


def test_the_status_annotations_are_the_injectors() -> None:
    assert denial({P + "status": "x"}) == (
        f"annotation {P}status: 'x' is not a value you can set; the injector writes this "
        "annotation itself, remove it"
    )
    assert denial({P + "status-warnings": "x"}) == (
        f"annotation {P}status-warnings: the injector writes this annotation itself, remove it"
    )


LIMIT = "(Kubernetes allows at most 63 characters after the '/' of an annotation key)"


@pytest.mark.parametrize(("prefix", "limit"), [("secret-", 56), ("template-", 54)])
def test_a_file_name_fits_the_api_servers_limit_on_annotation_keys(prefix: str, limit: int) -> None:
    value = "db" if prefix == "secret-" else '{{ secret("db") }}'
    longest = "f" * (limit - 1) + "1"
    files = accepted({P + prefix + longest: value}, base={}).files
    assert longest in [f.name for f in files]
    name = "f" * limit + "1"
    assert denial({P + prefix + name: value}) == (
        f"annotation {P}{prefix}{name}: FILE {name!r} has {limit + 1} characters, more than the "
        f"{limit} a {prefix}FILE annotation allows {LIMIT}; shorten the file name"
    )


def test_a_file_mode_key_fits_the_api_servers_limit_too() -> None:
    name = "f" * 53
    modes = accepted({P + "secret-" + name: "db", P + "file-mode-" + name: "0440"}).files
    assert [f.mode for f in modes if f.name == name] == [0o440]
    longer = name + "g"
    assert denial({P + "secret-" + longer: "db", P + "file-mode-" + longer: "0440"}) == (
        f"annotation {P}file-mode-{longer}: FILE {longer!r} has 54 characters, more than the "
        f"53 a file-mode-FILE annotation allows {LIMIT}; shorten the file name"
    )


def test_the_files_whose_mode_an_annotation_sets_are_recorded() -> None:
    # kept as set when the app's uid is unknown and the other files are made readable
    two = {P + "secret-api": "api"}
    assert accepted(two).options.explicit_modes == frozenset()
    assert accepted({**two, P + "file-mode-api": "0440"}).options.explicit_modes == {"api"}
    assert accepted({**two, P + "file-mode": "0440"}).options.explicit_modes == {"api", "db"}


@pytest.mark.parametrize("last", [".", "_", "-"])
@pytest.mark.parametrize("prefix", ["secret-", "template-", "file-mode-"])
def test_a_file_name_ends_with_a_letter_or_digit(prefix: str, last: str) -> None:
    key = f"{prefix}db{last}"
    assert denial({P + key: "db"}) == (
        f"annotation {P}{key}: FILE 'db{last}' ends with {last!r}, and Kubernetes requires an "
        "annotation key to end with a letter or digit; end the file name with one"
    )


def test_containers() -> None:
    assert accepted({P + "containers": " a, ,b,a "}).options.containers == ("a", "b")
    assert denial({P + "containers": " , "}) == (
        f"annotation {P}containers is empty; list app container names separated by commas, or "
        "remove it to mount into every app container"
    )


def test_the_credentials_secret_name_is_at_most_253_characters() -> None:
    assert accepted({P + "credentials-secret": "a" * 253}).mode == Direct("a" * 253)
    assert denial({P + "credentials-secret": "a" * 254}) == (
        f"annotation {P}credentials-secret: {'a' * 254!r} is not a Secret name; use lowercase "
        "letters, digits, '-' and '.' (at most 253 characters)"
    )


def test_run_as_ids() -> None:
    assert accepted({P + "run-as-user": "2147483647"}).options.run_as_user == 2**31 - 1
    for text in ("2147483648", "root"):
        assert denial({P + "run-as-user": text}) == (
            f"annotation {P}run-as-user: {text!r} is not a numeric id; write a number such as "
            '"1000" (names are not resolved)'
        )
    assert denial({P + "run-as-user": "0"}) == (
        f"annotation {P}run-as-user: the init container must not run as root (uid 0); set a "
        "non-root uid (an app running as root can still read the files)"
    )


def test_file_modes() -> None:
    assert denial({P + "file-mode-db": "9"}) == (
        f"annotation {P}file-mode-db: '9' is not an octal file mode; write e.g. \"0400\" (owner "
        'read) or "0440" (owner and group read)'
    )
    assert denial({P + "file-mode-db": "0001"}).endswith(
        'mode 0001 lets no one read the file; add a read bit, e.g. "0400"'
    )
    assert denial({P + "file-mode-db": "0200"}) == (
        f"annotation {P}file-mode-db: mode 0200 lets no one read the file; add a read bit, "
        'e.g. "0400"'
    )
    for text, mode in (("0004", 0o004), ("0040", 0o040), ("0400", 0o400)):
        assert accepted({P + "file-mode-db": text}).files[0].mode == mode
    assert denial({P + "file-mode-web": "0400", P + "secret-api": "api"}) == (
        f"annotation {P}file-mode-web sets the mode of file 'web', which no secret-FILE or "
        "template-FILE annotation writes; files: api, db"
    )


@pytest.mark.parametrize(
    ("path", "what"),
    [
        ("x/y", "is not an absolute path"),
        ("//", "is the root directory"),
        ("/", "is the root directory"),
        ("/a/./b", "has an empty, '.' or '..' segment"),
        ("/a/b/.", "has an empty, '.' or '..' segment"),
        ("/a//b", "has an empty, '.' or '..' segment"),
        ("/a//X", "has an empty, '.' or '..' segment"),
        ("/./a", "has an empty, '.' or '..' segment"),
        ("/../a", "has an empty, '.' or '..' segment"),
        ("/a/../b", "has an empty, '.' or '..' segment"),
        ("/a:b", "contains whitespace, ':' or '\\'"),
        ("/a\\b", "contains whitespace, ':' or '\\'"),
        ("/a b", "contains whitespace, ':' or '\\'"),
        ("/a\x00b", "contains whitespace, ':' or '\\'"),
    ],
)
def test_mount_path_refusals(path: str, what: str) -> None:
    assert denial({P + "mount-path": path}) == (
        f"annotation {P}mount-path: {path!r} {what}; {MOUNT_FIX}"
    )


def test_mount_paths_accepted() -> None:
    for path, kept in (("/a", "/a"), ("/a/", "/a"), ("/a.b/c", "/a.b/c"), ("/X", "/X")):
        assert accepted({P + "mount-path": path}).options.mount_path == kept


def test_the_token_directory_cannot_be_the_mount_path() -> None:
    token = "/var/run/secrets/sakura-secrets.io"
    for path in (token, token + "/x", "/var/run/secrets"):
        shown = path
        assert denial({P + "mount-path": path}) == (
            f"annotation {P}mount-path: {shown} overlaps {token}, where the injector mounts its "
            "token; choose another directory such as /sakura/secrets"
        )


def test_vault_ids() -> None:
    assert denial({P + "vault-id": "12"}) == (
        f"annotation {P}vault-id: '12' is not a Sakura vault ID; write its 12 digits, e.g. "
        '"123456789012"'
    )
    assert denial({}, base={P + "secret-db": "db"}, default_vault_id=None) == (
        f"no vault: set the annotation {P}vault-id to the 12-digit Sakura vault ID, or give the "
        "injector a default vault (its default_vault_id setting)"
    )


def test_a_request_may_equal_its_limit_but_not_exceed_it() -> None:
    same = accepted({P + "cpu-request": "100m", P + "cpu-limit": "100m"})
    assert same.options.resources.cpu_request == "100m"
    assert denial({P + "cpu-request": "200m", P + "cpu-limit": "100m"}) == (
        f"annotation {P}cpu-request: the cpu request 200m exceeds the cpu limit 100m; set "
        f"{P}cpu-limit at least as high as {P}cpu-request"
    )


RI = P + "refresh-interval"
INTERVAL_FIX = "write a duration like 30s, 5m, 1h or 1h30m, from 10s to 24h"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10s", 10), ("30s", 30), ("5m", 300), ("1h", 3600), ("1h30m", 5400), (" 24h ", 86400)],
)
def test_a_refresh_interval_is_a_duration(text: str, seconds: int) -> None:
    injection = accepted({RI: text})
    assert injection.refresh_interval == seconds
    assert injection.plan(Owner(uid=1, gid=2)).refresh_interval == seconds


def test_without_refresh_interval_the_plan_does_not_refresh() -> None:
    injection = accepted({})
    assert injection.refresh_interval is None
    assert injection.plan(Owner(uid=1, gid=2)).refresh_interval is None
    assert injection.options.refresh_resources == REFRESH_DEFAULTS


@pytest.mark.parametrize(
    "text", ["5", "9s", "24h1s", "25h", "0s", "", "1m30", "30s5m", "1d", "-5m"]
)
def test_a_bad_refresh_interval_names_the_annotation_the_forms_and_the_range(text: str) -> None:
    assert denial({RI: text}) == (
        f"annotation {RI}: {text!r} is not a refresh interval; {INTERVAL_FIX}"
    )


def test_a_pod_whose_every_secret_is_pinned_has_nothing_to_refresh() -> None:
    pinned = {
        P + "secret-db": "db@3",
        P + "secret-user": "db@3#user",
        P + "template-cfg": '{{ secret("api@2") }}',
        P + "vault-id": "110000000001",
    }
    assert denial({RI: "1m"}, base=pinned) == (
        f"annotation {RI}: every secret of this pod is pinned to a version (api@2, db@3), and "
        "a pinned version never changes, so there is nothing to refresh; remove "
        f"{RI}, or write NAME (the latest version) for the secrets that should follow rotation"
    )
    one_latest = {**pinned, P + "template-cfg": '{{ secret("api@2") }}{{ secret("tls") }}'}
    assert accepted({RI: "1m"}, base=one_latest).refresh_interval == 60


@pytest.mark.parametrize(
    "key",
    ["refresh-cpu-request", "refresh-cpu-limit", "refresh-memory-request", "refresh-memory-limit"],
)
def test_the_refresh_containers_sizes_need_a_refresh_interval(key: str) -> None:
    assert denial({P + key: "1"}) == (
        f"annotation {P}{key}: it sizes the refresh container, which only a pod with {RI} "
        f"gets; set {RI}, or remove {P}{key}"
    )
    amount = "100Mi" if "memory" in key else "100m"
    assert accepted({P + key: amount, RI: "1m"}).options.refresh_resources != REFRESH_DEFAULTS


def test_the_refresh_container_falls_back_to_the_shared_sizes_then_its_own_defaults() -> None:
    assert accepted({RI: "1m"}).options.refresh_resources == Resources(
        cpu_request="10m", cpu_limit="200m", memory_request="48Mi", memory_limit="128Mi"
    )
    shared = {
        P + "cpu-request": "20m",
        P + "cpu-limit": "300m",
        P + "memory-request": "50Mi",
        P + "memory-limit": "100Mi",
    }
    both = accepted({RI: "1m", **shared})
    assert both.options.refresh_resources == Resources("20m", "300m", "50Mi", "100Mi")
    assert both.options.resources == Resources("20m", "300m", "50Mi", "100Mi")
    own = {
        P + "refresh-cpu-request": " 5m ",
        P + "refresh-cpu-limit": "50m",
        P + "refresh-memory-request": "16Mi",
        P + "refresh-memory-limit": "32Mi",
    }
    mine = accepted({RI: "1m", **shared, **own})
    assert mine.options.refresh_resources == Resources("5m", "50m", "16Mi", "32Mi")
    assert mine.options.resources == Resources("20m", "300m", "50Mi", "100Mi")
    assert accepted({P + "cpu-request": "300m"}).options.refresh_resources == REFRESH_DEFAULTS


def test_a_refresh_container_request_over_its_limit_says_where_each_came_from() -> None:
    assert denial({RI: "1m", P + "cpu-request": "300m"}) == (
        f"annotation {P}cpu-request: the refresh container's cpu request 300m (from cpu-request) "
        f"exceeds the cpu limit 200m (the default); set {P}refresh-cpu-limit at least as high "
        f"as {P}cpu-request"
    )
    assert denial(
        {
            RI: "1m",
            P + "refresh-memory-request": "1Gi",
            P + "memory-limit": "1Gi",
            P + "refresh-memory-limit": "512Mi",
        }
    ) == (
        f"annotation {P}refresh-memory-request: the refresh container's memory request 1Gi "
        f"exceeds the memory limit 512Mi; set {P}refresh-memory-limit at least as high as "
        f"{P}refresh-memory-request"
    )
    assert denial({RI: "1m", P + "memory-limit": "32Mi"}) == (
        f"annotation {P}memory-limit: the memory request 64Mi exceeds the memory limit 32Mi; "
        f"set {P}memory-limit at least as high as {P}memory-request"
    )  # the init container's, checked first
    assert denial({RI: "1m", P + "refresh-memory-limit": "32Mi"}) == (
        f"annotation {P}refresh-memory-limit: the refresh container's memory request 48Mi "
        f"exceeds the memory limit 32Mi; set {P}refresh-memory-limit at least as high as "
        f"{P}refresh-memory-request"
    )
    assert denial({RI: "1m", P + "refresh-cpu-limit": "lots"}) == (
        f"annotation {P}refresh-cpu-limit: 'lots' is not a Kubernetes quantity; write e.g. 50m "
        "or 0.5 (cpu), 64Mi or 1G (memory)"
    )
    assert denial({RI: "1m", P + "cpu-limit": "lots"}).startswith(f"annotation {P}cpu-limit: ")


def test_a_plan_is_made_once_for_each_owner_and_the_oldest_of_too_many_is_forgotten() -> None:
    injection = accepted({})
    owners = [Owner(1000 + n, 2000 + n) for n in range(PLANS_PER_INJECTION + 1)]
    first = injection.plan(owners[0])
    assert injection.plan(Owner(1000, 2000)) is first
    assert injection.plan(Owner(1000, 2000, file_mode=0o440)) is not first
    assert injection.plan(Owner(1000, 2000, file_mode=0o440)).files[0].mode == 0o440
    assert (first.uid, first.gid) == (1000, 2000)
    # with the file_mode one, two more than a parse remembers: the first two go
    made = [injection.plan(owner) for owner in owners[1:]]
    assert len(made) == PLANS_PER_INJECTION
    assert all(injection.plan(owner) is plan for owner, plan in zip(owners[1:], made))
    again = injection.plan(owners[0])
    assert again is not first and again == first  # made again, the same plan
    assert accepted({}) == injection  # what the parse remembers is no part of its value


def test_a_plan_larger_than_the_bound_is_made_for_each_review_never_held() -> None:
    text = "x" * REMEMBERED_PLAN_BYTES + '{{ secret("db-password") }}'
    injection = accepted({"sakura-secrets.io/template-big": text})
    owner = Owner(1000, 2000)
    plan = injection.plan(owner)
    assert len(plan.to_json()) > REMEMBERED_PLAN_BYTES
    assert injection.plan(owner) is not plan and injection.plan(owner) == plan
    small = accepted({"sakura-secrets.io/template-small": text[REMEMBERED_PLAN_BYTES // 2 :]})
    assert small.plan(owner) is small.plan(owner)  # one under the bound is held
