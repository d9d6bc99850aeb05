"""HPACK (RFC 7541), the header compression of HTTP/2, as much as `vswctl.unary` needs.

- `encode`: our request headers as literals that are never indexed and not Huffman-coded, so
  the server's dynamic table is never touched by us.
- `Decoder`: the server's header blocks: indexed fields, literals, its dynamic table and
  table-size updates. Huffman-coded strings are decoded by the `hpack` package, imported only
  when a string is coded: grpc's server sends plain strings, and importing `hpack` (it loads
  `logging`) is 5 ms of a 50 ms command.
"""

from __future__ import annotations

# RFC 7541 Appendix A: index 1..61
STATIC_TABLE: tuple[tuple[str, str], ...] = (
    (":authority", ""), (":method", "GET"), (":method", "POST"), (":path", "/"),
    (":path", "/index.html"), (":scheme", "http"), (":scheme", "https"), (":status", "200"),
    (":status", "204"), (":status", "206"), (":status", "304"), (":status", "400"),
    (":status", "404"), (":status", "500"), ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"), ("accept-language", ""), ("accept-ranges", ""),
    ("accept", ""), ("access-control-allow-origin", ""), ("age", ""), ("allow", ""),
    ("authorization", ""), ("cache-control", ""), ("content-disposition", ""),
    ("content-encoding", ""), ("content-language", ""), ("content-length", ""),
    ("content-location", ""), ("content-range", ""), ("content-type", ""), ("cookie", ""),
    ("date", ""), ("etag", ""), ("expect", ""), ("expires", ""), ("from", ""), ("host", ""),
    ("if-match", ""), ("if-modified-since", ""), ("if-none-match", ""), ("if-range", ""),
    ("if-unmodified-since", ""), ("last-modified", ""), ("link", ""), ("location", ""),
    ("max-forwards", ""), ("proxy-authenticate", ""), ("proxy-authorization", ""),
    ("range", ""), ("referer", ""), ("refresh", ""), ("retry-after", ""), ("server", ""),
    ("set-cookie", ""), ("strict-transport-security", ""), ("transfer-encoding", ""),
    ("user-agent", ""), ("vary", ""), ("via", ""), ("www-authenticate", ""),
)
ENTRY_OVERHEAD = 32  # an entry's size is its name's and value's octets plus 32 (section 4.1)
DEFAULT_TABLE_SIZE = 4096


class HpackError(ValueError):
    """A header block that does not decode."""


def encode(headers: list[tuple[str, str]]) -> bytes:
    """Literal header fields, never indexed, new names, no Huffman coding (section 6.2.3)."""
    out = bytearray()
    for name, value in headers:
        out.append(0x10)
        for text in (name, value):
            raw = text.encode()
            out += _integer(len(raw), 7, 0x00)
            out += raw
    return bytes(out)


class Decoder:
    """One connection's decoding state: the dynamic table the server's blocks build."""

    def __init__(self, max_table_size: int = DEFAULT_TABLE_SIZE):
        self._limit = max_table_size  # what we allow (SETTINGS_HEADER_TABLE_SIZE: default)
        self._max_size = max_table_size  # what the server chose, at most the limit
        self._table: list[tuple[str, str]] = []  # newest first: index 62 is _table[0]
        self._size = 0

    def decode(self, block: bytes) -> list[tuple[str, str]]:
        headers: list[tuple[str, str]] = []
        i = 0
        while i < len(block):
            first = block[i]
            if first & 0x80:  # indexed field (6.1)
                index, i = _read_integer(block, i, 7)
                headers.append(self._entry(index))
            elif first & 0x40:  # literal with incremental indexing (6.2.1)
                name, value, i = self._literal(block, i, 6)
                headers.append((name, value))
                self._add(name, value)
            elif first & 0x20:  # dynamic table size update (6.3)
                size, i = _read_integer(block, i, 5)
                if size > self._limit:
                    raise HpackError(f"table size {size} over the limit {self._limit}")
                self._max_size = size
                self._evict(0)
            else:  # literal without indexing (6.2.2) or never indexed (6.2.3)
                name, value, i = self._literal(block, i, 4)
                headers.append((name, value))
        return headers

    def _literal(self, block: bytes, i: int, prefix: int) -> tuple[str, str, int]:
        index, i = _read_integer(block, i, prefix)
        if index:
            name = self._entry(index)[0]
        else:
            name, i = _read_string(block, i)
        value, i = _read_string(block, i)
        return name, value, i

    def _entry(self, index: int) -> tuple[str, str]:
        if 1 <= index <= len(STATIC_TABLE):
            return STATIC_TABLE[index - 1]
        dynamic = index - len(STATIC_TABLE) - 1
        if 0 <= dynamic < len(self._table):
            return self._table[dynamic]
        raise HpackError(f"header index {index} is not in the table")

    def _add(self, name: str, value: str) -> None:
        size = len(name.encode()) + len(value.encode()) + ENTRY_OVERHEAD
        self._evict(size)
        if size <= self._max_size:  # a larger entry empties the table and is not kept (4.4)
            self._table.insert(0, (name, value))
            self._size += size

    def _evict(self, room: int) -> None:
        while self._table and self._size + room > self._max_size:
            name, value = self._table.pop()
            self._size -= len(name.encode()) + len(value.encode()) + ENTRY_OVERHEAD


def _integer(value: int, prefix: int, flags: int) -> bytes:
    """An integer with an N-bit prefix (5.1); flags fill the first octet's other bits."""
    top = (1 << prefix) - 1
    if value < top:
        return bytes((flags | value,))
    out = bytearray((flags | top,))
    value -= top
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_integer(block: bytes, i: int, prefix: int) -> tuple[int, int]:
    top = (1 << prefix) - 1
    value = block[i] & top
    i += 1
    if value < top:
        return value, i
    shift = 0
    while True:
        if i >= len(block) or shift > 28:
            raise HpackError("an integer runs past the header block")
        octet = block[i]
        i += 1
        value += (octet & 0x7F) << shift
        shift += 7
        if not octet & 0x80:
            return value, i


def _read_string(block: bytes, i: int) -> tuple[str, int]:
    if i >= len(block):
        raise HpackError("a string runs past the header block")
    huffman = block[i] & 0x80
    length, i = _read_integer(block, i, 7)
    if i + length > len(block):
        raise HpackError("a string runs past the header block")
    raw = block[i:i + length]
    if huffman:
        from hpack.huffman_table import decode_huffman  # rare: see the module's doc

        try:
            raw = decode_huffman(raw)
        except Exception as exc:  # hpack's HPACKDecodingError
            raise HpackError(f"a Huffman-coded string does not decode: {exc}") from None
    return raw.decode("utf-8", "replace"), i + length
