"""keel.compact.decode on byte strings written by hand from docs/compact.md.

The module is loaded from its file, so these tests run without the native extension that
``import keel`` loads.
"""

import importlib.util
import math
import pathlib
import struct

import pytest

_PATH = pathlib.Path(__file__).resolve().parents[2] / "python" / "keel" / "compact.py"
_SPEC = importlib.util.spec_from_file_location("keel_compact_under_test", _PATH)
assert _SPEC is not None and _SPEC.loader is not None
compact = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(compact)


def answer(prediction, variant, version, fallback=False, missing=False):
    return {"prediction": prediction, "variant_index": variant, "version": version,
            "fallback": fallback, "missing": missing}


# The examples of docs/compact.md, byte for byte.
FIRST = bytes.fromhex("01 01 03 00 00 40 3f")
SECOND = bytes.fromhex("31 00 ac 02 00 00 20 c0")


def test_one_answer_is_seven_bytes_as_documented():
    assert len(FIRST) == 7
    assert compact.decode(FIRST) == answer(0.75, 1, 3)


def test_flags_and_a_two_byte_version():
    assert compact.decode(SECOND) == answer(-2.5, 0, 300, fallback=True, missing=True)


def test_only_one_flag_set():
    assert compact.decode(bytes.fromhex("11 02 01") + struct.pack("<f", 1.0)) == answer(1.0, 2, 1, fallback=True)
    assert compact.decode(bytes.fromhex("21 02 01") + struct.pack("<f", 1.0)) == answer(1.0, 2, 1, missing=True)


def test_the_score_is_float32_precision():
    got = compact.decode(bytes.fromhex("01 00 01") + struct.pack("<f", 0.1))["prediction"]
    assert got == pytest.approx(0.1, rel=1e-7) and got != 0.1


def test_nan_passes_through():
    assert math.isnan(compact.decode(bytes.fromhex("01 00 01 00 00 c0 7f"))["prediction"])


def test_a_batch_is_a_list_in_request_order():
    data = bytes.fromhex("02 02") + FIRST + SECOND
    assert compact.decode(data) == [answer(0.75, 1, 3), answer(-2.5, 0, 300, fallback=True, missing=True)]
    assert compact.decode(bytes.fromhex("02 00")) == []


def test_items_decode_zigzag_ids_in_rank_order():
    data = bytes.fromhex("03 00 05 03 0e 03 ac 02")
    assert compact.decode(data) == {"items": [7, -2, 150], "variant_index": 0, "version": 5}


def test_a_batch_from_a_table_of_items_holds_one_items_message_per_request():
    data = bytes.fromhex("02 02" "03 00 05 03 0e 03 ac 02" "03 01 06 00")
    assert compact.decode(data) == [{"items": [7, -2, 150], "variant_index": 0, "version": 5},
                                    {"items": [], "variant_index": 1, "version": 6}]


def test_extreme_item_ids():
    # zigzag(2^63 - 1) = 2^64 - 2, zigzag(-2^63) = 2^64 - 1: ten-byte varints.
    top = bytes.fromhex("fe ff ff ff ff ff ff ff ff 01")
    bottom = bytes.fromhex("ff ff ff ff ff ff ff ff ff 01")
    got = compact.decode(bytes.fromhex("03 00 01 02") + top + bottom)
    assert got["items"] == [2**63 - 1, -(2**63)]


def test_bytearray_and_memoryview_are_accepted():
    assert compact.decode(bytearray(FIRST)) == compact.decode(memoryview(FIRST)) == answer(0.75, 1, 3)


@pytest.mark.parametrize("data, offset, words", [
    (b"", 0, "truncated"),
    (FIRST[:6], 3, "truncated: expected the prediction"),
    (bytes.fromhex("01 01"), 2, "the model version"),
    (bytes.fromhex("01 80"), 2, "the variant index"),              # a varint cut after a continuation byte
    (bytes.fromhex("00 00 00"), 0, "unknown tag 0"),
    (bytes.fromhex("07 00 00"), 0, "unknown tag 7"),
    (bytes.fromhex("41") + FIRST[1:], 0, "reserved bits 0x40"),
    (FIRST + b"\x00", 7, "1 bytes left over"),
    (bytes.fromhex("02 02") + FIRST, 2, "truncated"),               # count 2, one answer: the count check
    (bytes.fromhex("02 01 02 00 00 00 00 00 00"), 2, "expected an answer (tag 1) or items (tag 3)"),
    (bytes.fromhex("12 00"), 0, "only answers carry"),
    (bytes.fromhex("03 00 05 02 0e"), 4, "truncated"),
    (bytes.fromhex("03 00 05 02 0e 80"), 6, "item 1"),
    (bytes.fromhex("01") + b"\x80" * 10 + b"\x01", 1, "longer than 10 bytes"),
    (bytes.fromhex("01 ff ff ff ff ff ff ff ff ff 7f"), 1, "above 64 bits"),
])
def test_malformed_input_names_the_byte_offset(data, offset, words):
    with pytest.raises(ValueError, match=f"byte offset {offset} ") as info:
        compact.decode(data)
    assert words in str(info.value)
