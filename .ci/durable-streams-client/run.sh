#!/usr/bin/env bash
# Runs the official Durable Streams TypeScript client (pinned in
# package.json) against the messages server on one database: first the
# README's example (example.mjs), whose output is checked, then the
# interoperability test (interop.mjs). Fails on any mismatch.
#
#   .ci/durable-streams-client/run.sh DATABASE_URL
#
# DATABASE_URL is a postgres:// URL or sqlite:path/to/file.db, as for the
# server. Install the client first with `npm ci` in this folder. The server
# is built from the repository, started on a free loopback port, and
# stopped at the end.
set -euo pipefail

here="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../suite.sh
source "$here/../suite.sh"
want_args 1 DATABASE_URL "$@"
db_url=$1
need_node 18 0 "the client"
need_installed "$here/node_modules/@durable-streams/client" "client"

# The README shows example.mjs (without its opening comment): keep them one.
readme_example="$(awk '/^```js$/ { on = 1; next } on && /^```$/ { exit } on' "$root/README.md")"
file_example="$(sed '1,/^$/d' "$here/example.mjs")"
if [[ $readme_example != "$file_example" ]]; then
	diff <(printf '%s\n' "$readme_example") <(printf '%s\n' "$file_example") >&2 || true
	echo "the README's JavaScript example differs from example.mjs (above: README, then the file)" >&2
	exit 1
fi

start_server "$db_url" 2s

failed() {
	echo "$1; the server's log ends with:" >&2
	server_log_tail 40
	exit 1
}

# The README's example must print what it wrote, then what its live reader saw.
want=$'ann: message 1\nann: message 2\nann: message 3\nlive reader saw 3 messages'
got="$(cd "$here" && timeout 60 node example.mjs "http://$addr")" || failed "example.mjs failed"
if [[ $got != "$want" ]]; then
	printf 'example.mjs printed:\n%s\nwant:\n%s\n' "$got" "$want" >&2
	failed "example.mjs printed something else"
fi
echo "example.mjs: ok"

(cd "$here" && timeout 600 node interop.mjs "http://$addr") || failed "the interoperability test failed on ${db_url%%:*}"
