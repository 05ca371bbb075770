"""``validate``: a manifest alone, or an adapter directory checked byte for byte against its manifest."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import AdapterHubError
from ..fileio import sha256_file
from ..paths import safe_join
from .io import MANIFEST_FILENAME, SIGNATURE_FILENAME, load_manifest


@dataclass
class ValidationReport:
    path: str
    problems: list[str] = field(default_factory=list)
    checked_files: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def validate_path(path: str | Path) -> ValidationReport:
    """Every problem of a manifest (file) or adapter directory (manifest + files, no extras)."""
    p = Path(path)
    report = ValidationReport(str(p))
    try:
        manifest = load_manifest(p)
    except AdapterHubError as exc:
        problems = getattr(exc, "problems", None)
        source = getattr(exc, "source", str(p))
        report.problems = [f"{source}: {prob}" for prob in problems] if problems else [str(exc)]
        return report
    if not p.is_dir():
        return report
    listed = set()
    for entry in manifest.files:
        listed.add(entry.path)
        try:
            file_path = safe_join(p, entry.path)
        except AdapterHubError as exc:
            report.problems.append(str(exc))
            continue
        if not file_path.is_file():
            report.problems.append(f"{entry.path}: listed in the manifest but missing")
            continue
        size = file_path.stat().st_size
        if size != entry.size:
            report.problems.append(f"{entry.path}: size {size} but the manifest says {entry.size}")
        elif sha256_file(file_path) != entry.sha256:
            report.problems.append(f"{entry.path}: sha256 does not match the manifest")
        report.checked_files += 1
    for extra in sorted(q for q in p.rglob("*") if q.is_file()):
        rel = extra.relative_to(p).as_posix()
        if rel not in (MANIFEST_FILENAME, SIGNATURE_FILENAME) and rel not in listed and not rel.startswith("."):
            report.problems.append(f"{rel}: present in the directory but not listed in the manifest")
    return report
