# meshtrace build, test and demo targets. Everything the targets need is
# installed by the repo itself with pinned versions (see tools/).
GO        ?= go
BIN       ?= bin
PKGS      ?= ./...
TEST_FLAGS ?= -count=1 -timeout 20m

.PHONY: all build test check generate lint e2e bench demo image clean

all: build

## build: static binaries into ./bin
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/meshtrace-cp ./cmd/meshtrace-cp
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/meshtracectl ./cmd/meshtracectl

## image: FROM scratch images of meshtrace-cp and meshtracectl (non-root, static binaries)
IMAGE_REPO ?= meshtrace
IMAGE_TAG  ?= dev
DOCKER     ?= docker
image:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags="-s -w" -o $(BIN)/meshtrace-cp ./cmd/meshtrace-cp
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags="-s -w" -o $(BIN)/meshtracectl ./cmd/meshtracectl
	rm -rf $(BIN)/image-root && mkdir -p $(BIN)/image-root/data $(BIN)/image-root/tmp
	$(DOCKER) build --target meshtrace-cp -t $(IMAGE_REPO)/meshtrace-cp:$(IMAGE_TAG) .
	$(DOCKER) build --target meshtracectl -t $(IMAGE_REPO)/meshtracectl:$(IMAGE_TAG) .

## test: unit and in-process integration tests (embedded etcd, real gRPC)
test:
	$(GO) test $(TEST_FLAGS) $(PKGS)

## soak: the randomized KDS convergence test with random seeds for SOAK (default 10m), race detector on
SOAK ?= 10m
soak:
	$(GO) test -race -count=1 -timeout 0 -run TestConvergence ./kds/ -soak $(SOAK) -v

## check: gofmt, go vet, generated code up to date
check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	@if [ -x scripts/check-generated.sh ]; then scripts/check-generated.sh; fi

## generate: regenerate protobuf code with the pinned buf and plugins
generate:
	scripts/generate.sh

lint: check

## e2e: multi-zone suite in Docker (testcontainers, images built FROM scratch)
e2e:
	TESTCONTAINERS_RYUK_DISABLED=true $(GO) test -tags e2e -count=1 -timeout 25m -v ./e2e/...

## bench: benchmarks of store, KDS propagation, xDS snapshot building
bench:
	scripts/bench.sh

## demo: global + zones east and west with embedded etcd, demo policies applied.
## The binary is built, then run directly: `go run` exits 1 when Ctrl-C reaches it,
## which made a clean stop look like a failure. DEMO_FLAGS passes flags (e.g. --dir).
demo:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/meshtrace-cp ./cmd/meshtrace-cp
	$(BIN)/meshtrace-cp demo $(DEMO_FLAGS)

clean:
	rm -rf $(BIN)
