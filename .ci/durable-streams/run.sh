#!/usr/bin/env bash
# Runs the Durable Streams conformance suite (pinned in package.json) against
# the messages server on one database, and fails when fewer tests pass than
# the bar.
#
#   .ci/durable-streams/run.sh DATABASE_URL MIN_PASSED
#
# DATABASE_URL is a postgres:// URL or sqlite:path/to/file.db, as for the
# server. Install the suite first with `npm ci` in this folder. The server is
# built from the repository, started on a free loopback port with a short
# long-poll timeout, and stopped at the end.
set -euo pipefail

here="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../suite.sh
source "$here/../suite.sh"
want_args 2 "DATABASE_URL MIN_PASSED" "$@"
db_url=$1
bar=$2
need_node 20 19 "the suite's vitest"
need_installed "$here/node_modules/@durable-streams/server-conformance-tests" "conformance suite"

start_server "$db_url" 500ms

status=0
(cd "$here" && CONFORMANCE_TEST_URL="http://$addr" npx vitest run conformance.test.mjs \
	--reporter=default --reporter=json --outputFile.json="$work/results.json") || status=$?

if [[ ! -s $work/results.json ]]; then
	echo "the suite wrote no results (vitest exit $status)" >&2
	server_log_tail 50
	exit 1
fi
# Name every failed test, then the counts.
node -e '
const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
for (const f of r.testResults) for (const a of f.assertionResults)
  if (a.status === "failed") console.log("failed: " + a.fullName);
' "$work/results.json"
read -r passed failed skipped < <(node -e '
const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
console.log(r.numPassedTests, r.numFailedTests, r.numPendingTests + r.numTodoTests);
' "$work/results.json")
echo "durable-streams conformance on ${db_url%%:*}: passed=$passed failed=$failed skipped=$skipped (bar: $bar passed)"
if ((passed < bar)); then
	echo "below the bar: $passed < $bar; the server's log ends with:" >&2
	server_log_tail 40
	exit 1
fi
