# Airlock: `make demo` and `make test` work on a fresh Debian machine with
# only Go installed; everything else is installed here.
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
BUF := $(GO) run github.com/bufbuild/buf/cmd/buf@v1.75.0
GOTEST_FLAGS ?=

.PHONY: all deps build proto lint vet unit integration test demo clean

all: build

# deps installs what the sandbox needs from Debian's packages, once.
deps:
	@missing=""; \
	for b in containerd containerd-shim-runc-v2 runc nft; do \
		command -v $$b >/dev/null 2>&1 || missing="$$missing $$b"; \
	done; \
	file_static=$$( [ -x /bin/busybox ] && ! readelf -l /bin/busybox 2>/dev/null | grep -q interpreter && echo yes ); \
	[ "$$file_static" = yes ] || missing="$$missing busybox-static"; \
	if [ -n "$$missing" ]; then \
		echo "installing containerd runc nftables busybox-static (missing:$$missing)"; \
		if [ "$$(id -u)" != 0 ]; then echo "make deps: run as root to apt-get install" >&2; exit 1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq containerd runc nftables busybox-static >/dev/null; \
	fi

build:
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/airlock-agent ./cmd/airlock-agent
	$(GO) build -trimpath -o $(BIN)/airlockd ./cmd/airlockd
	$(GO) build -trimpath -o $(BIN)/airlock ./cmd/airlock

# proto regenerates the committed Go code with pinned buf and plugins.
proto:
	$(BUF) generate

lint:
	$(BUF) lint
	@test -z "$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$'))" || { gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$'); echo "gofmt needed" >&2; exit 1; }

vet:
	$(GO) vet ./...
	$(GO) vet -tags integration ./integration/...

unit:
	$(GO) test -count=1 $(GOTEST_FLAGS) ./...

integration: deps
	$(GO) test -count=1 -tags integration -timeout 20m $(GOTEST_FLAGS) ./integration/...

test: deps build lint vet unit integration

demo: deps build
	@bash integration/demo.sh $(BIN)

clean:
	rm -rf $(BIN)
