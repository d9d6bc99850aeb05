import pytest

from vswcluster import keys


def test_key_layout_is_versioned_and_documented():
    assert keys.PREFIX == "/vswitchd/v1/"
    assert keys.host_key("h1") == "/vswitchd/v1/hosts/h1"
    assert keys.vtep_key(100, "h1") == "/vswitchd/v1/vnis/100/vteps/h1"
    assert keys.mac_key(100, "h1", 0, "02:AA:00:00:00:01") == \
        "/vswitchd/v1/vnis/100/macs/h1/0/02:aa:00:00:00:01"


def test_values_are_canonical_json():
    assert keys.vtep_value("10.77.0.1") == '{"vtep":"10.77.0.1"}'
    assert keys.mac_value("10.77.0.1", ["10.5.0.2", "10.5.0.1", "10.5.0.2"]) == \
        '{"ips":["10.5.0.1","10.5.0.2"],"vtep":"10.77.0.1"}'


def test_parse_builds_the_view_and_counts_garbage():
    mirror = {
        keys.host_key("h1"): (keys.vtep_value("10.77.0.1"), 5),
        keys.vtep_key(7, "h1"): (keys.vtep_value("10.77.0.1"), 5),
        keys.mac_key(7, "h1", 10, "02:00:00:00:00:01"):
            (keys.mac_value("10.77.0.1", ["1.2.3.4"]), 6),
        "/vswitchd/v1/vnis/x/vteps/h2": ('{"vtep":"1.1.1.1"}', 7),
        "/vswitchd/v1/hosts/h3": ("not json", 8),
        "/vswitchd/v2/hosts/h4": ('{"vtep":"1.1.1.1"}', 9),
    }
    view = keys.parse(mirror)
    assert view.hosts == {"h1": "10.77.0.1"}
    assert view.vteps == {7: {"h1": "10.77.0.1"}}
    [rec] = view.macs[7][(10, "02:00:00:00:00:01")]
    assert rec == keys.MacRecord("h1", "10.77.0.1", ("1.2.3.4",), 6)
    assert view.ignored == 2


@pytest.mark.parametrize("bad", ["", "a/b", " a"])
def test_host_names_that_would_break_the_layout_are_refused(bad):
    with pytest.raises(ValueError):
        keys.check_host(bad)


def test_host_of():
    assert keys.host_of(keys.mac_key(1, "h2", 0, "02:00:00:00:00:01")) == "h2"
    assert keys.host_of(keys.vtep_key(1, "h2")) == "h2"
    assert keys.host_of(keys.host_key("h2")) == "h2"
    assert keys.host_of("/other/h2") is None
