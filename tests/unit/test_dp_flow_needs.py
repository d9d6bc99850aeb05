"""The classifier's per-mask prefilter (vswitchd.datapath.flows.mask_needs): pure values."""

from __future__ import annotations

from vswitchd.datapath.flows import mask_needs

TCP_80 = (("dl_type", 0x0800, 0xFFFF), ("nw_proto", 6, 0xFF), ("tp_dst", 80, 0xFFFF))
TCP_81 = (("dl_type", 0x0800, 0xFFFF), ("nw_proto", 6, 0xFF), ("tp_dst", 81, 0xFFFF))
NET_A = (("dl_type", 0x0800, 0xFFFF), ("ip_dst", 0x0A800100 << 96, 0xFFFFFF00 << 96))
NET_B = (("dl_type", 0x0800, 0xFFFF), ("ip_dst", 0x0A800200 << 96, 0xFFFFFF00 << 96))


def test_one_rule_needs_its_whole_match():
    (mask, (need_mask, need)), = mask_needs([TCP_80]).items()
    assert mask == (("dl_type", 0xFFFF), ("nw_proto", 0xFF), ("tp_dst", 0xFFFF))
    assert need_mask == {"dl_type": 0xFFFF, "nw_proto": 0xFF, "tp_dst": 0xFFFF}
    assert need == {"dl_type": 0x0800, "nw_proto": 6, "tp_dst": 80}


def test_rules_of_a_mask_need_only_the_bits_they_agree_on():
    needs = mask_needs([TCP_80, TCP_81, NET_A, NET_B])
    assert len(needs) == 2
    tcp_mask, tcp_need = needs[(("dl_type", 0xFFFF), ("nw_proto", 0xFF), ("tp_dst", 0xFFFF))]
    assert tcp_mask == {"dl_type": 0xFFFF, "nw_proto": 0xFF, "tp_dst": 0xFFFE}  # 80, 81
    assert tcp_need == {"dl_type": 0x0800, "nw_proto": 6, "tp_dst": 80}
    net_mask, net_need = needs[(("dl_type", 0xFFFF), ("ip_dst", 0xFFFFFF00 << 96))]
    # 10.128.1.0 and 10.128.2.0 agree on every masked bit but the two lowest of the third byte
    assert net_mask["ip_dst"] == 0xFFFFFC00 << 96
    assert net_need["ip_dst"] == 0x0A800000 << 96


def test_every_rule_passes_its_masks_prefilter():
    rules = [(("in_port", p, 0xFFFFFFFF), ("tp_src", s, 0xFF00)) for p in (3, 9, 12)
             for s in (0x1200, 0x3400, 0xFF00)]
    (_mask, (need_mask, need)), = mask_needs(rules).items()
    for fields in rules:
        assert all(value & need_mask[name] == need[name] for name, value, _m in fields)
