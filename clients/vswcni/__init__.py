"""vswitchd-cni: a CNI plugin (https://www.cni.dev/docs/spec/) that puts containers on a
vswitchd bridge. It talks to vswitchd only through the gRPC API (vswapi).

    spec.py     the specification's side: versions, error codes, the environment, results
    netconf.py  the network configuration this plugin reads (bridge, vlan, mtu, ipam ...)
    ipam.py     delegation to an IPAM plugin (host-local ...), as the reference bridge does
    plugin.py   ADD, DEL and CHECK against the daemon
    main.py     the executable: environment + stdin in, JSON result or error out
"""
