"""etcd access for the agent, over etcd's grpc-gateway (HTTP/JSON, /v3/) with etcd3gw.

- Several endpoints: a request that cannot reach one (connection refused or reset, timeout,
  503) goes to the next; the one that answered stays in use.
- Leases: grant, keep-alive (refresh), revoke; a keep-alive that finds the lease gone reports
  it so the caller re-grants and re-publishes.
- get_prefix returns the keys with their mod_revision and the store's revision, so a watch can
  resume exactly after it (revision + 1).
- Watch: a thread reads the gateway's stream and queues events. etcd3gw's own Watcher hides
  the end of the stream and its errors (its thread just stops), which an agent must see to
  re-list, so the stream is read here on etcd3gw's HTTP session.
- Backoff: exponential with a cap, for the caller to wait between failed rounds.
"""

from __future__ import annotations

import json
import queue
import random
import socket
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
from etcd3gw.client import Etcd3Client
from etcd3gw.exceptions import ConnectionFailedError, ConnectionTimeoutError, Etcd3Exception
from etcd3gw.utils import _decode, _encode, _increment_last_byte

API_PATH = "/v3/"  # etcd >= 3.4 (Debian's etcd-server is 3.4); etcd3gw would probe /version


class StoreUnavailable(Exception):
    """No endpoint answered."""


class LeaseLost(Exception):
    """The lease given with a put is gone (expired or revoked): grant a new one."""


class WatchLost(Exception):
    """The watch stream ended or failed: re-list, then watch again."""


class Compacted(WatchLost):
    """The revision to resume from was compacted away."""


_CONN_ERRORS = (ConnectionFailedError, ConnectionTimeoutError, requests.RequestException,
                OSError)


def parse_endpoints(text: str) -> list[tuple[str, str, int]]:
    """'http://10.0.0.1:2379,10.0.0.2:2379' -> [(protocol, host, port), ...]."""
    out = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        if "://" not in item:
            item = "http://" + item
        u = urlsplit(item)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"etcd endpoint {item!r} is not http[s]://HOST[:PORT]")
        out.append((u.scheme, u.hostname, u.port or 2379))
    if not out:
        raise ValueError("no etcd endpoint given")
    return out


class Backoff:
    def __init__(self, initial: float = 0.2, cap: float = 5.0, factor: float = 2.0) -> None:
        self.initial, self.cap, self.factor = initial, cap, factor
        self.current = 0.0

    def failed(self) -> float:
        """The next delay (with ±10 % jitter); grows up to the cap."""
        self.current = min(self.cap, self.current * self.factor if self.current else self.initial)
        return self.current * random.uniform(0.9, 1.1)

    def reset(self) -> None:
        self.current = 0.0


@dataclass
class Event:
    kind: str          # "put" or "delete"
    key: str
    value: str         # "" for a delete
    revision: int      # mod_revision of the event


class Watch:
    """A watch on a prefix from a revision. Events and failures arrive on `events` (a failure
    as a WatchLost instance, after which nothing more comes)."""

    def __init__(self, client: Etcd3Client, prefix: str, start_revision: int) -> None:
        self.events: queue.Queue[Event | WatchLost] = queue.Queue()
        self.endpoint = client.base_url
        self._stopped = threading.Event()
        body = {"create_request": {"key": _encode(prefix),
                                   "range_end": _encode(_increment_last_byte(prefix)),
                                   "start_revision": start_revision}}
        # connect timeout only: the stream is idle as long as nothing changes
        self._resp = client.session.post(client.get_url("/watch"), json=body, stream=True,
                                         timeout=(client.timeout or 2.0, None))
        if self._resp.status_code != 200:
            raise WatchLost(f"watch refused: HTTP {self._resp.status_code} {self._resp.text}")
        self._thread = threading.Thread(target=self._run, name="etcd-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for line in self._resp.iter_lines(chunk_size=None):
                if not line.strip():
                    continue
                msg = json.loads(line)
                if "error" in msg:
                    raise WatchLost(f"watch error: {msg['error']}")
                result = msg.get("result", {})
                if int(result.get("compact_revision", 0) or 0) > 0:
                    raise Compacted(f"revision compacted (now {result['compact_revision']})")
                if result.get("canceled"):
                    raise WatchLost(f"watch canceled: {result.get('cancel_reason', '')}")
                for ev in result.get("events", []):
                    kv = ev["kv"]
                    self.events.put(Event(
                        "delete" if ev.get("type") == "DELETE" else "put",
                        _decode(kv["key"]).decode(),
                        _decode(kv.get("value", "")).decode(),
                        int(kv.get("mod_revision", 0))))
            raise WatchLost(f"watch stream from {self.endpoint} ended")
        except WatchLost as exc:
            self.events.put(exc)
        except Exception as exc:  # noqa: BLE001 - any failure of the stream ends the watch
            if not self._stopped.is_set():
                self.events.put(WatchLost(f"watch stream from {self.endpoint} failed: {exc}"))

    def stop(self) -> None:
        """End the stream: shut the socket down under the reading thread (closing the response
        from here would wait for the reader's lock), then close."""
        self._stopped.set()
        try:
            fd = self._resp.raw._fp.fileno()  # type: ignore[union-attr]
            with socket.fromfd(fd, socket.AF_INET, socket.SOCK_STREAM) as s:
                s.shutdown(socket.SHUT_RDWR)
        except Exception:  # noqa: BLE001 - already closed
            pass
        self._thread.join(2.0)
        try:
            self._resp.close()
        except Exception:  # noqa: BLE001
            pass


class Store:
    def __init__(self, endpoints: str | list[tuple[str, str, int]], timeout: float = 2.0) -> None:
        self.endpoints = parse_endpoints(endpoints) if isinstance(endpoints, str) else endpoints
        self.timeout = timeout
        self._clients = [Etcd3Client(host=h, port=p, protocol=s, timeout=timeout,
                                     api_path=API_PATH) for s, h, p in self.endpoints]
        self.current = 0
        self.failovers = 0

    @property
    def endpoint(self) -> str:
        return self._clients[self.current].base_url

    @property
    def client(self) -> Etcd3Client:
        return self._clients[self.current]

    def _call(self, fn):
        """fn(client) on the endpoint in use, else on the next ones in turn."""
        errors = []
        n = len(self._clients)
        for i in range(n):
            idx = (self.current + i) % n
            try:
                result = fn(self._clients[idx])
            except _CONN_ERRORS as exc:
                errors.append(f"{self._clients[idx].base_url}: {_short(exc)}")
                continue
            except Etcd3Exception as exc:
                if "lease not found" in str(exc):
                    raise LeaseLost(_short(exc)) from None
                # e.g. 500 "etcdserver: request timed out" from a member without quorum
                errors.append(f"{self._clients[idx].base_url}: {_short(exc)}")
                continue
            if idx != self.current:
                self.current = idx
                self.failovers += 1
            return result
        raise StoreUnavailable("; ".join(errors))

    # ---- keys

    def get_prefix(self, prefix: str) -> tuple[dict[str, tuple[str, int]], int]:
        """({key: (value, mod_revision)}, revision of the store at the read)."""
        def read(c: Etcd3Client):
            return c.post(c.get_url("/kv/range"), json={
                "key": _encode(prefix), "range_end": _encode(_increment_last_byte(prefix))})
        result = self._call(read)
        kvs = {}
        for kv in result.get("kvs", []):
            kvs[_decode(kv["key"]).decode()] = (_decode(kv.get("value", "")).decode(),
                                                int(kv.get("mod_revision", 0)))
        return kvs, int(result["header"]["revision"])

    def put(self, key: str, value: str, lease: int | None = None) -> int:
        """Returns the store's revision after the put."""
        body: dict = {"key": _encode(key), "value": _encode(value)}
        if lease:
            body["lease"] = lease
        result = self._call(lambda c: c.post(c.get_url("/kv/put"), json=body))
        return int(result["header"]["revision"])

    def delete(self, key: str) -> int:
        result = self._call(lambda c: c.post(c.get_url("/kv/deleterange"),
                                             json={"key": _encode(key)}))
        return int(result["header"]["revision"])

    # ---- leases

    def grant(self, ttl: int) -> int:
        result = self._call(lambda c: c.post(c.get_url("/lease/grant"),
                                             json={"TTL": ttl, "ID": 0}))
        return int(result["ID"])

    def keepalive(self, lease: int) -> int:
        """The lease's TTL after the refresh; -1 when the lease is gone (expired, revoked)."""
        result = self._call(lambda c: c.post(c.get_url("/lease/keepalive"),
                                             json={"ID": lease}))
        return int(result.get("result", {}).get("TTL", -1))

    def revoke(self, lease: int) -> None:
        self._call(lambda c: c.post(c.get_url("/kv/lease/revoke"), json={"ID": lease}))

    # ---- watch

    def watch(self, prefix: str, start_revision: int) -> Watch:
        def start(c: Etcd3Client) -> Watch:
            return Watch(c, prefix, start_revision)
        return self._call(start)


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 200 else text[:200] + "..."


def monotonic() -> float:
    return time.monotonic()
