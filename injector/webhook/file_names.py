"""`file-name-FILE` annotations -> the name each file gets on disk (vault-k8s: agent-inject-file).

FILE stays what the other annotations of the file (`secret-FILE`, `template-FILE`,
`file-mode-FILE`, `encoding-FILE`) are keyed by; only the file in the secrets directory is
named otherwise, with a name a key cannot spell (`.pgpass`, or longer than a key allows). Two
files with one name are refused naming the two annotations that give it.
"""

from __future__ import annotations

from collections.abc import Mapping

from contract import PlanError
from contract.annotations import FILE_NAME_OF, SECRET_FILE, TEMPLATE_FILE, short_name
from contract.file_names import check_chosen_name
from injector.webhook.errors import Denied


def disk_names(ours: Mapping[str, str], sources: Mapping[str, str]) -> dict[str, str]:
    """FILE -> its name on disk, for every FILE in `sources` (FILE -> the key writing it)."""
    chosen: dict[str, str] = {}
    for key in sorted(k for k in ours if k.startswith(FILE_NAME_OF)):
        file = key[len(FILE_NAME_OF) :]
        if file not in sources:
            raise Denied(
                f"annotation {key} names the file {short_name(SECRET_FILE)}{file} or "
                f"{short_name(TEMPLATE_FILE)}{file} would write, but no such annotation writes "
                f"{file!r}; files: {', '.join(sorted(sources))}"
            )
        chosen[file] = _chosen_name(key, ours[key])
    names: dict[str, str] = {}
    givers: dict[str, str] = {}
    for file in sorted(sources):
        name = chosen.get(file, file)
        giver = FILE_NAME_OF + file if file in chosen else sources[file]
        if name in givers:
            raise Denied(
                f"annotations {givers[name]} and {giver} both write file {name!r}; give each "
                f"file its own name (a {short_name(FILE_NAME_OF)}FILE annotation names it freely)"
            )
        givers[name] = giver
        names[file] = name
    return names


def key_files(ours: Mapping[str, str]) -> dict[str, str]:
    """Disk name -> FILE for the renamed files of annotations `disk_names` accepted."""
    return {
        ours[key].strip(): key[len(FILE_NAME_OF) :] for key in ours if key.startswith(FILE_NAME_OF)
    }


def _chosen_name(key: str, value: str) -> str:
    name = value.strip()
    try:
        check_chosen_name(name)
    except PlanError as exc:
        raise Denied(f"annotation {key}: {exc}") from None
    return name
