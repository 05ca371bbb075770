"""``adapterhub index check``: prove an index directory is well-formed, reporting every problem."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import AdapterHubError
from ..fileio import sha256_file
from ..jsonio import iter_json_lines
from .backends import LocalBackend
from .entries import parse_entry_file
from .index import Index
from .layout import SEARCH_FILE, entry_path
from .scoring import SHAPE_FIELDS
from .searching import summary_line
from .writer import iter_entry_files


@dataclass
class CheckReport:
    root: str
    names: int = 0
    versions: int = 0
    yanked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_index(root: str | Path, *, mirror: Path | None = None) -> CheckReport:
    """Validate config, every entry file (placement, lines, manifests) and the search summary.

    ``mirror``: a content-addressed blob directory; entries with a ``bundled`` source must have every
    file there with the right hash (the bundled index ships only entries whose bytes ship too).
    """
    root = Path(root)
    report = CheckReport(str(root))
    try:
        Index(LocalBackend(root))
    except AdapterHubError as exc:
        report.problems.append(str(exc))
        return report
    summaries = {}
    for path in sorted(iter_entry_files(root)):
        rel = path.relative_to(root).as_posix()
        try:
            expected = entry_path(path.name)
        except AdapterHubError as exc:
            report.problems.append(f"{rel}: {exc}")
            continue
        if rel != expected:
            report.problems.append(f"{rel}: entry file of {path.name!r} belongs at {expected}")
            continue
        try:
            entries = parse_entry_file(path.read_bytes(), rel, path.name)
            for e in entries:
                _ = e.manifest  # full manifest validation
                if mirror is not None and any(s.type == "bundled" for s in e.manifest.sources or ()):
                    for f in e.manifest.files:
                        blob = mirror / f.sha256
                        if not blob.is_file():
                            report.problems.append(f"{rel}: {e.version} {f.path}: blob {f.sha256[:12]}… missing from mirror")
                        elif blob.stat().st_size != f.size or sha256_file(blob) != f.sha256:
                            report.problems.append(f"{rel}: {e.version} {f.path}: mirror blob does not match")
        except AdapterHubError as exc:
            report.problems.append(str(exc))
            continue
        report.names += 1
        report.versions += len(entries)
        report.yanked += sum(e.is_yanked for e in entries)
        line = summary_line(entries)
        if line is not None:
            summaries[line["name"]] = line
    search_path = root / SEARCH_FILE
    if search_path.exists():
        try:
            listed = {row["name"]: row for _, row in iter_json_lines(search_path.read_bytes(), SEARCH_FILE)}
        except AdapterHubError as exc:
            report.problems.append(str(exc))
            listed = {}
        for name in sorted(set(summaries) - set(listed)):
            report.problems.append(f"{SEARCH_FILE}: {name} missing (run `adapterhub index reindex`)")
        for name in sorted(set(listed) - set(summaries)):
            report.problems.append(f"{SEARCH_FILE}: {name} listed but has no live entry")
        for name in sorted(set(listed) & set(summaries)):
            if listed[name] != summary_as_listed(summaries[name], listed[name]):
                report.problems.append(f"{SEARCH_FILE}: {name} is stale (run `adapterhub index reindex`)")
    elif summaries:
        report.problems.append(f"{SEARCH_FILE} missing (run `adapterhub index reindex`)")
    return report


def summary_as_listed(line: dict, listed: dict) -> dict:
    """``line`` without the base-shape fields when the listed row predates them (it is not stale: such a
    row only finds no compatible bases until ``adapterhub index reindex`` adds them)."""
    if any(k in listed for k in SHAPE_FIELDS):
        return line
    return {k: v for k, v in line.items() if k not in SHAPE_FIELDS}
