import pytest

from vswitchd import config


def test_defaults_need_no_file():
    cfg = config.load(None)
    assert cfg.socket == "/run/vswitchd/vswitchd.sock"
    assert cfg.default_datapath == "ebpf"
    assert cfg.fdb_aging_seconds == 300
    assert cfg.tcp is None


def test_file_values_and_flag_override(tmp_path):
    path = tmp_path / "v.yaml"
    path.write_text("socket: /tmp/a.sock\nfdb_aging_seconds: 60\ndefault_datapath: kernel\n")
    cfg = config.load(str(path))
    assert (cfg.socket, cfg.fdb_aging_seconds) == ("/tmp/a.sock", 60)
    assert cfg.default_datapath == "kernel"
    cfg = config.override(cfg, socket="/tmp/b.sock", state_dir=None)
    assert cfg.socket == "/tmp/b.sock"
    assert cfg.state_dir == "/var/lib/vswitchd"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("socket: /a\nsocket: /b\n", "f.yaml:2: duplicate key 'socket' (first set on line 1)"),
        ("log_level: info\nbogus: 1\n", "f.yaml:2: unknown key 'bogus'"),
        ("fdb_aging_seconds: soon\n", "f.yaml:1: fdb_aging_seconds: expected int, got str 'soon'"),
        ("fdb_aging_seconds: true\n", "f.yaml:1: fdb_aging_seconds: expected int, got bool"),
        ("fdb_aging_seconds: 0\n", "f.yaml:1: fdb_aging_seconds: 0 is not in 1..86400"),
        ("default_datapath: dpdk\n", "f.yaml:1: default_datapath: 'dpdk' is not one of"),
        ("socket: relative.sock\n", "f.yaml:1: socket: 'relative.sock' must be an absolute path"),
        ("bpffs_dir: /tmp/x\n", "f.yaml:1: bpffs_dir: '/tmp/x' must be under /sys/fs/bpf/"),
        ("tcp:\n  address: 0.0.0.0:9\n", "tls_cert and tls_key are required"),
        ("tcp:\n  adress: 0.0.0.0:9\n", "f.yaml:2: unknown key 'tcp.adress'"),
        ("datapath:\n  max_ports: 10\n",
         "f.yaml:2: datapath.max_ports: 10 is not in 16..65535"),
        ("datapath:\n  max_fdb_entries: 100000000\n",
         "f.yaml:2: datapath.max_fdb_entries: 100000000 is not in 1024..16777216"),
        ("datapath:\n  max_ports: true\n", "f.yaml:2: datapath.max_ports: True is not in"),
        ("datapath:\n  ports: 5\n", "f.yaml:2: unknown key 'datapath.ports'"),
        ("- a\n- b\n", "f.yaml:1: the configuration must be a mapping"),
        ("socket: [\n", "f.yaml:2: not valid YAML"),
        ("!!python/object:os.system x: 1\n", "f.yaml"),
    ],
)
def test_bad_files_name_file_line_and_key(text, expected):
    with pytest.raises(config.ConfigError) as err:
        config.parse(text, "f.yaml")
    assert expected in str(err.value)


def test_datapath_limits():
    from vswitchd.datapath.limits import Limits

    assert config.load(None).datapath == Limits()
    cfg = config.parse("datapath:\n  max_ports: 16384\n  max_fdb_entries: 131072\n", "f.yaml")
    assert cfg.datapath == Limits(max_ports=16384, max_fdb_entries=131072)
    assert cfg.datapath.defines() == "#define MAX_PORTS 16384\n#define MAX_FDB_ENTRIES 131072\n"
    assert Limits().defines() == ""  # the defaults keep the build (and its cache entry) as is
    assert config.parse("datapath:\n  max_ports: 8192\n").datapath.defines() == \
        "#define MAX_PORTS 8192\n"


def test_bad_flag_override_is_rejected():
    with pytest.raises(config.ConfigError, match="--fdb-aging-seconds: fdb_aging_seconds: -5"):
        config.override(config.load(None), fdb_aging_seconds=-5)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(config.ConfigError, match="nope.yaml: cannot read"):
        config.load(str(tmp_path / "nope.yaml"))


def test_watch_max_watchers():
    from vswitchd.datapath import MAX_WATCHERS

    assert config.parse("").watch.max_watchers == MAX_WATCHERS == 8
    assert config.parse("watch:\n  max_watchers: 3\n").watch.max_watchers == 3
    for bad in ("0", "9", "-1", "true", "two"):
        with pytest.raises(config.ConfigError) as ei:
            config.parse(f"watch:\n  max_watchers: {bad}\n", "f.yaml")
        assert "f.yaml:2: watch.max_watchers:" in str(ei.value)
        assert "is not in 1..8" in str(ei.value)


TCP = "tcp:\n  address: 127.0.0.1:9\n  tls_cert: /c.pem\n  tls_key: /k.pem\n"


def test_tcp_needs_client_certificates_unless_said_unauthenticated():
    with pytest.raises(config.ConfigError) as ei:
        config.parse(TCP, "f.yaml")
    assert str(ei.value).startswith("f.yaml:2: tcp.tls_client_ca is required")
    assert "tcp.unauthenticated_clients: true" in str(ei.value)
    cfg = config.parse(TCP + "  tls_client_ca: /ca.pem\n  roles: {admin: [CN=a]}\n")
    assert (cfg.tcp.tls_client_ca, cfg.tcp.unauthenticated_clients) == ("/ca.pem", False)
    cfg = config.parse(TCP + "  unauthenticated_clients: true\n")
    assert (cfg.tcp.tls_client_ca, cfg.tcp.unauthenticated_clients) == ("", True)
    with pytest.raises(config.ConfigError, match="f.yaml:5: tcp.unauthenticated_clients: "
                                                 "expected bool, got str 'yes please'"):
        config.parse(TCP + "  unauthenticated_clients: yes please\n", "f.yaml")
    with pytest.raises(config.ConfigError, match="f.yaml:2: tcp.tls_client_ca is required"):
        config.parse(TCP + "  unauthenticated_clients: false\n", "f.yaml")
    with pytest.raises(config.ConfigError, match="unauthenticated_clients: true contradicts"):
        config.parse(TCP + "  tls_client_ca: /ca.pem\n  unauthenticated_clients: true\n")
    with pytest.raises(config.ConfigError) as ei:  # deny by default: no certificate has a role
        config.parse(TCP + "  tls_client_ca: /ca.pem\n", "f.yaml")
    assert str(ei.value).startswith("f.yaml:2: tcp.roles is required with tcp.tls_client_ca")


def test_tcp_roles_name_certificates_in_four_forms():
    cfg = config.parse(TCP + "  tls_client_ca: /ca.pem\n  roles:\n"
                       "    admin: [CN=ctl 1, DNS:Ctl.Example.ORG]\n"
                       "    reader: ['URI:spiffe://example.org/mon', 'IP:2001:db8::0:1', "
                       "IP:10.0.0.9]\n")
    assert cfg.tcp.roles == {"admin": ["CN=ctl 1", "DNS:ctl.example.org"],
                             "reader": ["URI:spiffe://example.org/mon", "IP:2001:db8::1",
                                        "IP:10.0.0.9"]}


CA = TCP + "  tls_client_ca: /ca.pem\n  roles:\n"


@pytest.mark.parametrize("roles, expected", [
    ("    admin: [ctl1]\n", "f.yaml:7: tcp.roles.admin: 'ctl1': not one of CN=name, "
     "DNS:name, URI:uri, IP:address"),
    ("    admin: [CN=a]\n    reader:\n      - DNS:b\n      - IP:10.0.0.300\n",
     "f.yaml:10: tcp.roles.reader: 'IP:10.0.0.300': '10.0.0.300' is not an IP address"),
    ("    admin: [DNS:a.example]\n    reader: [DNS:A.example]\n",
     "f.yaml:8: tcp.roles.reader: 'DNS:A.example' is given already on line 7"),
    ("    admin: [CN=a, CN=a]\n", "f.yaml:7: tcp.roles.admin: 'CN=a' is given already on line 7"),
    ("    root: [CN=a]\n", "f.yaml:7: unknown role 'tcp.roles.root' (known: reader, admin)"),
    ("    admin: CN=a\n", "f.yaml:7: tcp.roles.admin: expected a list of certificate names"),
    ("    admin: [URI:nocolon]\n", "'nocolon' is not a URI"),
    ("    admin: [CN=]\n", "has no name after 'CN='"),
    ("    admin: [42]\n", "f.yaml:7: tcp.roles.admin: 42 is not a certificate name"),
])
def test_bad_tcp_roles_name_file_and_line(roles, expected):
    with pytest.raises(config.ConfigError) as ei:
        config.parse(CA + roles, "f.yaml")
    assert expected in str(ei.value)


def test_tcp_roles_need_client_certificates():
    with pytest.raises(config.ConfigError) as ei:
        config.parse(TCP + "  unauthenticated_clients: true\n  roles: {reader: [CN=a]}\n",
                     "f.yaml")
    assert str(ei.value).startswith("f.yaml:6: tcp.roles needs client certificates")


def test_api_section():
    cfg = config.parse("socket: /run/x/v.sock\n")
    assert cfg.reader_socket() is None  # no group: no reader socket
    cfg = config.parse("socket: /run/x/v.sock\napi:\n  reader_group: 4242\n")
    assert cfg.reader_socket() == "/run/x/vswitchd-reader.sock"
    assert config.reader_gid(4242) == 4242  # a number needs no group entry
    cfg = config.parse("api:\n  reader_group: root\n  reader_socket: /r.sock\n"
                       "  audit_log: /var/log/a\n")
    assert (cfg.reader_socket(), cfg.api.audit_log, config.reader_gid("root")) == \
        ("/r.sock", "/var/log/a", 0)


@pytest.mark.parametrize("text, expected", [
    ("api:\n  reader_group: no-such-group-here\n",
     "f.yaml:2: api.reader_group: there is no group 'no-such-group-here'"),
    ("api:\n  reader_group: [a]\n", "f.yaml:2: api.reader_group: expected a group name or "
     "number, got ['a']"),
    ("api:\n  reader_group: -1\n", "f.yaml:2: api.reader_group: -1 is not a gid"),
    ("api:\n  reader_socket: /r.sock\n", "f.yaml:2: api.reader_socket needs api.reader_group"),
    ("api:\n  reader_group: 0\n  reader_socket: r.sock\n",
     "f.yaml:3: api.reader_socket: 'r.sock' must be an absolute path"),
    ("socket: /v.sock\napi:\n  reader_group: 0\n  reader_socket: /v.sock\n",
     "f.yaml:4: api.reader_socket: '/v.sock' is the admin socket"),
    ("api:\n  audit_log: 5\n", "f.yaml:2: api.audit_log: expected str, got int 5"),
    ("api:\n  reader_grp: x\n", "f.yaml:2: unknown key 'api.reader_grp' (known: "
     "reader_socket, reader_group, audit_log)"),
])
def test_bad_api_section_names_file_line_and_key(text, expected):
    with pytest.raises(config.ConfigError) as ei:
        config.parse(text, "f.yaml")
    assert expected in str(ei.value)


def test_control_character_is_a_config_error_with_its_line():
    """yaml's reader refuses it before parsing starts (found by tests/unit/test_config_fuzz)."""
    with pytest.raises(config.ConfigError, match=r"^vsw\.yaml:2: not valid YAML: character 0x7 "):
        config.parse("log_level: info\nsocket: /run/\x07\n", "vsw.yaml")


def test_sighup_with_a_control_character_keeps_the_running_state(tmp_path):
    """reload_config catches ConfigError only: the reader's error used to escape it (and the
    daemon's main loop). The file is refused before the switch is touched."""
    from vswitchd.main import reload_config

    path = tmp_path / "vsw.yaml"
    path.write_text("log_level: info\n\x1b[0m\n")
    assert reload_config(str(path), None, None, config.Config()) is False  # type: ignore[arg-type]
