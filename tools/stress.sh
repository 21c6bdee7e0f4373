#!/usr/bin/env bash
# `make stress`: the timing-dependent tests (processes, sockets, threads, simulations) and the
# conformance suite, N rounds, while two busy loops compete for the CPUs. A test that passes
# here does not depend on the scheduler being kind. Prints one line per round and a summary;
# exits 1 when any round failed, keeping each failing round's log under .build/stress/.
#
#   STRESS_N        rounds (default 20)
#   STRESS_BUSY     busy loops next to the tests (default 2)
#   STRESS_FILTER   the swift-test filter (default: the process, socket and simulation suites)
#   IVSHMEM2_CHURN_CYCLES   connect/disconnect cycles of the server churn test (default here 10000)
set -u
cd "$(dirname "$0")/.."
rounds=${STRESS_N:-20}
busy=${STRESS_BUSY:-2}
filter=${STRESS_FILTER:-'PeerProcessTests|SimulationTests|AttachedDeviceTests|ClientValidationTests|ServerProcessTests|EmbeddedServerTests|HostilePeerTests|ScriptRunnerTests|DriverCheckingScriptTests'}
export IVSHMEM2_CHURN_CYCLES=${IVSHMEM2_CHURN_CYCLES:-10000}
bin=.build/debug/ivshmem2
logs=.build/stress
mkdir -p "$logs"
rm -f "$logs"/round-*.log

pids=()
stop_busy() { [ ${#pids[@]} -gt 0 ] && kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; }
trap stop_busy EXIT
for _ in $(seq 1 "$busy"); do
    ( while :; do :; done ) &
    pids+=($!)
done
echo "stress: $rounds round(s) of [swift test --filter '$filter'] and [ivshmem2 conformance] next to $busy busy loop(s)"

passed=0
failed=0
start=$(date +%s)
for round in $(seq 1 "$rounds"); do
    for part in tests conformance; do
        log="$logs/round-$round-$part.log"
        t0=$(date +%s)
        if [ "$part" = tests ]; then
            swift test --skip-build --no-parallel --filter "$filter" >"$log" 2>&1
        else
            "$bin" conformance >"$log" 2>&1
        fi
        rc=$?
        t1=$(date +%s)
        if [ $rc -eq 0 ]; then
            passed=$((passed + 1))
            rm -f "$log"
            echo "round $round $part: ok ($((t1 - t0)) s)"
        else
            failed=$((failed + 1))
            echo "round $round $part: FAILED ($((t1 - t0)) s, exit $rc), log: $log"
            grep -E "✘|FAIL|error:" "$log" | head -20 | sed 's/^/    /'
        fi
    done
done
echo "stress: $((($(date +%s) - start) / 60)) min"
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
