# branchml: the two set-up commands of README.md are `make quickstart` and `make test`.
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/branchml/branchml/agents/cli.Version=$(VERSION)
AGENTS := branchml branchml-build branchml-pipeline branchml-train branchml-snapshot branchml-deploy

.PHONY: all build test test-go test-example test-groovy vet quickstart bench clean release image

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

## test: vet, race tests of the agents and of the example, Groovy checks
test: vet test-go test-example test-groovy

vet:
	$(GO) vet ./...
	cd examples/djia30 && $(GO) vet ./...

test-go:
	$(GO) test -race -timeout 15m ./...

test-example:
	cd examples/djia30 && $(GO) test -race -timeout 10m ./...

test-groovy:
	bash scripts/groovy-test.sh

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

clean:
	rm -rf $(BIN) dist
