/// Hands out peer ids. The v2 policy gives the lowest free id (SRV-ID-1) in O(log n): ids never
/// used yet come from a counter, ids given back go into a min-heap. Every id in the heap is below
/// the counter, so the heap's minimum, when there is one, is the lowest free id. The v1 policy
/// gives them in turn, as the reference v1 server does (V1-SRV-ID-1).
public struct PeerIDAllocator: Sendable {
    /// How the next id is chosen.
    public enum Policy: Sendable {
        /// The lowest free id (SRV-ID-1).
        case lowestFree
        /// The next id after the last one given that is free, wrapping to 0 (V1-SRV-ID-1).
        case inTurn
    }

    /// Ids are 0..<capacity.
    public let capacity: UInt32
    public let policy: Policy
    private var nextUnused: UInt32 = 0
    private var released = MinHeap()
    private var inUse: Set<UInt32> = []

    public init(capacity: UInt32, policy: Policy = .lowestFree) {
        self.capacity = capacity
        self.policy = policy
    }

    /// How many ids are taken.
    public var count: Int { inUse.count }

    /// Whether `id` is taken.
    public func isAllocated(_ id: UInt32) -> Bool { inUse.contains(id) }

    /// The lowest free id, or nil when all `capacity` are taken (SRV-ID-2).
    public mutating func allocate() -> UInt32? {
        if policy == .inTurn { return allocateInTurn() }
        let id: UInt32
        if let lowest = released.popMinimum() {
            id = lowest
        } else if nextUnused < capacity {
            id = nextUnused
            nextUnused += 1
        } else {
            return nil
        }
        inUse.insert(id)
        return id
    }

    /// V1-SRV-ID-1: from the id after the last one given, the first that is free (at most
    /// `capacity` tries; nil when all are taken, V1-SRV-ID-2).
    private mutating func allocateInTurn() -> UInt32? {
        guard inUse.count < Int(capacity) else { return nil }
        var candidate = nextUnused
        while inUse.contains(candidate) { candidate = candidate + 1 == capacity ? 0 : candidate + 1 }
        inUse.insert(candidate)
        nextUnused = candidate + 1 == capacity ? 0 : candidate + 1
        return candidate
    }

    /// Gives `id` back; it is handed out again before any higher id. Releasing an id that is
    /// not taken does nothing.
    public mutating func release(_ id: UInt32) {
        guard inUse.remove(id) != nil else { return }
        if policy == .lowestFree { released.insert(id) }
    }
}

/// A binary min-heap of ids.
struct MinHeap: Sendable {
    private var items: [UInt32] = []

    var isEmpty: Bool { items.isEmpty }

    mutating func insert(_ value: UInt32) {
        items.append(value)
        var child = items.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard items[child] < items[parent] else { break }
            items.swapAt(child, parent)
            child = parent
        }
    }

    mutating func popMinimum() -> UInt32? {
        guard let first = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var parent = 0
            while true {
                let left = 2 * parent + 1, right = left + 1
                var smallest = parent
                if left < items.count && items[left] < items[smallest] { smallest = left }
                if right < items.count && items[right] < items[smallest] { smallest = right }
                if smallest == parent { break }
                items.swapAt(parent, smallest)
                parent = smallest
            }
        }
        return first
    }
}
