/// A log that keeps the most recent `capacity` entries and counts the rest.
///
/// Everything a peer records because of what others send it (link events, findings, interrupt
/// records, trace lines) goes into one of these: a flood of malformed messages or doorbells
/// from a hostile peer then costs a fixed amount of memory, and the dropped count says how much
/// history was lost. Positions are absolute (``total`` counts every entry ever appended), so a
/// reader that remembers a position keeps working after old entries were dropped.
public struct BoundedLog<Element>: Sendable where Element: Sendable {
    public let capacity: Int
    private var ring: [Element] = []
    /// Where the oldest kept entry sits in `ring` once it is full.
    private var oldest = 0
    /// Every entry ever appended, kept or dropped.
    public private(set) var total = 0

    public init(capacity: Int) {
        precondition(capacity > 0, "a bounded log needs room for at least one entry")
        self.capacity = capacity
    }

    /// Entries dropped to stay within `capacity`.
    public var dropped: Int { total - ring.count }
    public var count: Int { ring.count }
    public var isEmpty: Bool { ring.isEmpty }

    public mutating func append(_ e: Element) {
        total += 1
        if ring.count < capacity {
            ring.append(e)
        } else {
            ring[oldest] = e
            oldest = (oldest + 1) % capacity
        }
    }

    public mutating func removeAll() {
        ring.removeAll()
        oldest = 0
    }

    /// The kept entries, oldest first.
    public var elements: [Element] {
        oldest == 0 ? ring : Array(ring[oldest...] + ring[..<oldest])
    }

    /// The kept entries at absolute positions `position` and later (older ones may have been
    /// dropped: the result then starts at the oldest kept entry).
    public func elements(since position: Int) -> [Element] {
        let firstKept = total - ring.count
        let skip = max(0, position - firstKept)
        guard skip < ring.count else { return [] }
        return (skip..<ring.count).map { ring[(oldest + $0) % ring.count] }
    }

    /// The newest entry.
    public var last: Element? {
        guard !ring.isEmpty else { return nil }
        return ring[(oldest + ring.count - 1) % ring.count]
    }
}
