"""The kubelet's env file reader, restated in Python from its source, to test the file we write.

Source: kubernetes/kubernetes pkg/kubelet/util/env/env_util.go, `ParseEnv(envFilePath, key)`,
as changed for Kubernetes v1.35 by kubernetes/kubernetes#134414 ("Promote EnvFiles feature
gate to Beta": "all variable values must be wrapped in single quotes"); the newest version of
the file we found has the same rules (1.36 and 1.37 were not checked line by line: update
this module if the reader changes). Its rules, in the order it applies them to each line a
`bufio.Scanner` (ScanLines) yields:

- lines end at LF; a CR right before an LF (or at the end of the file) is dropped; a line of
  64 KiB or more (with its LF) stops the scan with `bufio.ErrTooLong`, an error;
- leading spaces and tabs are skipped; a blank line, or one starting with '#', is skipped;
- a line without '=' is an error; the name is what precedes the first '='; an empty name, or
  spaces/tabs right before '=', is an error;
- spaces/tabs right after '=' make the value empty (as bash does with `VAR= 'x'`);
- otherwise the value must start with "'" (else an error) and runs to the next "'", across
  lines (each line break kept as LF); no closing quote before the end is an error; after the
  closing quote only spaces/tabs and an optional '#' comment may follow, else an error;
- the first line naming the key answers; a key never named is "" (no error).

This is test support, never imported by the product: the product writes the file
(contract/env_file.py), this reads it the way the kubelet will.
"""

from __future__ import annotations

SCANNER_MAX_TOKEN = 64 * 1024
"""bufio.MaxScanTokenSize: the longest line, LF included, before ErrTooLong."""


class EnvFileError(Exception):
    """What ParseEnv returns as an error (the container does not start)."""


def scan_lines(data: bytes) -> list[str]:
    """bufio.Scanner with ScanLines over `data`: the lines, CR before LF dropped."""
    lines = []
    rest = data
    while rest:
        end = rest.find(b"\n")
        if end == -1:
            line, rest = rest, b""
        else:
            line, rest = rest[:end], rest[end + 1 :]
        if len(line) + 1 > SCANNER_MAX_TOKEN:
            raise EnvFileError("bufio.Scanner: token too long")
        lines.append(line.removesuffix(b"\r").decode("utf-8"))
    return lines


def parse_env(data: bytes, key: str) -> str:
    """The value of `key` as the kubelet reads it from a file holding `data`."""
    lines = iter(enumerate(scan_lines(data), start=1))
    for number, raw in lines:
        line = raw.lstrip(" \t")
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            raise EnvFileError(f"line {number}: missing '='")
        name_part, value_part = line.split("=", 1)
        name = name_part.rstrip(" \t")
        if not name:
            raise EnvFileError(f"line {number}: empty variable name")
        if name != name_part:
            raise EnvFileError(f"line {number}: whitespace before '=' is not allowed")
        trimmed = value_part.lstrip(" \t")
        if trimmed != value_part:
            if name == key:
                return ""
            continue
        if not trimmed.startswith("'"):
            raise EnvFileError(f"line {number}: value must be enclosed in single quotes")
        value, rest = [], trimmed[1:]
        while "'" not in rest:
            value.append(rest + "\n")
            following = next(lines, None)
            if following is None:
                raise EnvFileError(f"starting at line {number}: unclosed single quote")
            rest = following[1]
        closing = rest.index("'")
        value.append(rest[:closing])
        after = rest[closing + 1 :].lstrip(" \t")
        if after and not after.startswith("#"):
            raise EnvFileError(f"line {number}: unexpected content after closing quote")
        if name == key:
            return "".join(value)
    return ""
