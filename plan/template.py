"""Templates: parsed and scanned at admission, rendered by the init container.

Both sides use the same sandboxed jinja2 environment, so a template the webhook accepted is a
template the init container can render. The secrets a template reads must be named with
constant arguments, which is what lets the webhook authorize them before the pod exists.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from plan.model import PlanError, SecretRef, SecretVersion

_ENV = ImmutableSandboxedEnvironment(
    undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
)
_ALLOWED_KWARGS = {"version", "key"}


def template_refs(source: str) -> tuple[SecretRef, ...]:
    """The secrets a template reads, in order of first use; raises PlanError if it cannot tell."""
    try:
        tree = _ENV.parse(source)
    except TemplateSyntaxError as exc:
        raise PlanError(f"the template does not parse: {exc.message} (line {exc.lineno})") from None
    refs: list[SecretRef] = []
    for call in tree.find_all(nodes.Call):
        if not (isinstance(call.node, nodes.Name) and call.node.name == "secret"):
            continue
        ref = _ref_of_call(call)
        if ref not in refs:
            refs.append(ref)
    if not refs:
        raise PlanError('the template reads no secret; call secret("NAME") at least once')
    for name in tree.find_all(nodes.Name):
        if name.ctx == "load" and name.name != "secret" and not _is_local(tree, name.name):
            raise PlanError(
                f"the template uses {name.name!r}, which is not defined; only secret(...) is"
            )
    return tuple(refs)


def render(source: str, values: Mapping[SecretVersion, str], extract: ExtractKey) -> str:
    """Render with the fetched values; `values` must hold every ref of `template_refs`."""

    def secret(text: str, version: int | None = None, key: str | None = None) -> str:
        ref = _merge(SecretRef.parse(text), version, key)
        value = values[ref.fetch]
        return value if ref.key is None else extract(value, ref.key, ref)

    return _ENV.from_string(source).render(secret=secret)


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
        raise PlanError("secret(...) takes a string name")
    if call.dyn_args is not None or call.dyn_kwargs is not None:
        raise PlanError("secret(...) does not take *args or **kwargs")
    version: int | None = None
    key: str | None = None
    for kw in call.kwargs:
        if kw.key not in _ALLOWED_KWARGS or not isinstance(kw.value, nodes.Const):
            raise PlanError(
                f"secret(...) takes only constant version= and key= arguments, not {kw.key}="
            )
        if kw.key == "version":
            if not isinstance(kw.value.value, int) or isinstance(kw.value.value, bool):
                raise PlanError(f"version= of secret({name!r}) must be a whole number")
            version = kw.value.value
        else:
            if not isinstance(kw.value.value, str):
                raise PlanError(f"key= of secret({name!r}) must be a string")
            key = kw.value.value
    return _merge(SecretRef.parse(name), version, key)


def _merge(ref: SecretRef, version: int | None, key: str | None) -> SecretRef:
    if version is not None and ref.version is not None:
        raise PlanError(f"secret({str(ref)!r}) gives the version twice")
    if key is not None and ref.key is not None:
        raise PlanError(f"secret({str(ref)!r}) gives the key twice")
    return SecretRef(
        ref.name,
        version if version is not None else ref.version,
        key if key is not None else ref.key,
    )


def _is_local(tree: nodes.Template, name: str) -> bool:
    """A name assigned in the template itself ({% set %}, {% for %}) is not an outside input."""
    return any(
        isinstance(target, nodes.Name) and target.name == name and target.ctx in ("store", "param")
        for target in tree.find_all(nodes.Name)
    )
