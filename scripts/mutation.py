"""Mutation testing of the critical modules with mutmut, one module at a time.

Each module is mutated in its own scratch copy of the repository (.mutation/<module>/) with only
the unit tests that exercise it, so a run needs no cluster and one module's result never waits
for another's tests. Prints killed / total per module and every survivor as file:line and the
mutation; exits 1 when a module is below the threshold or mutmut itself failed.

Run through scripts/mutation, which sets up .venv first (see docs/testing.md).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".mutation"
PACKAGES = ("contract", "sakura", "emulator", "injector", "sidecar")
THRESHOLD = 90.0
TEST_TIMEOUT = 120
"""Seconds one test may take under a mutant; the unit tests selected here take well under one."""
TIMEOUT_MULTIPLIER = 5.0
KILLED = {"killed", "timeout", "segfault", "caught by type check"}


@dataclass(frozen=True)
class Target:
    """A module to mutate, the unit tests that exercise it, and whether CI runs it."""

    path: str
    tests: tuple[str, ...]
    ci: bool = False


SAKURA_CLIENT_TESTS = (
    "tests/sakura/test_client_unit.py",
    "tests/sakura/test_sakura_wire_unit.py",
    "tests/sakura/test_sakura_client.py::test_tls_is_verified_by_default_and_a_ca_bundle_file_is_trusted",
    "tests/sakura/test_client_principal.py",
)
"""The client, its errors, its wire shapes and its status mapping are reached through whole
calls on crafted answers; only TLS needs the emulator (over TLS). The other emulator tests
(test_sakura_client.py, test_sakura_secrecy.py) kill nothing more and would make the run 22
minutes."""

TARGETS = (
    Target("injector/broker/tokens.py", ("tests/broker/test_tokens_unit.py",), ci=True),
    Target("injector/broker/access.py", ("tests/broker/test_access_unit.py",), ci=True),
    Target("injector/broker/readers.py", ("tests/broker/test_readers_unit.py",), ci=True),
    Target("contract/broker.py", ("tests/broker/test_wire_unit.py",), ci=True),
    Target("injector/serving/broker_routes.py", ("tests/broker/test_routes_unit.py",), ci=True),
    Target(
        "injector/serving/answers.py",
        ("tests/broker/test_answers_unit.py", "tests/broker/test_routes_unit.py"),
        ci=True,
    ),
    Target("injector/broker/cache.py", ("tests/broker/test_cache_unit.py",), ci=True),
    Target("injector/broker/copies.py", ("tests/broker/test_cache_unit.py",), ci=True),
    Target(
        "injector/broker/admission_check.py",
        ("tests/broker/test_admission_check_unit.py",),
        ci=True,
    ),
    Target(
        "injector/broker/inventory.py",
        ("tests/broker/test_inventory_unit.py", "tests/broker/test_cache_unit.py"),
        ci=True,
    ),
    Target(
        "injector/broker/memo.py",
        (
            "tests/broker/test_memo_unit.py",
            "tests/broker/test_tokens_unit.py",
            "tests/broker/test_access_unit.py",
            "tests/broker/test_cache_unit.py",
        ),
        ci=True,
    ),
    Target(
        "injector/broker/service.py",
        (
            "tests/broker/test_service_unit.py",
            "tests/broker/test_routes_unit.py",
            "tests/broker/test_tokens_unit.py",
            "tests/broker/test_access_unit.py",
        ),
        ci=True,
    ),
    Target(
        "sidecar/writer.py",
        (
            "tests/sidecar/test_sidecar_files.py",
            "tests/sidecar/test_writer_unit.py",
            "tests/sidecar/test_binary_files.py",
        ),
        ci=True,
    ),
    Target("sidecar/termination.py", ("tests/sidecar/test_termination_unit.py",), ci=True),
    Target("sidecar/broker_client.py", ("tests/sidecar/test_broker_client_unit.py",), ci=True),
    Target(
        "sidecar/refresh.py",
        (
            "tests/sidecar/test_refresh_broker.py",
            "tests/sidecar/test_refresh_direct.py",
            "tests/sidecar/test_refresh_entry_point.py",
        ),
        ci=True,
    ),
    Target(
        "injector/webhook/pod/init_container.py",
        ("tests/injector/unit/test_pod_builders.py", "tests/injector/unit/test_env_vars.py"),
        ci=True,
    ),
    Target(
        "injector/webhook/pod/container.py",
        ("tests/injector/unit/test_pod_builders.py", "tests/injector/unit/test_refresh_pod.py"),
        ci=True,
    ),
    Target(
        "injector/webhook/pod/refresh_container.py",
        ("tests/injector/unit/test_refresh_pod.py", "tests/injector/unit/test_env_vars.py"),
        ci=True,
    ),
    Target(
        "injector/webhook/pod/mounts.py", ("tests/injector/unit/test_pod_builders.py",), ci=True
    ),
    Target(
        "injector/webhook/pod/ownership.py",
        (
            "tests/injector/unit/test_injector_ownership.py",
            "tests/injector/unit/test_pod_builders.py",
        ),
        ci=True,
    ),
    Target(
        "injector/webhook/pod/resources.py",
        ("tests/injector/unit/test_pod_builders.py", "tests/injector/unit/test_refresh_pod.py"),
        ci=True,
    ),
    Target(
        "injector/webhook/pod/volumes.py", ("tests/injector/unit/test_pod_builders.py",), ci=True
    ),
    Target(
        "injector/webhook/mutation.py",
        (
            "tests/injector/unit/test_injector_admission.py",
            "tests/injector/unit/test_pod_builders.py",
            "tests/injector/unit/test_refresh_pod.py",
            "tests/injector/unit/test_env_vars.py",
        ),
        ci=True,
    ),
    Target(
        "contract/plan.py",
        (
            "tests/unit/test_plan.py",
            "tests/unit/test_plan_model_unit.py",
            "tests/contract/test_refresh_interval_unit.py",
            "tests/sidecar/test_binary_files.py",
            "tests/unit/test_plan_env_unit.py",
        ),
        ci=True,
    ),
    Target(
        "injector/webhook/admission.py",
        (
            "tests/injector/unit/test_admission_review_unit.py",
            "tests/injector/unit/test_refresh_pod.py",
            "tests/injector/unit/test_decision_reasons.py",
            "tests/injector/unit/test_env_vars.py",
        ),
        ci=True,
    ),
    Target(
        "injector/webhook/decision.py",
        (
            "tests/injector/unit/test_decision_reasons.py",
            "tests/injector/unit/test_admission_review_unit.py",
        ),
        ci=True,
    ),
    Target(
        "injector/serving/connections.py",
        ("tests/injector/unit/test_connections_unit.py",),
        ci=True,
    ),
    Target(
        "injector/serving/address_filter.py",
        ("tests/injector/unit/test_address_filter_unit.py",),
        ci=True,
    ),
    Target(
        "injector/serving/buckets.py",
        (
            "tests/injector/unit/test_buckets_unit.py",
            "tests/injector/unit/test_connections_unit.py",
        ),
        ci=True,
    ),
    Target(
        "contract/template.py",
        (
            "tests/unit/test_plan.py",
            "tests/unit/test_plan_model_unit.py",
            "tests/unit/test_template_unit.py",
            "tests/injector/unit/test_injector_render.py",
            "tests/injector/unit/test_injector_bounds.py",
            "tests/sidecar/test_writer_unit.py",
            "tests/unit/test_template_filters_unit.py",
            "tests/injector/unit/test_file_annotations_unit.py",
        ),
        ci=True,
    ),
    Target(
        "injector/webhook/annotations.py",
        (
            "tests/injector/unit/test_injector_parts.py",
            "tests/injector/unit/test_injector_admission.py",
            "tests/injector/unit/test_annotations_unit.py",
            "tests/injector/unit/test_injector_bounds.py",
            "tests/injector/unit/test_injector_ownership.py",
            "tests/injector/unit/test_text_memo_unit.py",
            "tests/injector/unit/test_env_vars.py",
        ),
        ci=True,
    ),
    Target(
        "injector/webhook/container_resources.py",
        (
            "tests/injector/unit/test_annotations_unit.py",
            "tests/injector/unit/test_injector_admission.py",
        ),
        ci=True,
    ),
    Target(
        "injector/webhook/files.py",
        (
            "tests/injector/unit/test_injector_parts.py",
            "tests/injector/unit/test_injector_admission.py",
            "tests/injector/unit/test_annotations_unit.py",
            "tests/injector/unit/test_injector_bounds.py",
            "tests/injector/unit/test_file_annotations_unit.py",
            "tests/injector/unit/test_env_vars.py",
        ),
        ci=True,
    ),
    Target("contract/env_file.py", ("tests/unit/test_env_file_unit.py",), ci=True),
    Target("injector/webhook/env_vars.py", ("tests/injector/unit/test_env_vars.py",), ci=True),
    Target("injector/webhook/pod/env.py", ("tests/injector/unit/test_env_vars.py",), ci=True),
    Target(
        "sidecar/env_writer.py",
        ("tests/sidecar/test_sidecar_env_file.py", "tests/sidecar/test_env_secrecy.py"),
        ci=True,
    ),
    Target(
        "injector/webhook/template_analysis.py",
        ("tests/injector/unit/test_template_analysis_unit.py",),
        ci=True,
    ),
    Target(
        "injector/webhook/text_memo.py",
        (
            "tests/injector/unit/test_text_memo_unit.py",
            "tests/injector/unit/test_template_analysis_unit.py",
        ),
        ci=True,
    ),
    Target(
        "injector/webhook/pod_checks.py",
        (
            "tests/injector/unit/test_pod_builders.py",
            "tests/injector/unit/test_injector_ownership.py",
            "tests/injector/unit/test_injector_admission.py",
            "tests/injector/unit/test_refresh_pod.py",
        ),
        ci=True,
    ),
    Target(
        "injector/webhook/quantity.py",
        ("tests/injector/unit/test_pod_builders.py", "tests/injector/unit/test_injector_parts.py"),
        ci=True,
    ),
    Target(
        "injector/serving/review_queue.py",
        (
            "tests/injector/unit/test_admission_review_unit.py",
            "tests/injector/unit/test_decision_reasons.py",
            "tests/injector/unit/test_review_screen_unit.py",
        ),
        ci=True,
    ),
    Target(
        "injector/serving/admission_review.py",
        (
            "tests/injector/unit/test_admission_review_unit.py",
            "tests/injector/unit/test_decision_reasons.py",
        ),
        ci=True,
    ),
    Target(
        "injector/broker/metrics.py",
        (
            "tests/broker/test_broker_metrics_unit.py",
            "tests/broker/test_service_unit.py",
            "tests/broker/test_routes_unit.py",
            "tests/broker/test_cache_unit.py",
        ),
        ci=True,
    ),
    Target(
        "injector/namespace_labels.py",
        (
            "tests/injector/unit/test_namespace_labels_unit.py",
            "tests/injector/unit/test_admission_metrics_unit.py",
            "tests/broker/test_broker_metrics_unit.py",
        ),
        ci=True,
    ),
    Target(
        "injector/serving/metrics.py",
        (
            "tests/injector/unit/test_admission_metrics_unit.py",
            "tests/injector/unit/test_admission_review_unit.py",
        ),
        ci=True,
    ),
    Target("injector/fair_queue.py", ("tests/broker/test_fair_queue_unit.py",), ci=True),
    Target("injector/events.py", ("tests/injector/unit/test_events_unit.py",), ci=True),
    Target("sakura/retry.py", ("tests/sakura/test_retry_unit.py",), ci=True),
    Target(
        "sakura/bearer.py",
        ("tests/sakura/test_bearer_unit.py", "tests/sakura/test_principal_unit.py"),
        ci=True,
    ),
    Target("sakura/principal.py", ("tests/sakura/test_principal_unit.py",), ci=True),
    Target(
        "sakura/authorizer.py",
        (
            "tests/sakura/test_authorizer_unit.py",
            "tests/sakura/test_client_principal.py",
            "tests/sakura/test_bearer_unit.py",
        ),
        ci=True,
    ),
    Target(
        "emulator/principals.py",
        (
            "tests/sakura/test_principals_unit.py",
            "tests/sakura/test_emulator_iam.py",
            "tests/contract/test_contract_iam.py",
        ),
        # a test double, like the rest of emulator/: not in CI, run by hand
    ),
    Target(
        "sakura/ratelimit.py",
        ("tests/sakura/test_ratelimit_unit.py", "tests/sakura/test_sakura_fairness.py"),
        ci=True,
    ),
    Target("sakura/client.py", SAKURA_CLIENT_TESTS, ci=True),
    Target(
        "sakura/attempts.py", (*SAKURA_CLIENT_TESTS, "tests/sakura/test_sync_reader.py"), ci=True
    ),
    Target("sakura/reads.py", (*SAKURA_CLIENT_TESTS, "tests/sakura/test_sync_reader.py"), ci=True),
    Target("sakura/sync_reader.py", ("tests/sakura/test_sync_reader.py",), ci=True),
    Target("sakura/errors.py", SAKURA_CLIENT_TESTS, ci=True),
    Target("sakura/wire.py", SAKURA_CLIENT_TESTS, ci=True),
    Target("sakura/statuses.py", SAKURA_CLIENT_TESTS, ci=True),
    Target("injector/operations/doctor/selectors.py", ("tests/injector/unit/test_doctor_unit.py",)),
    Target("injector/operations/doctor/results.py", ("tests/injector/unit/test_doctor_unit.py",)),
    Target("injector/operations/doctor/install.py", ("tests/injector/unit/test_doctor_unit.py",)),
    Target(
        "injector/operations/doctor/network.py",
        (
            "tests/injector/unit/test_doctor_unit.py",
            "tests/injector/unit/test_doctor_network_unit.py",
        ),
    ),
    Target("injector/operations/doctor/tls.py", ("tests/injector/unit/test_doctor_tls_unit.py",)),
    Target(
        "injector/operations/doctor/workload.py",
        ("tests/injector/unit/test_doctor_workload_unit.py",),
    ),
    # issue 23: binary files, chosen names, the base64 filters
    Target(
        "contract/encoding.py",
        ("tests/unit/test_template_filters_unit.py", "tests/sidecar/test_binary_files.py"),
        ci=True,
    ),
    Target(
        "contract/file_names.py",
        ("tests/unit/test_plan.py", "tests/injector/unit/test_file_annotations_unit.py"),
        ci=True,
    ),
    Target(
        "injector/webhook/file_names.py",
        ("tests/injector/unit/test_file_annotations_unit.py",),
        ci=True,
    ),
    Target(
        "injector/webhook/encodings.py",
        ("tests/injector/unit/test_file_annotations_unit.py",),
        ci=True,
    ),
)


@dataclass(frozen=True)
class Survivor:
    name: str
    status: str
    where: str
    change: str


@dataclass(frozen=True)
class Score:
    target: Target
    killed: int
    total: int
    survivors: tuple[Survivor, ...]
    seconds: float
    error: str = ""

    @property
    def percent(self) -> float:
        return 100.0 * self.killed / self.total if self.total else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="module paths (default: all of them)")
    parser.add_argument("--ci", action="store_true", help="only the modules CI runs")
    parser.add_argument("--list", action="store_true", help="print the modules and their tests")
    parser.add_argument("--threshold", type=float, default=THRESHOLD, help="percent (default 90)")
    parser.add_argument("--jobs", type=int, default=2, help="mutants tested at once (default 2)")
    parser.add_argument(
        "--tests", help="pytest arguments instead of the module's own tests, e.g. 'tests/unit -x'"
    )
    args = parser.parse_args()

    targets = select(args.modules, ci=args.ci)
    if args.tests:
        targets = [Target(t.path, tuple(shlex.split(args.tests)), t.ci) for t in targets]
    if args.list:
        for t in targets:
            print(f"{t.path}{'  [ci]' if t.ci else ''}: {' '.join(t.tests)}")
        return 0
    started = time.monotonic()
    scores = []
    for target in targets:
        score = run(target, jobs=args.jobs)
        print_score(score, args.threshold)
        scores.append(score)
    print(f"\n== mutation scores (threshold {args.threshold:g}%)")
    for s in scores:
        verdict = "ok" if ok(s, args.threshold) else "BELOW"
        shown = f"error: {s.error}" if s.error else f"{s.killed}/{s.total} killed"
        print(f"{verdict:5} {s.percent:5.1f}%  {s.target.path}  {shown}  ({s.seconds:.0f} s)")
    print(f"total {time.monotonic() - started:.0f} s for {len(scores)} modules")
    passed = sum(1 for s in scores if ok(s, args.threshold))
    print(f"mutation: {passed} passed, {len(scores) - passed} failed")  # modules, for CI's log
    return 0 if passed == len(scores) else 1


def select(names: list[str], *, ci: bool) -> list[Target]:
    by_path = {t.path: t for t in TARGETS}
    if not names:
        return [t for t in TARGETS if t.ci or not ci]
    unknown = [n for n in names if n not in by_path]
    if unknown:
        known = ", ".join(by_path)
        raise SystemExit(f"scripts/mutation: unknown module {unknown[0]!r}; choose from {known}")
    return [by_path[n] for n in names]


def ok(score: Score, threshold: float) -> bool:
    return not score.error and score.percent >= threshold


BASELINE_FAILED = "failed to collect stats"
"""What mutmut prints when the unmutated code fails its tests (before any mutant runs)."""


def run(target: Target, *, jobs: int) -> Score:
    """mutmut in a fresh scratch copy: no results of an earlier run of other code are reused.

    When the unmutated code fails its own tests, the copy is made and run once more before the
    module is reported: one flaky test (seen once in CI: a subprocess test whose SIGTERM went
    unanswered for 60 s under mutmut's instrumentation, never reproduced in 65 runs alone)
    should not fail the whole run; a real failure fails twice and is reported as before."""
    print(f"== {target.path}: mutating, tests {' '.join(target.tests)}", flush=True)
    started = time.monotonic()
    work = WORK / target.path.replace("/", "_").removesuffix(".py")
    log = work / "mutmut.log"
    for attempt in range(2):
        prepare(work, target)
        with log.open("w") as sink:
            done = subprocess.run(
                ["mutmut", "run", "--max-children", str(jobs)],
                cwd=work,
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        baseline_failed = BASELINE_FAILED in log.read_text(errors="replace")
        if done.returncode == 0 or not baseline_failed or attempt:
            break
        failed = [ln for ln in log.read_text(errors="replace").splitlines() if "FAILED" in ln]
        print(f"   the unmutated code failed its tests ({'; '.join(failed[:3])}): once more")
    seconds = time.monotonic() - started
    if done.returncode != 0:
        tail = log.read_text(errors="replace").replace("\r", "\n").strip().splitlines()[-15:]
        print("\n".join(tail))
        return Score(target, 0, 0, (), seconds, f"mutmut exited {done.returncode}, see {log}")
    statuses = load_statuses(work, target.path)
    if not statuses:
        return Score(target, 0, 0, (), seconds, f"mutmut made no mutants, see {log}")
    killed = sum(1 for s in statuses.values() if s in KILLED)
    survivors = tuple(
        describe(work, target.path, name, status)
        for name, status in sorted(statuses.items(), key=lambda kv: _number_key(kv[0]))
        if status not in KILLED
    )
    return Score(target, killed, len(statuses), survivors, seconds)


def prepare(work: Path, target: Target) -> None:
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    names = [n for n in files.split("\0") if n and not n.startswith(WORK.name + "/")]
    for name in names:  # the work tree as it is, edits included
        source = ROOT / name
        if source.is_file():
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, work / name)
    pyproject = (ROOT / "pyproject.toml").read_text()
    config = {
        "source_paths": list(PACKAGES),
        # tests read files beside the code (manifests/, docs/): mutmut runs them in mutants/
        "also_copy": sorted({n.split("/")[0] for n in names} - set(PACKAGES)),
        "only_mutate": [target.path],
        "pytest_add_cli_args_test_selection": list(target.tests),
        # a mutant that sleeps (a retry delay made huge) burns no CPU time, so mutmut's CPU
        # limit would not stop it: bound each test's wall time instead
        "pytest_add_cli_args": ["-p", "no:cacheprovider", f"--timeout={TEST_TIMEOUT}"],
        "use_git_change_detection": False,
        # a mutant that hangs (a waiter never woken) is stopped after its tests' measured time
        # plus 1 s, times this, and counts as killed: mutmut's 15 made each such mutant cost
        # 15 s; the unit tests here take well under a second even on a loaded machine
        "timeout_multiplier": TIMEOUT_MULTIPLIER,
    }
    lines = ["", "[tool.mutmut]", *(f"{k} = {json.dumps(v)}" for k, v in config.items())]
    (work / "pyproject.toml").write_text(pyproject + "\n".join(lines) + "\n")


def load_statuses(work: Path, path: str) -> dict[str, str]:
    meta = work / "mutants" / (path + ".meta")
    if not meta.exists():
        return {}
    codes = json.loads(meta.read_text())["exit_code_by_key"]
    return {name: status_of(code) for name, code in codes.items()}


def status_of(code: int | None) -> str:
    """mutmut's exit codes of a mutant's test run (mutmut/stats.py)."""
    named: dict[int | None, str] = {
        1: "killed",
        3: "killed",
        0: "survived",
        5: "no tests",
        33: "no tests",
    }
    named |= {34: "skipped", 36: "timeout", 37: "caught by type check", None: "not checked"}
    named |= {-24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout"}
    named |= {-11: "segfault", -9: "segfault"}
    return named.get(code, "suspicious")


def describe(work: Path, path: str, name: str, status: str) -> Survivor:
    """file:line of the first changed line and the change, from `mutmut show`'s diff."""
    shown = subprocess.run(
        ["mutmut", "show", name],
        cwd=work,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=False,
    ).stdout
    removed = [ln[1:].strip() for ln in shown.splitlines() if _is_change(ln, "-")]
    added = [ln[1:].strip() for ln in shown.splitlines() if _is_change(ln, "+")]
    offset = _first_changed_line(shown)
    start = _function_start(ROOT / path, name)
    line = f"{start + offset}" if start and offset is not None else "?"
    change = f"{' / '.join(removed) or '(nothing)'}  ->  {' / '.join(added) or '(removed)'}"
    return Survivor(name, status, f"{path}:{line}", change)


def _is_change(line: str, sign: str) -> bool:
    return line.startswith(sign) and not line.startswith(sign * 3)


def _first_changed_line(diff: str) -> int | None:
    """0-based line of the first removed line within the function's text (hunk header)."""
    current = None
    for ln in diff.splitlines():
        hunk = re.match(r"@@ -(\d+)", ln)
        if hunk:
            current = int(hunk.group(1)) - 1
            continue
        if current is None or ln.startswith(("---", "+++")):
            continue
        if ln.startswith(("-", "+")):
            return current
        current += 1
    return None


def _function_start(source: Path, name: str) -> int | None:
    """First line (decorators included) of the function or method a mutant name points at."""
    mangled = name.rpartition(".")[2].rsplit("__mutmut_", 1)[0]
    if mangled.startswith("x\u01c1"):
        cls, _, func = mangled[2:].partition("\u01c1")
    else:
        cls, func = "", mangled.removeprefix("x_")
    tree = ast.parse(source.read_text())
    scope: list[ast.stmt] = tree.body
    if cls:
        classes = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls]
        if not classes:
            return None
        scope = classes[0].body
    for node in scope:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == func:
            return min([node.lineno, *(d.lineno for d in node.decorator_list)])
    return None


def _number_key(name: str) -> tuple[str, int]:
    head, _, number = name.rpartition("__mutmut_")
    return head, int(number) if number.isdigit() else 0


def print_score(score: Score, threshold: float) -> None:
    if score.error:
        print(f"   {score.target.path}: {score.error}")
        return
    verdict = "ok" if ok(score, threshold) else f"BELOW {threshold:g}%"
    print(
        f"   {score.target.path}: {score.killed}/{score.total} killed "
        f"({score.percent:.1f}%, {verdict}) in {score.seconds:.0f} s"
    )
    for s in score.survivors:
        print(f"   {s.status}: {s.where}  {s.change}")
    sys.stdout.flush()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    sys.exit(main())
