#!/usr/bin/env bash
# `make guest`: a real Linux guest drives the emulated ivshmem v2 device.
#
# Our server, an outside peer (`ivshmem2 peer`, a script on its stdin) and `ivshmem2 qemu`,
# which starts QEMU with the device behind QEMU's multi-process PCI proxy. The guest boots
# Debian's kernel with our initramfs (tools/guest/build-image.sh); its init runs lspci and the
# guest program (tools/guest/guest.c), which talks to the outside peer through the device.
# Ends with `guest: PASS`, or `guest: FAIL at STEP` and the guest's last console lines.
#
# usage: tools/guest/run.sh IVSHMEM2_BINARY [WORKDIR]
#   GUEST_ROUNDS   doorbell round trips to measure (default 20)
#   GUEST_ACCEL    tcg or kvm (default: kvm only with kvm_intel/kvm_amd loaded, else tcg)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=$(cd "$(dirname "${1:?usage: run.sh IVSHMEM2_BINARY [WORKDIR]}")" && pwd)/$(basename "$1")
work=${2:-$here/../../.build/guest}
mkdir -p "$work"
work=$(cd "$work" && pwd)
run="$work/run"
rm -rf "$run" && mkdir -p "$run"
rounds=${GUEST_ROUNDS:-20}
started=$(date +%s.%N)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; }
trap cleanup EXIT

step() { echo "guest-run: $*"; }
elapsed() { echo "$(date +%s.%N) $started" | awk '{printf "%.1f", $1 - $2}'; }
fail() {   # step, reason
    echo "guest: FAIL at $1: $2"
    for f in console.log qemu.err peer.log; do
        [ -s "$run/$f" ] || continue
        echo "--- last lines of $f"
        tail -n 25 "$run/$f"
    done
    exit 1
}
# Waits until FILE has a line matching PATTERN, at most SECONDS (polling: the file is written
# by another process). Returns 1 on timeout.
wait_line() {   # file pattern seconds
    local end=$(( $(date +%s) + $3 ))
    while [ "$(date +%s)" -le "$end" ]; do
        grep -q -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}

# --- 1. QEMU and the guest image ----------------------------------------------------------------
if ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
    step "installing qemu-system-x86"
    if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
    { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq qemu-system-x86 >/dev/null; } || fail install "apt-get install qemu-system-x86 failed"
fi
step "building the guest image in $work"
mapfile -t image < <("$here/build-image.sh" "$work") || fail image "tools/guest/build-image.sh failed"
[ "${#image[@]}" = 2 ] && [ -s "${image[0]}" ] && [ -s "${image[1]}" ] || fail image "no kernel or initramfs"
step "kernel $(cat "$work/kernel-package" 2>/dev/null), initramfs $(du -h "${image[1]}" | cut -f1)"

accel=${GUEST_ACCEL:-}
if [ -z "$accel" ]; then
    accel=tcg
    if [ -w /dev/kvm ] && { [ -d /sys/module/kvm_intel ] || [ -d /sys/module/kvm_amd ]; }; then accel=kvm; fi
fi
step "accelerator: $accel$([ "$accel" = tcg ] && echo " (this host's /dev/kvm is not a hardware KVM, or there is none)")"

# --- 2. server and outside peer ---------------------------------------------------------------
sock="$run/ivshmem.sock"
# 1 MiB: 4 KiB state table for 2 peers, two 64 KiB output sections, the rest R/W.
"$bin" server -F -S "$sock" -l 1M -n 2 -V 1 -o 64K > "$run/server.log" 2>&1 &
pids+=($!)
end=$(( $(date +%s) + 10 )); until [ -S "$sock" ]; do [ "$(date +%s)" -le "$end" ] || fail server "no socket after 10 s"; sleep 0.05; done

st=0x1000; out=0x10000; rw=$(( 0x100000 - st - 2 * out ))
peer_out=$(( st + rw )); guest_out=$(( st + rw + out ))
{
    echo "wait-peers 1 60"
    echo "wait 120"                                    # the guest's State write (vector 0)
    echo "dump"
    printf 'shm-read 0x%x 64\n' "$guest_out"           # the guest's output section
    printf 'shm-read 0x%x 32\n' "$st"                   # the guest's note in the R/W section
    printf 'shm-write 0x%x hello from outside, peer 0\n' "$peer_out"
    printf 'shm-write 0x%x outside was here\n' $(( st + 0x100 ))
    echo "state 0x0b5e"
    echo "int 1 0"                                     # INTx to the guest (reaches the irqfd)
    for i in $(seq 1 "$rounds"); do echo "wait 30"; echo "state $(( 1000 + i ))"; done
    # Leave only after the guest's last State write (0xd09e): leaving earlier would zero our
    # State Table entry under the guest while it still polls for the last answer.
    echo "wait 60"
    echo "dump"
    echo "quit"
} > "$run/peer.script"
"$bin" peer -S "$sock" --quiet < "$run/peer.script" > "$run/peer.log" 2>&1 &
peer_pid=$!
pids+=($peer_pid)
wait_line "$run/peer.log" "^ready:" 10 || fail peer "the outside peer did not attach"
grep -q "^ready: id 0 " "$run/peer.log" || fail peer "the outside peer is not peer 0: $(grep '^ready:' "$run/peer.log")"

# --- 3. the VM ----------------------------------------------------------------------------------
step "booting the guest ($rounds round trips)"
boot_start=$(date +%s.%N)
timeout 150 "$bin" qemu -S "$sock" -- qemu-system-x86_64 \
    -machine q35 -accel "$accel" -m 256M -nodefaults -display none -no-reboot \
    -kernel "${image[0]}" -initrd "${image[1]}" \
    -append "console=ttyS0 quiet panic=-1 ivshmem2.rounds=$rounds" \
    -serial stdio -monitor none < /dev/null > "$run/console.log" 2> "$run/qemu.err"
qrc=$?
tr -d '\r' < "$run/console.log" > "$run/console.tmp" && mv "$run/console.tmp" "$run/console.log"   # serial line ends
vm_time=$(echo "$(date +%s.%N) $boot_start" | awk '{printf "%.1f", $1 - $2}')
[ $qrc = 124 ] && fail vm "QEMU still running after 150 s (killed)"

# The peer ends with its script; it must not hang.
for _ in $(seq 1 200); do kill -0 "$peer_pid" 2>/dev/null || break; sleep 0.05; done
kill -0 "$peer_pid" 2>/dev/null && fail peer "the outside peer did not finish its script (it waits for a doorbell that never came)"

# --- 4. what each side saw ----------------------------------------------------------------------
grep -q "^guest-fail:" "$run/console.log" && fail "$(grep -m1 '^guest-fail:' "$run/console.log" | cut -d: -f2 | tr -d ' ')" "$(grep -m1 '^guest-fail:' "$run/console.log")"
grep -q "^guest-step: booted" "$run/console.log" || fail boot "the guest's init never ran (QEMU exit status $qrc)"
grep -q "\[110a:4106\]" "$run/console.log" || fail lspci "lspci in the guest does not show 110a:4106"
lspci_dev=$(sed -n '/guest-step: lspci$/,/guest-step: lspci done/p' "$run/console.log")
grep -q "class \[ff00\]" <<<"$lspci_dev" || fail lspci "lspci in the guest does not show class ff00"
grep -q "Region 0: Memory at .*(32-bit, non-prefetchable) \[size=4K\]" <<<"$lspci_dev" || fail lspci "lspci in the guest shows no 4 KiB BAR0"
grep -q "Region 2: Memory at .*(64-bit, prefetchable) \[size=1M\]" <<<"$lspci_dev" || fail lspci "lspci in the guest shows no 1 MiB 64-bit BAR2"
grep -q "Interrupt: pin A" <<<"$lspci_dev" || fail lspci "lspci in the guest shows no INTx pin A"
grep -q "Vendor Specific Information" <<<"$lspci_dev" || fail lspci "no vendor-specific capability in the guest's lspci"
grep -q "MSI-X" <<<"$lspci_dev" && fail lspci "the guest sees an MSI-X capability (the device must be in INTx mode)"
grep -q "^guest-result: PASS" "$run/console.log" || fail guest-program "the guest program did not finish (QEMU exit status $qrc)"
[ $qrc = 0 ] || fail vm "ivshmem2 qemu exited with $qrc"
grep -q "^state-table: peer 1 0x6e57 active" "$run/peer.log" || fail peer-observes-state "the outside peer did not see the guest's State 0x6e57"
grep -q 'shm: .*"hello from the guest, peer 1"' "$run/peer.log" || fail peer-observes-shm "the outside peer did not read the guest's output section"
grep -q 'shm: .*"guest was here"' "$run/peer.log" || fail peer-observes-shm "the outside peer did not read the guest's R/W note"
waited=$(grep -c "^waited:" "$run/peer.log")
[ "$waited" = $(( rounds + 2 )) ] || fail peer-observes-doorbell "the outside peer saw $waited interrupts, expected $(( rounds + 2 )) (State, $rounds doorbells, last State)"
grep -q "^state-table: peer 1 0xd09e active" "$run/peer.log" || fail peer-observes-state "the outside peer did not see the guest's last State 0xd09e"
grep -q "INTx pulses [1-9]" "$run/qemu.err" || fail intx "the outside peer's doorbell produced no INTx pulse in the guest's device"

echo "--- lspci -nn -vvv in the guest"
grep -v "^guest-step\|libkmod" <<<"$lspci_dev"
echo "--- guest program"
grep "^guest-ok:" "$run/console.log"
echo "--- outside peer"
grep -E "^(waited|shm|state-table: peer [01] )" "$run/peer.log" | sort | uniq -c | sed 's/^ *//'
echo "--- device endpoint"
grep "^ivshmem2 qemu: \(served\|INTx\|findings\|finding\)" "$run/qemu.err"
echo "--- interrupt checks"
if [ "$accel" = tcg ]; then
    echo "skipped: guest-side INTx delivery (TCG: QEMU's proxy raises INTx only through a KVM irqfd; the guest polled shared memory)"
else
    echo "skipped: guest-side INTx delivery (the guest program polls; a kernel driver would be needed to take the interrupt)"
fi
echo "--- times"
echo "boot to init: $(grep -m1 '^guest-step: booted' "$run/console.log" | awk '{print $3}') s guest time; VM run (start to power-off, $rounds rounds): $vm_time s; make guest total: $(elapsed) s"
echo "guest: PASS"
