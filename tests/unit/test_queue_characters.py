"""``aws.queues._NOT_XML``: exactly the characters SQS/SNS refuse, spelled so it compiles fast.

SQS accepts XML 1.0 characters: #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] |
[#x10000-#x10FFFF]. The pattern is checked against that rule over every code point, and it must
be a positive class of the (few) refused characters: the negated class over the astral planes
cost the cold start milliseconds to compile (BENCHMARKS.md).
"""

from __future__ import annotations

from appointment_enricher.aws.queues import _NOT_XML, string_attributes


def _accepted(code: int) -> bool:
    return (
        code in (0x9, 0xA, 0xD)
        or 0x20 <= code <= 0xD7FF
        or 0xE000 <= code <= 0xFFFD
        or 0x10000 <= code <= 0x10FFFF
    )


def test_the_pattern_refuses_exactly_what_xml_1_0_refuses() -> None:
    everything = "".join(map(chr, range(0x110000)))
    refused = {ord(c) for c in _NOT_XML.findall(everything)}
    assert refused == {code for code in range(0x110000) if not _accepted(code)}


def test_the_pattern_is_a_positive_class() -> None:
    assert not _NOT_XML.pattern.startswith("[^")


def test_refused_characters_are_replaced_in_attributes() -> None:
    text = "ok\x00\x0b\ud800\ufffe🎉"
    value = string_attributes({"errorMessage": text})["errorMessage"]["StringValue"]
    assert value == "ok\ufffd\ufffd\ufffd\ufffd🎉"
