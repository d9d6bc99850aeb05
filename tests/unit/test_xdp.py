"""XDP on ports (issue 12), from the API down to the datapath's calls, on fakes: the xdp field
(validation, store, configuration file), the modes the switch asks the datapath for, the XDP
targets, the NAPI arrangement on veth peers, kernel bridges, rollback and reconciliation."""

from __future__ import annotations

import pytest

from vswitchd import config
from vswitchd.errors import InvalidArgument
from vswitchd.model import Bridge, BridgeSpec, Port, PortFacts, PortSpec
from vswitchd.ports import DRIVERS
from vswitchd.ports import validate as validate_port
from vswitchd.state import StateStore

# ---- the field ---------------------------------------------------------------------------


def test_every_type_takes_the_modes_of_the_api_enum():
    for ptype in DRIVERS:
        for mode in ("", "auto", "native", "generic", "off"):
            spec = PortSpec("p1", ptype, xdp=mode, netns="c1" if ptype == "veth" else "")
            assert validate_port(spec).xdp == mode


@pytest.mark.parametrize("bad", ["fast", "Native", "on", " off"])
def test_a_bad_mode_is_refused_naming_the_field_and_value(bad):
    with pytest.raises(InvalidArgument) as exc:
        validate_port(PortSpec("t1", "tap", xdp=bad))
    assert exc.value.field == "xdp"
    assert str(exc.value) == (f"xdp {bad!r}: must be one of auto, native, generic, off "
                              "(unset: the port type's default)")


def test_defaults_by_type():
    assert {t: d.xdp_default for t, d in DRIVERS.items()} == {
        "veth": "off", "tap": "auto", "system": "auto"}


def test_the_store_round_trips_the_mode_and_old_rows_read_as_default(tmp_path):
    br = Bridge(BridgeSpec("br0"), {
        "t1": Port(PortSpec("t1", "tap", xdp="generic")),
        "c1": Port(PortSpec("c1", "veth", "c1", xdp="auto"), PortFacts(peer_gro=True)),
        "t2": Port(PortSpec("t2", "tap"))})
    StateStore(str(tmp_path)).save({"br0": br})
    got = StateStore(str(tmp_path)).load()["br0"].ports
    assert (got["t1"].spec.xdp, got["c1"].spec.xdp, got["t2"].spec.xdp) == (
        "generic", "auto", "")
    assert got["c1"].facts.peer_gro and not got["t1"].facts.peer_gro
    # a row written before the field existed (and one at its default) has no xdp key
    rows = br.to_dict()["ports"]
    assert "xdp" not in rows[2] and "peer_gro" not in rows[0]
    from vswitchd.model import port_from_row

    old = port_from_row({"name": "t9", "type": "tap", "netns": "", "peer_name": "",
                         "addresses": [], "mac": "", "mtu": 0, "owner": "",
                         "netns_created": False})
    assert (old.spec.xdp, old.facts.peer_gro) == ("", False)


def test_the_configuration_file_takes_xdp_even_unquoted_off():
    text = ("bridges:\n  br0:\n    ports:\n      t1: {type: tap, xdp: off}\n"
            "      t2: {type: tap, xdp: generic}\n      t3: {type: tap}\n")
    ports = config.parse(text, "x.yaml").bridges["br0"].ports
    assert (ports["t1"].xdp, ports["t2"].xdp, ports["t3"].xdp) == ("off", "generic", "")


def test_a_bad_mode_in_the_file_names_file_line_and_key():
    with pytest.raises(config.ConfigError) as exc:
        config.parse("bridges:\n  br0:\n    ports:\n      t1: {type: tap, xdp: fast}\n",
                     "x.yaml")
    assert str(exc.value) == ("x.yaml:4: bridges.br0.ports.t1.xdp: 'fast': must be one of "
                              "auto, native, generic, off (unset: the port type's default)")
