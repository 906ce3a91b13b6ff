import json
import os

import pytest

from orchestrator.journal import Journal, JournalError, read_journal


def _write_journal(path, count=3):
    journal = Journal(path)
    journal.create({"experiment": "x"})
    for index in range(count):
        journal.append({"event": "trial", "trial_id": f"t{index:04d}"})
    journal.close()


def test_journal_round_trip(tmp_path):
    path = tmp_path / "journal.jsonl"
    _write_journal(path)
    events = read_journal(path)
    assert [e["event"] for e in events] == ["header", "trial", "trial", "trial"]
    assert events[0]["format"] == 1
    assert all("time" in e for e in events)


def test_journal_create_refuses_existing_file(tmp_path):
    path = tmp_path / "journal.jsonl"
    _write_journal(path)
    with pytest.raises(FileExistsError):
        Journal(path).create({})


def test_journal_torn_tail_is_ignored(tmp_path):
    path = tmp_path / "journal.jsonl"
    _write_journal(path)
    with open(path, "ab") as handle:
        handle.write(b'{"event":"trial","trial_id":"t00')
    events = read_journal(path)
    assert len(events) == 4
    assert events[-1]["trial_id"] == "t0002"


def test_journal_repair_tail_then_append(tmp_path):
    path = tmp_path / "journal.jsonl"
    _write_journal(path)
    with open(path, "ab") as handle:
        handle.write(b'{"event":"tri')
    journal = Journal(path)
    journal.repair_tail()
    journal.append({"event": "stop", "reason": "test"})
    journal.close()
    events = read_journal(path)
    assert events[-1] == {**events[-1], "event": "stop", "reason": "test"}
    assert len(events) == 5


def test_journal_corrupt_middle_names_line(tmp_path):
    path = tmp_path / "journal.jsonl"
    _write_journal(path)
    lines = path.read_bytes().split(b"\n")
    lines[2] = b'{"event": "trial", broken'
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(JournalError, match="line 3 is damaged"):
        read_journal(path)


def test_journal_unknown_version(tmp_path):
    path = tmp_path / "journal.jsonl"
    path.write_text(json.dumps({"event": "header", "format": 99}) + "\n")
    with pytest.raises(JournalError, match="format 99 is not supported"):
        read_journal(path)


def test_journal_missing_header(tmp_path):
    path = tmp_path / "journal.jsonl"
    path.write_text(json.dumps({"event": "trial"}) + "\n")
    with pytest.raises(JournalError, match="line 1 is not a journal header"):
        read_journal(path)


def test_journal_missing_file(tmp_path):
    with pytest.raises(JournalError, match="journal not found"):
        read_journal(tmp_path / "nothing.jsonl")


def test_journal_append_is_durable_line(tmp_path):
    path = tmp_path / "journal.jsonl"
    journal = Journal(path)
    journal.create({})
    journal.append({"event": "x", "value": 1.5})
    journal.close()
    assert path.read_bytes().endswith(b"\n")
    assert os.path.getsize(path) > 0
