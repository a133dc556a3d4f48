#!/usr/bin/env bash
# Make sure PostgreSQL (127.0.0.1:5432, role postgres, trust auth) and NATS with
# JetStream (127.0.0.1:4222) are installed and running.
#
# Idempotent: a service that is already up is left alone (never stopped or
# restarted). Installs missing Debian packages when run as root; otherwise says
# what to install and exits 1. Exits non-zero if either service does not come up.
#
# Environment: SERVICES_WAIT_SECONDS (default 30) bounds each wait.
set -euo pipefail

readonly PG_HOST=127.0.0.1
readonly PG_PORT=5432
readonly NATS_HOST=127.0.0.1
readonly NATS_PORT=4222
readonly NATS_BIN=/usr/sbin/nats-server
readonly NATS_STORE=/var/lib/nats-server
readonly NATS_LOG=/var/log/nats-server.log
readonly WAIT_SECONDS=${SERVICES_WAIT_SECONDS:-30}
readonly HBA_MARKER='# leadflow scripts/services.sh: passwordless TCP logins from this host'

log() { printf 'services: %s\n' "$*"; }
die() {
	printf 'services: ERROR: %s\n' "$*" >&2
	exit 1
}
is_root() { [[ $(id -u) -eq 0 ]]; }

# Newest PostgreSQL version with a "main" cluster under /etc/postgresql, or "".
pg_cluster_version() {
	local conf
	for conf in /etc/postgresql/*/main/postgresql.conf; do
		[[ -e $conf ]] || continue
		conf=${conf#/etc/postgresql/}
		printf '%s\n' "${conf%%/*}"
	done | sort -V | tail -n 1
}

# Newest installed PostgreSQL server version, or "".
pg_server_version() {
	local bin
	for bin in /usr/lib/postgresql/*/bin/postgres; do
		[[ -x $bin ]] || continue
		bin=${bin#/usr/lib/postgresql/}
		printf '%s\n' "${bin%%/*}"
	done | sort -V | tail -n 1
}

pg_ready() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 1 >/dev/null 2>&1; }

pg_login() {
	PGCONNECT_TIMEOUT=3 psql -X -w -q -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres \
		-tAc 'select 1' >/dev/null 2>&1
}

# The single-quoted scripts are expanded by the inner bash, on purpose.
# shellcheck disable=SC2016
nats_port_open() {
	timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$NATS_HOST" "$NATS_PORT" 2>/dev/null
}

# The INFO line a NATS server sends as soon as a client connects.
# shellcheck disable=SC2016
nats_info() {
	timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2" && IFS= read -r line <&3 && printf "%s\n" "$line"' \
		_ "$NATS_HOST" "$NATS_PORT" 2>/dev/null
}

# wait_for DESCRIPTION COMMAND...: retry COMMAND once a second, for at most WAIT_SECONDS.
wait_for() {
	local what=$1
	shift
	local deadline=$((SECONDS + WAIT_SECONDS))
	log "waiting up to ${WAIT_SECONDS}s for $what"
	until "$@"; do
		if ((SECONDS >= deadline)); then
			return 1
		fi
		sleep 1
	done
	log "$what is up"
}

tail_log() {
	local file=$1
	if [[ -r $file ]]; then
		printf 'services: last lines of %s:\n' "$file" >&2
		tail -n 20 "$file" >&2 || true
	fi
}

install_missing_packages() {
	local -a missing=()
	if ! command -v pg_ctlcluster >/dev/null || ! command -v pg_isready >/dev/null ||
		! command -v psql >/dev/null || [[ -z $(pg_server_version) ]]; then
		missing+=(postgresql)
	fi
	if [[ ! -x $NATS_BIN ]]; then
		missing+=(nats-server)
	fi
	if ((${#missing[@]} == 0)); then
		log "packages present: postgresql, nats-server"
		return
	fi
	if ! is_root; then
		die "missing Debian package(s): ${missing[*]}; install as root with: apt-get install -y ${missing[*]}"
	fi
	log "installing missing Debian package(s): ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	# The cluster that the postgresql package creates takes its encoding from the
	# locale; C.UTF-8 (always present on Debian) gives UTF8 rather than SQL_ASCII.
	LANG=C.UTF-8 LC_ALL=C.UTF-8 apt-get install -y -q "${missing[@]}" </dev/null
	[[ -x $NATS_BIN ]] || die "nats-server package installed but $NATS_BIN is missing"
}

# The postgresql package normally creates a "main" cluster; create one if it did not.
ensure_pg_cluster() {
	local ver
	ver=$(pg_cluster_version)
	if [[ -n $ver ]]; then
		return
	fi
	ver=$(pg_server_version)
	[[ -n $ver ]] || die "no PostgreSQL server under /usr/lib/postgresql; install Debian package postgresql"
	is_root || die "no PostgreSQL cluster under /etc/postgresql; create one as root with: pg_createcluster $ver main"
	log "creating PostgreSQL cluster $ver/main"
	LANG=C.UTF-8 LC_ALL=C.UTF-8 pg_createcluster "$ver" main
}

# Put trust lines for 127.0.0.1 and ::1 at the top of pg_hba.conf (Debian's default
# asks for a password over TCP) and reload.
allow_pg_trust() {
	local ver=$1
	local hba=/etc/postgresql/$ver/main/pg_hba.conf
	local hint="put 'host all all 127.0.0.1/32 trust' and 'host all all ::1/128 trust' at the top of $hba and reload"
	[[ -f $hba ]] || die "cannot log in as postgres over TCP and $hba does not exist"
	is_root || die "cannot log in as postgres on $PG_HOST:$PG_PORT without a password; as root, $hint"
	if grep -qxF "$HBA_MARKER" "$hba"; then
		die "$hba already has the leadflow trust lines but postgres still cannot log in over TCP"
	fi
	log "adding trust lines for 127.0.0.1/32 and ::1/128 at the top of $hba"
	[[ -e $hba.leadflow.bak ]] || cp -p "$hba" "$hba.leadflow.bak"
	local tmp
	tmp=$(mktemp)
	{
		printf '%s\n' "$HBA_MARKER" 'host all all 127.0.0.1/32 trust' 'host all all ::1/128 trust' ''
		cat "$hba"
	} >"$tmp"
	# cat rather than mv keeps the file's owner and mode.
	cat "$tmp" >"$hba"
	rm -f "$tmp"
	pg_ctlcluster --skip-systemctl-redirect "$ver" main reload
	wait_for "passwordless login as postgres on $PG_HOST:$PG_PORT" pg_login ||
		die "postgres still cannot log in over TCP after reloading; check $hba"
}

ensure_postgres() {
	ensure_pg_cluster
	local ver
	ver=$(pg_cluster_version)
	if pg_ready; then
		log "PostgreSQL is accepting connections on $PG_HOST:$PG_PORT"
	else
		if pg_ctlcluster "$ver" main status >/dev/null 2>&1; then
			log "PostgreSQL $ver/main is running but not accepting connections yet"
		else
			log "starting PostgreSQL $ver/main"
			if ! pg_ctlcluster --skip-systemctl-redirect "$ver" main start; then
				tail_log "/var/log/postgresql/postgresql-$ver-main.log"
				die "could not start PostgreSQL $ver/main"
			fi
		fi
		if ! wait_for "PostgreSQL on $PG_HOST:$PG_PORT" pg_ready; then
			tail_log "/var/log/postgresql/postgresql-$ver-main.log"
			die "PostgreSQL did not accept connections on $PG_HOST:$PG_PORT within ${WAIT_SECONDS}s"
		fi
	fi
	if pg_login; then
		log "role postgres logs in on $PG_HOST:$PG_PORT without a password"
	else
		allow_pg_trust "$ver"
	fi
}

ensure_nats() {
	if nats_port_open; then
		log "NATS port $NATS_HOST:$NATS_PORT already accepts connections"
	else
		log "starting nats-server with JetStream on $NATS_HOST:$NATS_PORT"
		mkdir -p "$NATS_STORE"
		start-stop-daemon --start --oknodo --background --exec "$NATS_BIN" -- \
			-a "$NATS_HOST" -p "$NATS_PORT" -js -sd "$NATS_STORE" -l "$NATS_LOG"
		if ! wait_for "NATS on $NATS_HOST:$NATS_PORT" nats_port_open; then
			tail_log "$NATS_LOG"
			die "NATS did not accept connections on $NATS_HOST:$NATS_PORT within ${WAIT_SECONDS}s"
		fi
	fi
	local info
	info=$(nats_info) || true
	# A server that is already up is never restarted, so one without JetStream is an error.
	case $info in
	INFO*'"jetstream":true'*) log "NATS with JetStream is accepting connections on $NATS_HOST:$NATS_PORT" ;;
	INFO*) die "the NATS server on $NATS_HOST:$NATS_PORT has no JetStream; restart it with -js" ;;
	*) die "$NATS_HOST:$NATS_PORT accepts connections but did not answer like a NATS server" ;;
	esac
}

main() {
	install_missing_packages
	ensure_postgres
	ensure_nats
	log "ready: PostgreSQL on $PG_HOST:$PG_PORT, NATS with JetStream on $NATS_HOST:$NATS_PORT"
}

main "$@"
