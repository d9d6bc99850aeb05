"""Reading a BPF ring buffer (BPF_MAP_TYPE_RINGBUF) by memory-mapping it, as libbpf's
ring_buffer__poll does: the consumer page is ours to write, the producer page and the data
(mapped twice in a row, so a record never wraps) are the kernel's. epoll on the map fd wakes
us when the programs submit."""

from __future__ import annotations

import mmap
import select
import struct

_BUSY = 1 << 31      # BPF_RINGBUF_BUSY_BIT: the record is still being written
_DISCARD = 1 << 30   # BPF_RINGBUF_DISCARD_BIT: the program gave the record up
_HEADER = 8          # BPF_RINGBUF_HDR_SZ: u32 length with the two bits, u32 page offset
_POS = struct.Struct("=Q")
_LEN = struct.Struct("=I")


class RingReader:
    """The consumer side of one ring buffer map of size bytes (its max_entries)."""

    def __init__(self, map_fd: int, size: int, start: int = 0) -> None:
        """start: the producer position before which records are skipped."""
        page = mmap.PAGESIZE
        self._mask = size - 1
        self._consumer = mmap.mmap(map_fd, page, mmap.MAP_SHARED,
                                   mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        try:
            self._producer = mmap.mmap(map_fd, page + 2 * size, mmap.MAP_SHARED,
                                       mmap.PROT_READ, offset=page)
        except BaseException:
            self._consumer.close()
            raise
        self._data = memoryview(self._producer)[page:]
        if _POS.unpack_from(self._consumer, 0)[0] < start:
            _POS.pack_into(self._consumer, 0, start)
        self._epoll = select.epoll()
        self._epoll.register(map_fd, select.EPOLLIN)

    def consume(self) -> list[bytes]:
        """The records submitted since the last call, oldest first."""
        records = []
        cons = _POS.unpack_from(self._consumer, 0)[0]
        prod = _POS.unpack_from(self._producer, 0)[0]
        while cons < prod:
            length = _LEN.unpack_from(self._data, cons & self._mask)[0]
            if length & _BUSY:
                break
            start = (cons & self._mask) + _HEADER
            size = length & ~(_BUSY | _DISCARD)
            if not length & _DISCARD:
                records.append(bytes(self._data[start:start + size]))
            cons += (size + _HEADER + 7) & ~7
            _POS.pack_into(self._consumer, 0, cons)  # frees the space for the producers
            if cons >= prod:
                prod = _POS.unpack_from(self._producer, 0)[0]
        return records

    def poll(self, timeout_ms: int) -> list[bytes]:
        """Waits up to timeout_ms for a record unless some are there, then consumes them."""
        records = self.consume()
        if records:
            return records
        self._epoll.poll(max(0, timeout_ms) / 1000)
        return self.consume()

    def close(self) -> None:
        self._epoll.close()
        self._data.release()
        self._producer.close()
        self._consumer.close()


class Ring:
    """A RingBuf table (tables.py) read through a RingReader mapped at the first poll: a
    mapped ring counts in the daemon's resident memory (all of it, 3 MiB for the watch and
    packet-in rings), and most daemons never have a watcher."""

    def __init__(self, table) -> None:
        self._table = table
        self._reader: RingReader | None = None
        self.closed = False
        # Records an earlier daemon left unread (a restart that took its build back) are
        # about its watchers: skipped. Only the producer's page is mapped, for a moment.
        with mmap.mmap(table.map_fd, mmap.PAGESIZE, mmap.MAP_SHARED, mmap.PROT_READ,
                       offset=mmap.PAGESIZE) as producer:
            self._start = _POS.unpack_from(producer, 0)[0]

    def poll(self, timeout_ms: int) -> list[bytes]:
        """What RingReader.poll returns; [] once closed."""
        if self.closed:
            return []
        if self._reader is None:
            self._reader = RingReader(self._table.map_fd, self._table.max_entries, self._start)
        return self._reader.poll(timeout_ms)

    def close(self) -> None:
        self.closed = True
        if self._reader is not None:
            self._reader.close()
            self._reader = None

