# Two commands for a newcomer on a fresh Debian machine, as root:
#   make run    install what is missing, then run vswitchd on its built-in default config
#   make test   install what is missing, then run the whole test suite
#   make demo   build the NAT-gateway and LAN-uplink topologies in namespaces, show, tear down
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
KREL := $(shell uname -r)
KBUILD := /lib/modules/$(KREL)/build
# etcd-server: /usr/bin/etcd for tests/cluster (each test starts its own on free loopback ports;
# the package's own service is not needed and, where policy-rc.d forbids it, not started)
# podman, runc, containernetworking-plugins (host-local IPAM) and busybox-static (the image the
# test builds itself): tests/netns/test_cni.py runs containers on a vswitchd-cni network; runc
# because crun refuses these machines' hybrid cgroups (tests/netns/podman.py says what else).
# prometheus: the server and promtool for tests/netns/test_metrics.py (each test starts its own
# server on loopback; the package's own service is not used)
APT_PACKAGES := python3-bpfcc python3-nftables nftables python3-venv iproute2 iputils-ping netsniff-ng \
  etcd-server podman runc containernetworking-plugins busybox-static prometheus
# only for `make bench`: perf profiles where bench/xdp_paths.py misses a goal; gcc builds its C;
# iperf3 for bench/tunnel_rate.py (TCP across the VXLAN tunnel)
BENCH_APT_PACKAGES := linux-perf gcc iperf3
PROTO_OUT := clients/vswapi/switch_pb2.py clients/vswapi/switch_pb2_grpc.py

.PHONY: run test demo setup system-deps kernel-headers venv proto cli lint unit bench clean fuzz

run: setup
	$(VENV)/bin/vswitchd

test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -v

# Both host topologies (README "make demo") with the real daemon in namespaces of its own;
# DATAPATH=kernel runs them on a plain Linux bridge instead of the eBPF datapath.
DATAPATH ?= ebpf
demo: setup
	$(PY) -m tests.netns.demo --datapath $(DATAPATH)

setup: system-deps kernel-headers venv proto cli

# apt packages: installed only when one is missing, so a warm machine skips apt entirely.
# nftables is the `nft` command the netns tests and the demo read the ruleset with (the daemon
# itself needs only python3-nftables, which does not bring it).
system-deps:
	@missing=""; for p in $(APT_PACKAGES) $(EXTRA_APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing apt packages:$$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

# bcc compiles against /lib/modules/$(uname -r)/build. Kernels without their own headers get
# Debian's linux-headers-amd64 linked in place (our programs use only stable UAPI structures).
kernel-headers:
	@if [ -e $(KBUILD)/include ] || [ -e $(KBUILD)/Makefile ]; then exit 0; fi; \
	echo "no kernel headers for $(KREL): using Debian's linux-headers-amd64 instead"; \
	dpkg-query -W -f='$${Status}' linux-headers-amd64 2>/dev/null | grep -q "install ok installed" || \
	  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q linux-headers-amd64; }; \
	arch=$$(ls -d /usr/src/linux-headers-*-amd64 | sort -V | tail -n 1); \
	common=$$(ls -d /usr/src/linux-headers-*-common | sort -V | tail -n 1); \
	mkdir -p /lib/modules/$(KREL); \
	ln -sfn $$arch $(KBUILD); ln -sfn $$common /lib/modules/$(KREL)/source; \
	echo "linked $(KBUILD) -> $$arch and source -> $$common"

# The venv is made from the system Python so Debian's bcc is importable.
$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || /usr/bin/python3 -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

venv: $(VENV)/.installed

# The stubs need grpcio and protobuf at least as new as the generator: clients/vswapi's
# requirements (its own pip package, pyproject there) say so, read from the stubs themselves.
$(PROTO_OUT) clients/vswapi/requirements.txt &: proto/vswapi/switch.proto $(VENV)/.installed
	$(PY) -m grpc_tools.protoc -Iproto --python_out=clients --pyi_out=clients \
	  --grpc_python_out=clients proto/vswapi/switch.proto
	@grpc=$$(sed -n "s/^GRPC_GENERATED_VERSION = '\(.*\)'/\1/p" clients/vswapi/switch_pb2_grpc.py); \
	pb=$$(grep -A4 ValidateProtobufRuntimeVersion clients/vswapi/switch_pb2.py | \
	  grep -oE '^ *[0-9]+,' | tr -d ' ,' | paste -sd.); \
	printf 'grpcio>=%s\nprotobuf>=%s\n' "$$grpc" "$$pb" > clients/vswapi/requirements.txt

proto: $(PROTO_OUT) clients/vswapi/requirements.txt

# vswctl starts without Python's site module (clients/vswctl/launcher.py says why) and from
# compiled bytecode, also where PYTHONDONTWRITEBYTECODE keeps Python from writing it: a
# `vswctl status` is ~50 ms instead of ~120.
cli: proto
	@$(PY) -m vswctl.launcher $(VENV)/bin/vswctl
	@$(PY) -m compileall -q clients

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

unit: setup
	$(VENV)/bin/pytest -v tests/unit

# The property-based tests (tests/fuzzing.py) with a random seed and 50x CI's examples
# (VSWITCHD_FUZZ_FACTOR=N for another factor); `make test` runs the same tests, bounded and seeded.
fuzz: setup
	VSWITCHD_FUZZ=1 $(VENV)/bin/pytest -v -m property

bench: EXTRA_APT_PACKAGES := $(BENCH_APT_PACKAGES)
bench: setup
	$(PY) bench/packet_rate.py

clean:
	rm -rf $(VENV) $(PROTO_OUT) clients/vswapi/switch_pb2.pyi *.egg-info

# The CNI plugin where container runtimes look for it (containerd and Kubernetes: /opt/cni/bin;
# Debian's podman: /usr/lib/cni too). A link, so it follows this checkout's venv.
CNI_BIN_DIR ?= /opt/cni/bin
.PHONY: install-cni
install-cni: setup
	mkdir -p $(CNI_BIN_DIR)
	ln -sfn $(CURDIR)/$(VENV)/bin/vswitchd-cni $(CNI_BIN_DIR)/vswitchd-cni
	@echo "installed $(CNI_BIN_DIR)/vswitchd-cni -> $(CURDIR)/$(VENV)/bin/vswitchd-cni"

# Install the systemd unit (Type=notify) with @PREFIX@ set to this checkout.
# `systemctl stop vswitchd` leaves the datapath forwarding; `vswitchd --cleanup` removes it.
.PHONY: install-service
install-service: setup
	sed 's|@PREFIX@|$(CURDIR)|g' vswitchd/systemd/vswitchd.service > /etc/systemd/system/vswitchd.service
	systemctl daemon-reload
	@echo "installed /etc/systemd/system/vswitchd.service: systemctl enable --now vswitchd"
