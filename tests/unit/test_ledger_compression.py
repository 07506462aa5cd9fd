"""The ledger item's compression: one write unit for an item holding an announced and a pending
appointment, items written before the preset dictionaries still read, a wrong dictionary fails."""

from __future__ import annotations

import json
import zlib
from typing import Any

import pytest

from appointment_enricher.ledger import compression
from appointment_enricher.ledger.base import SETTLED_LIMIT, LedgerEntry
from appointment_enricher.ledger.dynamodb import _entry
from bench.probe import _ddb_item_bytes, ledger_item, pending_ledger_entry
from bench.services import sample_event


def _compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def test_an_item_with_a_pending_state_stays_one_write_unit() -> None:
    """Plain zlib put this item at about 1.4 KB: two units for the write ahead and two for the
    announce that replaces it (a replacing PutItem is billed on the larger item); ten settled
    marks fit too."""
    item = ledger_item(pending_ledger_entry(SETTLED_LIMIT))
    assert _ddb_item_bytes(item) <= 1024
    assert len(item["pending"]["B"]) < 150  # only what differs from the announced appointment


def test_pending_and_announced_read_back_whole() -> None:
    entry = pending_ledger_entry()
    item = ledger_item(entry)
    read = _entry(item)
    assert read.appointment == entry.appointment
    assert read.pending == entry.pending
    assert read.sequences == entry.sequences and read.recent[0][1] == entry.recent[0][1]


def test_a_pending_state_with_nothing_announced_reads_back() -> None:
    entry = pending_ledger_entry()
    first = LedgerEntry(
        entry.appointment_id, entry.location_id, None, False, announced=False, pending=entry.pending
    )
    read = _entry(ledger_item(first))
    assert read.appointment == {} and not read.announced and read.pending == entry.pending


def test_items_written_with_plain_zlib_still_read() -> None:
    """Items written before the preset dictionaries (plain ``zlib.compress``) stay readable."""
    entry = pending_ledger_entry()
    assert entry.pending is not None
    pending = entry.pending
    old_pending = {
        "dateUpdated": "2025-06-03T08:00:00.000Z",
        "deleted": False,
        "deletedBy": None,
        "appointment": dict(pending.appointment),
    }
    item = ledger_item(entry)
    item["appointment"] = {"B": zlib.compress(_compact(dict(entry.appointment)), 9)}
    item["pending"] = {"B": zlib.compress(_compact(old_pending), 9)}
    read = _entry(item)
    assert read.appointment == entry.appointment and read.pending == pending


def test_a_pending_state_read_against_another_announced_appointment_fails_loudly() -> None:
    """The dictionary's Adler-32 is in the stream: a mismatch is an error, never a wrong state."""
    data = compression.compress_pending(b'{"a":1}', b'{"id":"one"}')
    assert compression.decompress_pending(data, b'{"id":"one"}') == b'{"a":1}'
    with pytest.raises(zlib.error):
        compression.decompress_pending(data, b'{"id":"two"}')


def test_the_dictionary_pays_for_itself_on_an_appointment() -> None:
    text = _compact(sample_event())
    assert len(compression.compress_appointment(text)) < len(zlib.compress(text, 9)) * 0.8
    assert compression.decompress_appointment(compression.compress_appointment(text)) == text
