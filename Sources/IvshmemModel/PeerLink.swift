@_exported import enum IvshmemSpec.DoorbellOutcome

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
