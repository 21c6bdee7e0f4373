import IvshmemSync

/// Which side of the transport committed a finding.
public enum VirtioSide: String, Sendable { case frontEnd = "front-end", backEnd = "back-end" }

/// A transport violation seen by one side of a virtio-over-ivshmem link, with the requirement
/// of spec/virtio-ivshmem.md it breaks (§12). The side that *saw* it records it; `culprit` is the
/// side that broke the rule.
public struct VirtioFinding: Sendable, Equatable, CustomStringConvertible {
    public var requirement: String
    public var culprit: VirtioSide
    public var message: String
    public var description: String { "[\(requirement)] \(culprit.rawValue): \(message)" }
}

/// The findings one side recorded, in order. Thread-safe.
public final class VirtioFindingLog: Sendable {
    private let entries = Locked<[VirtioFinding]>([])
    private let handler = Locked<(@Sendable (VirtioFinding) -> Void)?>(nil)

    public init() {}

    public func record(_ requirement: String, _ culprit: VirtioSide, _ message: String) {
        let f = VirtioFinding(requirement: requirement, culprit: culprit, message: message)
        entries.withLock { $0.append(f) }
        handler.withLock { $0 }?(f)
    }

    public var all: [VirtioFinding] { entries.withLock { $0 } }
    public var requirements: [String] { all.map(\.requirement) }
    public func clear() { entries.withLock { $0.removeAll() } }
    /// Called for every finding as it is recorded (on the recording thread).
    public func onFinding(_ h: (@Sendable (VirtioFinding) -> Void)?) { handler.withLock { $0 = h } }
}
