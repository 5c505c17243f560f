# Pinned tool versions. `make tools` installs them into ./bin with `go install`; nothing else on
# the machine is needed beyond Go and make.
BUF_VERSION                := v1.75.0
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
GRPC_GATEWAY_VERSION       := v2.33.0

BIN    := $(CURDIR)/bin
STAMP  := $(BIN)/.tools-$(BUF_VERSION)-$(PROTOC_GEN_GO_VERSION)-$(PROTOC_GEN_GO_GRPC_VERSION)-$(GRPC_GATEWAY_VERSION)
GOTEST ?= go test
# Packages whose tests exercise concurrency run under the race detector in CI.
RACE   ?= -race

.DEFAULT_GOAL := help
.PHONY: help run test test-postgres screenshots lint generate generate-check bench tools build clean

help: ## Show this help.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

run: ## Start enrolld with a demo incident on an embedded SQLite file (./enroll-demo.db).
	go run ./cmd/enrolld --demo

build: ## Build enrolld and enrollctl into ./bin.
	go build -o $(BIN)/enrolld ./cmd/enrolld
	go build -o $(BIN)/enrollctl ./cmd/enrollctl

test: ## Run every test (PostgreSQL tests skip unless ENROLL_TEST_POSTGRES_DSN is set).
	$(GOTEST) $(RACE) -count=1 -timeout 25m ./...

test-postgres: ## Run the store and end-to-end tests against $$ENROLL_TEST_POSTGRES_DSN.
	@test -n "$$ENROLL_TEST_POSTGRES_DSN" || { echo "set ENROLL_TEST_POSTGRES_DSN=postgres://..."; exit 1; }
	$(GOTEST) $(RACE) -count=1 ./internal/store/... ./internal/server/...

screenshots: ## Refresh docs/screenshots from the browser test (needs /usr/bin/chromium).
	ENROLL_SCREENSHOTS_DIR=$(CURDIR)/docs/screenshots $(GOTEST) -count=1 -run InBrowser -v ./web/

lint: tools ## gofmt, go vet, buf lint and buf format.
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^api/')); test -z "$$out" || { echo "gofmt needed:"; echo "$$out"; exit 1; }
	go vet ./...
	$(BIN)/buf lint
	$(BIN)/buf format -d --exit-code

generate: tools ## Regenerate api/ from proto/ (Go, gRPC, gateway, OpenAPI).
	rm -rf api/enroll
	PATH=$(BIN):$$PATH $(BIN)/buf generate

generate-check: generate ## Fail if api/ differs from what proto/ generates.
	@git add -N api >/dev/null 2>&1; \
	if ! git diff --exit-code --stat -- api; then echo "api/ is stale: run make generate and commit"; exit 1; fi

bench: ## Run the Go benchmarks.
	go test -run '^$$' -bench . -benchmem ./internal/...

# Not part of test: ROWS rows through the real enrolld vs the raw driver (docs/BENCHMARKS.md).
# BENCH_FLAGS adds enrollbench flags, e.g. BENCH_FLAGS='--keep --rss-csv rss.csv'.
ROWS        ?= 1000000
BENCH_FLAGS ?=
.PHONY: bench-issue
bench-issue: ## Import+issue via enrolld vs raw driver, same rows (ROWS=1000000; SQLite, plus PostgreSQL if ENROLL_TEST_POSTGRES_DSN is set).
	go run ./cmd/enrollbench issue --rows $(ROWS) --engine sqlite $(BENCH_FLAGS)
	@if [ -n "$$ENROLL_TEST_POSTGRES_DSN" ]; then \
		echo 'go run ./cmd/enrollbench issue --rows $(ROWS) --engine postgres --postgres-dsn "$$ENROLL_TEST_POSTGRES_DSN" $(BENCH_FLAGS)'; \
		go run ./cmd/enrollbench issue --rows $(ROWS) --engine postgres --postgres-dsn "$$ENROLL_TEST_POSTGRES_DSN" $(BENCH_FLAGS); \
	else \
		echo "PostgreSQL skipped: set ENROLL_TEST_POSTGRES_DSN=postgres://... to measure it too"; \
	fi

# Not part of test: redemption + activation load, enrolld vs a bare grpc-go server and a bare
# gateway in the same run (docs/BENCHMARKS.md). SERVE_FLAGS adds enrollbench serve flags.
SERVE_FLAGS ?= --clients 16 --duration 20s
.PHONY: bench-serve
bench-serve: ## Serving load: enrolld vs bare grpc-go / bare gateway, gRPC and REST (SQLite, plus PostgreSQL if ENROLL_TEST_POSTGRES_DSN is set).
	go run ./cmd/enrollbench serve --engine sqlite $(SERVE_FLAGS)
	@if [ -n "$$ENROLL_TEST_POSTGRES_DSN" ]; then \
		echo 'go run ./cmd/enrollbench serve --engine postgres --postgres-dsn "$$ENROLL_TEST_POSTGRES_DSN" $(SERVE_FLAGS)'; \
		go run ./cmd/enrollbench serve --engine postgres --postgres-dsn "$$ENROLL_TEST_POSTGRES_DSN" $(SERVE_FLAGS); \
	else \
		echo "PostgreSQL skipped: set ENROLL_TEST_POSTGRES_DSN=postgres://... to measure it too"; \
	fi

tools: $(STAMP) ## Install the pinned code generators into ./bin.

$(STAMP):
	@mkdir -p $(BIN)
	GOBIN=$(BIN) go install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
	GOBIN=$(BIN) go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOBIN=$(BIN) go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	GOBIN=$(BIN) go install github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-grpc-gateway@$(GRPC_GATEWAY_VERSION)
	GOBIN=$(BIN) go install github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2@$(GRPC_GATEWAY_VERSION)
	@rm -f $(BIN)/.tools-* && touch $@

clean: ## Remove built binaries and demo data.
	rm -rf $(BIN) enroll-demo.db* enroll-dev-keys.json
