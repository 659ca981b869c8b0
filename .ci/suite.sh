# Sourced by the scripts that run a suite against the messages server,
# once they have set $here to their own folder:
#
#   here="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
#   source "$here/../suite.sh"
#   want_args 1 DATABASE_URL "$@"
#   need_node 18 0 "the client"
#   need_installed "$here/node_modules/some-package" "client"
#   start_server "$db_url" LONG_POLL_TIMEOUT
#
# It sets $root to the repository and puts Go on the PATH. want_args exits
# with the usage unless the script got N arguments. need_node and
# need_installed exit unless Node.js is recent enough and the suite's
# packages are installed (npm ci in $here). start_server builds the server
# from the repository into a fresh temporary folder ($work), starts it on a
# free loopback port with the given database and long-poll timeout,
# logging to $work/server.log, and sets $addr to its host:port. On exit
# the server is stopped and $work removed. server_log_tail prints the end
# of the server's log to stderr.

root="$(cd -- "$here/../.." && pwd)"
export PATH="/usr/local/go/bin:$PATH"

want_args() {
	local n=$1 names=$2
	shift 2
	if [[ $# -ne $n ]]; then
		echo "usage: $0 $names" >&2
		exit 2
	fi
}

need_node() {
	local major=$1 minor=$2 who=$3
	node -e 'const [a, b] = process.versions.node.split(".").map(Number); const [x, y] = process.argv.slice(1).map(Number); process.exit(a > x || (a === x && b >= y) ? 0 : 1)' "$major" "$minor" ||
		{ echo "$who needs Node.js $major.$minor or later; found $(node --version 2>/dev/null || echo none)" >&2; exit 1; }
}

need_installed() {
	local dir=$1 what=$2
	[[ -d $dir ]] || { echo "$what not installed: run npm ci in $here" >&2; exit 1; }
}

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

	# The server picks a free port itself and says which in its "serving"
	# line. The log exists before the server starts, so that the first
	# look for that line does not fail on a missing file.
	: >"$work/server.log"
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
