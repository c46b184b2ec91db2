# doppel's build and test entry points. `make help` lists them.
SHELL := /bin/bash
# sudo's secure_path leaves out Go's usual home: add it, so that `sudo make ...` finds go.
export PATH := $(PATH):/usr/local/go/bin
.DEFAULT_GOAL := help

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X doppel.dev/doppel/internal/cli.version=$(VERSION)
# Packages under testdata/ are not matched by ./...; vet them by name.
TESTDATA_PKGS := $(sort $(dir $(wildcard internal/*/testdata/*/main.go test/*/testdata/*/main.go)))
PRIVILEGED_TIMEOUT ?= 20m

.PHONY: help build deps vet fmt-check test-unit test-privileged test example bench clean image

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## Build bin/doppel (static, -trimpath, version from git describe or "dev") and bin/kubectl-doppel, its kubectl plugin name
	CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o bin/doppel ./cmd/doppel
	ln -sf doppel bin/kubectl-doppel

deps: ## Install the Debian packages and Go modules the build and tests need (root; scripts/deps.sh)
	scripts/deps.sh

vet: ## go vet every package, test programs under testdata/ included; and for macOS and arm64, which must build
	go vet ./... $(addprefix ./,$(TESTDATA_PKGS))
	GOOS=darwin go vet ./...
	GOARCH=arm64 go vet ./...

fmt-check: ## Fail if a Go file is not gofmt-formatted
	@files=$$(gofmt -l $$(git ls-files -co --exclude-standard '*.go' 2>/dev/null || find . -name '*.go' -not -path './.cache/*')); \
	if [[ -n "$$files" ]]; then echo "not gofmt-formatted (run gofmt -w):"; echo "$$files"; exit 1; fi

test-unit: ## Unit tests: go test ./... as it is (runs as any user; privileged tests skip)
	scripts/gotest.sh unit ./...

test-privileged: ## Privileged tests (root): network namespaces, nginx, dnsmasq, the doppel binary end to end
	@if [[ $$(id -u) -ne 0 ]]; then echo "test-privileged must run as root: sudo make test-privileged" >&2; exit 1; fi
	DOPPEL_PRIVILEGED_TESTS=1 scripts/gotest.sh privileged -count=1 -p 1 -timeout $(PRIVILEGED_TIMEOUT) ./test/local/ ./internal/...

test: ## The whole suite as CI runs it (root): deps, vet, gofmt check, unit, privileged, cluster; prints a summary
	@scripts/test.sh

example: ## The built-in local example: doppel exec against a throw-away pod namespace (root)
	scripts/example.sh

bench: ## Benchmarks (scripts/bench.sh)
	@if [[ ! -x scripts/bench.sh ]]; then echo "make bench: scripts/bench.sh does not exist yet: no benchmark to run" >&2; exit 1; fi
	scripts/bench.sh

image: build ## Build the agent image (bin/doppel alone on an empty base, reproducible) as bin/doppel-agent.tar, tagged doppel.local/doppel-agent:VERSION
	CGO_ENABLED=0 go run ./internal/image/mkimage -binary bin/doppel -arch $$(go env GOARCH) -tag doppel.local/doppel-agent:$(VERSION) -o bin/doppel-agent.tar

clean: ## Remove bin/ and the test logs in .cache/test
	rm -rf bin .cache/test

.PHONY: cluster-build cluster-up cluster-down test-cluster

KUBE_VERSION := $(shell awk '$$1 == "require" && $$2 == "k8s.io/kubernetes" {print $$3}' tools/kube/go.mod)
KUBE_BIN := /var/cache/doppel-kube/$(KUBE_VERSION)/bin

cluster-build: ## Build the test cluster's Kubernetes binaries and CoreDNS (tools/kube) into /var/cache/doppel-kube, once per version
	scripts/cluster.sh build

cluster-up: ## Start the real single-node test cluster with kube-proxy, CoreDNS and the test images (root; kubeconfig /run/doppel-cluster/admin.kubeconfig)
	scripts/cluster.sh up

cluster-down: ## Stop the test cluster and remove everything it made (root)
	scripts/cluster.sh down

test-cluster: ## Cluster tests (root): start the test cluster, run test/cluster against it, stop it
	@if [[ $$(id -u) -ne 0 ]]; then echo "test-cluster must run as root: sudo make test-cluster" >&2; exit 1; fi
	scripts/cluster.sh build
	scripts/cluster.sh up
	DOPPEL_PRIVILEGED_TESTS=1 DOPPEL_CLUSTER_KUBECONFIG=/run/doppel-cluster/admin.kubeconfig KUBECTL=$(KUBE_BIN)/kubectl \
		DOPPEL_CLUSTER_CONTAINERD=/run/doppel-cluster/containerd/containerd.sock \
		scripts/gotest.sh cluster -count=1 -timeout 20m ./test/cluster/; \
	status=$$?; scripts/cluster.sh down; exit $$status
