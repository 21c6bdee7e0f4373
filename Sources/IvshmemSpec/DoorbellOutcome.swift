/// What a doorbell did (REG-DB-*): the model's view of a ring and what a link reports when it
/// signals a peer's vector. Defined at the spec layer so that the device model and the
/// server link, which do not know each other, speak the same outcome.
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

