# branchml: the two set-up commands of README.md are `make quickstart` and `make test`.
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/branchml/branchml/agents/cli.Version=$(VERSION)
AGENTS := branchml branchml-build branchml-pipeline branchml-train branchml-snapshot branchml-deploy

.PHONY: all build test test-go test-example test-groovy vet fuzz quickstart bench clean

all: build

## build: the agent binaries into ./bin
build:
	@mkdir -p $(BIN)
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ $(addprefix ./agents/cmd/,$(AGENTS))

## quickstart: the whole flow on one machine on the real DJIA 30 data
quickstart: build
	PATH="$(BIN):$$PATH" $(BIN)/branchml quickstart $(QUICKSTART_FLAGS)

## test: vet, race tests of the agents and of the example, Groovy checks, fuzz targets
test: vet test-go test-example test-groovy fuzz

vet:
	$(GO) vet ./...
	cd examples/djia30 && $(GO) vet ./...

test-go:
	$(GO) test -race -timeout 15m ./...
	$(GO) test -count=1 -run 'TestCalibration' ./agents/stages/train/kpi  # the gate's calibration: single-threaded numerics, built without -race (see the file)

test-example:
	cd examples/djia30 && $(GO) test -race -timeout 10m ./...

test-groovy:
	bash scripts/groovy-test.sh

## fuzz: every fuzz target for FUZZTIME (default 4s) each
fuzz:
	bash scripts/fuzz.sh

## bench: benchmarks of every package (figures quoted in the issues' notes)
bench:
	$(GO) test -run '^$$' -bench . -benchtime 1x ./...
	cd examples/djia30 && $(GO) test -run '^$$' -bench . -benchtime 1x ./...

clean:
	rm -rf $(BIN)
