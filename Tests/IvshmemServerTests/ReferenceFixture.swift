import Foundation
import IvshmemTestSupport

/// The capture of what the reference server sent three clients
/// (`fixtures/reference/v2-server-3-peers/*.jsonl`), one record per message.
struct FixtureRecord: Decodable, Equatable, CustomStringConvertible {
    var who: String
    var type: String
    var len: UInt32
    var body: String
    var nfds: Int

    var typeNumber: UInt32? {
        switch type {
        case "INIT": return 0
        case "EVENT_FD": return 1
        case "PEER_GONE": return 2
        default: return nil
        }
    }

    var description: String { "\(type) len \(len) body \(body) nfds \(nfds)" }

    func matches(_ message: ReceivedWireMessage) -> Bool {
        typeNumber == message.type && len == message.length && body == message.bodyHex && nfds == message.fdCount
    }
}

enum ReferenceFixture {
    static var directory: String { Repository.path("fixtures/reference/v2-server-3-peers") }

    static func records(for client: String) throws -> [FixtureRecord] {
        let text = try String(contentsOfFile: directory + "/\(client).jsonl", encoding: .utf8)
        let decoder = JSONDecoder()
        return try text.split(separator: "\n").filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }.map {
            try decoder.decode(FixtureRecord.self, from: Data($0.utf8))
        }
    }
}
