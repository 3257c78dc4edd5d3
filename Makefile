# Gateway suite: build, test, lint, bench, run.
SHELL := /bin/bash
NODE ?= node
TEST_DIR ?= build/test
TEST_FILES = $(shell find $(TEST_DIR) -name '*.test.js' | sort)

.PHONY: all deps build test test-only lint format bench run docs clean fuzz soak

all: build

## deps: Debian build/test prerequisites and npm packages (native addons built locally, checked loudly)
deps:
	@scripts/deps.sh

## build: compile TypeScript (strict) into build/
build: deps
	@echo "compiling TypeScript into build/…"
	@npx tsc -p tsconfig.json

## test: the whole suite with node:test (installs what it needs first)
test: build
	@$(NODE) --test --test-reporter=spec --test-reporter-destination=stdout $(TEST_FILES)

## test-only: run tests without reinstalling (TEST_DIR=build/test/pki to narrow)
test-only:
	@npx tsc -p tsconfig.json && $(NODE) --test $(TEST_FILES)

## lint: biome (lint + format check), the type checker, and the layer order of lib/ (.dependency-cruiser.cjs)
lint: deps
	@npx biome check .
	@npx tsc -p tsconfig.json --noEmit
	@npx depcruise --config .dependency-cruiser.cjs lib daemons

format:
	@npx biome check --write .

## fuzz: every parser fuzz target, FUZZ_SECONDS in all (default 600); FUZZ_TARGETS=a,b narrows, FUZZ_SEED replays
FUZZ_SECONDS ?= 600
fuzz: build
	@FUZZ_SECONDS=$(FUZZ_SECONDS) $(NODE) build/test/fuzz/run.js

## soak: SIGKILL and restart the CA, a proxy and a gateway under checksummed transfers (SOAK_SECONDS, default 180)
SOAK_SECONDS ?= 180
soak: build
	@SOAK_SECONDS=$(SOAK_SECONDS) $(NODE) build/test/soak/soak.js

## bench: benchmarks, printed as a table beside reference runs
bench: build
	@$(NODE) build/bench/run.js

## docs: regenerate docs/cli.md and docs/config.md from the programs' --help and config schemas
docs: build
	@$(NODE) scripts/reference-docs.mjs

## run: the local demo deployment (see README)
run: build
	@$(NODE) build/daemons/quickstart.js

## package: standalone binaries (Node 24 SEA), a .deb + .rpm per program, the offline bundle signed with
## RELEASE_KEY=path (Ed25519; absent: a development key, announced), in dist/ (docs/install.md)
.PHONY: package
package: deps
	@scripts/package.sh

clean:
	rm -rf build
