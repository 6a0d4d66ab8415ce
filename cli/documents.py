"""Loading policy YAML from files and folders, and validating it locally before anything is sent.

A path is a file or a folder (searched recursively for ``*.yaml``/``*.yml``, in sorted order); a file holds one
or more documents separated by ``---``. Every problem is collected (not just the first), each naming the file,
the document's position and ``Kind/name``, and the field, so one run shows everything to fix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from cli.errors import InvalidDocuments, Problem, UsageError
from controlplane.policy.resources import KINDS, NAME_RE, parse_resource

SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class LoadedDocument:
    """One valid document: where it came from and the mapping as written (the server validates it again)."""

    file: str
    index: int  # 1-based position among the file's documents
    kind: str
    name: str
    document: dict[str, Any]

    @property
    def source(self) -> str:
        return f"{self.file}#{self.index}"

    def to_request(self) -> dict[str, Any]:
        return {"source": self.source, "document": self.document}


def collect_files(paths: Sequence[str]) -> list[Path]:
    """The files named, and the YAML files under the folders named, without duplicates."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file()))
        elif path.is_file():
            found.append(path)
        else:
            raise UsageError(f"{raw}: no such file or folder")
    unique = list(dict.fromkeys(found))
    if not unique:
        raise UsageError(f"no *.yaml or *.yml files found in {', '.join(paths)}")
    return unique


def load_documents(paths: Sequence[str],
                   on_file: Callable[[int, int, int], None] | None = None) -> list[LoadedDocument]:
    """Every document under ``paths``, validated. Raises ``InvalidDocuments`` listing every problem.

    ``on_file(files done, files in all, documents so far)`` is called after each file (progress)."""
    documents: list[LoadedDocument] = []
    problems: list[Problem] = []
    files = collect_files(paths)
    for done, path in enumerate(files, 1):
        docs, file_problems = parse_file(str(path), _read(path))
        documents.extend(docs)
        problems.extend(file_problems)
        if on_file is not None:
            on_file(done, len(files), len(documents) + len(problems))
    problems.extend(find_duplicates(documents))
    if problems:
        raise InvalidDocuments(problems)
    return documents


def parse_file(file: str, text: str) -> tuple[list[LoadedDocument], list[Problem]]:
    """Pure: the valid documents of one file's text, and the problems of the others."""
    documents: list[LoadedDocument] = []
    problems: list[Problem] = []
    index = 0
    try:
        for raw in yaml.safe_load_all(text):
            if raw is None:  # an empty document, e.g. a trailing ``---``
                continue
            index += 1
            loaded, doc_problems = validate_document(file, index, raw)
            problems.extend(doc_problems)
            if loaded is not None:
                documents.append(loaded)
    except yaml.YAMLError as exc:
        problems.append(Problem(file, index + 1, "", "", "", f"invalid YAML: {_yaml_reason(exc)}"))
    return documents, problems


def validate_document(file: str, index: int, raw: object) -> tuple[LoadedDocument | None, list[Problem]]:
    if not isinstance(raw, dict):
        return None, [Problem(file, index, "", "", "", f"a document must be a mapping, not {type(raw).__name__}")]
    kind, name = _label(raw)
    try:
        resource = parse_resource(raw)
    except ValidationError as exc:
        return None, [Problem(file, index, kind, name, *_field_message(err)) for err in exc.errors()]
    return LoadedDocument(file, index, resource.kind, resource.name, raw), []


def find_duplicates(documents: Iterable[LoadedDocument]) -> list[Problem]:
    """The same ``Kind/name`` twice would make the result depend on file order: refuse it."""
    first: dict[tuple[str, str], LoadedDocument] = {}
    problems: list[Problem] = []
    for doc in documents:
        key = (doc.kind, doc.name)
        if key in first:
            earlier = first[key]
            problems.append(Problem(doc.file, doc.index, doc.kind, doc.name, "metadata.name",
                                    f"duplicate: {doc.kind}/{doc.name} is also defined in {earlier.source}"))
        else:
            first[key] = doc
    return problems


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror}") from None


def _label(raw: dict[Any, Any]) -> tuple[str, str]:
    kind = raw.get("kind")
    metadata = raw.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return (kind if isinstance(kind, str) else ""), (name if isinstance(name, str) else "")


def _field_message(err: Any) -> tuple[str, str]:
    """pydantic's error → (``spec.projects[0].name``, message), without the envelope and union tag."""
    loc = list(err["loc"])
    if loc and loc[0] == "resource":
        loc = loc[1:]
    if loc and loc[0] in KINDS:
        loc = loc[1:]
    kind_error = err["type"] in ("union_tag_invalid", "union_tag_not_found")
    path = "kind" if kind_error and not loc else format_loc(loc)
    message = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "string_pattern_mismatch" and err.get("ctx", {}).get("pattern") == NAME_RE:
        message = (f"{err['input']!r} is not a valid name: use lowercase letters, digits, '.', '_' and '-', "
                   "starting and ending with a letter or digit, at most 63 characters")
    if kind_error:
        message = f"must be one of {', '.join(KINDS)}"
    return path, message


def format_loc(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _yaml_reason(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is not None:
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return str(problem)
