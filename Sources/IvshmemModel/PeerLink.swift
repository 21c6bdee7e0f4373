/// What a doorbell did. REG-DB-*
public enum DoorbellOutcome: Sendable, Equatable {
    case delivered
    /// No such peer, or the peer is not connected: no effect (REG-DB-3).
    case inactiveTarget
    /// The target has fewer vectors: no effect (REG-DB-2).
    case noSuchVector(targetVectors: Int)
    /// The link to the other peers is down (server gone).
    case linkDown
    /// The target is active but its eventfd for this vector has not arrived yet: the event is
    /// lost, and it is not the driver's fault (no finding).
    case notYetAnnounced
    /// The target's eventfd could not take the signal without blocking (its counter is full:
    /// the peer stopped reading): the doorbell is dropped, never waited for (WIRE-CLI-21).
    case dropped(String)
    /// Signalling the target failed (its eventfd is unusable).
    case failed(String)
}

/// How a device reaches the other peers. The model calls it for doorbells and state-change
/// notifications and never knows whether the peers live in this process (`LocalFabric`) or
/// behind a server socket (the transport). Inbound events come back through
/// `IvshmemDevice.receiveEvent(vector:)` and `peerDeparted(id:)`.
///
/// Implementations are called without any device lock held and may call back into devices.
public protocol PeerLink: AnyObject, Sendable {
    /// Signals `vector` on peer `target` on behalf of peer `source`.
    func ring(from source: UInt32, target: UInt32, vector: UInt32) -> DoorbellOutcome
    /// Signals vector 0 on every active peer except `source` (IRQ-STATE-1).
    func broadcastStateChange(from source: UInt32)
    /// Whether `peer` is currently connected.
    func isActive(_ peer: UInt32) -> Bool
}

/// Where a device's interrupts go: a platform's interrupt controller, or a test.
public protocol InterruptSink: AnyObject, Sendable {
    /// An MSI-X message was sent: a dword write of `data` to `address` (IRQ-MSIX-1).
    func msixMessage(from device: IvshmemDevice, vector: Int, address: UInt64, data: UInt32)
    /// An edge on the INTx pin (IRQ-INTX-1).
    func intxEdge(from device: IvshmemDevice, pin: UInt8)
}
