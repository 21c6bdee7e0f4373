import Foundation
import IvshmemModel
import IvshmemPosix
import IvshmemSync

/// One recorded event: a register access, an interrupt, a wire message or a finding.
public struct TraceEvent: Sendable, Equatable, Codable {
    public enum Kind: String, Sendable, Codable {
        case configRead = "config-read", configWrite = "config-write"
        case mmioRead = "mmio-read", mmioWrite = "mmio-write"
        case pioRead = "pio-read", pioWrite = "pio-write"
        case shmRead = "shm-read", shmWrite = "shm-write"
        case interrupt, wire, finding, lifecycle
    }
    /// Seconds since the recorder started.
    public var time: Double
    public var peer: String
    public var kind: Kind
    public var address: UInt64?
    public var size: Int?
    public var value: UInt64?
    public var detail: String?
    public var requirement: String?

    public var line: String {
        var s = String(format6(time)) + " \(peer) \(kind.rawValue)"
        if let a = address { s += " 0x" + String(a, radix: 16) }
        if let n = size { s += "/\(n)" }
        if let v = value { s += " = 0x" + String(v, radix: 16) }
        if let d = detail { s += " " + d }
        if let r = requirement { s += " [\(r)]" }
        return s
    }
}

func format6(_ t: Double) -> String {
    let us = Int((t * 1e6).rounded())
    let frac = String(us % 1_000_000)
    return "\(us / 1_000_000)." + String(repeating: "0", count: 6 - frac.count) + frac
}

/// Records trace events from any thread, in order. Keeps the newest `capacity` events (a case
/// that loops or a peer that floods costs bounded memory); ``dropped`` counts the rest.
public final class TraceRecorder: Sendable {
    public static let defaultCapacity = 200_000
    /// When the recorder started (``Monotonic/now()``): event times count from here.
    public let start = Monotonic.now()
    private let events: Locked<BoundedLog<TraceEvent>>

    public init(capacity: Int = TraceRecorder.defaultCapacity) {
        events = Locked(BoundedLog(capacity: capacity))
    }

    public func record(_ peer: String, _ kind: TraceEvent.Kind, address: UInt64? = nil, size: Int? = nil, value: UInt64? = nil, detail: String? = nil, requirement: String? = nil) {
        let e = TraceEvent(time: Monotonic.now() - start, peer: peer, kind: kind, address: address, size: size, value: value, detail: detail, requirement: requirement)
        events.withLock { $0.append(e) }
    }

    public var all: [TraceEvent] { events.withLock { $0.elements } }
    public func last(_ n: Int) -> [TraceEvent] { events.withLock { $0.elements(since: max(0, $0.total - n)) } }
    /// Events kept.
    public var count: Int { events.withLock { $0.count } }
    /// Events dropped to stay within the capacity.
    public var dropped: Int { events.withLock { $0.dropped } }

    /// One event as a JSON line (with the newline).
    public static func line(_ e: TraceEvent) -> String { line(e, context: []) }

    /// One event of a case as a JSON line with the case's `file`, `case` and `profile`, its
    /// `time` counted from `runStart` (``Monotonic/now()`` when the run began), so the records
    /// of a whole run share one clock.
    public static func line(_ e: TraceEvent, of result: CaseResult, since runStart: Double) -> String {
        var e = e
        e.time += result.traceStart - runStart
        return line(e, context: ["\"file\":\(jsonString(result.script))", "\"case\":\(jsonString(result.caseName))", "\"profile\":\(jsonString(result.profile))"])
    }

    static func line(_ e: TraceEvent, context: [String]) -> String {
        var fields = ["\"time\":\(format6(e.time))"] + context + ["\"peer\":\(jsonString(e.peer))", "\"kind\":\"\(e.kind.rawValue)\""]
        if let a = e.address { fields.append("\"address\":\(a)") }
        if let s = e.size { fields.append("\"size\":\(s)") }
        if let v = e.value { fields.append("\"value\":\(v)") }
        if let d = e.detail { fields.append("\"detail\":\(jsonString(d))") }
        if let r = e.requirement { fields.append("\"requirement\":\(jsonString(r))") }
        return "{" + fields.joined(separator: ",") + "}\n"
    }
}

/// A JSON string literal (Foundation does the escaping).
public func jsonString(_ s: String) -> String {
    guard let data = try? JSONSerialization.data(withJSONObject: s, options: [.fragmentsAllowed, .withoutEscapingSlashes]) else { return "\"\"" }
    return String(decoding: data, as: UTF8.self)
}
