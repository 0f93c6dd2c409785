# ThunderYurts build. `make demo` builds and runs a local cluster and uses it;
# `make test` runs every check CI runs. Both install what they need first.

GO        ?= go
BIN       := bin/thunderctl
GOBIN     := $(shell $(GO) env GOPATH)/bin
SUDO      := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PROTOC_GEN_GO_VERSION   := v1.36.12
PROTOC_GEN_DRPC_VERSION := v1.0.0
PROTOC_GEN_VTPROTO_VERSION := v0.6.0
# Packages whose tests run under the race detector: everything with
# goroutines of its own. The end-to-end tests in thunderctl run real
# processes, the daemons among them built with it.
RACE_PKGS := ./datastore/... ./coord/... ./client/... ./daemon/... ./admin/... ./wire/... ./internal/... ./backup/...

# The git state stamped into the binary (thunderctl version, and the first
# log line of every daemon): the go command records it itself only when it
# may run git (-buildvcs), so it is passed explicitly. VERSION is the
# newest v* tag when there is one, else "(devel)"; DATE is the commit's time.
VERSION   ?= $(shell git describe --tags --match 'v[0-9]*' --dirty 2>/dev/null)
COMMIT    := $(shell git rev-parse HEAD 2>/dev/null)
DATE      := $(shell TZ=UTC git log -1 --date=format-local:%Y-%m-%dT%H:%M:%SZ --format=%cd 2>/dev/null)
MODIFIED  := $(shell git diff --quiet HEAD 2>/dev/null && echo false || echo true)
LDFLAGS   := -X main.commit=$(COMMIT) -X main.date=$(DATE) -X main.modified=$(MODIFIED) $(if $(VERSION),-X main.version=$(VERSION))
# make release: these platforms, into dist/.
PLATFORMS := linux/amd64 linux/arm64 darwin/amd64 darwin/arm64

.PHONY: all deps build test lint unit e2e proto demo bench release man reference clean

all: build

## deps: install ZooKeeper and protoc (Debian packages) when missing, the protoc plugins, and Go modules.
deps:
	@missing=""; \
	[ -f /usr/share/java/zookeeper.jar ] || missing="$$missing zookeeper"; \
	command -v protoc >/dev/null || missing="$$missing protobuf-compiler"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi
	@[ -x $(GOBIN)/protoc-gen-go ] || $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	@[ -x $(GOBIN)/protoc-gen-go-drpc ] || $(GO) install storj.io/drpc/cmd/protoc-gen-go-drpc@$(PROTOC_GEN_DRPC_VERSION)
	@[ -x $(GOBIN)/protoc-gen-go-vtproto ] || $(GO) install github.com/planetscale/vtprotobuf/cmd/protoc-gen-go-vtproto@$(PROTOC_GEN_VTPROTO_VERSION)
	@$(GO) mod download

## build: bin/thunderctl
build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./thunderctl

## release: static thunderctl binaries for every platform in PLATFORMS, as dist/thunderctl-OS-ARCH, with their SHA-256 sums.
release:
	@mkdir -p dist
	@set -e; for p in $(PLATFORMS); do \
		os=$${p%/*}; arch=$${p#*/}; out=dist/thunderctl-$$os-$$arch; \
		echo "$$out"; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags '-s -w $(LDFLAGS)' -o $$out ./thunderctl; \
	done
	cd dist && sha256sum thunderctl-* > SHA256SUMS

## man: regenerate the committed man page docs/man/thunderctl.1 from the commands.
man:
	@mkdir -p docs/man
	$(GO) run ./thunderctl man > docs/man/thunderctl.1

## reference: regenerate the command and flag tables of docs/reference.md from the binary's help.
reference: build
	scripts/reference-flags.sh $(BIN) > docs/.flags.md
	awk 'FNR==NR { gen = gen $$0 "\n"; next } /reference-flags.sh: begin/ { print; printf "%s", gen; skip = 1; next } /reference-flags.sh: end/ { skip = 0 } !skip' docs/.flags.md docs/reference.md > docs/.reference.md
	mv docs/.reference.md docs/reference.md; rm -f docs/.flags.md

## test: gofmt, go vet, go mod tidy -diff, unit tests under the race detector, end-to-end tests with real processes and ZooKeeper.
test: deps build lint unit e2e

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) mod tidy -diff
	GOOS=darwin GOARCH=arm64 $(GO) build ./... && GOOS=darwin GOARCH=amd64 $(GO) build ./...

unit:
	$(GO) test -race -count=1 -timeout 10m $(RACE_PKGS)
	# Race builds keep the retry table in the heap, where the detector looks.
	$(GO) test -count=1 -timeout 5m -run 'TagTable|Dedupe' ./daemon/datanode/

# The daemons run with the race detector (GORACE makes a race fatal and the
# tests read the daemons' logs for it); the CLI runs are many and short and
# use the plain build.
e2e: build
	$(GO) build -race -ldflags '$(LDFLAGS)' -o $(BIN)-race ./thunderctl
	GORACE=halt_on_error=1 THUNDERCTL_BIN=$(CURDIR)/$(BIN) THUNDERCTL_DAEMON_BIN=$(CURDIR)/$(BIN)-race \
		$(GO) test -count=1 -timeout 15m ./thunderctl/...

## proto: regenerate the committed wire code from wire/thunder.proto.
# A follower's replication messages and a primary's batches of requests are
# decoded into reused ones (ResetVT keeps their entries and byte slices)
# rather than allocated anew for every message.
WIREPKG := github.com/thunderyurts/thunderyurts/wire
VTPOOL := ,pool=$(WIREPKG).PrimaryMessage,pool=$(WIREPKG).Entries,pool=$(WIREPKG).LogEntry,pool=$(WIREPKG).Batch,pool=$(WIREPKG).Request
proto: deps
	cd wire && PATH=$(GOBIN):$$PATH protoc --go_out=. --go_opt=paths=source_relative \
		--go-vtproto_out=. --go-vtproto_opt=paths=source_relative,features=marshal+unmarshal+size+pool$(VTPOOL) \
		--go-drpc_out=. --go-drpc_opt=paths=source_relative,protolib=github.com/thunderyurts/thunderyurts/wire/wirecodec thunder.proto

## demo: start a local cluster, put, get and scan through it, stop it.
demo: deps build
	@scripts/demo.sh $(BIN)

## bench: the engine and request-path Go benchmarks, then a short cluster benchmark (a group of 3) as a table; PEER_BENCH=path/to/peer/run.sh (optional) adds etcd's figures from the same sitting.
bench: build
	GO=$(GO) PEER_BENCH=$(PEER_BENCH) scripts/bench.sh $(BIN)

clean:
	rm -rf bin dist .dev
