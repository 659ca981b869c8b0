# Sourced by the scripts that run a suite against the messages server:
#
#   source "$root/.ci/server.sh"
#   start_server DATABASE_URL LONG_POLL_TIMEOUT
#
# start_server builds the server from the repository at $root into a fresh
# temporary folder ($work), starts it on a free loopback port with the given
# database and long-poll timeout, logging to $work/server.log, and sets
# $addr to its host:port. On exit the server is stopped and $work removed.
# server_log_tail prints the end of the server's log to stderr.

work=""
server_pid=""
addr=""

cleanup_server() {
	if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
		kill -TERM "$server_pid"
		wait "$server_pid" || true
	fi
	if [[ -n $work ]]; then
		rm -rf "$work"
	fi
}

start_server() {
	local db_url=$1 long_poll=$2
	work="$(mktemp -d)"
	trap cleanup_server EXIT
	(cd "$root" && go build -o "$work/messages" ./cmd/messages)

	# The server picks a free port itself and says which in its "serving" line.
	"$work/messages" -addr 127.0.0.1:0 -database-url "$db_url" -long-poll-timeout "$long_poll" \
		-log-level info 2>"$work/server.log" &
	server_pid=$!
	for ((i = 0; i < 300; i++)); do
		addr="$(sed -n 's/.*msg=serving addr=\([0-9.:]*\).*/\1/p' "$work/server.log" | head -n 1)"
		[[ -n $addr ]] && break
		kill -0 "$server_pid" 2>/dev/null || break
		sleep 0.1
	done
	if [[ -z $addr ]]; then
		echo "the server did not start:" >&2
		cat "$work/server.log" >&2
		exit 1
	fi
	echo "server on http://$addr ($db_url)"
}

server_log_tail() {
	tail -n "${1:-40}" "$work/server.log" >&2
}
