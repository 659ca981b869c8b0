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

if [[ $# -ne 1 ]]; then
	echo "usage: $0 DATABASE_URL" >&2
	exit 2
fi
db_url=$1
here="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd -- "$here/../.." && pwd)"
export PATH="/usr/local/go/bin:$PATH"

node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)' ||
	{ echo "the client needs Node.js 18 or later; found $(node --version 2>/dev/null || echo none)" >&2; exit 1; }
[[ -d $here/node_modules/@durable-streams/client ]] ||
	{ echo "client not installed: run npm ci in $here" >&2; exit 1; }

# The README shows example.mjs (without its opening comment): keep them one.
readme_example="$(awk '/^```js$/ { on = 1; next } on && /^```$/ { exit } on' "$root/README.md")"
file_example="$(sed '1,/^$/d' "$here/example.mjs")"
if [[ $readme_example != "$file_example" ]]; then
	diff <(printf '%s\n' "$readme_example") <(printf '%s\n' "$file_example") >&2 || true
	echo "the README's JavaScript example differs from example.mjs (above: README, then the file)" >&2
	exit 1
fi

# shellcheck source=../server.sh
source "$root/.ci/server.sh"
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
