"""Property-based fuzzing of the YAML configuration file (vswitchd.config.parse, the declared
bridges of vswitchd.desired included): random YAML documents, documents made of the real keys
with random values, and mutations of a valid file. The only failure is ConfigError, and its
message starts with FILE:LINE."""

from __future__ import annotations

import re

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzzing import budget
from vswitchd import config
from vswitchd.yamlfile import ConfigError

pytestmark = pytest.mark.property

PATH = "fuzz.yaml"
AT_LINE = re.compile(rf"^{re.escape(PATH)}:\d+: ")
VALID = """\
socket: /run/vswitchd/fz.sock
state_dir: /var/lib/vswitchd-fz
bpffs_dir: /sys/fs/bpf/vswitchd-fz
cache_dir: /var/cache/vswitchd-fz
default_datapath: ebpf
fdb_aging_seconds: 300
log_level: info
watch: {rate_limit: 500, max_watchers: 4}
packet_in: {rate_limit: 100}
events: {history: 1000}
datapath: {max_ports: 1024, max_fdb_entries: 4096}
metrics: {address: "127.0.0.1:9477"}
bridges:
  br0:
    datapath: ebpf
    ip: [10.0.0.1/24]
    nat: true
    ports:
      c1: {type: veth, netns: c1, ip: [10.0.0.2/24], gateway: 10.0.0.1, vlan: 10}
      vm0: {type: tap, owner: root, trunks: [10, 20], native_vlan: 5, multi_queue: true, xdp: auto}
      vx0: {type: vxlan, vni: 100, remotes: [192.0.2.2], labels: {a: b}}
    fdb:
      - {mac: "02:00:00:00:00:01", port: c1, vlan: 10}
    flows:
      - "priority=100,udp,tp_dst=53,actions=drop"
  kb0:
    datapath: kernel
"""

KEYS = ["socket", "state_dir", "bpffs_dir", "cache_dir", "default_datapath",
        "fdb_aging_seconds", "log_level", "tcp", "watch", "packet_in", "events", "metrics",
        "datapath", "bridges", "rate_limit", "max_watchers", "history", "max_ports",
        "max_fdb_entries", "address", "tls_cert", "tls_key", "tls_client_ca",
        "unauthenticated_clients", "ip", "nat", "ports", "fdb", "flows", "type", "netns",
        "peer_name", "mac", "mtu", "owner", "vlan", "trunks", "native_vlan", "gateway",
        "multi_queue", "uplink", "xdp", "vni", "local", "dstport", "remotes", "labels", "port",
        "remote", "br0", "c1", "nosuch"]
SCALARS = st.one_of(
    st.none(), st.booleans(),
    st.sampled_from([0, -1, 1, 4094, 4095, 2**31, 2**63, 2**64, 10**30]),
    st.integers(), st.floats(allow_nan=True),
    st.sampled_from(["ebpf", "kernel", "veth", "tap", "vxlan", "system", "auto", "off", "debug",
                     "10.0.0.1/24", "10.0.0.1", "fd00::1/64", "02:00:00:00:00:01", "c1", "br0",
                     "/sys/fs/bpf/x", "/tmp", "", "a" * 300, "priority=1,actions=drop",
                     "actions=", "127.0.0.1:0", ":", "yes", "~", "0x10", "1e3"]),
    st.text(max_size=20),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.one_of(st.sampled_from(KEYS), SCALARS), inner,
                                            max_size=4)),
    max_leaves=12,
)
DOCUMENTS = st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=5)


def _dump(doc: object) -> str:
    try:
        return yaml.safe_dump(doc, default_flow_style=False, allow_unicode=True)
    except yaml.YAMLError:  # e.g. a key yaml cannot write; the text is what matters
        return str(doc)


@st.composite
def mutated(draw) -> str:
    lines = VALID.splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(lines) - 1))
        how = draw(st.sampled_from(["delete", "duplicate", "value", "chars", "indent"]))
        if how == "delete":
            del lines[i]
        elif how == "duplicate":
            lines.insert(i, lines[i])
        elif how == "value":  # the line's first value replaced by another one of any type
            value = yaml.safe_dump(draw(VALUES), default_flow_style=True).strip()
            value = value.removesuffix("\n...").removesuffix("...").strip() or "''"
            lines[i] = re.sub(r"(:\s*)[^,{}\[\]\n]+",
                              lambda m, value=value: m.group(1) + value, lines[i], count=1)
        elif how == "indent":
            lines[i] = draw(st.sampled_from(["", " ", "   ", "\t"])) + lines[i].lstrip()
        else:
            at = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:at] + draw(st.text(max_size=3)) + lines[i][at + 1:]
        if not lines:
            break
    return "".join(lines)


TEXTS = st.one_of(mutated(), DOCUMENTS.map(_dump), VALUES.map(_dump), st.text(max_size=200))


def check(text: str) -> None:
    try:
        config.parse(text, PATH)
    except ConfigError as exc:
        assert AT_LINE.match(str(exc)), f"no {PATH}:LINE in {exc!s} for:\n{text}"


def test_the_valid_file_is_valid():
    cfg = config.parse(VALID, PATH)
    assert set(cfg.bridges) == {"br0", "kb0"} and cfg.watch.max_watchers == 4


@budget(300)
@given(TEXTS)
def test_config_text(text):
    check(text)
