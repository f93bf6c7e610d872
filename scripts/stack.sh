#!/usr/bin/env bash
# Throwaway local stack for development and tests: PG_CLUSTERS PostgreSQL clusters + moto server
# (SQS, Secrets Manager).
#
#   scripts/stack.sh up       start a fresh stack, write .local/env (sourceable)
#   scripts/stack.sh down     stop everything, delete every cluster and .local/env (keeps the venv cache)
#   scripts/stack.sh status   report each cluster and moto; exit 0 only if all are up
#   scripts/stack.sh env      print .local/env
#   scripts/stack.sh pg-stop [N] | pg-start [N]   take cluster N (default 1) away, keeping its
#                             data, and bring it back on the same port (fault tests)
#
# Clusters are named local-1 .. local-N. local-1 lives in .local/pg (log .local/logs/postgres.log)
# and holds the control_plane database; local-N (N >= 2) lives in .local/pgN (log postgresN.log)
# on its own free port. All have the superuser `postgres` with one shared random password and the
# same options. Each one's admin credentials are also stored in moto's Secrets Manager as
# `local/clusters/local-N/admin` (RDS-style JSON), and REGISTER_CLUSTERS in .local/env lists them.
#
# Environment knobs for `up`:
#   PG_CLUSTERS=N         how many PostgreSQL clusters (default 2, at least 1)
#   PG_PORT / MOTO_PORT   use these ports for local-1 / moto instead of picking free ones (fails if
#                         in use); local-2.. always get free ports
#   PG_DURABLE=1          keep fsync / synchronous_commit / full_page_writes on (for benchmarks)
#   PG_SSL=1              self-signed certificate, ssl=on (plain connections still allowed);
#                         REGISTER_CLUSTERS then says tls_mode "require" (else "prefer")
#
# Works on a fresh Debian/Ubuntu box as root or as a sudo-capable user, non-interactively:
# PostgreSQL and python3-venv are installed with apt-get when missing.
# All state lives in <repo>/.local/ (gitignored).
set -Eeuo pipefail

# --- layout --------------------------------------------------------------------------------------
SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/.." && pwd -P)
LOCAL_DIR=$REPO_ROOT/.local
LOG_DIR=$LOCAL_DIR/logs
# PG_DIR, PG_DATA, PG_SOCK, PG_LOG: the cluster the postgres functions act on (use_cluster N).
MOTO_LOG=$LOG_DIR/moto.log
VENV=$LOCAL_DIR/venv
PIN_STAMP=$VENV/.stack-pins
MOTO_PID_FILE=$LOCAL_DIR/moto.pid
ENV_FILE=$LOCAL_DIR/env

# Pinned Python packages for moto. Changing these makes the next `up` rebuild the venv.
MOTO_PIN='moto[server,sqs,secretsmanager,events]==5.2.5'
BOTO3_PIN='boto3==1.44.5'

AWS_REGION_VALUE=us-east-1
AWS_ACCOUNT_ID=123456789012 # moto's default account

PG_CLUSTERS_DEFAULT=2
CLUSTER_CAPACITY=5000 # "capacity" of each cluster in REGISTER_CLUSTERS

# Set by `up`: cluster N's port is PG_PORTS[N] (PG_PORTS[1] == PG_PORT), the ARN of its admin
# secret CLUSTER_SECRET_ARNS[N].
PG_PORTS=()
CLUSTER_SECRET_ARNS=()

# --- helpers -------------------------------------------------------------------------------------
log() { printf '[stack] %s\n' "$*" >&2; }

# Set while `up` runs, so a failure tears down whatever was already started.
UP_IN_PROGRESS=0

die() {
    printf '[stack] error: %s\n' "$*" >&2
    if [[ $UP_IN_PROGRESS == 1 ]]; then
        UP_IN_PROGRESS=0
        log "cleaning up the partial stack (logs are kept in ${LOG_DIR#"$REPO_ROOT"/})"
        stop_moto || true
        stop_all_pg || true
    fi
    exit 1
}
trap 'die "unexpected failure at line $LINENO: $BASH_COMMAND"' ERR

# Print the last lines of a log file to stderr, indented.
log_tail() {
    [[ -f $1 ]] || return 0
    printf '[stack] --- last lines of %s ---\n' "$1" >&2
    tail -n "${2:-25}" "$1" | sed 's/^/    /' >&2
}

# Microsecond wall clock (EPOCHREALTIME needs bash >= 5; `date` otherwise).
now_us() {
    if [[ -n ${EPOCHREALTIME:-} ]]; then
        local t=${EPOCHREALTIME/[.,]/}
        echo "$((10#$t))"
    else
        echo $(($(date +%s%N) / 1000))
    fi
}
# "1.3 s" since a now_us timestamp.
since() {
    local d=$(($(now_us) - $1))
    printf '%d.%d s' $((d / 1000000)) $(((d / 100000) % 10))
}

is_root() { [[ $EUID -eq 0 ]]; }

# Run a command as root: directly, or through sudo (never prompting when there is no terminal).
as_root() {
    if is_root; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        if [[ -t 0 ]]; then sudo "$@"; else sudo -n "$@"; fi
    else
        die "root is needed to run '$*': run as root, install sudo, or install the package yourself"
    fi
}

APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null 2>&1 ||
        die "apt-get not found: install $* with your package manager and re-run"
    local apt_log=$LOG_DIR/apt.log t0
    t0=$(now_us)
    log "installing $* with apt-get (log: ${apt_log#"$REPO_ROOT"/})"
    if [[ $APT_UPDATED == 0 ]]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update >>"$apt_log" 2>&1 ||
            { log_tail "$apt_log"; die "apt-get update failed (root or passwordless sudo needed)"; }
        APT_UPDATED=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" \
        >>"$apt_log" 2>&1 ||
        { log_tail "$apt_log"; die "apt-get install $* failed (root or passwordless sudo needed)"; }
    log "installed $* ($(since "$t0"))"
}

# initdb refuses to run as root, so as root the cluster belongs to the `postgres` user.
# `cd /` avoids "could not change directory" warnings when root's cwd is not readable by postgres.
as_pg() {
    if is_root; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

# --- python / ports ------------------------------------------------------------------------------
ensure_python() {
    command -v python3 >/dev/null 2>&1 && return 0
    apt_install python3 python3-venv
}

# Usage: pick_ports WANT_PG WANT_MOTO EXTRA  (empty = pick a free one; EXTRA = how many more
# free ports, for clusters 2..). Prints "PGPORT MOTOPORT [PORT2 PORT3 ...]".
# Requested ports are checked with SO_REUSEADDR like the servers use, so only a live listener
# (not a TIME_WAIT leftover) counts as "in use". All sockets are held until the end so the
# picked ports are distinct.
pick_ports() {
    python3 - "$@" <<'PY'
import socket, sys
held, out = [], []
wanted = [("PG_PORT", sys.argv[1]), ("MOTO_PORT", sys.argv[2])]
wanted += [(f"port of cluster {i}", "") for i in range(2, int(sys.argv[3]) + 2)]
for name, want in wanted:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if want:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", int(want)))
        except (OSError, ValueError) as e:
            sys.exit(f"{name}={want} is not usable on 127.0.0.1 ({e}); unset it to pick a free port")
    else:
        s.bind(("127.0.0.1", 0))
    held.append(s)
    out.append(str(s.getsockname()[1]))
print(" ".join(out))
PY
}

# --- postgres ------------------------------------------------------------------------------------
# Select cluster N (1 = .local/pg, log postgres.log; N >= 2 = .local/pgN, log postgresN.log) for
# the functions below: sets PG_IDX, PG_DIR, PG_DATA, PG_SOCK, PG_LOG.
use_cluster() {
    local sfx=""
    PG_IDX=$1
    ((PG_IDX == 1)) || sfx=$PG_IDX
    PG_DIR=$LOCAL_DIR/pg$sfx
    PG_DATA=$PG_DIR/data
    PG_SOCK=$PG_DIR/sock
    PG_LOG=$LOG_DIR/postgres$sfx.log
}
use_cluster 1

# Indexes of the clusters that have a directory under .local (any count a previous `up` left).
pg_cluster_indexes() {
    local d n
    if [[ -d $LOCAL_DIR/pg ]]; then echo 1; fi
    for d in "$LOCAL_DIR"/pg[0-9]*; do
        n=${d##*/pg}
        if [[ -d $d && $n =~ ^[1-9][0-9]*$ ]] && ((n >= 2)); then echo "$n"; fi
    done
}

# Highest /usr/lib/postgresql/<major>/bin that has the server tools (a client-only package
# installs psql there but no initdb). Prints nothing if none.
find_pg_bin() {
    local d major best="" best_major=-1
    for d in /usr/lib/postgresql/*/bin; do
        [[ -x $d/initdb && -x $d/pg_ctl && -x $d/postgres && -x $d/pg_isready ]] || continue
        major=${d#/usr/lib/postgresql/}
        major=${major%/bin}
        [[ $major =~ ^[0-9]+$ ]] || continue
        if ((major > best_major)); then
            best=$d
            best_major=$major
        fi
    done
    printf '%s' "$best"
}

ensure_pg_bin() {
    PG_BIN=$(find_pg_bin)
    if [[ -z $PG_BIN ]]; then
        apt_install postgresql
        PG_BIN=$(find_pg_bin)
        [[ -n $PG_BIN ]] || die "postgresql installed but no /usr/lib/postgresql/<major>/bin/initdb found"
    fi
    if is_root && ! id -u postgres >/dev/null 2>&1; then
        die "running as root needs a 'postgres' user for the cluster (the postgresql package creates it)"
    fi
}

# pg_ctl of the version that created the data dir (falls back to the newest installed).
pg_ctl_for_data() {
    local major bin
    major=$(cat "$PG_DATA/PG_VERSION" 2>/dev/null || true)
    bin=/usr/lib/postgresql/$major/bin
    [[ -n $major && -x $bin/pg_ctl ]] || bin=$(find_pg_bin)
    [[ -n $bin ]] && printf '%s' "$bin/pg_ctl"
}

# Stop the selected cluster (if running from our data dir) and delete its directory.
stop_pg() {
    local pg_ctl pid
    if [[ -f $PG_DATA/postmaster.pid ]]; then
        pg_ctl=$(pg_ctl_for_data || true)
        if [[ -n $pg_ctl ]] && as_pg "$pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
            as_pg "$pg_ctl" -D "$PG_DATA" -m fast -w -t 60 stop >/dev/null ||
                die "pg_ctl stop failed; see ${PG_LOG#"$REPO_ROOT"/}"
            log "postgres local-$PG_IDX stopped"
        else
            # No pg_ctl, or a stale pid file: SIGINT is postgres' "fast shutdown".
            pid=$(head -n 1 "$PG_DATA/postmaster.pid" 2>/dev/null || true)
            if [[ $pid =~ ^[0-9]+$ ]] && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == postgres ]]; then
                kill -INT "$pid" 2>/dev/null || true
                wait_gone "$pid" 30 || kill -KILL "$pid" 2>/dev/null || true
                log "postgres local-$PG_IDX stopped (signal)"
            fi
        fi
    fi
    # A too-long repo path makes .local/pgN/sock a symlink to a short dir in /tmp: remove both.
    if [[ -L $PG_SOCK ]]; then
        local target
        target=$(readlink "$PG_SOCK")
        [[ $target == /tmp/stack-pgsock.* ]] && rm -rf -- "$target"
    fi
    rm -rf -- "$PG_DIR"
}

# stop_pg for every cluster directory there is (.local/pg, .local/pg2, ...).
stop_all_pg() {
    local n
    for n in $(pg_cluster_indexes); do
        use_cluster "$n"
        stop_pg
    done
    use_cluster 1
}

# As root, postgres must be able to reach $1 (and write its log): give "search" permission
# (o+x, not read) to any ancestor that denies it.
ensure_traversable_for_pg() {
    is_root || return 0
    runuser -u postgres -- test -x "$1" 2>/dev/null && return 0
    local d=$1 changed=()
    while [[ $d != / ]]; do
        if ! runuser -u postgres -- test -x "$d" 2>/dev/null; then
            chmod o+x "$d"
            changed+=("$d")
        fi
        d=$(dirname -- "$d")
    done
    log "chmod o+x (so the postgres user can reach ${1#"$REPO_ROOT"/}): ${changed[*]}"
}

# Unix socket paths are limited to 107 bytes; fall back to a short dir under /tmp,
# linked from .local/pgN/sock. Prints the directory to pass to -k.
prepare_socket_dir() {
    local sock=$PG_SOCK
    if ((${#PG_SOCK} + 15 > 107)); then # 15 = length of "/.s.PGSQL.65535"
        sock=$(mktemp -d /tmp/stack-pgsock.XXXXXX)
        ln -s "$sock" "$PG_SOCK"
        log "repo path too long for a Unix socket; using $sock (linked from ${PG_SOCK#"$REPO_ROOT"/})"
    else
        mkdir -p "$sock"
    fi
    if is_root; then chown postgres: "$sock"; fi
    chmod 700 "$sock"
    printf '%s' "$sock"
}

# Self-signed certificate for ssl=on; postgres insists the key is private to its owner.
make_ssl_cert() {
    command -v openssl >/dev/null 2>&1 || apt_install openssl
    openssl req -new -x509 -days 3650 -nodes -newkey rsa:2048 -subj "/CN=localhost" \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$PG_DATA/server.key" -out "$PG_DATA/server.crt" >>"$PG_LOG" 2>&1 ||
        { log_tail "$PG_LOG"; die "openssl could not create the server certificate"; }
    chmod 600 "$PG_DATA/server.key"
    if is_root; then chown postgres: "$PG_DATA/server.key" "$PG_DATA/server.crt"; fi
}

# Fresh cluster N on port $2: initdb (superuser password PG_PASSWORD) + start, and for cluster 1
# the control_plane database. Cluster 1 also sets PG_SOCKET_DIR.
start_pg() {
    local n=$1 port=$2 t0 major sock pwfile opts=() opt_str="" ready=0 i
    t0=$(now_us)
    major=$(basename -- "$(dirname -- "$PG_BIN")")

    use_cluster "$n"
    stop_pg # fresh cluster on every `up`
    mkdir -p "$PG_DATA"
    : >"$PG_LOG"
    if is_root; then
        chown postgres: "$PG_DIR" "$PG_DATA" "$PG_LOG"
        ensure_traversable_for_pg "$PG_DIR"
        ensure_traversable_for_pg "$LOG_DIR"
    fi
    chmod 700 "$PG_DATA"
    sock=$(prepare_socket_dir)
    if ((n == 1)); then PG_SOCKET_DIR=$sock; fi

    # The superuser password goes to initdb through a private file deleted right after.
    pwfile=$PG_DIR/pwfile
    (umask 077 && printf '%s\n' "$PG_PASSWORD" >"$pwfile")
    if is_root; then chown postgres: "$pwfile"; fi
    if ! as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres -E UTF8 --no-locale --no-sync \
        --auth-local=trust --auth-host=scram-sha-256 --pwfile="$pwfile" >>"$PG_LOG" 2>&1; then
        rm -f -- "$pwfile"
        log_tail "$PG_LOG"
        die "initdb failed for local-$n (full log: $PG_LOG)"
    fi
    rm -f -- "$pwfile"

    opts=(-c listen_addresses=127.0.0.1 -p "$port" -k "$sock" -c max_connections=400)
    if [[ ${PG_DURABLE:-} == 1 ]]; then
        if ((n == 1)); then
            log "PG_DURABLE=1: fsync, synchronous_commit, full_page_writes left at their defaults"
        fi
    else
        opts+=(-c fsync=off -c synchronous_commit=off -c full_page_writes=off)
    fi
    if [[ ${PG_SSL:-} == 1 ]]; then
        make_ssl_cert
        opts+=(-c ssl=on)
    fi
    # pg_ctl hands -o to /bin/sh, so quote each option (paths may contain spaces).
    printf -v opt_str '%q ' "${opts[@]}"
    printf '%s' "$opt_str" >"$PG_DIR/start-opts" # for `pg-start N` after `pg-stop N`
    if ! as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -o "$opt_str" -w -t 60 start >/dev/null 2>&1; then
        log_tail "$PG_LOG"
        die "postgres local-$n did not start (full log: $PG_LOG)"
    fi
    for ((i = 0; i < 100; i++)); do
        if "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -t 1; then
            ready=1
            break
        fi
        sleep 0.1
    done
    [[ $ready == 1 ]] || { log_tail "$PG_LOG"; die "postgres local-$n is not accepting TCP connections on 127.0.0.1:$port"; }

    if ((n == 1)); then
        # Over the socket (trust), so no password is needed here.
        "$PG_BIN/createdb" -h "$sock" -p "$port" -U postgres control_plane ||
            die "createdb control_plane failed"
    fi
    local extras=""
    if [[ ${PG_SSL:-} == 1 ]]; then extras+=", ssl on"; fi
    if [[ ${PG_DURABLE:-} == 1 ]]; then extras+=", durable"; fi
    log "postgres $major local-$n on 127.0.0.1:$port$extras ($(since "$t0"))"
}

# Port from postmaster.pid (line 4) of a running cluster; empty if none.
running_pg_port() {
    [[ -f $PG_DATA/postmaster.pid ]] || return 0
    sed -n 4p "$PG_DATA/postmaster.pid" 2>/dev/null || true
}

# --- moto ----------------------------------------------------------------------------------------
ensure_venv() {
    local t0 want py_err
    want="$MOTO_PIN $BOTO3_PIN"
    if [[ -x $VENV/bin/moto_server && -f $PIN_STAMP && "$(cat "$PIN_STAMP")" == "$want" ]] &&
        "$VENV/bin/python" -c '' 2>/dev/null; then
        return 0 # pins unchanged and the interpreter still works: nothing to do
    fi
    t0=$(now_us)
    log "building .local/venv with $want (one-time, ~1 min)"
    rm -rf -- "$VENV"
    # Debian ships venv/ensurepip separately (python3-venv); install it on demand.
    if ! py_err=$(python3 -m venv "$VENV" 2>&1); then
        rm -rf -- "$VENV"
        if [[ $py_err == *ensurepip* || $py_err == *python3-venv* || $py_err == *"No module named venv"* ]]; then
            apt_install python3-venv
            python3 -m venv "$VENV" || die "python3 -m venv still fails after installing python3-venv"
        else
            printf '%s\n' "$py_err" >&2
            die "python3 -m venv failed"
        fi
    fi
    if ! PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/pip" install --quiet "$MOTO_PIN" "$BOTO3_PIN" \
        >"$LOG_DIR/pip.log" 2>&1; then
        log_tail "$LOG_DIR/pip.log"
        rm -rf -- "$VENV"
        die "pip install failed (needs PyPI; full log: $LOG_DIR/pip.log)"
    fi
    printf '%s\n' "$want" >"$PIN_STAMP" # written last: a half-built venv is never trusted
    log "venv ready ($(since "$t0"))"
}

# True if $1 is a live moto_server from *this* repo's venv (guards against recycled pids).
is_our_moto() {
    [[ $1 =~ ^[0-9]+$ ]] || return 1
    [[ -r /proc/$1/cmdline ]] || return 1
    [[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) != Z ]] || return 1
    tr '\0' ' ' <"/proc/$1/cmdline" | grep -qF -- "$VENV/bin/moto_server"
}

# Wait up to $2 seconds for pid $1 to exit. Returns 1 on timeout.
wait_gone() {
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        kill -0 "$1" 2>/dev/null || return 0
        [[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) == Z ]] && return 0
        sleep 0.1
    done
    return 1
}

stop_moto() {
    local pid
    [[ -f $MOTO_PID_FILE ]] || return 0
    pid=$(cat "$MOTO_PID_FILE" 2>/dev/null || true)
    if is_our_moto "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        if ! wait_gone "$pid" 10; then
            kill -KILL "$pid" 2>/dev/null || true
            wait_gone "$pid" 5 || true
        fi
        log "moto stopped"
    fi
    rm -f -- "$MOTO_PID_FILE"
}

# Port from a running moto_server's command line (-p PORT); empty if unknown.
moto_port_of() {
    tr '\0' '\n' <"/proc/$1/cmdline" 2>/dev/null | awk 'prev == "-p" { print; exit } { prev = $0 }'
}

# Exit 0 once http://127.0.0.1:$1/moto-api/ answers (any HTTP status); 1 on timeout ($3 s),
# 2 if pid $2 died meanwhile.
wait_http() {
    "$VENV/bin/python" - "$@" <<'PY'
import os, sys, time, urllib.request, urllib.error
port, pid, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
deadline = time.monotonic() + timeout
def alive():
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
while time.monotonic() < deadline:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1).close()
        sys.exit(0)
    except urllib.error.HTTPError:
        sys.exit(0)  # it answered
    except OSError:
        pass
    if not alive():
        sys.exit(2)
    time.sleep(0.1)
sys.exit(1)
PY
}

start_moto() {
    local t0 pid rc=0
    t0=$(now_us)
    stop_moto
    : >"$MOTO_LOG"
    nohup "$VENV/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" </dev/null >>"$MOTO_LOG" 2>&1 &
    pid=$!
    echo "$pid" >"$MOTO_PID_FILE"
    wait_http "$MOTO_PORT" "$pid" 15 || rc=$?
    case $rc in
    0) ;;
    2) log_tail "$MOTO_LOG" && die "moto_server exited during startup (log: $MOTO_LOG)" ;;
    *) log_tail "$MOTO_LOG" && die "moto_server did not answer on 127.0.0.1:$MOTO_PORT within 15 s (log: $MOTO_LOG)" ;;
    esac
    log "moto ${MOTO_PIN##*==} on 127.0.0.1:$MOTO_PORT ($(since "$t0"))"
}

# Store each cluster's admin credentials in moto's Secrets Manager as local/clusters/local-N/admin
# (RDS-style JSON) and set CLUSTER_SECRET_ARNS. The password reaches python through its
# environment (not argv, which `ps` shows) and is never printed.
create_cluster_secrets() {
    local t0 out
    t0=$(now_us)
    out=$(STACK_PG_PASSWORD=$PG_PASSWORD "$VENV/bin/python" - "$MOTO_PORT" "$AWS_REGION_VALUE" \
        "${PG_PORTS[@]}" <<'PY'
import json, os, sys
for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):  # a profile this machine lacks would fail
    os.environ.pop(var, None)
import boto3

moto_port, region, pg_ports = sys.argv[1], sys.argv[2], sys.argv[3:]
password = os.environ.pop("STACK_PG_PASSWORD")
sm = boto3.client("secretsmanager", endpoint_url=f"http://127.0.0.1:{moto_port}", region_name=region,
                  aws_access_key_id="testing", aws_secret_access_key="testing")
name = "?"
try:
    for i, port in enumerate(pg_ports, 1):
        name = f"local/clusters/local-{i}/admin"
        value = json.dumps({"engine": "postgres", "host": "127.0.0.1", "port": int(port),
                            "username": "postgres", "password": password, "dbname": "postgres"})
        try:
            arn = sm.create_secret(Name=name, SecretString=value)["ARN"]
        except sm.exceptions.ResourceExistsException:
            arn = sm.put_secret_value(SecretId=name, SecretString=value)["ARN"]
        print(arn)
except Exception as e:  # the message only, never the request (it holds the password)
    sys.exit(f"{name}: {type(e).__name__}: {e}".replace(password, "***"))
PY
    ) || { log_tail "$MOTO_LOG"; die "could not store the clusters' admin secrets in moto"; }
    CLUSTER_SECRET_ARNS=()
    mapfile -t -O 1 CLUSTER_SECRET_ARNS <<<"$out"
    ((${#CLUSTER_SECRET_ARNS[@]} == ${#PG_PORTS[@]})) ||
        die "expected ${#PG_PORTS[@]} secret ARNs from moto, got ${#CLUSTER_SECRET_ARNS[@]}"
    log "admin secrets of ${#PG_PORTS[@]} cluster(s) in moto: local/clusters/local-N/admin ($(since "$t0"))"
}

# --- env file ------------------------------------------------------------------------------------
# REGISTER_CLUSTERS: compact JSON array, one object per cluster, for registering them.
register_clusters_json() {
    local tls_mode=prefer
    if [[ ${PG_SSL:-} == 1 ]]; then tls_mode=require; fi
    python3 - "$AWS_REGION_VALUE" "$CLUSTER_CAPACITY" "$tls_mode" "${CLUSTER_SECRET_ARNS[@]}" <<'PY'
import json, sys
region, capacity, tls_mode, arns = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
print(json.dumps([{"id": f"local-{i}", "region": region, "admin_secret_arn": arn,
                   "capacity": capacity, "tls_mode": tls_mode} for i, arn in enumerate(arns, 1)],
                 separators=(",", ":")))
PY
}

write_env() {
    local tmp n register pg_host=127.0.0.1 moto_url=http://127.0.0.1:$MOTO_PORT ports=()
    local pg_base="postgres://postgres:$PG_PASSWORD@$pg_host:$PG_PORT"
    register=$(register_clusters_json)
    for n in "${!PG_PORTS[@]}"; do ports+=("PG_PORT_$n" "${PG_PORTS[n]}"); done
    tmp=$(mktemp "$LOCAL_DIR/.env.XXXXXX") # mktemp creates it with mode 600: it holds the password
    {
        echo "# written by scripts/stack.sh up; source it (contains the local postgres password)"
        printf 'export %s=%q\n' \
            PG_BIN "$PG_BIN" \
            PG_PORT "$PG_PORT" \
            PG_CLUSTERS "${#PG_PORTS[@]}" \
            "${ports[@]}" \
            PG_SOCKET_DIR "$PG_SOCKET_DIR" \
            PG_ADMIN_URL "$pg_base/postgres" \
            DATABASE_URL "$pg_base/control_plane" \
            MOTO_PORT "$MOTO_PORT" \
            AWS_ENDPOINT_URL "$moto_url" \
            AWS_REGION "$AWS_REGION_VALUE" \
            AWS_DEFAULT_REGION "$AWS_REGION_VALUE" \
            AWS_ACCESS_KEY_ID testing \
            AWS_SECRET_ACCESS_KEY testing \
            AWS_EC2_METADATA_DISABLED true \
            QUEUE_URL_PREFIX "$moto_url/$AWS_ACCOUNT_ID/provisioning-" \
            SECRET_PREFIX provisioning/projects \
            EVENT_BUS_NAME provisioning-events
        # Single-quoted (JSON holds no single quote) rather than %q-escaped, so
        # readers that do not run a shell (the tests' .local/env parser) get it whole.
        printf "export REGISTER_CLUSTERS='%s'\n" "$register"
    } >"$tmp"
    chmod 600 "$tmp"
    mv -f -- "$tmp" "$ENV_FILE"
}

# --- commands ------------------------------------------------------------------------------------
cmd_up() {
    local t0 ports all n clusters=${PG_CLUSTERS:-$PG_CLUSTERS_DEFAULT}
    t0=$(now_us)
    [[ $clusters =~ ^[1-9][0-9]*$ ]] || die "PG_CLUSTERS must be a whole number >= 1 (got '$clusters')"
    mkdir -p "$LOCAL_DIR" "$LOG_DIR"
    ensure_python
    ensure_pg_bin

    # Stop a previous stack first (with however many clusters it had), so its ports count as free.
    rm -f -- "$ENV_FILE"
    stop_moto
    stop_all_pg

    ports=$(pick_ports "${PG_PORT:-}" "${MOTO_PORT:-}" $((clusters - 1)) 2>&1) || die "$ports"
    read -ra all <<<"$ports" # PG_PORT MOTO_PORT PORT2 PORT3 ...
    PG_PORT=${all[0]}
    MOTO_PORT=${all[1]}
    PG_PORTS=([1]="$PG_PORT")
    for ((n = 2; n <= clusters; n++)); do PG_PORTS[n]=${all[n]}; done

    UP_IN_PROGRESS=1
    ensure_venv
    # One random superuser password for every cluster.
    PG_PASSWORD=$(python3 -c 'import secrets; print(secrets.token_hex(24))')
    for ((n = 1; n <= clusters; n++)); do start_pg "$n" "${PG_PORTS[n]}"; done
    start_moto
    create_cluster_secrets
    write_env
    UP_IN_PROGRESS=0
    log "stack up in $(since "$t0"); env in ${ENV_FILE#"$REPO_ROOT"/} (source it, or: eval \"\$(scripts/stack.sh env)\")"
}

cmd_down() {
    local t0
    t0=$(now_us)
    stop_moto
    stop_all_pg
    rm -f -- "$ENV_FILE"
    log "stack down ($(since "$t0"))"
}

# Select the cluster named by `pg-stop` / `pg-start`'s optional argument (default 1).
use_cluster_arg() {
    (($# <= 1)) || die "at most one argument (the cluster number) expected, got: $*"
    local n=${1:-1}
    [[ $n =~ ^[1-9][0-9]*$ ]] || die "cluster number must be a whole number >= 1 (got '$n')"
    use_cluster "$n"
    [[ -d $PG_DATA ]] || die "no cluster local-$n in ${PG_DATA#"$REPO_ROOT"/}: run scripts/stack.sh up first (PG_CLUSTERS sets how many)"
}

# Stops cluster N (default 1; fast shutdown), keeping its data: fault tests use
# it to take Postgres away and `pg-start N` to bring the same cluster back.
cmd_pg_stop() {
    local t0 pg_ctl
    t0=$(now_us)
    use_cluster_arg "$@"
    pg_ctl=$(pg_ctl_for_data) || die "no cluster in ${PG_DATA#"$REPO_ROOT"/}"
    as_pg "$pg_ctl" -D "$PG_DATA" -m fast -w -t 60 stop >/dev/null || die "pg_ctl stop failed for local-$PG_IDX"
    log "postgres local-$PG_IDX stopped ($(since "$t0"))"
}

# Starts cluster N (default 1) again with the options (port included) `up` gave it.
cmd_pg_start() {
    local t0 pg_ctl
    t0=$(now_us)
    use_cluster_arg "$@"
    pg_ctl=$(pg_ctl_for_data) || die "no cluster in ${PG_DATA#"$REPO_ROOT"/}"
    [[ -f $PG_DIR/start-opts ]] || die "no $PG_DIR/start-opts: run scripts/stack.sh up first"
    as_pg "$pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -o "$(cat "$PG_DIR/start-opts")" -w -t 60 start >/dev/null ||
        { log_tail "$PG_LOG"; die "postgres local-$PG_IDX did not start again"; }
    log "postgres local-$PG_IDX started again ($(since "$t0"))"
}

# How many clusters `status` reports: PG_CLUSTERS from .local/env, or more if more cluster
# directories exist; at least 1.
cluster_count() {
    local count=1 n
    n=$(sed -n 's/^export PG_CLUSTERS=//p' "$ENV_FILE" 2>/dev/null || true)
    if [[ $n =~ ^[0-9]+$ ]] && ((n > count)); then count=$n; fi
    for n in $(pg_cluster_indexes); do
        if ((n > count)); then count=$n; fi
    done
    echo "$count"
}

cmd_status() {
    local ok=0 port pid pg_isready n count
    pg_isready=$(find_pg_bin)
    pg_isready=${pg_isready:+$pg_isready/pg_isready}
    count=$(cluster_count)
    for ((n = 1; n <= count; n++)); do
        use_cluster "$n"
        port=$(running_pg_port)
        if [[ -n $port && -n $pg_isready ]] && "$pg_isready" -q -h 127.0.0.1 -p "$port" -t 2; then
            echo "postgres local-$n: up on 127.0.0.1:$port"
        else
            echo "postgres local-$n: down"
            ok=1
        fi
    done
    pid=$(cat "$MOTO_PID_FILE" 2>/dev/null || true)
    port=""
    if is_our_moto "$pid"; then port=$(moto_port_of "$pid"); fi
    if [[ -n $port ]] && wait_http "$port" "$pid" 2; then
        echo "moto: up on 127.0.0.1:$port (pid $pid)"
    else
        echo "moto: down"
        ok=1
    fi
    if [[ -f $ENV_FILE ]]; then echo "env: $ENV_FILE"; else echo "env: missing"; fi
    return "$ok"
}

cmd_env() {
    [[ -f $ENV_FILE ]] || die "no $ENV_FILE: run scripts/stack.sh up first"
    cat -- "$ENV_FILE"
}

usage() {
    cat >&2 <<EOF
usage: scripts/stack.sh up|down|status|env|pg-stop [N]|pg-start [N]

  up      fresh PostgreSQL clusters local-1..local-N + moto server (each cluster's admin
          credentials in Secrets Manager as local/clusters/local-N/admin); writes .local/env
          (env: PG_CLUSTERS=N, default 2; PG_PORT, MOTO_PORT to fix local-1's / moto's ports;
          PG_DURABLE=1; PG_SSL=1)
  down    stop everything, delete every cluster and .local/env (keeps .local/venv)
  status  show what runs; exit 0 only if every cluster and moto are up
  env     print .local/env (eval "\$(scripts/stack.sh env)")
  pg-stop [N] / pg-start [N]   stop cluster N (default 1) keeping its data / start it again
          on the same port (the fault tests take Postgres away with these)
EOF
}

main() {
    case ${1:-} in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status || exit 1 ;;
    env) cmd_env ;;
    pg-stop) cmd_pg_stop "${@:2}" ;;
    pg-start) cmd_pg_start "${@:2}" ;;
    -h | --help | help) usage ;;
    *)
        usage
        exit 2
        ;;
    esac
}

main "$@"
