import IvshmemModel
import IvshmemPlatform
import IvshmemPosix

/// What a `wait irq` found: the interrupt, or nothing — and whether it stopped early because
/// nothing more could come.
struct InterruptWaitOutcome {
    var record: InterruptRecord?
    /// True when the wait ended before its timeout because the server and every peer were idle.
    var idle = false
}

extension Session {
    /// Waits for the first interrupt after `cursor` that `predicate` accepts. With ``failFast``
    /// it stops early once everything is idle twice in a row: the embedded server has dealt with
    /// every connection and every peer's event loop has handled what was signalled to it — from
    /// then on only a script statement can cause an interrupt, and the script is waiting here.
    func awaitInterrupt(_ p: HarnessPeer, after cursor: Int, timeout: Double, _ predicate: @escaping (InterruptRecord) -> Bool) -> InterruptWaitOutcome {
        guard failFast else { return InterruptWaitOutcome(record: p.platform.interrupts.wait(after: cursor, timeout: timeout, where: predicate)) }
        let deadline = Monotonic.now() + timeout
        var slice = 0.02
        var idleRounds = 0
        while true {
            let left = deadline - Monotonic.now()
            if let r = p.platform.interrupts.wait(after: cursor, timeout: max(0, min(slice, left)), where: predicate) { return InterruptWaitOutcome(record: r) }
            if left <= slice { return InterruptWaitOutcome(record: nil) }
            idleRounds = isIdle() ? idleRounds + 1 : 0
            if idleRounds >= 2 {
                // One last look: an interrupt may have landed while the loops settled.
                return InterruptWaitOutcome(record: p.platform.interrupts.wait(after: cursor, timeout: 0, where: predicate), idle: true)
            }
            slice = min(slice * 2, 0.2)
        }
    }

    /// The embedded server holds only the script's live connections and has handled every
    /// other, and every peer's event loop has caught up.
    func isIdle() -> Bool {
        let live = peers.count + clients.count
        guard harness.waitForServerConnections(live, timeout: 0) else { return false }
        return peers.values.allSatisfy { !$0.link.isLinkUp || $0.link.settle(timeout: 1) }
    }
}

/// Why an awaited interrupt did not come, from the target device's interrupt counters and its
/// vector's mask: the events that arrived since the last interrupt the script consumed, and the
/// stage that stopped them (spec §9: Interrupt Control, MSI-X masks, Bus Master).
enum InterruptDiagnosis {
    struct Fate {
        var text: String
        var requirement: String
    }

    static func explain(_ p: HarnessPeer, vector: Int?, since before: InterruptStatistics) -> Fate? {
        let now = p.device.statistics
        let on = vector.map { " on vector \($0)" } ?? ""
        func count(_ n: Int) -> String { n == 1 ? "an event" : "\(n) events" }
        if now.droppedDisabled > before.droppedDisabled {
            return Fate(text: "\(count(now.droppedDisabled - before.droppedDisabled)) received\(on) while Interrupt Control bit 0 was 0: dropped", requirement: "IRQ-EN-1")
        }
        if now.latched > before.latched {
            return Fate(text: "\(count(now.latched - before.latched)) received\(on) while masked: pending in the PBA, sent when unmasked", requirement: "MSIX-PBA-3")
        }
        if now.droppedMasked > before.droppedMasked {
            let masked = vector.map { vectorMasked(p, $0) } ?? false
            let why = masked ? "masked (MSI-X table entry \(vector!) Vector Control bit 0)" : "MSI-X disabled, function-masked or INTx disabled"
            let id = p.device.profile.maskedEvents == .latch ? "MSIX-PBA-4" : "MSIX-PBA-1"
            return Fate(text: "\(count(now.droppedMasked - before.droppedMasked)) received\(on) while \(why): dropped", requirement: id)
        }
        if now.droppedNoBusMaster > before.droppedNoBusMaster {
            return Fate(text: "\(count(now.droppedNoBusMaster - before.droppedNoBusMaster)) received\(on) with Bus Master off: the message write never happened", requirement: "CFG-CMD-9")
        }
        if now.received == before.received {
            return Fate(text: "no event reached this device since the last interrupt the script waited for (was the doorbell written to the right peer, vector and register?)", requirement: "REG-DB-3")
        }
        return nil
    }

    /// Vector Control bit 0 of MSI-X table entry `vector` (read without a trace record).
    static func vectorMasked(_ p: HarnessPeer, _ vector: Int) -> Bool {
        guard p.device.configuration.interrupts == .msix, vector < p.device.configuration.vectors else { return false }
        return p.device.barRead(1, offset: UInt64(vector * 16 + 12), size: 4) & 1 != 0
    }
}
