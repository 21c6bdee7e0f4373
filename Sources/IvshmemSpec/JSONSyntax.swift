/// Finds where a JSON text stops being JSON (RFC 8259), as a line and column, so a spec table
/// with a syntax error gets an error naming the place ("line 7, column 12: expected ',' or
/// '}'") — the decoder only says that the data is not valid JSON.
public enum JSONSyntax {
    public struct Problem: Sendable, Equatable, CustomStringConvertible {
        public var line: Int
        public var column: Int
        public var message: String
        public var description: String { "line \(line), column \(column): \(message)" }
    }

    /// The first syntax error in `text`, or nil when it is one valid JSON value.
    public static func firstProblem(in text: String) -> Problem? {
        let bytes = Array(text.utf8)
        var i = 0
        struct Failure: Error { var at: Int; var message: String }
        func skipSpace() { while i < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[i]) { i += 1 } }
        func expect(_ c: UInt8, _ what: String) throws {
            skipSpace()
            guard i < bytes.count, bytes[i] == c else { throw Failure(at: i, message: "expected \(what), found \(found())") }
            i += 1
        }
        func found() -> String {
            guard i < bytes.count else { return "the end of the file" }
            return "'" + String(decoding: [bytes[i]], as: UTF8.self) + "'"
        }
        func string() throws {
            try expect(0x22, "'\"'")
            while i < bytes.count {
                switch bytes[i] {
                case 0x22: i += 1; return
                case 0x5C: i += 2
                case 0..<0x20: throw Failure(at: i, message: "control character in a string (line breaks must be written \\n)")
                default: i += 1
                }
            }
            throw Failure(at: i, message: "unterminated string")
        }
        func value() throws {
            skipSpace()
            guard i < bytes.count else { throw Failure(at: i, message: "expected a value, found the end of the file") }
            switch bytes[i] {
            case 0x7B:  // {
                i += 1
                skipSpace()
                if i < bytes.count, bytes[i] == 0x7D { i += 1; return }
                while true {
                    try string()
                    try expect(0x3A, "':' after the key")
                    try value()
                    skipSpace()
                    if i < bytes.count, bytes[i] == 0x2C { i += 1; continue }
                    try expect(0x7D, "',' or '}'")
                    return
                }
            case 0x5B:  // [
                i += 1
                skipSpace()
                if i < bytes.count, bytes[i] == 0x5D { i += 1; return }
                while true {
                    try value()
                    skipSpace()
                    if i < bytes.count, bytes[i] == 0x2C { i += 1; continue }
                    try expect(0x5D, "',' or ']'")
                    return
                }
            case 0x22: try string()
            case 0x2D, 0x30...0x39:
                let start = i
                i += 1
                while i < bytes.count, (0x30...0x39).contains(bytes[i]) || [0x2E, 0x65, 0x45, 0x2B, 0x2D].contains(bytes[i]) { i += 1 }
                if bytes[start] == 0x2D && i == start + 1 { throw Failure(at: start, message: "'-' without digits") }
            default:
                for word in ["true", "false", "null"] where bytes[i...].starts(with: word.utf8) {
                    i += word.utf8.count
                    return
                }
                throw Failure(at: i, message: "expected a value, found \(found())")
            }
        }
        do {
            try value()
            skipSpace()
            if i < bytes.count { throw Failure(at: i, message: "text after the end of the JSON value, found \(found())") }
            return nil
        } catch let f as Failure {
            var line = 1, column = 1
            for b in bytes[..<min(f.at, bytes.count)] {
                if b == 0x0A { line += 1; column = 1 } else if b & 0xC0 != 0x80 { column += 1 }
            }
            return Problem(line: line, column: column, message: f.message)
        } catch {
            return Problem(line: 1, column: 1, message: "\(error)")
        }
    }
}
