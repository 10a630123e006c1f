# The README's commands. CI runs `make test` and nothing else.
SHELL := /bin/bash
STACK := infra/local/stack.sh
CARGO ?= cargo

.PHONY: run demo test permissions invoke package build fmt lint bench deploy stack-install stack-start stack-stop

# cargo-lambda, cfn-lint and the SAM CLI live in the project's virtualenv.
VENV_PATH := $(CURDIR)/.local/venv/bin:$(PATH)

FUNCTIONS := $(notdir $(wildcard functions/*))
# The local runner as cargo builds it (CARGO_TARGET_DIR honoured).
RUNNER := $(or $(CARGO_TARGET_DIR),target)/debug/local-runner

## Install what is missing, start the local stack, serve every function on
## http://127.0.0.1:3000 and seed demo data. Ctrl-C stops the runner; `make stack-stop` the emulators.
run: stack-install
	@$(STACK) start
	$(CARGO) build --quiet -p local-runner
	@set -a; eval "$$($(STACK) env)"; set +a; export PATH="$(VENV_PATH)"; \
	  (infra/local/seed.sh &); \
	  exec $(RUNNER) serve

## The scripted scenario over the in-memory adapters, in process.
demo:
	$(CARGO) run --quiet -p shared --example demo --features fixtures

# Where the local runners log the permissions they checked (see `make permissions`).
PERMISSIONS_LOG := $(CURDIR)/target/permissions

## Install what is missing, start the emulators, run every test, stop the emulators; then report
## the permissions the template grants that no test used, failing if any request was refused.
## The system tests (tests/) start the local runner, which builds the functions
## (`cargo build --bin NAME` from the workspace root) before it invokes them: both are built
## first, in one build with the features that resolves (the whole workspace's), so no test
## waits for a compile.
test: stack-install
	$(CARGO) fmt --all -- --check
	@$(STACK) lint-template
	@$(STACK) validate-template
	$(CARGO) build --locked --quiet --workspace $(addprefix --bin ,local-runner $(FUNCTIONS))
	@$(STACK) start
	@rm -rf "$(PERMISSIONS_LOG)"
	@set -a; eval "$$($(STACK) env)"; set +a; export PATH="$(VENV_PATH)"; \
	  export LOCAL_PERMISSIONS_LOG="$(PERMISSIONS_LOG)"; \
	  $(CARGO) test --workspace --locked; rc=$$?; \
	  if [ $$rc -eq 0 ]; then $(CARGO) test --workspace --locked --test system -- --ignored contract::; rc=$$?; fi; \
	  $(STACK) stop; \
	  if [ $$rc -eq 0 ]; then $(MAKE) --no-print-directory permissions; rc=$$?; fi; \
	  exit $$rc

## The permissions the template grants that the last `make test` never used, and any request
## the local permission check refused (which fails it).
permissions: stack-install
	$(CARGO) build --quiet --locked --workspace $(addprefix --bin ,local-runner $(FUNCTIONS))
	$(RUNNER) permissions --log "$(PERMISSIONS_LOG)"

## Invoke one function with cargo lambda on the local stack, as the template wires it:
##   make invoke FN=settings EVENT=events/settings/put-agent.json [TABLE=referrals-local]
## Starts the emulators if they are not running (`make stack-stop` stops them) and provisions
## the table, queues and bus the function needs; the function runs with its template settings.
TABLE ?= referrals-local
# It builds what `make test` builds, with the same features, so nothing is built again under it.
invoke: stack-install
	@if [ -z "$(FN)" ] || [ -z "$(EVENT)" ]; then \
	  echo "usage: make invoke FN=<function> EVENT=<event file>, e.g. make invoke FN=settings EVENT=events/settings/put-agent.json" >&2; \
	  exit 2; fi
	@$(STACK) start
	$(CARGO) build --quiet --locked --workspace $(addprefix --bin ,local-runner $(FUNCTIONS))
	@set -a; eval "$$($(STACK) env)"; set +a; export PATH="$(VENV_PATH)"; \
	  $(RUNNER) invoke "$(FN)" --data-file "$(EVENT)" --table "$(TABLE)"

## DESIGN.md's targets as ratios in one run: the claim, a warm transfer's start and the sweeps
## on DynamoDB Local, and cold starts of the release binaries against a hello-world function,
## and against the claim function built without metrics (what the metrics cost).
bench: stack-install
	@$(STACK) install-peer
	$(CARGO) build --release --locked -p claim --no-default-features
	cp target/release/claim target/release/claim-without-metrics
	@# The functions as the local runner builds them (binaries.rs), so that the figures' runner
	@# below finds them built; hello-lambda on its own, or it would change their features.
	$(CARGO) build --release --locked $(addprefix --bin ,$(FUNCTIONS))
	$(CARGO) build --release --locked -p hello-lambda
	@$(STACK) start dynamodb
	@set -a; eval "$$($(STACK) env)"; set +a; \
	  $(CARGO) run --quiet --release --locked -p bench; rc=$$?; \
	  $(STACK) stop dynamodb; exit $$rc
	@# What one referral costs, counted on the wire by the local runner (tests/cost.rs), the speed
	@# to lead of the whole system (tests/speed.rs) and the claim under load (tests/load.rs), each
	@# on emulators of its own: what one leaves in moto slows every later read of its records.
	@# The runner serves the release binaries built above, as Lambda runs them, with as many
	@# instances as the figures have requests in flight (Lambda's default allows 1 000).
	$(CARGO) build --locked --quiet --bin local-runner
	@for figure in cost speed load; do \
	  $(STACK) start || exit 1; \
	  set -a; eval "$$($(STACK) env)"; set +a; export PATH="$(VENV_PATH)" LOCAL_RUNNER_PROFILE=release LOCAL_RUNNER_MAX_INSTANCES=50; \
	  $(CARGO) test --locked -p system-tests --test system -- --ignored --nocapture --test-threads 1 $$figure::; rc=$$?; \
	  $(STACK) stop; [ $$rc -eq 0 ] || exit $$rc; \
	done

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

## The artifacts `make deploy` ships: `sam build` of every function for ARCH (arm64, Graviton, by
## default; ARCH=x86_64 builds for this machine), into .aws-sam/build. Too slow for `make test`.
ARCH ?= arm64
package: stack-install
	@$(STACK) package $(ARCH)

## Deploy what `make package` built, with the SAM CLI (asks for the parameters the first time;
## needs an AWS account).
deploy: package
	SAM_CLI_TELEMETRY=0 .local/venv/bin/sam deploy --guided --template-file .aws-sam/build/template.yaml \
	  --parameter-overrides Architecture=$(ARCH)
