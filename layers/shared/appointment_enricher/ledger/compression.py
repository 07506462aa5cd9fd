"""How the ledger item's appointments are compressed: small enough that the item stays one write unit.

DynamoDB bills a write per started KB of the item, and a ``PutItem`` that replaces an item is
billed on the larger of the old and the new item. An appointment is about 750 bytes of JSON and
plain zlib only takes it to about 500 (short texts leave zlib little to match), so an item holding
the announced appointment *and* a pending one written ahead of its publish came to 1.4 KB: two
units for that write and two again for the announce that replaces it.

Two zlib preset dictionaries (``zdict``; standard zlib, nothing hand-rolled but the dictionary's
text) fix that:

* every appointment is compressed against ``APPOINTMENT_DICTIONARY``: the field names and common
  values of HighLevel's appointment object, so the names cost nothing;
* the pending appointment is compressed against that dictionary *followed by the announced
  appointment's own JSON* (which the same item holds): a pending state differs from the announced
  one in a few fields, and only those cost bytes.

A zlib stream says in its header whether it used a dictionary and which one (its Adler-32), so
items written before this module (plain zlib) still read, and a wrong dictionary is an error,
never a silently wrong appointment. Changing ``APPOINTMENT_DICTIONARY`` would make every item
unreadable: add a new one and pick by the header's dictionary id instead.
"""

from __future__ import annotations

import zlib
from typing import Final

# Longer, rarer strings first, the commonest last: zlib prefers the nearest match.
APPOINTMENT_DICTIONARY: Final = (
    b'"meetingLocationType":"custom","meetingLocationType":"zoom_conference","meetingLocationType":'
    b'"google_conference","rrule":"RRULE:FREQ=WEEKLY;INTERVAL=1;BYDAY=","masterEventId":"'
    b'"assignedResources":["],"createdBy":{"source":"booking_widget","userId":"'
    b'"createdBy":{"userId":"","source":"third_party"},"isRecurring":true,"isRecurring":false,'
    b'"address":"https://zoom.us/j/","notes":"","title":"","groupId":"","users":["'
    b'"appointmentStatus":"new","appointmentStatus":"showed","appointmentStatus":"noshow",'
    b'"appointmentStatus":"invalid","appointmentStatus":"cancelled","appointmentStatus":"confirmed",'
    b'"deleted":true,"deleted":false,"dateAdded":"2026-","dateUpdated":"2026-'
    b'T00:00:00.000Z",":00:00+00:00",":30:00-05:00",":00:00-04:00","endTime":"2026-'
    b'"startTime":"2026-","assignedUserId":"","contactId":"","locationId":"","calendarId":"'
    b'{"id":"'
)
LEVEL: Final = 9
_FDICT: Final = 0x20  # zlib header (RFC 1950): FLG bit 5, a preset dictionary was used


def compress_appointment(json_bytes: bytes) -> bytes:
    return _compress(json_bytes, APPOINTMENT_DICTIONARY)


def decompress_appointment(data: bytes) -> bytes:
    return _decompress(data, APPOINTMENT_DICTIONARY)


def compress_pending(json_bytes: bytes, announced_json: bytes) -> bytes:
    """A pending state, against the announced appointment's JSON (``b""`` when there is none)."""
    return _compress(json_bytes, APPOINTMENT_DICTIONARY + announced_json)


def decompress_pending(data: bytes, announced_json: bytes) -> bytes:
    return _decompress(data, APPOINTMENT_DICTIONARY + announced_json)


def _compress(data: bytes, dictionary: bytes) -> bytes:
    compressor = zlib.compressobj(LEVEL, zdict=dictionary)
    return compressor.compress(data) + compressor.flush()


def _decompress(data: bytes, dictionary: bytes) -> bytes:
    if len(data) < 2 or not data[1] & _FDICT:
        return zlib.decompress(data)  # written without a dictionary (items from before this module)
    decompressor = zlib.decompressobj(zdict=dictionary)
    return decompressor.decompress(data) + decompressor.flush()
