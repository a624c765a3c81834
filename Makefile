# The two commands of the README:
#   make demo   run the dev stack (Temporal dev server + Web UI, sandbox API, a worker) and a demo sync
#   make test   run every test (unit, replay, integration against the real Temporal dev server and PostgreSQL)
SHELL := /bin/bash
export GOFLAGS ?= -mod=mod
TEMPORAL_CLI_MODULE := github.com/temporalio/cli/cmd/temporal@v1.5.1
GOBIN_DIR := $(shell go env GOPATH)/bin
GO_TEST_TIMEOUT ?= 20m
# Runs the rest of the line with a PostgreSQL: DATABASE_URL's, the server on
# 127.0.0.1:5432, or else a private cluster under .tether/postgres that
# stops when the command ends (starters/cmd/withpg, docs/testing.md).
WITHPG = go build -o .tether/bin/withpg ./starters/cmd/withpg && .tether/bin/withpg --

.PHONY: demo test unit bench bench-twoway chaos bench-scale temporal-cli promtool chromium vet fmt fuzz

demo: temporal-cli
	$(WITHPG) go run ./starters/cmd/tether up $(ARGS)

# Installs the pinned Temporal CLI through the Go module proxy when no
# temporal binary is on PATH or in $(go env GOPATH)/bin (~5 min the first time).
temporal-cli:
	@if [ -n "$$TEMPORAL_CLI" ] && [ -x "$$TEMPORAL_CLI" ]; then exit 0; fi; \
	if command -v temporal >/dev/null 2>&1 || [ -x "$(GOBIN_DIR)/temporal" ]; then exit 0; fi; \
	echo "installing $(TEMPORAL_CLI_MODULE) (a few minutes the first time)"; \
	go install $(TEMPORAL_CLI_MODULE)

# Installs promtool (Debian's prometheus package), which the alert rules'
# tests run (workers/prometheus), when it is missing: as root with apt-get;
# otherwise says what to install (the tests then skip, or fail in CI).
promtool:
	@if command -v promtool >/dev/null 2>&1 || [ -x /usr/bin/promtool ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's prometheus package for promtool"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus; \
	else \
		echo "promtool missing: install Debian's prometheus package (apt-get install prometheus) to run the alert rules' tests"; \
	fi

# Installs Debian's headless Chromium, which the Web UI test drives
# (tests/integration TestWebUI_*), when it is missing: as root with apt-get;
# otherwise says what to install (the test then skips, or fails in CI).
chromium:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's chromium package for the Web UI test"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; \
	else \
		echo "chromium missing: install Debian's chromium package (apt-get install chromium) to run the Web UI test"; \
	fi

vet:
	go vet ./...

test: temporal-cli promtool chromium vet
	$(WITHPG) go test -count=1 -timeout $(GO_TEST_TIMEOUT) ./...

# Fuzzing: every Fuzz target in the module (found by name in the *_test.go
# files, so a new one is picked up), FUZZTIME each (go fuzzes one target
# per run); FUZZFLAGS=-parallel=1 on a busy machine. Every target runs,
# then the failed ones are listed; a failing input is written to the
# package's testdata/fuzz/<target>. make test runs the seed corpora. A run
# that fails only with "context deadline exceeded" at the end of FUZZTIME,
# writing no input, is Go's race golang/go#75804 (fixed in Go 1.27): it is
# run once more. Minimizing an input (a new interesting one, or a failing
# one) is bounded to FUZZMINIMIZETIME calls (go's default, 60s each, can
# take the whole FUZZTIME).
FUZZTIME ?= 30s
FUZZMINIMIZETIME ?= 1000x
fuzz:
	@set -o pipefail; failed=(); log=$$(mktemp); trap 'rm -f "$$log"' EXIT; \
	while read -r file name; do \
		dir=$$(dirname "$$file"); \
		for try in 1 2; do \
			echo "== $$name ($$dir, $(FUZZTIME))"; \
			if go test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZETIME) $(FUZZFLAGS) "$$dir" </dev/null 2>&1 | tee "$$log"; then break; fi; \
			if [ $$try = 1 ] && grep -qx '    context deadline exceeded' "$$log" && ! grep -q 'Failing input written' "$$log"; then \
				echo "== $$name: the fuzztime deadline race (golang/go#75804), once more"; continue; \
			fi; \
			failed+=("$$name ($$dir)"); break; \
		done; \
	done < <(grep -r --exclude-dir='.?*' --exclude-dir=testdata --include='*_test.go' -o '^func Fuzz[A-Za-z0-9_]*' . | sed 's/:func / /' | sort); \
	if (( $${#failed[@]} )); then printf 'fuzz target failed: %s\n' "$${failed[@]}"; exit 1; fi

# Unit tests only (no dev server, still the real PostgreSQL for SQL tests).
unit:
	$(WITHPG) go test -count=1 -short ./...

# Sync throughput on the same sandbox data: the plain Go loop, the durable
# pipeline and Benthos v4.27 (tests/bench/peer/benthos, built once into
# .tether/bench/benthos-peer: minutes the first time); records/s, wall time,
# history events, peak RSS and the targets' ratios. ARGS="--runs 5"
# alternates the contenders and prints min/median/max; --contenders
# loop,durable skips Benthos; -h lists the flags (docs/benchmarks.md).
bench: temporal-cli
	$(WITHPG) go run ./tests/bench/cmd/bench $(ARGS)

# Two-way convergence: 10,000 edits split between the sides, beside as
# many made on one side and the one-way pipeline carrying the same edits,
# writes per edit (ARGS=-edits N).
bench-twoway: temporal-cli
	$(WITHPG) go run ./tests/bench/cmd/twowaybench $(ARGS)

# Chaos: a 100,000-record sync under each fault (workers SIGKILLed, a
# failing and slow source, PostgreSQL connections terminated or refused,
# commit answers lost, the dev server restarted, shuffled and redelivered
# webhooks), each checked row by row; ARGS="--scenarios kill-2w,commit-lost
# --records 20000"; a table of faults, rows lost and duplicated.
chaos: temporal-cli
	$(WITHPG) go run ./tests/bench/cmd/chaosbench $(ARGS)

# Scale-out: 1, 2 and 3 worker processes on one task queue syncing 3
# copies of crm-contacts (50,000 records each) at once; wall time,
# records/s and the CPU seconds of the workers, the dev server and
# PostgreSQL per phase (ARGS="--records 20000 --workers 1,2").
bench-scale: temporal-cli
	$(WITHPG) go run ./tests/bench/cmd/scalebench $(ARGS)

fmt:
	gofmt -w $$(git ls-files '*.go')
