# branchml: the two set-up commands of README.md are `make quickstart` and `make test`.
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/branchml/branchml/agents/cli.Version=$(VERSION)
AGENTS := branchml branchml-build branchml-pipeline branchml-train branchml-snapshot branchml-deploy

.PHONY: all build image-cache test test-go test-example test-groovy test-k8s k8s-build k8s-up k8s-down vet fuzz quickstart bench clean release image

# The agents release pinned in resources/branchml/agents.sha256.
PINNED := $(shell sed -n 's/^\# version: //p' resources/branchml/agents.sha256)
RELEASE_VERSION ?= $(PINNED)

all: build

## build: the agent binaries into ./bin
build:
	@mkdir -p $(BIN)
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ $(addprefix ./agents/cmd/,$(AGENTS))

## quickstart: the whole flow on one machine on the real DJIA 30 data
quickstart: build
	PATH="$(BIN):$$PATH" $(BIN)/branchml quickstart $(QUICKSTART_FLAGS)

## test: vet, race tests of the agents and of the example, Groovy checks, fuzz targets, the Kubernetes test bed's tests
test: vet test-go test-example test-groovy fuzz test-k8s

vet:
	$(GO) vet ./...
	cd examples/djia30 && $(GO) vet ./...

test-go: image-cache
	$(GO) test -race -timeout 15m ./...
	$(GO) test -count=1 -run 'TestCalibration' ./agents/stages/train/kpi  # the gate's calibration: single-threaded numerics, built without -race (see the file)

test-example:
	cd examples/djia30 && $(GO) test -race -timeout 10m ./...

test-groovy:
	bash scripts/groovy-test.sh

## fuzz: every fuzz target for FUZZTIME (default 4s) each
fuzz:
	bash scripts/fuzz.sh

## Kubernetes test bed (test/k8s): etcd, control plane and CSI snapshot stack on 127.0.0.1
TESTBED := $(GO) run ./test/k8s/cmd/testbed

## k8s-build: build the test bed's binaries into ~/.cache/branchml/k8s/<version>/bin (once per machine)
k8s-build:
	@$(TESTBED) build >/dev/null

## k8s-up: start the test bed in the background; prints the kubeconfig path (kubectl --kubeconfig PATH get pvc)
k8s-up:
	@$(TESTBED) up

## k8s-down: stop it
k8s-down:
	@$(TESTBED) down

## test-k8s: the tests that need the test bed (storage backend on real PVCs and VolumeSnapshots, quickstart --cluster)
test-k8s: k8s-build
	cd test/k8s/build && $(GO) vet ./csi-hostpath
	BRANCHML_K8S_TESTS=1 $(GO) test -race -timeout 30m ./test/k8s/... ./agents/backends/storage/trident/...
	BRANCHML_K8S_TESTS=1 $(GO) test -race -timeout 30m -run Cluster ./agents/cli/quickstart/

## bench: benchmarks of every package (figures quoted in the issues' notes)
bench:
	$(GO) test -run '^$$' -bench . -benchtime 1x ./...
	cd examples/djia30 && $(GO) test -run '^$$' -bench . -benchtime 1x ./...

## release: the agent archives of RELEASE_VERSION (default: the pinned one) for linux/amd64 and
## linux/arm64 into dist/, built reproducibly from HEAD; their sha256 into resources/branchml/agents.sha256
release:
	$(GO) run ./tools/release -version $(RELEASE_VERSION)

dist/branchml-agents-$(PINNED)-linux-amd64.tar.gz:
	$(GO) run ./tools/release -check -out dist

## image: the agents image (scripts/image.sh: buildah, no daemon, no base image pulled) from the pinned
## release; IMAGE_PUSH=registry/repo:tag pushes it (IMAGE_TLS_VERIFY=false for a plain-HTTP registry)
image: dist/branchml-agents-$(PINNED)-linux-amd64.tar.gz
	VERSION=$(PINNED) PUSH=$(IMAGE_PUSH) TLS_VERIFY=$(or $(IMAGE_TLS_VERIFY),true) sh scripts/image.sh

## image-cache: download what the image tests build from (the Debian root file system, the pinned Go
## toolchain) into ~/.cache/branchml/image, once per machine; the tests themselves download nothing
image-cache:
	@if [ "$$(id -u)" = 0 ]; then FETCH_ONLY=1 sh scripts/image.sh; else echo "image-cache: not root, so the image tests skip; nothing to fetch"; fi

clean:
	rm -rf $(BIN) dist
