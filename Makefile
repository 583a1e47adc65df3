# Airlock: `make demo` and `make test` work on a fresh Debian machine with
# only Go installed; everything else is installed here.
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
BUF := $(GO) run github.com/bufbuild/buf/cmd/buf@v1.75.0
GOTEST_FLAGS ?=

.PHONY: all deps node-deps node-unit build proto lint vet unit race integration test demo mmdebstrap agents agents-test airlockd-image airlockd-image-test clean

all: build

# deps installs what the sandbox needs from Debian's packages (runc, crun
# and gVisor's runsc among them), once, gcc
# with libc's headers (the race detector needs cgo), and Node.js with npm
# for the Node client example the integration suite runs.
deps:
	@# Only what is missing is installed: a host's own Node (from
	@# NodeSource, say, which bundles npm) conflicts with Debian's npm.
	@pkgs=""; \
	for bp in containerd:containerd containerd-shim-runc-v2:containerd runc:runc crun:crun runsc:runsc nft:nftables gcc:gcc node:nodejs npm:npm; do \
		command -v $${bp%%:*} >/dev/null 2>&1 || case " $$pkgs " in *" $${bp#*:} "*) ;; *) pkgs="$$pkgs $${bp#*:}";; esac; \
	done; \
	[ -e /usr/include/stdio.h ] || pkgs="$$pkgs libc6-dev"; \
	file_static=$$( [ -x /bin/busybox ] && ! readelf -l /bin/busybox 2>/dev/null | grep -q interpreter && echo yes ); \
	[ "$$file_static" = yes ] || pkgs="$$pkgs busybox-static"; \
	if [ -n "$$pkgs" ]; then \
		echo "installing$$pkgs"; \
		if [ "$$(id -u)" != 0 ]; then echo "make deps: run as root to apt-get install" >&2; exit 1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$pkgs >/dev/null; \
	fi
	@# crun refuses a hybrid cgroup host whose cgroup v2 hierarchy holds
	@# controllers; those are moved to cgroup v1, where runc also finds them.
	@u=/sys/fs/cgroup/unified; \
	if [ -f $$u/cgroup.controllers ] && [ -n "$$(cat $$u/cgroup.controllers)" ]; then \
		for c in $$(cat $$u/cgroup.controllers); do \
			echo "moving the $$c cgroup controller from cgroup v2 to v1, for crun"; \
			echo "-$$c" > $$u/cgroup.subtree_control && mkdir -p /sys/fs/cgroup/$$c && \
			mount -t cgroup -o $$c cgroup /sys/fs/cgroup/$$c || exit 1; \
		done; \
	fi

build:
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/airlock-agent ./cmd/airlock-agent
	$(GO) build -trimpath -o $(BIN)/airlockd ./cmd/airlockd
	$(GO) build -trimpath -o $(BIN)/airlock ./cmd/airlock
	$(GO) build -trimpath -o $(BIN)/airlock-modelserver ./integration/cmd/airlock-modelserver

# proto regenerates the committed Go code with pinned buf and plugins.
proto:
	$(BUF) generate

lint:
	$(BUF) lint
	@# The API stays compatible with the previous commit; a change that must
	@# break it bumps the package (airlock.v2) instead.
	@if git rev-parse -q --verify HEAD~1 >/dev/null; then \
		$(BUF) breaking --against '.git#ref=HEAD~1'; \
	else echo "buf breaking: no previous commit in this clone to compare with"; fi
	@test -z "$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$'))" || { gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$'); echo "gofmt needed" >&2; exit 1; }

vet:
	$(GO) vet ./...
	$(GO) vet -tags integration ./integration/...
	$(GO) vet -tags airlockdimage ./deploy/kubernetes/
	$(GO) vet -tags agents ./examples/agents/

unit:
	$(GO) test -count=1 $(GOTEST_FLAGS) ./...

# race runs the broker's tests under the race detector, three times, so
# that a test which passes only by luck of scheduling fails here. It needs
# cgo, hence gcc from deps.
race: deps
	CGO_ENABLED=1 $(GO) test -race -count=3 $(GOTEST_FLAGS) ./broker/...

# The Node.js examples' packages, from the npm registry at the versions
# their lockfiles pin (the OpenClaw plugin's include Node 24 itself, which
# openclaw needs). The integration tests install the same into copies of
# their own, from npm's cache by then.
NODE_EXAMPLES := examples/node examples/mcp-node examples/openclaw-plugin
node-deps: deps
	@for d in $(NODE_EXAMPLES); do \
		echo "npm ci in $$d"; \
		(cd $$d && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) || exit 1; \
	done

# node-unit runs the Node.js examples' own tests (node --test), which only
# parse: which gRPC targets the Node client and the OpenClaw plugin speak
# plaintext to. The plugin's tests build it first and run on the Node 24
# its lockfile pins.
node-unit: node-deps
	cd examples/node && npm test
	cd examples/openclaw-plugin && npm test

integration: deps node-deps agents
	$(GO) test -count=1 -tags integration -timeout 30m $(GOTEST_FLAGS) ./integration/...

test: deps build lint vet unit node-unit race integration agents-test airlockd-image-test

demo: deps build
	@bash integration/demo.sh $(BIN)

# mmdebstrap installs mmdebstrap when missing, for the images made from
# Debian's packages (images/debian-rootfs.sh).
mmdebstrap:
	@command -v mmdebstrap >/dev/null 2>&1 || { \
		echo "installing mmdebstrap"; \
		if [ "$$(id -u)" != 0 ]; then echo "make $@: run as root to apt-get install" >&2; exit 1; fi; \
		ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1 || apt-get update -qq; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null; \
	}

# agents builds the example agents of examples/agents into OCI image-layout
# tarballs, bin/agents/python-agent.tar and bin/agents/node-agent.tar, with
# no registry and no Docker: a minimal root filesystem from Debian's
# packages (mmdebstrap, installed when missing), Node's binary from the npm
# package examples/agents/node's lockfile pins, and images/mkimage.
agents: deps mmdebstrap
	cd examples/agents/node && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	@mkdir -p $(BIN)/agents
	$(GO) build -trimpath -o $(BIN)/mkimage ./images/mkimage
	bash examples/agents/mkrootfs.sh python $(BIN)/agents/python-agent.tar $(BIN)/mkimage
	bash examples/agents/mkrootfs.sh node $(BIN)/agents/node-agent.tar $(BIN)/mkimage

# agents-test checks the example agents' images as an import reads them,
# and runs each under runc with a shipped profile's spec (root).
agents-test: agents build
	$(GO) test -count=1 -tags agents $(GOTEST_FLAGS) ./examples/agents/

# airlockd-image builds the image deploy/kubernetes's DaemonSet runs,
# bin/airlockd-image.tar (OCI image layout), the same way: Debian's
# containerd, runc, crun, runsc, nftables, busybox-static, iproute2 and
# ca-certificates, and make build's airlockd, airlock and airlock-agent in
# /usr/local/bin. deploy/kubernetes/README.md says how to publish it.
airlockd-image: build mmdebstrap
	$(GO) build -trimpath -o $(BIN)/mkimage ./images/mkimage
	bash deploy/kubernetes/airlockd-image.sh $(BIN) $(BIN)/airlockd-image.tar $(BIN)/mkimage

# airlockd-image-test reads the image back, checks it against the
# DaemonSet, and runs its binaries under runc (root).
airlockd-image-test: deps airlockd-image
	$(GO) test -count=1 -tags airlockdimage $(GOTEST_FLAGS) ./deploy/kubernetes/

clean:
	rm -rf $(BIN) $(addsuffix /node_modules,$(NODE_EXAMPLES)) examples/agents/node/node_modules examples/openclaw-plugin/dist
