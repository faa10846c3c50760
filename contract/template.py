"""Templates: parsed and scanned at admission, rendered by the init container.

Both sides use the same sandboxed jinja2 environment, so a template the webhook accepted is a
template the init container can render. The secrets a template reads must be named with
constant arguments, which is what lets the webhook authorize them before the pod exists.
"""

from __future__ import annotations

import difflib
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from contract.encoding import decode_base64_text, encode_base64
from contract.errors import PlanError
from contract.plan import SecretRef, SecretVersion

MAX_RENDERED_CHARS = 1 << 20
"""A rendered file above 1 MiB is a runaway loop, not a configuration file."""
MAX_RENDER_SECONDS = 10.0
"""Nested loops over literals can run for days; the init container must end with a reason."""
MAX_POWER_BITS = 4096


class _BoundedSandbox(ImmutableSandboxedEnvironment):
    """The sandbox keeps a template from files, env and attributes; these bounds, from runaways.

    `*` and `**` are checked before they run: one big-int power or string repetition is a single
    C call (no time limit can interrupt it), and jinja would fold constant ones while compiling.
    """

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            _check_power(left, right)
        else:
            _check_repetition(left, right)
        return super().call_binop(context, operator, left, right)

    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        """jinja2's own message quotes the attribute, which `|attr(secret("x"))` makes a value."""
        return self.undefined(
            f"access to an unsafe attribute of a {type(obj).__name__!r} object; names starting "
            "with '_' and methods that change data are blocked",
            exc=SecurityError,
        )


_ENV = _BoundedSandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
_ENV.filters["b64decode"] = decode_base64_text  # raises EncodingError, whose text names no value
_ENV.filters["b64encode"] = encode_base64
FILTERS = frozenset(_ENV.filters)
"""The filters a template may use (docs/annotations.md lists them): the sandbox's own set, so
the webhook refuses at admission exactly what the init container could not compile."""
TESTS = frozenset(_ENV.tests)
"""The tests (`is defined`, `is number`, …) a template may use, likewise."""
_ALLOWED_KWARGS = {"version", "key"}
_RESERVED = "the template assigns to 'secret', which is reserved; rename it"


def template_refs(source: str) -> tuple[SecretRef, ...]:
    """The secrets a template reads, in order of first use; raises PlanError if it cannot tell."""
    try:
        tree = _ENV.parse(source)
        return _scan(tree)
    except TemplateSyntaxError as exc:
        raise PlanError(f"the template does not parse: {exc.message} (line {exc.lineno})") from None
    except RecursionError:  # jinja2's parser and node walk recurse once per nesting level
        raise PlanError("the template nests too deeply to parse; simplify it") from None


def template_tokens(source: str, limit: int) -> int:
    """How many jinja2 tokens `source` lexes into, counting no further than `limit + 1`.

    Parsing costs a few microseconds a token, whatever the template's length in bytes (plain
    text between tags is one token), so this is what the webhook budgets before it parses.
    A lexing error stops the count: parsing then reports it with its line.
    """
    count = 0
    try:
        for _ in _ENV.lex(source):
            count += 1
            if count > limit:
                break
    except TemplateSyntaxError:
        pass
    return count


def _scan(tree: nodes.Template) -> tuple[SecretRef, ...]:
    """One pass over the tree; the checks then run in the order their messages have priority."""
    calls: list[nodes.Call] = []
    secret_names: list[nodes.Name] = []
    loads: list[str] = []
    local: set[str] = set()
    used: list[tuple[str, str]] = []  # ("filter" or "test", its name), in the template's order
    for node in _walk(tree):
        if isinstance(node, nodes.Filter | nodes.Test):
            used += _filters_and_tests(node)
        if isinstance(node, nodes.Macro):
            local.add(node.name)  # the template's own code: the calls in its body are scanned
        elif isinstance(node, nodes.Call):
            if isinstance(node.node, nodes.Name) and node.node.name == "secret":
                calls.append(node)
        elif isinstance(node, nodes.Name):
            if node.name == "secret":
                secret_names.append(node)
            elif node.ctx == "load":
                loads.append(node.name)
            elif node.ctx in ("store", "param"):
                local.add(node.name)  # assigned in the template itself: not an outside input
    callees = {id(call.node) for call in calls}
    if "secret" in local:  # a macro named secret
        raise PlanError(_RESERVED)
    for name in secret_names:
        if name.ctx != "load":
            raise PlanError(_RESERVED)
        if id(name) not in callees:
            raise PlanError(
                'secret must be called directly, e.g. secret("NAME"); passed around it would '
                "read secrets the injector cannot see at admission"
            )
    refs = dict.fromkeys(_ref_of_call(call) for call in calls)
    if not refs:
        raise PlanError('the template reads no secret; call secret("NAME") at least once')
    for loaded in loads:
        if loaded not in local:
            raise PlanError(
                f"the template uses {loaded!r}, which is not defined; only secret(...) is"
            )
    for kind, known in used:
        _check_known(kind, known)
    return tuple(refs)


_BY_NAME = {"map": ("filter", 0), "select": ("test", 0), "reject": ("test", 0)}
_BY_NAME |= {"selectattr": ("test", 1), "rejectattr": ("test", 1)}
"""Filters that apply another filter or test named by a string argument, and its position."""


def _filters_and_tests(node: nodes.Filter | nodes.Test) -> list[tuple[str, str]]:
    """The node's own name, and the one `map("upper")` or `select("odd")` names as a constant."""
    if isinstance(node, nodes.Test):
        return [("test", node.name)]
    found = [("filter", node.name)]
    applied = _BY_NAME.get(node.name)
    if applied is not None and applied[1] < len(node.args):  # map(attribute=...) names none
        named = node.args[applied[1]]
        if isinstance(named, nodes.Const) and isinstance(named.value, str):  # else at render
            found.append((applied[0], named.value))
    return found


def _check_known(kind: str, name: str) -> None:
    """jinja2 resolves filters and tests when it compiles, which only the init container does:
    an unknown one is refused here, with the closest known name, instead of failing the pod."""
    known = FILTERS if kind == "filter" else TESTS
    if name in known:
        return
    close = difflib.get_close_matches(name, sorted(known))
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise PlanError(
        f"the template uses the {kind} {name!r}, which is not a known {kind}; {hint}"
        f"the {kind}s a template may use are listed in docs/annotations.md (Templates)"
    )


def _walk(tree: nodes.Template) -> Iterator[nodes.Node]:
    """Every node below `tree` in the order of `find_all`, without its generator per level.

    `find_all` nests one generator per level, so each node costs as much as its depth.
    """
    pending = list(tree.iter_child_nodes())
    pending.reverse()
    while pending:
        node = pending.pop()
        yield node
        children = list(node.iter_child_nodes())
        children.reverse()
        pending += children


def render(
    source: str,
    values: Mapping[SecretVersion, str],
    extract: ExtractKey,
    *,
    seconds: float = MAX_RENDER_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """Render with the fetched values; `values` must hold every ref of `template_refs`.

    Raises jinja2's SecurityError when the template breaks the sandbox or a bound: more than
    MAX_RENDERED_CHARS of output, oversized `*`/`**`, more than `seconds` of work, or recursion
    past Python's limit.
    `clock` is read between output chunks; SIGALRM, in real time, stops a loop that has none.
    """

    def secret(text: str, version: int | None = None, key: str | None = None) -> str:
        ref = _merge(SecretRef.parse(text), version, key)
        value = values[ref.fetch]
        return value if ref.key is None else extract(value, ref.key, ref)

    ends = clock() + seconds
    parts: list[str] = []
    size = 0
    with _time_limit(seconds):
        try:
            for chunk in _ENV.from_string(source).generate(secret=secret):
                size += len(chunk)
                if size > MAX_RENDERED_CHARS:
                    raise SecurityError(
                        f"the rendered file would be larger than {MAX_RENDERED_CHARS >> 20} MiB; "
                        "check the template's loops"
                    )
                if clock() > ends:
                    _too_slow(seconds)
                parts.append(chunk)
        except RecursionError:  # a macro that calls itself: an error with a reason, not a crash
            raise SecurityError(
                "the template recurses too deeply to render; check for a macro that calls itself"
            ) from None
    return "".join(parts)


ExtractKey = Callable[[str, str, SecretRef], str]
"""(value, key, ref) -> the key's value; raises with a message naming ref, never the value."""


def _ref_of_call(call: nodes.Call) -> SecretRef:
    if len(call.args) != 1 or not isinstance(call.args[0], nodes.Const):
        raise PlanError(
            'secret(...) takes one constant name, e.g. secret("db") or secret("db@2#user"); '
            "names computed at render time cannot be authorized at admission"
        )
    name = call.args[0].value
    if not isinstance(name, str):
        raise PlanError(
            f'secret(...) takes a string name in quotes, e.g. secret("db"), not secret({name!r})'
        )
    if call.dyn_args is not None or call.dyn_kwargs is not None:
        raise PlanError(
            "secret(...) does not take *args or **kwargs; write the name, version= and key= out, "
            'e.g. secret("db", version=2, key="user")'
        )
    version: int | None = None
    key: str | None = None
    for kw in call.kwargs:
        if kw.key not in _ALLOWED_KWARGS or not isinstance(kw.value, nodes.Const):
            raise PlanError(
                f"secret(...) takes only constant version= and key= arguments, not {kw.key}="
            )
        if kw.key == "version":
            if not isinstance(kw.value.value, int) or isinstance(kw.value.value, bool):
                raise PlanError(
                    f"version= of secret({name!r}) must be a whole number, e.g. version=2"
                )
            version = kw.value.value
        else:
            if not isinstance(kw.value.value, str):
                raise PlanError(f'key= of secret({name!r}) must be a string, e.g. key="user"')
            key = kw.value.value
    return _merge(SecretRef.parse(name), version, key)


def _merge(ref: SecretRef, version: int | None, key: str | None) -> SecretRef:
    if version is not None and ref.version is not None:
        raise PlanError(
            f"secret({str(ref)!r}) gives the version twice; give it once, in the name or as "
            "version="
        )
    if key is not None and ref.key is not None:
        raise PlanError(
            f"secret({str(ref)!r}) gives the key twice; give it once, in the name or as key="
        )
    return SecretRef(
        ref.name,
        version if version is not None else ref.version,
        key if key is not None else ref.key,
    )


# The bound errors name the bound and the operation, never an operand: either may come from a
# secret (`secret("n") | int`), and a number computed from one is as telling as the value.


def _check_power(base: Any, exponent: Any) -> None:
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
        if exponent * abs(base).bit_length() > MAX_POWER_BITS:
            raise SecurityError(
                f"a power (**) whose result would exceed {MAX_POWER_BITS} bits is too large for "
                "a template"
            )


def _check_repetition(left: Any, right: Any) -> None:
    for items, times in ((left, right), (right, left)):
        if isinstance(items, str | list | tuple) and isinstance(times, int):
            if len(items) * times > MAX_RENDERED_CHARS:
                raise SecurityError(
                    f"a repetition (*) longer than {MAX_RENDERED_CHARS} items is too large for "
                    "a template"
                )


def _too_slow(seconds: float) -> None:
    raise SecurityError(
        f"the template ran for more than {seconds:g}s; check its loops (nested loops over long "
        "values multiply)"
    )


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """SIGALRM interrupts a loop that yields no output; only the main thread can receive it.

    Elsewhere (threads, no SIGALRM) the clock is checked between output chunks only.
    """
    if threading.current_thread() is not threading.main_thread() or not hasattr(
        signal, "setitimer"
    ):
        yield
        return

    def expire(signum: int, frame: object) -> None:
        _too_slow(seconds)

    started = time.monotonic()
    previous = signal.signal(signal.SIGALRM, expire)
    earlier, interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if earlier > 0:  # someone else's alarm was pending: give it back what is left
            left = max(0.001, earlier - (time.monotonic() - started))
            signal.setitimer(signal.ITIMER_REAL, left, interval)
