"""The search summary as an SQLite database (FTS5, trigram), so a search costs milliseconds at 100,000 names.

The database is derived, never shipped: it is built on this machine from the summary bytes the index
backend returned (checked against the signed metadata when the index is trusted) and named by their
sha256, ``<cache>/search/<sha256(location)[:32]>/<sha256 of search-index.jsonl>.sqlite``. So a stale
database is never used, and no database file from an index directory or a server is ever opened. Writes
go to a temp file in the same directory and ``os.replace`` it; concurrent builders each write their own
and the last rename wins (the content is the same). Older databases of the same index are removed then.

Finding the summary's sha256 must not cost a read of the whole file, or the scan would be as fast:

- a trusted index: the sha256 the signed targets metadata give for it;
- a local directory: recorded after hashing, with the file's identity (device, inode, size, mtime and
  ctime in ns), and trusted only while the identity is unchanged and the file was last changed well before
  it was hashed (git's "racy" rule: a write within the same clock tick cannot hide);
- an HTTP index: the cached body is read and hashed on each search (the database still saves the scan).

Matching follows :mod:`adapterhub.registry.scoring` exactly: the FTS5 trigram index only narrows the
candidates (rows holding every 3-character piece of every term, matched case-sensitively on text that
Python lower-cased), and every term, filter and score is then computed in SQL from the same lower-cased
fields. User text reaches SQL only as bound parameters; in the FTS5 query each piece is one double-quoted
string (quotes doubled), which FTS5 reads literally, so ``NEAR``, ``*``, ``^``, ``-`` or ``col:`` in a
query are plain text.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .. import settings
from ..fileio import create_temp_file
from .layout import SEARCH_FILE
from .scoring import SHAPE_FIELDS, SearchQuery, haystack, lowered, shape_of, summary_rows

log = logging.getLogger(__name__)

DB_FORMAT = 3
MIN_DATABASE_BYTES = 1 << 20
"""Below this (about 4,000 names) scanning the summary is as fast as opening a database: no cache is written."""
RACY_NS = 2_000_000_000
TRIGRAM = 3

_SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE rows(id INTEGER PRIMARY KEY, name TEXT NOT NULL, name_l TEXT NOT NULL, hay TEXT NOT NULL,
                  task_l TEXT NOT NULL, task_type_l TEXT NOT NULL, dataset_l TEXT NOT NULL,
                  method_l TEXT NOT NULL, variant_l TEXT NOT NULL, base_l TEXT NOT NULL,
                  model_type TEXT, hidden_size INTEGER, num_hidden_layers INTEGER, row TEXT NOT NULL);
CREATE VIRTUAL TABLE fts USING fts5(hay, content='', tokenize='trigram case_sensitive 1', detail=none);
"""
_INDEXES = """
CREATE INDEX rows_name ON rows(name);
CREATE INDEX rows_task ON rows(task_l);
CREATE INDEX rows_task_type ON rows(task_type_l);
CREATE INDEX rows_dataset ON rows(dataset_l);
CREATE INDEX rows_method ON rows(method_l);
CREATE INDEX rows_variant ON rows(variant_l);
CREATE INDEX rows_base ON rows(base_l, name);
CREATE INDEX rows_shape ON rows(model_type, hidden_size, num_hidden_layers);
CREATE TABLE bases AS SELECT DISTINCT base_l, model_type, hidden_size, num_hidden_layers FROM rows
    WHERE model_type IS NOT NULL;
CREATE INDEX bases_base ON bases(base_l);
"""


def fts5_available() -> bool:
    """Whether this Python's SQLite has FTS5 with the trigram tokenizer (SQLite 3.34+)."""
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(":memory:")) as db:
            db.execute("CREATE VIRTUAL TABLE t USING fts5(x, tokenize='trigram case_sensitive 1', detail=none)")
        return True
    except sqlite3.Error:
        return False


def cache_dir_for(location: str, cache_root: Path | None = None) -> Path:
    """Where the databases (and the local summary's recorded identity) of one index location live."""
    root = cache_root if cache_root is not None else settings.cache_dir()
    return root / "search" / hashlib.sha256(location.encode()).hexdigest()[:32]


def database_path(directory: Path, sha256: str) -> Path:
    return directory / f"{sha256}.sqlite"


def _row_values(position: int, row: dict[str, Any]) -> tuple[Any, ...]:
    shape = shape_of(row)
    return (position, row["name"], lowered(row["name"]), haystack(row),
            *(lowered(row.get(k)) for k in ("task", "task_type", "dataset", "method", "variant", "base_model")),
            *(shape if shape is not None else (None,) * len(SHAPE_FIELDS)),
            json.dumps(row, ensure_ascii=False, allow_nan=False))


def build_database(data: bytes, where: str, sha256: str, directory: Path) -> Path:
    """Write the database of summary ``data`` (whose sha256 is ``sha256``) into ``directory``, atomically."""
    import sqlite3

    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = create_temp_file(directory, prefix=f".{sha256[:16]}-", suffix=".tmp")
    os.close(fd)
    try:
        with contextlib.closing(sqlite3.connect(tmp, isolation_level=None)) as db:
            db.execute("PRAGMA journal_mode=OFF")
            db.execute("PRAGMA synchronous=OFF")
            db.execute("BEGIN")
            for statement in _SCHEMA.split(";"):  # executescript() would commit after each script
                db.execute(statement)
            values = [_row_values(i, row) for i, row in enumerate(summary_rows(data, where))]
            db.executemany("INSERT INTO rows VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", values)
            # FTS5 stops reading text at a NUL; a term without NUL cannot span one, so a space stands in
            db.executemany("INSERT INTO fts(rowid, hay) VALUES (?, ?)", ((v[0], v[3].replace("\x00", " ")) for v in values))
            for statement in _INDEXES.split(";"):
                db.execute(statement)
            db.execute("ANALYZE")  # statistics, so the planner picks the filter's index or the name order well
            db.executemany("INSERT INTO meta VALUES (?, ?)", [("format", str(DB_FORMAT)), ("summary_sha256", sha256)])
            db.execute("COMMIT")
        target = database_path(directory, sha256)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    for old in directory.glob("*.sqlite"):  # earlier versions of this index's summary
        if old != target:
            with contextlib.suppress(OSError):
                old.unlink()
    return target


def open_database(path: Path, sha256: str) -> Any | None:
    """A read-only connection to the database for ``sha256``, or None when it is absent or not ours."""
    import sqlite3

    if not path.is_file():
        return None
    try:
        db = sqlite3.connect(f"file:{quote(str(path))}?mode=ro&immutable=1", uri=True)
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.Error:
        return None
    if meta.get("format") != str(DB_FORMAT) or meta.get("summary_sha256") != sha256:
        db.close()
        return None
    return db


def _fts_string(text: str) -> str:
    """An FTS5 string: the text in double quotes, its quotes doubled (FTS5 reads it literally)."""
    return '"' + text.replace('"', '""') + '"'


_EXACT_BASE = "r.base_l = :base"
_OTHER_BASES = ("SELECT DISTINCT o.base_l FROM bases b JOIN bases o ON o.model_type = b.model_type "
                "AND o.hidden_size = b.hidden_size AND o.num_hidden_layers = b.num_hidden_layers "
                "WHERE b.base_l = :base AND o.base_l != :base ORDER BY o.base_l")
"""The other base ids that share a shape with this one (from the small ``bases`` table)."""
_SAME_SHAPE = ("(r.model_type, r.hidden_size, r.num_hidden_layers) IN "
               "(SELECT model_type, hidden_size, num_hidden_layers FROM bases WHERE base_l = :base)")


def sql_for(query: SearchQuery, limit: int | None, base_clause: str | None = None,
            extra: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """One statement (``SELECT row, score``) and its bound parameters; user text is only ever a parameter.

    With a base filter it is asked twice, ``base_clause`` = the exact and the compatible rows, each in
    (score, name) order an index can give without sorting every match; :func:`query_database` merges them."""
    terms = query.terms()
    params: dict[str, Any] = {"limit": -1 if limit is None else limit, **(extra or {})}
    where: list[str] = []
    trigrams = sorted({t[i:i + TRIGRAM] for t in terms if "\x00" not in t for i in range(len(t) - TRIGRAM + 1)})
    if trigrams:  # every trigram of every term, each its own single-token string: detail=none has no phrases
        where.append("r.id IN (SELECT rowid FROM fts WHERE fts MATCH :match)")
        params["match"] = " AND ".join(_fts_string(t) for t in trigrams)
    score = []
    for i, term in enumerate(terms):
        params[f"t{i}"] = term
        where.append(f"instr(r.hay, :t{i}) > 0")
        score.append(f"(CASE WHEN r.name_l = :t{i} THEN 10 WHEN instr(r.name_l, :t{i}) > 0 THEN 5 ELSE 1 END)")
    if query.task:
        params["task"] = query.task.lower()
        where.append(":task IN (r.task_l, r.task_type_l, r.dataset_l)")
    if query.method:
        params["method"] = query.method.lower()
        where.append(":method IN (r.method_l, r.variant_l)")
    if base_clause is not None:
        params["base"] = (query.base_model or "").lower()
        where.append(base_clause)
    score_sql = f"({' + '.join(score)})" if score else "1"
    order = ([f"{score_sql} DESC"] if score else []) + ["r.name", "r.id"]
    sql = (f"SELECT r.row, {score_sql}, r.name, r.id FROM rows r WHERE {' AND '.join(where) or '1'} "
           f"ORDER BY {', '.join(order)} LIMIT :limit")
    return sql, params


def query_database(db: Any, query: SearchQuery, limit: int | None) -> list[dict[str, Any]]:
    """Matching rows in :mod:`.scoring`'s order (score, exact before compatible base, name, summary order)."""
    if not query.base_model:
        sql, params = sql_for(query, limit)
        return [json.loads(text) for text, *_ in db.execute(sql, params)]
    found = []
    others = [b for (b,) in db.execute(_OTHER_BASES, {"base": query.base_model.lower()})]
    # compatible rows are read by their base ids (the base index), never by walking every row
    compatible = f"r.base_l IN ({', '.join(f':o{i}' for i in range(len(others)))}) AND {_SAME_SHAPE}"
    for rank, clause, extra in ((0, _EXACT_BASE, {}), (1, compatible, {f"o{i}": b for i, b in enumerate(others)})):
        if rank and not others:
            break
        sql, params = sql_for(query, limit, clause, extra)
        found += [((-score, rank, name, rid), text) for text, score, name, rid in db.execute(sql, params)]
    found.sort(key=lambda t: t[0])
    out = [{**json.loads(text), "base_match": "compatible" if key[1] else "exact"} for key, text in found]
    return out if limit is None else out[:limit]


def _identity(path: Path) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def recorded_digest(directory: Path, summary: Path) -> tuple[str, int] | None:
    """The sha256 and size recorded for a local summary, if the file is provably unchanged since."""
    identity = _identity(summary)
    try:
        record = json.loads((directory / "summary.json").read_bytes())
    except (OSError, ValueError):
        return None
    if (identity is None or not isinstance(record, dict) or record.get("path") != str(summary)
            or record.get("identity") != identity or not isinstance(record.get("hashed_ns"), int)):
        return None
    if max(identity[3], identity[4]) >= record["hashed_ns"] - RACY_NS:  # changed too close to the hashing
        return None
    sha, size = record.get("sha256"), record.get("size")
    return (sha, size) if isinstance(sha, str) and isinstance(size, int) else None


def record_digest(directory: Path, summary: Path, identity: list[int], sha256: str, size: int,
                  hashed_ns: int) -> None:
    """Remember a local summary's sha256 (a cache: replaced atomically, not fsynced; a lost record is re-hashed)."""
    record = {"path": str(summary), "identity": identity, "sha256": sha256, "size": size, "hashed_ns": hashed_ns}
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = create_temp_file(directory, prefix=".summary-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(json.dumps(record).encode())
        os.replace(tmp, directory / "summary.json")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def known_digest(index: Any, directory: Path) -> tuple[str, int] | None:
    """The summary's (sha256, size) when it can be known without reading the whole file."""
    signed = getattr(index.backend, "signed_digest", None)  # a trusted index: from the signed metadata
    if callable(signed):
        return signed(SEARCH_FILE)
    root = getattr(index.backend, "root", None)
    if isinstance(root, Path):
        return recorded_digest(directory, root / SEARCH_FILE)
    return None


def database_search(index: Any, query: SearchQuery, limit: int | None, *, force: bool = False,
                    cache_root: Path | None = None) -> list[dict[str, Any]] | None:
    """Search through the cached database; None when the scan should answer instead (a small summary,
    no FTS5, an unwritable cache, text SQLite cannot hold). ``force``: use a database whatever the size.
    sqlite3 is imported only past the size check: a search of the bundled index does not load it."""
    directory = cache_dir_for(index.location, cache_root)
    known = known_digest(index, directory)
    if known is not None and known[1] < MIN_DATABASE_BYTES and not force:
        return None
    db = open_database(database_path(directory, known[0]), known[0]) if known is not None else None
    if db is None:
        root = getattr(index.backend, "root", None)
        summary = root / SEARCH_FILE if isinstance(root, Path) else None
        before = _identity(summary) if summary is not None else None
        if before is not None and before[2] < MIN_DATABASE_BYTES and not force:
            return None  # a small local summary is scanned: no need to read it here as well
        hashed_ns = time.time_ns()
        data = index.search_lines()
        if not data:
            return []
        if len(data) < MIN_DATABASE_BYTES and not force:
            return None
        import sqlite3

        sha = hashlib.sha256(data).hexdigest()
        try:
            if summary is not None and before is not None and before == _identity(summary):
                record_digest(directory, summary, before, sha, len(data), hashed_ns)
            db = open_database(database_path(directory, sha), sha)
            if db is None:
                if not fts5_available():
                    return None
                db = open_database(build_database(data, f"{index.location}/{SEARCH_FILE}", sha, directory), sha)
        except (OSError, sqlite3.Error, UnicodeEncodeError) as exc:
            if force:
                raise
            log.debug("search database for %s not built (%s); scanning instead", index.location, exc)
            return None
        if db is None:
            return None
    import sqlite3

    with contextlib.closing(db):
        try:
            return query_database(db, query, limit)
        except UnicodeEncodeError:  # a lone surrogate (a mis-decoded argv) cannot be bound; str matching can
            return None
        except sqlite3.Error as exc:
            if force:
                raise
            log.debug("search database query failed (%s); scanning instead", exc)
            return None
