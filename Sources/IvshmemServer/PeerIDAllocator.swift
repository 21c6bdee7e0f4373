/// Hands out the lowest free peer id (SRV-ID-1) in O(log n): ids never used yet come from a
/// counter, ids given back go into a min-heap. Every id in the heap is below the counter, so
/// the heap's minimum, when there is one, is the lowest free id.
public struct PeerIDAllocator: Sendable {
    /// Ids are 0..<capacity.
    public let capacity: UInt32
    private var nextUnused: UInt32 = 0
    private var released = MinHeap()
    private var inUse: Set<UInt32> = []

    public init(capacity: UInt32) { self.capacity = capacity }

    /// How many ids are taken.
    public var count: Int { inUse.count }

    /// Whether `id` is taken.
    public func isAllocated(_ id: UInt32) -> Bool { inUse.contains(id) }

    /// The lowest free id, or nil when all `capacity` are taken (SRV-ID-2).
    public mutating func allocate() -> UInt32? {
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

    /// Gives `id` back; it is handed out again before any higher id. Releasing an id that is
    /// not taken does nothing.
    public mutating func release(_ id: UInt32) {
        guard inUse.remove(id) != nil else { return }
        released.insert(id)
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
