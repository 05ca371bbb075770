"""Search engines: the SQLite database answers exactly as the linear scan (and as the scorer before either).

The summary is generated with varied text (case, unicode, quotes, FTS5 operators, characters whose
lower case is ASCII, JSON escapes, NUL) and every query is asked of both engines; hostile queries must
neither raise nor change meaning. The database must be keyed by the summary's content.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import time
from pathlib import Path

import pytest

from adapterhub.jsonio import dumps_canonical
from adapterhub.registry import SearchQuery, init_index, open_index, search, search_db
from adapterhub.registry.scoring import LOWER_TO_ASCII, lowered

pytestmark = pytest.mark.skipif(not search_db.fts5_available(), reason="this Python's SQLite has no FTS5 trigram")

WORDS = ["sst2", "SST2", "mnli", "Houlsby", "pfeiffer", "lora", "ner", "NEAR", "near", "a*b", "col:umn", "\"quoted\"",
         "it's", "naïve", "ÜBER", "straße", "\u0130stanbul", "\u212aelvin", "ǅemal", "日本語", "emoji🙂", "x", "ab",
         "-minus", "^caret", "(paren)", "100%", "under_score", "back\\slash", "nul\x00byte", "AND", "OR", "NOT"]
BASES = [("bert-base-uncased", "bert", 768, 12), ("bert-base-cased", "bert", 768, 12), ("roberta-base", "roberta", 768, 12),
         ("distilbert-base", "distilbert", 768, 6), ("gpt2", "gpt2", 768, 12)]
QUERIES = ["", "sst2", "SST2 houlsby", "ne", "nea", "near", "NEAR", "a*b", "col:umn", '"quoted"', '"', '""', "'", "it's",
           "naïve", "NAÏVE", "über", "ÜBER", "strasse", "straße", "i̇stanbul", "istanbul", "kelvin", "ǆemal", "日本",
           "🙂", "x", "ab", "-minus", "^caret", "(paren)", "100%", "%", "_", "under_score", "back\\slash", "\\",
           "nul\x00byte", "\x00", "AND", "OR NOT", "NEAR(a b)", "adapter-0001", "adapter-0001-sst2", "adapter", "*",
           "fts:x", "hay:sst2", "rows", "') OR 1=1 --", "sst2 sst2", "lora 7", "houlsby NEAR/2 sst2", "\udcff"]
FILTERS = [{}, {"task": "sst2"}, {"task": "SST2"}, {"task": "text-classification"}, {"method": "lora"},
           {"method": "houlsby"}, {"method": "NEAR"}, {"base_model": "bert-base-uncased"}, {"base_model": "BERT-BASE-CASED"},
           {"base_model": "distilbert-base"}, {"base_model": "unknown/model"}, {"task": "mnli", "method": "lora"},
           {"task": "ner", "base_model": "roberta-base"}]


def generated_rows(n: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        base, model_type, hidden, layers = rng.choice(BASES)
        words = rng.sample(WORDS, 4)
        row = {"name": f"adapter-{i:04d}-{rng.choice(['sst2', 'mnli', 'ner', 'near', 'x'])}", "version": "1.0.0",
               "versions": ["1.0.0"], "description": " ".join(words), "task": rng.choice(["sst2", "mnli", "ner", "NEAR"]),
               "task_type": "text-classification", "dataset": rng.choice(["", "glue/sst2", "conll2003"]),
               "method": rng.choice(["bottleneck", "lora", "ia3"]), "variant": rng.choice(["", "houlsby", "pfeiffer"]),
               "base_model": base, "license": "mit"}
        if i % 7:  # some rows come from an older summary without the base's shape
            row.update(model_type=model_type, hidden_size=hidden, num_hidden_layers=layers)
        rows.append(row)
    rows[3]["name"] = "sst2"  # a term that is a whole name scores 10
    rows[5]["description"] = None  # odd values are compared as str(v or "").lower()
    rows[6]["variant"] = 7
    return rows


def write_index(root: Path, rows: list[dict], raw_lines: list[bytes] = ()) -> Path:
    init_index(root, "gen")
    body = b"".join(dumps_canonical(r).encode() + b"\n" for r in rows) + b"".join(raw_lines)
    (root / "search-index.jsonl").write_bytes(body)
    return root


def reference(rows: list[dict], query: SearchQuery, limit: int | None) -> list[str]:
    """The scorer as it was before the database (linear, no pre-filter), extended with the base order."""
    shapes = {(r.get("model_type"), r.get("hidden_size"), r.get("num_hidden_layers")) for r in rows
              if query.base_model and lowered(r.get("base_model")) == query.base_model.lower() and r.get("model_type")}
    out = []
    for pos, r in enumerate(rows):
        exact = not query.base_model or query.base_model.lower() == lowered(r.get("base_model"))
        compatible = not exact and r.get("model_type") and (r["model_type"], r.get("hidden_size"),
                                                            r.get("num_hidden_layers")) in shapes
        if not (exact or compatible):
            continue
        plain = SearchQuery(query.text, query.task, query.method, None)
        s = plain.score(r)
        if s:
            out.append(((-s, 0 if exact else 1, r["name"], pos), r["name"]))
    names = [name for _, name in sorted(out)]
    return names if limit is None else names[:limit]


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> tuple[Path, list[dict], Path]:
    tmp = tmp_path_factory.mktemp("engines")
    rows = generated_rows(250)
    escaped = [b'{"name":"escaped-\\u0073st2","description":"\\u004Eear \\"q\\"","base_model":"gpt2"}\n',
               b'["not", "a", "row"]\n', b'{"name": 5}\n']
    root = write_index(tmp / "index", rows, escaped)
    extra = [{"name": "escaped-sst2", "description": 'Near "q"', "base_model": "gpt2"}]
    return root, rows + extra, tmp / "cache"


@pytest.mark.parametrize("filters", FILTERS, ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()) or "none")
def test_database_and_scan_agree_with_the_scorer(generated, filters):
    root, rows, cache = generated
    idx = open_index(root)
    for text in QUERIES:
        query = SearchQuery(text, **filters)
        for limit in (None, 5):
            scanned = search(idx, query, limit, engine="scan")
            db = search(idx, query, limit, engine="database", cache_root=cache)
            assert db == scanned, (text, filters, limit)
            assert [r["name"] for r in scanned] == reference(rows, query, limit), (text, filters, limit)


def test_database_is_used_and_hostile_queries_do_not_raise(generated):
    root, _, cache = generated
    idx = open_index(root)
    search(idx, SearchQuery("sst2"), engine="database", cache_root=cache)
    directory = search_db.cache_dir_for(idx.location, cache)
    (db_file,) = directory.glob("*.sqlite")
    with contextlib.closing(search_db.open_database(db_file, db_file.stem)) as db:
        for text in [q for q in QUERIES if q.isprintable() or "\x00" in q] + ['NEAR("a" "b", 2)', "{hay}: x", "x*"]:
            for filters in FILTERS:
                search_db.query_database(db, SearchQuery(text, **filters), 10)  # straight to SQL: must not raise


def test_fts_syntax_in_a_query_is_plain_text(tmp_path):
    rows = [{"name": "alpha", "description": "NEAR(a b) x* y"}, {"name": "beta", "description": "a b x y"}]
    idx = open_index(write_index(tmp_path / "i", rows))
    for text, expected in [("near(a", ["alpha"]), ("x*", ["alpha"]), ("a", ["alpha", "beta"]), ("OR", [])]:
        got = search(idx, SearchQuery(text), engine="database", cache_root=tmp_path / "c")
        assert [r["name"] for r in got] == expected, text


def test_stale_database_is_never_used(tmp_path):
    root = write_index(tmp_path / "i", [{"name": "alpha", "description": "first"}])
    cache = tmp_path / "c"
    assert [r["name"] for r in search(open_index(root), SearchQuery("first"), engine="database", cache_root=cache)] == ["alpha"]
    summary = root / "search-index.jsonl"
    old = os.stat(summary)
    with summary.open("r+b") as fh:  # rewritten in place: same inode, same size, same mtime
        fh.write(dumps_canonical({"name": "alpha", "description": "other"}).encode() + b"\n")
    os.utime(summary, ns=(old.st_atime_ns, old.st_mtime_ns))
    assert search(open_index(root), SearchQuery("first"), engine="database", cache_root=cache) == []
    assert [r["name"] for r in search(open_index(root), SearchQuery("other"), engine="database", cache_root=cache)] == ["alpha"]
    assert len(list(search_db.cache_dir_for(str(root), cache).glob("*.sqlite"))) == 1  # the old one is removed


def test_recorded_digest_obeys_the_racy_rule(tmp_path):
    root = write_index(tmp_path / "i", [{"name": "alpha", "description": "first"}])
    cache = tmp_path / "c"
    idx = open_index(root)
    directory = search_db.cache_dir_for(idx.location, cache)
    search(idx, SearchQuery("first"), engine="database", cache_root=cache)
    summary = root / "search-index.jsonl"
    assert search_db.recorded_digest(directory, summary) is None  # hashed within 2 s of its last change
    record = json.loads((directory / "summary.json").read_text())
    record["hashed_ns"] = time.time_ns() + 10 * search_db.RACY_NS
    (directory / "summary.json").write_text(json.dumps(record))
    assert search_db.recorded_digest(directory, summary) == (record["sha256"], record["size"])


def test_a_small_summary_writes_no_cache_and_loads_no_sqlite(tmp_path):
    import subprocess
    import sys

    root = write_index(tmp_path / "i", generated_rows(20))
    search(open_index(root), SearchQuery("sst2"), cache_root=tmp_path / "c")
    assert not (tmp_path / "c").exists()
    code = ("import sys; from adapterhub.registry import SearchQuery, open_index, search; "
            f"assert search(open_index({str(root)!r}), SearchQuery('sst2')); assert 'sqlite3' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "ADAPTERHUB_CACHE": str(tmp_path / "c")})


def test_scan_prefilter_keeps_lines_that_spell_a_term_otherwise(tmp_path):
    """The byte pre-filter used to drop a row whose JSON escapes or İ/K spell the term (failed before)."""
    lines = [b'{"name":"a1","description":"\\u0073st2"}\n', "{\"name\":\"a2\",\"description\":\"\u212aELVIN\"}\n".encode()]
    idx = open_index(write_index(tmp_path / "i", [], lines))
    assert [r["name"] for r in search(idx, SearchQuery("sst2"), engine="scan")] == ["a1"]
    assert [r["name"] for r in search(idx, SearchQuery("kelvin"), engine="scan")] == ["a2"]


def test_lower_to_ascii_list_is_complete():
    import sys

    found = [chr(c) for c in range(128, sys.maxunicode + 1)
             if not 0xD800 <= c < 0xE000 and any(ord(x) < 128 for x in chr(c).lower())]
    assert tuple(found) == LOWER_TO_ASCII


def test_base_matches_exact_then_compatible(tmp_path):
    shape = {"model_type": "bert", "hidden_size": 768, "num_hidden_layers": 12}
    rows = [{"name": "a-cased", "base_model": "bert-base-cased", **shape},
            {"name": "b-uncased", "base_model": "bert-base-uncased", **shape},
            {"name": "c-small", "base_model": "bert-small", "model_type": "bert", "hidden_size": 512, "num_hidden_layers": 4},
            {"name": "d-noshape", "base_model": "bert-base-uncased"}]
    idx = open_index(write_index(tmp_path / "i", rows))
    for engine in ("scan", "database"):
        got = search(idx, SearchQuery("", base_model="bert-base-uncased"), engine=engine, cache_root=tmp_path / "c")
        assert [(r["name"], r["base_match"]) for r in got] == [("b-uncased", "exact"), ("d-noshape", "exact"),
                                                                ("a-cased", "compatible")], engine


def test_registry_docs_search_example_runs():
    from support.doc_examples import python_blocks

    (block,) = [b for b in python_blocks("registry.md") if "SearchQuery" in b and "default catalogue" not in b]
    exec(compile(block, "docs/registry.md", "exec"), {})  # noqa: S102 - our own documentation


def test_trusted_index_names_its_database_by_the_signed_sha256(signed_repo):
    """A trusted index's summary digest comes from the signed metadata (no read); a tampered summary is refused."""
    import hashlib

    from adapterhub.errors import IndexTrustError
    from adapterhub.registry.trust import pin_root

    root = signed_repo.root
    pin_root(root, (root / "metadata" / "root.json").read_bytes())
    cache = signed_repo.tmp / "search-cache"
    idx = open_index(root)
    directory = search_db.cache_dir_for(idx.location, cache)
    summary = (root / "search-index.jsonl").read_bytes()
    assert search_db.known_digest(idx, directory) == (hashlib.sha256(summary).hexdigest(), len(summary))
    names = [r["name"] for r in search(idx, SearchQuery(""), None, engine="database", cache_root=cache)]
    assert names and (directory / f"{hashlib.sha256(summary).hexdigest()}.sqlite").is_file()
    (root / "search-index.jsonl").write_bytes(summary.replace(b"adapter", b"adaptor"))
    # answers come from the signed summary's database (built from verified bytes), never from the tampered file
    assert search(open_index(root), SearchQuery("adaptor"), engine="database", cache_root=cache) == []
    with pytest.raises(IndexTrustError):  # with no database of the signed summary, the tampered bytes are read
        search(open_index(root), SearchQuery("adaptor"), engine="database", cache_root=signed_repo.tmp / "fresh")
