import IvshmemPosix
import Testing

/// Descriptor accounting for leak checks: what a test closed may still be closing on another
/// thread (an event loop finishing), so wait briefly for the count to come back rather than
/// sampling it once.
public enum DescriptorCount {
    /// This process's open descriptors now.
    public static func current() -> Int { FileDescriptor.openCount() }

    /// This process's open descriptors once they are at most `baseline` (or after `timeout`).
    public static func settle(toAtMost baseline: Int, timeout: Double = 3) -> Int {
        _ = Monotonic.poll(timeout: timeout, interval: 0.02) { FileDescriptor.openCount() <= baseline }
        return FileDescriptor.openCount()
    }
}

/// Runs `body` and checks the process holds no more descriptors afterwards than before
/// (every socket, eventfd and mapping released).
public func expectNoDescriptorLeak(_ what: String = #function, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void) throws {
    let baseline = FileDescriptor.openCount()
    try body()
    let after = DescriptorCount.settle(toAtMost: baseline)
    #expect(after <= baseline, "descriptor leak in \(what): \(baseline) before, \(after) after: \(FileDescriptor.openDescriptors())", sourceLocation: sourceLocation)
}
