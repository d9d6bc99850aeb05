"""vswctl.hpackcodec: RFC 7541's own examples, and every block the `hpack` package encodes."""

from __future__ import annotations

import hpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzzing import budget
from vswctl.hpackcodec import Decoder, HpackError, encode

# RFC 7541 Appendix C: three header blocks each on one connection, and what they decode to
REQUESTS = [
    [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "www.example.com")],
    [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "www.example.com"),
     ("cache-control", "no-cache")],
    [(":method", "GET"), (":scheme", "https"), (":path", "/index.html"),
     (":authority", "www.example.com"), ("custom-key", "custom-value")],
]
C3_PLAIN = ["828684410f7777772e6578616d706c652e636f6d", "828684be58086e6f2d6361636865",
            "828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565"]
C4_HUFFMAN = ["828684418cf1e3c2e5f23a6ba0ab90f4ff", "828684be5886a8eb10649cbf",
              "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf"]
DATE = "Mon, 21 Oct 2013 20:13:2{} GMT"
RESPONSES = [
    [(":status", "302"), ("cache-control", "private"), ("date", DATE.format(1)),
     ("location", "https://www.example.com")],
    [(":status", "307"), ("cache-control", "private"), ("date", DATE.format(1)),
     ("location", "https://www.example.com")],
    [(":status", "200"), ("cache-control", "private"), ("date", DATE.format(2)),
     ("location", "https://www.example.com"), ("content-encoding", "gzip"),
     ("set-cookie", "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1")],
]
# C.5, with a 256-octet table: the third block evicts entries
C5_PLAIN = [
    "4803333032580770726976617465611d4d6f6e2c203231204f637420323031332032303a31333a323120474d54"
    "6e1768747470733a2f2f7777772e6578616d706c652e636f6d",
    "4803333037c1c0bf",
    "88c1611d4d6f6e2c203231204f637420323031332032303a31333a323220474d54c05a04677a69707738666f6f"
    "3d4153444a4b48514b425a584f5157454f50495541585157454f49553b206d61782d6167653d333630303b2076"
    "657273696f6e3d31",
]


@pytest.mark.parametrize("blocks", [C3_PLAIN, C4_HUFFMAN], ids=["C.3", "C.4 huffman"])
def test_rfc_requests(blocks):
    decoder = Decoder()
    assert [decoder.decode(bytes.fromhex(b)) for b in blocks] == REQUESTS


def test_rfc_responses_evict_from_a_small_table():
    decoder = Decoder(256)
    assert [decoder.decode(bytes.fromhex(b)) for b in C5_PLAIN] == RESPONSES
    # the third block evicted the 302-era entries: only its own three fit in 256 octets
    assert decoder._size <= 256 and len(decoder._table) == 3


def test_our_encoding_decodes_with_hpack_and_indexes_nothing():
    headers = [(":path", "/vswitchd.v1.Switch/GetStatus"), ("x-long", "v" * 300), ("e", "")]
    reference = hpack.Decoder()
    assert reference.decode(encode(headers)) == headers
    assert len(reference.header_table.dynamic_entries) == 0


@pytest.mark.parametrize("block, why", [
    ("bf", "not in the table"),                      # dynamic index 63 in an empty table
    ("ff", "runs past"),                             # an integer cut after its prefix
    ("400a6375", "runs past"),                       # a name longer than the block
    ("3fe21f", "over the limit"),                    # a table size update over 4096
])
def test_bad_blocks_are_errors(block, why):
    with pytest.raises(HpackError, match=why):
        Decoder().decode(bytes.fromhex(block))


NAMES = st.sampled_from(["grpc-status", "grpc-message", "content-type", ":status", "x-a", "x-b"])
VALUES = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
BLOCK = st.lists(st.tuples(NAMES, VALUES), max_size=8)


@pytest.mark.property
@budget(300)
@given(st.lists(st.tuples(BLOCK, st.booleans(), st.sampled_from([None, 0, 64, 256, 4096])),
                min_size=1, max_size=12))
def test_decodes_what_hpack_encodes(blocks):
    """A connection's blocks as hpack encodes them: indexing, eviction, Huffman on and off,
    table size updates between blocks."""
    encoder, decoder = hpack.Encoder(), Decoder()
    for headers, huffman, table_size in blocks:
        if table_size is not None:
            encoder.header_table_size = table_size
        assert decoder.decode(encoder.encode(headers, huffman=huffman)) == headers
