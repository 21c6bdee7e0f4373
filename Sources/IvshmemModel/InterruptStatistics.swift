/// Per-device interrupt counters: what arrived and what became of it. Used by the simulation
/// report and by tests that check masked/disabled/coalesced behaviour.
public struct InterruptStatistics: Sendable, Equatable {
    /// Events that arrived (a peer's doorbell or state change, or a departure notice).
    public var received = 0
    /// MSI-X messages sent or INTx edges raised.
    public var delivered = 0
    /// Lost because Interrupt Control bit 0 was clear (IRQ-EN-1).
    public var droppedDisabled = 0
    /// Lost on a masked vector or a disabled MSI-X/INTx (profiles that drop).
    public var droppedMasked = 0
    /// Latched in the PBA (qemu-rfc profile).
    public var latched = 0
    /// Lost because Bus Master was off (CFG-CMD-*).
    public var droppedNoBusMaster = 0
    public init() {}
}
