#!/usr/bin/env bash
# The whole test suite, as `make test` and CI run it: dependencies, go vet, the gofmt check,
# the unit tests, the privileged tests (root), and the cluster tests against the real test
# cluster (root; the first run builds its Kubernetes binaries, about 7 minutes). Every step runs even when one before it
# failed; a summary closes the output and the exit status is non-zero if any step failed.
set -uo pipefail
cd "$(dirname "$0")/.."

rm -rf .cache/test
steps=(deps vet fmt-check test-unit test-privileged test-cluster)
results=()
failures=0
for step in "${steps[@]}"; do
  echo "==> make $step"
  start=$SECONDS
  if make --no-print-directory "$step"; then
    results+=("ok    $step ($((SECONDS - start))s)")
  else
    results+=("FAIL  $step ($((SECONDS - start))s)")
    failures=$((failures + 1))
  fi
done

echo
echo "==> summary"
for r in "${results[@]}"; do
  echo "  $r"
done
tp=0 tf=0 ts=0
for name in unit privileged cluster; do
  if [[ -f .cache/test/$name.log ]]; then
    p=$(grep -cE '^\s*--- PASS' ".cache/test/$name.log")
    f=$(grep -cE '^\s*--- FAIL' ".cache/test/$name.log")
    s=$(grep -cE '^\s*--- SKIP' ".cache/test/$name.log")
    echo "  $name tests (subtests included): $p passed, $f failed, $s skipped"
    tp=$((tp + p)) tf=$((tf + f)) ts=$((ts + s))
  fi
done
if ((failures > 0)); then
  echo "  $failures of ${#steps[@]} steps failed"
  tf=$((tf > failures ? tf : failures))
else
  echo "  all ${#steps[@]} steps passed"
fi
echo "tests: $tp passed, $tf failed, $ts skipped"
((failures == 0))
