#!/usr/bin/env bash
# Runs `go test -v "$@"`, keeps the whole output in .cache/test/<name>.log, prints it without
# the per-test progress lines (=== RUN, --- PASS, ...), and ends with one line of counts
# (subtests included):
#   <name>: N passed, N failed, N skipped
# Usage: scripts/gotest.sh NAME [go test flags and packages]
set -uo pipefail
cd "$(dirname "$0")/.."
name=$1
shift
mkdir -p .cache/test
log=.cache/test/$name.log

go test -v "$@" 2>&1 | tee "$log" | grep --line-buffered -vE '^\s*(=== (RUN|PAUSE|CONT|NAME)|--- (PASS|SKIP))'
status=${PIPESTATUS[0]}

passed=$(grep -cE '^\s*--- PASS' "$log")
failed=$(grep -cE '^\s*--- FAIL' "$log")
skipped=$(grep -cE '^\s*--- SKIP' "$log")
if [[ $status -ne 0 && $failed -eq 0 ]]; then
  failed=1 # a build error or a panic fails without a --- FAIL line
fi
echo "$name: $passed passed, $failed failed, $skipped skipped (full output: $log)"
exit "$status"
