"""The part of ultralytics' ``data.yaml`` the YOLO loader needs (``path``, ``train``, ``val``, ``valid``,
``test``, ``names``, ``nc``), read without a YAML library: block and flow lists, flow and block maps of
class ids, quoted scalars and comments. Other keys are skipped.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from harness.data.errors import DatasetError

log = logging.getLogger(__name__)


def _strip_comment(line: str) -> str:
    """``line`` without a trailing ``# comment`` (a ``#`` inside quotes is kept)."""
    quote = None
    for i, c in enumerate(line):
        if quote:
            quote = None if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def _scalar(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        body = text[1:-1]
        return body.replace("''", "'") if text[0] == "'" else body.replace('\\"', '"').replace("\\\\", "\\")
    return text


def _flow_items(text: str, where: str) -> list[str]:
    """The comma-separated pieces of ``a, 'b c', "d"`` (the inside of ``[...]`` or ``{...}``), quotes kept."""
    items, current, quote = [], "", None
    for c in text:
        if quote:
            quote = None if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c == ",":
            items.append(current.strip())
            current = ""
            continue
        current += c
    if quote:
        raise DatasetError(f"{where}: unclosed quote in {text!r}")
    if current.strip():
        items.append(current.strip())
    return items


_YAML_KEYS = ("path", "train", "val", "valid", "test", "names", "nc")  # what the loader reads; others are skipped


def parse_data_yaml(path: Path) -> dict[str, Any]:
    """The keys of an ultralytics ``data.yaml`` the loader reads (``_YAML_KEYS``), as strings, lists or dicts.

    Reads the subset such files use for them: ``key: value``, flow lists
    ``[a, b]`` (also over several lines) and maps ``{0: a}``, block lists
    (``- a``) and block maps (``0: a``) indented under the key, quotes and
    comments. Other keys (``download: |`` with a script under it) are skipped.
    A line of a needed key that does not fit is a DatasetError naming the line.
    """
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"cannot read {path}: {err}") from None
    out: dict[str, Any] = {}
    key: str | None = None
    pending = ""  # a flow list still open over several lines
    for lineno, raw in enumerate(lines, start=1):
        line = _strip_comment(raw).rstrip()
        where = f"{path}:{lineno}"
        if pending:
            pending += " " + line.strip()
            if pending.endswith("]"):
                out[key] = [_scalar(item) for item in _flow_items(pending[1:-1], where)]  # type: ignore[index]
                pending = ""
            continue
        if not line.strip() or line.strip() == "---":
            continue
        indented = line[0].isspace()
        body = line.strip()
        if indented:
            if key is None or key not in _YAML_KEYS:
                continue  # under a key the loader does not read
            block = out[key]
            if body.startswith("- ") or body == "-":
                if block is None:
                    out[key] = block = []
                if not isinstance(block, list):
                    raise DatasetError(f"{where}: a list item under {key!r}, which already has a value")
                block.append(_scalar(body[1:]))
                continue
            sub_key, sep, value = body.partition(":")
            if not sep:
                raise DatasetError(f"{where}: cannot read {raw.strip()!r}")
            if block is None:
                out[key] = block = {}
            if not isinstance(block, dict):
                raise DatasetError(f"{where}: a mapping entry under {key!r}, which already has a value")
            block[_scalar(sub_key)] = _scalar(value)
            continue
        name, sep, value = body.partition(":")
        key, value = _scalar(name), value.strip()
        if key not in _YAML_KEYS:
            continue
        if not sep:
            raise DatasetError(f"{where}: expected 'key: value', got {raw.strip()!r}")
        if not value:
            out[key] = None
        elif value.startswith("[") and not value.endswith("]"):
            pending = value
        elif value.startswith("[") and value.endswith("]"):
            out[key] = [_scalar(item) for item in _flow_items(value[1:-1], where)]
        elif value.startswith("{") and value.endswith("}"):
            pairs = [item.partition(":") for item in _flow_items(value[1:-1], where)]
            out[key] = {_scalar(k): _scalar(v) for k, _, v in pairs}
        else:
            out[key] = _scalar(value)
    if pending:
        raise DatasetError(f"{path}: the list of {key!r} is not closed with ]")
    return out


def names_from_yaml(value: Any, path: Path) -> tuple[str, ...]:
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    if isinstance(value, dict):
        try:
            by_id = {int(k): str(v) for k, v in value.items()}
        except ValueError:
            raise DatasetError(f"{path}: names: keys must be the class ids 0, 1, ...; got {list(value)}") from None
        if sorted(by_id) != list(range(len(by_id))):
            raise DatasetError(f"{path}: names: class ids must be 0..{len(by_id) - 1}, got {sorted(by_id)}")
        return tuple(by_id[k] for k in range(len(by_id)))
    raise DatasetError(f"{path}: names: expected a list or a mapping of class names")


# ---------------------------------------------------------------- the layout


