"""The uploader's pure parts: CSV row blanking, Retry-After, item back-off, journal upgrade."""

from __future__ import annotations

import csv
import io
import sqlite3
from email.utils import parsedate_to_datetime

import pytest
import requests

from tests.tools.test_uploader import load_program


def test_a_journal_of_version_1_0_gains_the_settled_rows_column(tmp_path):
    program = load_program()
    path = tmp_path / "journal.sqlite3"
    old_schema = program.SCHEMA.replace(", settled TEXT", "")
    conn = sqlite3.connect(path)
    conn.execute(old_schema)
    conn.execute("INSERT INTO files (name, spool, sha256, size, added_at)"
                 " VALUES ('qc.csv', '1_qc.csv', 'x', 1, 0)")
    conn.commit()
    conn.close()
    journal_ = program.Journal(path)
    assert journal_.settled(1) == set()
    journal_.settle(1, [5, 2, 2])
    assert journal_.settled(1) == {2, 5}
    assert [row[1] for row in journal_.pending()] == ["qc.csv"]


def _records(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("gb18030"), newline="")))


@pytest.mark.parametrize("end", [b"\r\n", b"\n", b"\r"])
def test_without_rows_empties_records_and_keeps_every_other_number(end):
    program = load_program()
    rows = ["项目,结果,备注", 'GLU,5.1,"两行\n备注"', "钙,2.30,", "钾,4.1,末行"]
    data = end.join(r.encode("gb18030") for r in rows)  # no end after the last record
    out = program.without_rows(data, {2, 4})
    before, after = _records(data), _records(out)
    assert len(before) == 4
    # the kept records keep their numbers; emptied ones read as nothing (a final one vanishes)
    assert {n: r for n, r in enumerate(after, 1) if r} == {1: before[0], 3: before[2]}
    assert after[1] == []
    assert program.without_rows(data, set()) == data


def test_only_byte_encoded_csv_is_resent_in_part():
    program = load_program()
    assert program.row_subsettable("a.csv", "日期,项目".encode("gbk"))
    assert program.row_subsettable("a.txt", b"date,code\r\n")
    assert not program.row_subsettable("a.csv", "日期".encode("utf-16"))
    assert not program.row_subsettable("a.xlsx", b"PK\x03\x04")
    assert not program.row_subsettable("a.hl7", b"MSH|^~\\&|")
    assert not program.row_subsettable("a.txt", b"H|\\^&|||")


def test_retry_after_reads_seconds_and_http_dates():
    program = load_program()

    def answer(value):
        resp = requests.Response()
        if value is not None:
            resp.headers["Retry-After"] = value
        return resp

    assert program.retry_after(answer("7")) == 7.0
    when = "Fri, 15 Jan 2027 08:00:10 GMT"
    now = parsedate_to_datetime(when).timestamp() - 10
    assert program.retry_after(answer(when), now=now) == pytest.approx(10.0)
    assert program.retry_after(answer(when), now=now + 100) == 0.0
    assert program.retry_after(answer("99999999")) == 3600.0
    assert program.retry_after(answer("soon")) is None
    assert program.retry_after(answer(None)) is None


def test_item_backoff_grows_is_capped_and_jittered():
    program = load_program()
    policy = program.Policy(attempts=5, base=0.5, cap=4.0)
    for attempt in range(12):
        step = min(4.0, 0.5 * 2 ** attempt)
        waits = [policy.backoff(attempt) for _ in range(50)]
        assert all(step / 2 <= w <= step for w in waits)
        assert len(set(waits)) > 1  # jittered
