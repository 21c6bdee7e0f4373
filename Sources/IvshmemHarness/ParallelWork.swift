import IvshmemSync

/// Runs independent pieces of work on a few OS threads (cases mostly wait on servers, event
/// loops and timeouts, so several per CPU keep the machine busy).
enum ParallelWork {
    /// `body(i)` for every `i` in `0..<count`, up to `width` at a time; the items for which
    /// `exclusive(i)` holds run afterwards, one at a time, with nothing else running. Results
    /// come back in index order; `finished(i, result, done)` sees each as it completes (calls
    /// never overlap).
    static func map<T: Sendable>(_ count: Int, width: Int, exclusive: (Int) -> Bool = { _ in false },
                                 _ body: @escaping @Sendable (Int) -> T,
                                 finished: @escaping @Sendable (Int, T, Int) -> Void) -> [T] {
        let progress = Locked(ParallelProgress<T>(results: Array(repeating: nil, count: count)))
        let alone = (0..<count).map(exclusive)
        let order = (0..<count).filter { !alone[$0] } + (0..<count).filter { alone[$0] }
        let shared = alone.filter { !$0 }.count
        let work: @Sendable (Int) -> Void = { end in
            while true {
                let i: Int? = progress.withLock { p in
                    guard p.next < end else { return nil }
                    defer { p.next += 1 }
                    return order[p.next]
                }
                guard let i else { return }
                let r = body(i)
                progress.withLock { p in
                    p.results[i] = r
                    p.done += 1
                    finished(i, r, p.done)
                }
            }
        }
        let threads = max(1, min(width, shared))
        if threads == 1 {
            work(shared)
        } else {
            let pool = (0..<threads).map { _ in CheckThread { work(shared) } }
            for t in pool { t.join() }
        }
        work(count)
        return progress.withLock { p in p.results.map { $0! } }
    }
}

/// How far a ``ParallelWork/map(_:width:exclusive:_:finished:)`` has got.
struct ParallelProgress<T> {
    var next = 0
    var done = 0
    var results: [T?]
}
