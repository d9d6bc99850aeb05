import pytest

from vswitchd import validate
from vswitchd.errors import InvalidArgument


@pytest.mark.parametrize("name", ["a" * 16, "has/slash", "has space", "has:colon", "", "tab\tx",
                                  "..", "é" * 8])
def test_bad_interface_names(name):
    with pytest.raises(InvalidArgument) as err:
        validate.ifname(name, "port")
    assert err.value.field == "port"
    assert repr(name) in str(err.value)


@pytest.mark.parametrize("name", ["a" * 15, "br0", "c1-eth0", "veth.10", "é", "é" * 7, "😀",
                                  "ä", "brü0"])
def test_good_interface_names(name):
    assert validate.ifname(name) == name


@pytest.mark.parametrize("name", ["à", "xàx", "Ġ", "ࠀ", "a\u00a0b", "a\u2003b"])
def test_names_with_a_byte_the_kernel_takes_for_white_space(name):
    """The kernel's isspace() takes byte 0xa0 for a space: 'à' (C3 A0) is refused by it."""
    with pytest.raises(InvalidArgument) as err:
        validate.ifname(name, "bridge")
    assert err.value.field == "bridge" and "must not contain" in err.value.problem


def test_mac_canonical_and_errors():
    assert validate.mac("02-AA-bb-CC-dd-EE") == "02:aa:bb:cc:dd:ee"
    with pytest.raises(InvalidArgument, match="is not a MAC address"):
        validate.mac("02:aa:bb:cc:dd")
    with pytest.raises(InvalidArgument, match="multicast"):
        validate.unicast_mac("01:00:5e:00:00:01")
    with pytest.raises(InvalidArgument, match="all-zero"):
        validate.unicast_mac("00:00:00:00:00:00")


def test_cidr():
    assert validate.cidr("10.0.0.2/24") == "10.0.0.2/24"
    assert validate.cidr("fd00::0002/64") == "fd00::2/64"
    for bad in ("10.0.0.2", "10.0.0.300/24", "10.0.0.2/33", "x/1"):
        with pytest.raises(InvalidArgument) as err:
            validate.cidr(bad, "ip")
        assert err.value.field == "ip"


@pytest.mark.parametrize("value, problem", [
    ("10.0.0.0/24", "is the network address of 10.0.0.0/24"),
    ("10.0.0.255/24", "is the broadcast address of 10.0.0.0/24"),
    ("10.1.0.0/16", "is the network address of 10.1.0.0/16"),
    ("10.0.0.3/30", "is the broadcast address of 10.0.0.0/30"),
    ("224.0.0.5/24", "is a multicast address"),
    ("239.1.2.3/8", "is a multicast address"),
    ("ff02::5/64", "is a multicast address"),
    ("ff0e::1/128", "is a multicast address"),
])
def test_interface_addresses_are_a_hosts(value, problem):
    with pytest.raises(InvalidArgument) as err:
        validate.cidr(value, "ip")
    assert err.value.field == "ip" and err.value.problem.startswith(problem)
    assert str(err.value).startswith(f"ip {value!r}: ")


@pytest.mark.parametrize("value", ["10.0.0.1/24", "10.0.0.254/24", "10.0.0.0/31",
                                   "10.0.0.1/31", "10.0.0.0/32", "10.0.0.255/32",
                                   "192.168.0.255/23", "fd00::/64", "fd00::1/64"])
def test_host_addresses_at_the_edges_of_their_prefix(value):
    assert validate.cidr(value) == value


def test_an_address_is_given_once():
    assert validate.distinct_addresses(["10.0.0.1/24", "fd00::1/64"]) == ["10.0.0.1/24",
                                                                          "fd00::1/64"]
    with pytest.raises(InvalidArgument) as err:
        validate.distinct_addresses(["10.0.0.1/24", "10.0.1.1/24", "10.0.0.1/16"])
    assert str(err.value) == "ip '10.0.0.1/16': is given twice (also as 10.0.0.1/24)"


def test_mtu_and_vlan_ranges():
    assert validate.mtu(1500) == 1500
    for bad in (67, 65536, True, "1500"):
        with pytest.raises(InvalidArgument, match="mtu"):
            validate.mtu(bad)
    assert validate.vlan(0) == 0
    assert validate.vlan(4094) == 4094
    with pytest.raises(InvalidArgument, match="1..4094"):
        validate.vlan(4095)
    with pytest.raises(InvalidArgument):
        validate.vlan(0, allow_untagged=False)
