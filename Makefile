# The README's commands. CI runs `make test` and nothing else.
SHELL := /bin/bash
STACK := infra/local/stack.sh
CARGO ?= cargo

.PHONY: run demo test build fmt lint bench deploy stack-install stack-start stack-stop

# cargo-lambda and cfn-lint live in the project's virtualenv.
VENV_PATH := $(CURDIR)/.local/venv/bin:$(PATH)

FUNCTIONS := $(notdir $(wildcard functions/*))

## Install what is missing, start the local stack, serve every function on
## http://127.0.0.1:3000 and seed demo data. Ctrl-C stops the runner; `make stack-stop` the emulators.
run: stack-install
	@$(STACK) start
	$(CARGO) build --quiet -p local-runner
	@set -a; eval "$$($(STACK) env)"; set +a; export PATH="$(VENV_PATH)"; \
	  (infra/local/seed.sh &); \
	  exec target/debug/local-runner serve

## The scripted scenario over the in-memory adapters, in process.
demo:
	$(CARGO) run --quiet -p shared --example demo --features fixtures

## Install what is missing, start the emulators, run every test, stop the emulators.
## The system tests (tests/) start the local runner, which serves each function with
## `cargo run --bin NAME` from the workspace root: both are built first, in one build with the
## features that resolves (the whole workspace's), so no test waits for a compile.
test: stack-install
	$(CARGO) fmt --all -- --check
	@$(STACK) lint-template
	$(CARGO) build --locked --quiet --workspace $(addprefix --bin ,local-runner $(FUNCTIONS))
	@$(STACK) start
	@set -a; eval "$$($(STACK) env)"; set +a; export PATH="$(VENV_PATH)"; \
	  $(CARGO) test --workspace --locked; rc=$$?; \
	  $(STACK) stop; exit $$rc

## DESIGN.md's targets as ratios in one run: the claim, a warm transfer's start and the sweeps
## on DynamoDB Local, and cold starts of the release binaries against a hello-world function.
bench: stack-install
	$(CARGO) build --release --locked --bins $(addprefix -p ,$(FUNCTIONS)) -p hello-lambda
	@$(STACK) start dynamodb
	@set -a; eval "$$($(STACK) env)"; set +a; \
	  $(CARGO) run --quiet --release --locked -p bench; rc=$$?; \
	  $(STACK) stop dynamodb; exit $$rc

build:
	$(CARGO) build --workspace --release

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

stack-install:
	@$(STACK) install

stack-start: stack-install
	@$(STACK) start

stack-stop:
	@$(STACK) stop

## Build and deploy with the AWS SAM CLI (needs an AWS account; not available here).
deploy:
	sam build --template-file infra/template.yaml
	sam deploy --guided
