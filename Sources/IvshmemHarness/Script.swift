import IvshmemModel

/// A parsed test script: a prelude (server settings) and one or more cases.
///
/// Format (one statement per line, `#` to end of line is a comment):
///
///     server vectors=2 max-peers=4 size=1M output=64K protocol=0x4001
///     case "doorbell reaches the target"
///     covers REG-DB-3 IRQ-MSIX-1
///     profiles spec qemu-rfc            # run only under these profiles
///     join A                            # options: profile= setup=ready|firmware|raw checking=on|off
///                                       #   intx=PIN register-space=memory|io
///     join B
///     A ring B 1
///     B wait irq vector=1 timeout=2
///     B read32 reg:0x00 == 1
///     [qemu-rfc] A write32 reg:0x10c 0x1   # a line for one profile ([!p] for all but p)
///     A expect finding REG-ACC-3
///     B leave
///
/// Spaces for read/write: `cfg`, `reg` (BAR0), `msix` (BAR1), `bar0`…`bar2`, `shm` (the
/// driver's view of shared memory), `mem` (physical address), `io` (port).
public struct Script: Sendable {
    public var path: String
    public var prelude: [Statement]
    public var cases: [Case]

    public struct Case: Sendable {
        public var name: String
        public var line: Int
        public var covers: [String]
        public var profiles: [String]?
        public var statements: [Statement]
        /// `server` lines inside the case (before its first statement): settings for this case
        /// only, applied over the prelude's.
        public var server: [Statement] = []
        /// The line of the case's `profiles` statement, if it has one.
        public var profilesLine: Int?

        /// Why the case does not run under `profile`, or nil when it does.
        public func skipReason(profile: String) -> String? {
            guard let only = profiles, !only.contains(profile) else { return nil }
            return "runs only under \(only.joined(separator: ", ")) (profiles line \(profilesLine ?? line)), not \(profile)"
        }
    }

    public struct Statement: Sendable {
        public var line: Int
        public var text: String
        /// Profiles the line is limited to (nil: all); `negated` flips it.
        public var onlyProfiles: [String]?
        public var negated: Bool
        public var actor: String?
        public var command: Command

        public func applies(to profile: String) -> Bool {
            guard let only = onlyProfiles else { return true }
            return only.contains(profile) != negated
        }
    }

    public enum Space: String, Sendable { case cfg, reg, msix, bar0, bar1, bar2, shm, mem, io }
    public enum Comparison: String, Sendable { case equal = "==", notEqual = "!=" }

    public enum Command: Sendable {
        case server([String: String])
        case join(name: String, options: [String: String])
        case leave
        case reset
        case read(bits: Int, space: Space, offset: UInt64, compare: (Comparison, UInt64, mask: UInt64)?)
        case write(bits: Int, space: Space, offset: UInt64, value: UInt64)
        case ring(target: String, vector: UInt64)
        case state(UInt64)
        /// `wait irq [vector=N] [pin=P] [address=A] [data=D] [timeout=S]`: the next interrupt
        /// (an MSI-X message of vector N, or an INTx edge on pin P), then its address and data.
        case waitIRQ(vector: Int?, timeout: Double, pin: UInt8? = nil, address: UInt64? = nil, data: UInt64? = nil)
        case expectNoIRQ(timeout: Double)
        case expectFinding(String)
        case expectNoFindings
        case expectPeers([UInt32])
        case expectID(UInt32)
        case sleep(Double)
        /// A barrier: every peer has handled every event already signalled, and an embedded
        /// server has handled every hang-up (so "nothing else happened" needs no sleep).
        case settle
        /// A raw wire client (no device): `client X`.
        case client(name: String)
        /// `X expect-msg INIT|EVENT_FD|PEER_GONE [field=value…] [fds=N]`.
        case expectMessage(type: String, fields: [String: UInt64])
        case expectNoMessage(timeout: Double)
        case expectClosed
        case sendBytes([UInt8])
        case disconnect
        /// `check NAME`: a built-in check (see `BuiltinChecks`).
        case check(String)
    }
}

/// A script error with the position it refers to and what is wrong, as a typed reason.
public struct ScriptError: Error, Sendable, CustomStringConvertible, Equatable {
    public var path: String
    public var line: Int
    public var column: Int
    public var reason: Reason
    public var message: String { reason.description }
    public var description: String { "\(path):\(line):\(column): error: \(message)" }

    public init(path: String, line: Int, column: Int, reason: Reason) {
        self.path = path
        self.line = line
        self.column = column
        self.reason = reason
    }

    /// What is wrong with a script line; `description` is the message shown to the user.
    public enum Reason: Equatable, Sendable, CustomStringConvertible {
        case emptyProfileCondition
        case profileConditionWithoutStatement
        /// `statement` lacks an argument: "case needs a name".
        case missingArgument(statement: String, what: String)
        /// `statement` takes no arguments but got some.
        case unexpectedArguments(statement: String)
        /// `covers` or `profiles` before the first case.
        case outsideCase(statement: String)
        case misplacedServer
        case notARequirementID(String)
        case notANumber(String)
        case numberTooLarge(String)
        case notADuration(String)
        case notKeyValue(String)
        case unknownOption(String, known: [String])
        /// A known option with a value it does not take; `expected` says what it takes.
        case invalidOptionValue(option: String, expected: String)
        case unknownCheck(String, known: [String])
        case unknownStatement(String)
        /// A peer command with too few arguments; `usage` is its synopsis.
        case usage(String)
        case unknownMessageType(String)
        case notHexBytes(String)
        case notAHexByte(String)
        case doorbellVectorTooWide(UInt64)
        case vectorOutOfRange(UInt64)
        case notAPeerID(String)
        case unknownExpectation(String)
        case missingComparison
        case missingExpectedValue
        case unexpectedAfterValue(String)
        case unknownCommand(String)
        case badLocation(String)
        case noStatements
        /// A statement's actor that no `join`/`client` earlier in the case declared.
        case undeclaredPeer(String, declared: [String])
        /// A doorbell target that is neither a declared peer nor a numeric ID.
        case undeclaredDoorbellTarget(String, declared: [String])

        static func names(_ declared: [String]) -> String { declared.isEmpty ? "none yet in this case" : declared.joined(separator: ", ") }

        public var description: String {
            switch self {
            case .emptyProfileCondition: return "empty profile condition"
            case .profileConditionWithoutStatement: return "a profile condition needs a statement after it"
            case .missingArgument(let statement, let what): return "\(statement) needs \(what)"
            case .unexpectedArguments(let statement): return "\(statement) takes no arguments"
            case .outsideCase(let statement): return "'\(statement)' belongs inside a case"
            case .misplacedServer: return "'server' belongs before the first case, or before the first statement of a case (without a profile condition)"
            case .notARequirementID(let t): return "'\(t)' is not a requirement ID (like REG-DB-3)"
            case .notANumber(let t): return "'\(t)' is not a number (decimal, 0x hex, K/M/G suffix)"
            case .numberTooLarge(let t): return "'\(t)' does not fit in 64 bits"
            case .notADuration(let t): return "'\(t)' is not a duration in seconds between 0 and 3600"
            case .notKeyValue(let t): return "expected key=value, got '\(t)'"
            case .unknownOption(let o, let known): return "unknown option '\(o)' (known: \(known.joined(separator: ", ")))"
            case .invalidOptionValue(let option, let expected): return "\(option) \(expected)"
            case .unknownCheck(let c, let known): return "unknown built-in check '\(c)' (known: \(known.joined(separator: ", ")))"
            case .unknownStatement(let t): return "unknown statement '\(t)'"
            case .usage(let u): return "usage: \(u)"
            case .unknownMessageType: return "message type must be INIT, EVENT_FD or PEER_GONE"
            case .notHexBytes: return "send takes hex bytes, e.g. 01020304"
            case .notAHexByte(let t): return "'\(t)' is not a hex byte"
            case .doorbellVectorTooWide(let v): return "a doorbell vector is 16 bits (REG-DB-1); \(v) would spill into the target ID"
            case .vectorOutOfRange(let v): return "vector \(v) is out of range (0…65535)"
            case .notAPeerID(let t): return "'\(t)' is not a peer ID"
            case .unknownExpectation(let t): return "unknown expectation '\(t)'"
            case .missingComparison: return "expected == or != after the location"
            case .missingExpectedValue: return "missing the expected value"
            case .unexpectedAfterValue(let t): return "unexpected '\(t)' (only 'mask <m>' may follow the value)"
            case .unknownCommand(let t): return "unknown command '\(t)' (read8/16/32/64, write8/16/32/64, ring, state, wait, expect, reset, leave)"
            case .badLocation(let t): return "expected <space>:<offset> with space cfg, reg, msix, bar0, bar1, bar2, shm, mem or io; got '\(t)'"
            case .noStatements: return "the script has no statements"
            case .undeclaredPeer(let name, let declared):
                return "'\(name)' has not joined in this case (declared so far: \(Self.names(declared))); add 'join \(name)' or 'client \(name)' before this line"
            case .undeclaredDoorbellTarget(let name, let declared):
                return "doorbell target '\(name)' has not joined in this case (declared so far: \(Self.names(declared))); name a joined peer or give a numeric peer ID"
            }
        }
    }
}

/// Parses the script format documented on `Script`.
public enum ScriptParser {
    public static func parse(_ text: String, path: String) throws -> Script {
        var prelude: [Script.Statement] = []
        var cases: [Script.Case] = []
        // Any line break ends a line: "\r\n" is one Character, which "\n" alone would not split.
        for (i, rawLine) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let lineNo = i + 1
            var body = Substring(rawLine)
            if let hash = body.firstIndex(of: "#") { body = body[..<hash] }
            let tokens = tokenize(body)
            guard !tokens.isEmpty else { continue }
            func fail(_ t: Token?, _ reason: ScriptError.Reason) -> ScriptError {
                ScriptError(path: path, line: lineNo, column: t?.column ?? tokens.last!.column + tokens.last!.text.count, reason: reason)
            }
            var k = 0
            var only: [String]?
            var negated = false
            if tokens[0].text.hasPrefix("[") && tokens[0].text.hasSuffix("]") {
                var inner = String(tokens[0].text.dropFirst().dropLast())
                if inner.hasPrefix("!") { negated = true; inner.removeFirst() }
                only = inner.split(separator: ",").map(String.init)
                guard !only!.isEmpty else { throw fail(tokens[0], .emptyProfileCondition) }
                k = 1
            }
            guard k < tokens.count else { throw fail(nil, .profileConditionWithoutStatement) }
            let head = tokens[k]
            // Case-structure statements.
            switch head.text {
            case "case":
                guard k + 1 < tokens.count else { throw fail(nil, .missingArgument(statement: "case", what: "a name")) }
                cases.append(Script.Case(name: tokens[k + 1].text, line: lineNo, covers: [], profiles: nil, statements: []))
                continue
            case "covers":
                guard !cases.isEmpty else { throw fail(head, .outsideCase(statement: "covers")) }
                let ids = tokens[(k + 1)...].map(\.text)
                guard !ids.isEmpty else { throw fail(nil, .missingArgument(statement: "covers", what: "at least one requirement ID")) }
                for t in tokens[(k + 1)...] where !isRequirementID(t.text) { throw fail(t, .notARequirementID(t.text)) }
                cases[cases.count - 1].covers += ids
                continue
            case "profiles":
                guard !cases.isEmpty else { throw fail(head, .outsideCase(statement: "profiles")) }
                cases[cases.count - 1].profiles = tokens[(k + 1)...].map(\.text)
                cases[cases.count - 1].profilesLine = lineNo
                continue
            default: break
            }
            let statement = try parseStatement(Array(tokens[k...]), line: lineNo, text: String(body).trimmed, only: only, negated: negated, fail: fail)
            if case .server = statement.command, !cases.isEmpty {
                // Inside a case: this case's own server settings, before its first statement.
                guard cases[cases.count - 1].statements.isEmpty, only == nil else {
                    throw fail(head, .misplacedServer)
                }
                cases[cases.count - 1].server.append(statement)
                continue
            }
            if cases.isEmpty {
                if case .server = statement.command { prelude.append(statement); continue }
                cases.append(Script.Case(name: "main", line: lineNo, covers: [], profiles: nil, statements: []))
            }
            try checkNames(statement, declaredBefore: cases[cases.count - 1].statements, tokens: Array(tokens[k...]), fail: fail)
            cases[cases.count - 1].statements.append(statement)
        }
        guard !cases.isEmpty else {
            throw ScriptError(path: path, line: 1, column: 1, reason: .noStatements)
        }
        return Script(path: path, prelude: prelude, cases: cases)
    }

    /// A statement may name only peers and raw clients that a `join` or `client` earlier in the
    /// same case declared (under any profile): a misspelt or missing name is a parse error
    /// rather than a failure after the case's setup has run. A doorbell target may also be a
    /// numeric peer ID.
    static func checkNames(_ st: Script.Statement, declaredBefore earlier: [Script.Statement], tokens: [Token], fail: (Token?, ScriptError.Reason) -> ScriptError) throws {
        var declared: [String] = []
        for e in earlier {
            switch e.command {
            case .join(let name, _), .client(let name): declared.append(name)
            default: break
            }
        }
        if let actor = st.actor, !declared.contains(actor) {
            throw fail(tokens.first, .undeclaredPeer(actor, declared: declared))
        }
        if case .ring(let target, _) = st.command, !declared.contains(target), UInt64(target) == nil {
            throw fail(tokens.count > 2 ? tokens[2] : nil, .undeclaredDoorbellTarget(target, declared: declared))
        }
    }

    /// `TOPIC-SUB-N`, or a v1 ID `V1-TOPIC-SUB-N` (spec/ivshmem1.md).
    static func isRequirementID(_ s: String) -> Bool {
        let parts = s.split(separator: "-").drop { $0 == "V1" }
        return parts.count >= 3 && parts.dropLast().allSatisfy { !$0.isEmpty && $0.allSatisfy { $0.isUppercase } } && Int(parts.last!) != nil
    }

    struct Token { var text: String; var column: Int }

    static func tokenize(_ s: Substring) -> [Token] {
        var out: [Token] = []
        var i = s.startIndex
        var col = 1
        while i < s.endIndex {
            let c = s[i]
            if c.isWhitespace { i = s.index(after: i); col += 1; continue }
            let startCol = col
            var text = ""
            if c == "\"" {
                i = s.index(after: i); col += 1
                while i < s.endIndex, s[i] != "\"" { text.append(s[i]); i = s.index(after: i); col += 1 }
                if i < s.endIndex { i = s.index(after: i); col += 1 }
            } else {
                while i < s.endIndex, !s[i].isWhitespace { text.append(s[i]); i = s.index(after: i); col += 1 }
            }
            out.append(Token(text: text, column: startCol))
        }
        return out
    }

    static func number(_ t: Token, fail: (Token?, ScriptError.Reason) -> ScriptError) throws -> UInt64 {
        var text = t.text.replacingUnderscores
        var scale: UInt64 = 1
        if let last = text.last, let u = ["K": UInt64(1) << 10, "M": 1 << 20, "G": 1 << 30][last.uppercased()] {
            scale = u
            text.removeLast()
        }
        let v: UInt64?
        if text.hasPrefix("0x") || text.hasPrefix("0X") { v = UInt64(text.dropFirst(2), radix: 16) } else { v = UInt64(text) }
        guard let n = v else { throw fail(t, .notANumber(t.text)) }
        let (scaled, overflow) = n.multipliedReportingOverflow(by: scale)
        guard !overflow else { throw fail(t, .numberTooLarge(t.text)) }
        return scaled
    }

    static func seconds(_ t: Token, fail: (Token?, ScriptError.Reason) -> ScriptError) throws -> Double {
        guard let v = Double(t.text.hasSuffix("s") ? String(t.text.dropLast()) : t.text), v.isFinite, v >= 0, v <= 3600 else {
            throw fail(t, .notADuration(t.text))
        }
        return v
    }

    static func keyValues(_ tokens: ArraySlice<Token>, allowed: Set<String>, fail: (Token?, ScriptError.Reason) -> ScriptError) throws -> [String: String] {
        var out: [String: String] = [:]
        for t in tokens {
            var kv = t.text.split(separator: "=", maxSplits: 1).map(String.init)
            // `key="text"`: the quotes are not part of the value.
            if kv.count == 2, kv[1].count >= 2, kv[1].hasPrefix("\""), kv[1].hasSuffix("\"") { kv[1] = String(kv[1].dropFirst().dropLast()) }
            guard kv.count == 2, !kv[1].isEmpty else { throw fail(t, .notKeyValue(t.text)) }
            guard allowed.contains(kv[0]) else { throw fail(t, .unknownOption(kv[0], known: allowed.sorted())) }
            out[kv[0]] = kv[1]
        }
        return out
    }

    static func parseStatement(_ t: [Token], line: Int, text: String, only: [String]?, negated: Bool, fail: (Token?, ScriptError.Reason) -> ScriptError) throws -> Script.Statement {
        func make(_ actor: String?, _ c: Script.Command) -> Script.Statement {
            Script.Statement(line: line, text: text, onlyProfiles: only, negated: negated, actor: actor, command: c)
        }
        switch t[0].text {
        case "server":
            return make(nil, .server(try keyValues(t[1...], allowed: ["vectors", "max-peers", "size", "output", "protocol"], fail: fail)))
        case "join":
            guard t.count >= 2 else { throw fail(nil, .missingArgument(statement: "join", what: "a peer name")) }
            let opts = try keyValues(t[2...], allowed: ["profile", "setup", "checking", "spin-us", "fails", "intx", "register-space"], fail: fail)
            if let s = opts["setup"], PeerSetup(rawValue: s) == nil { throw fail(t[2], .invalidOptionValue(option: "setup", expected: "must be raw, firmware or ready")) }
            if let s = opts["register-space"], RegisterSpace(rawValue: s) == nil { throw fail(t[2], .invalidOptionValue(option: "register-space", expected: "must be memory or io")) }
            if let s = opts["intx"], UInt8(s) == nil { throw fail(t[2], .invalidOptionValue(option: "intx", expected: "takes the interrupt pin, 1 (INTA#) to 4 (INTD#)")) }
            return make(nil, .join(name: t[1].text, options: opts))
        case "check":
            guard t.count == 2 else { throw fail(nil, .missingArgument(statement: "check", what: "the name of a built-in check")) }
            guard BuiltinChecks.all[t[1].text] != nil else {
                throw fail(t[1], .unknownCheck(t[1].text, known: BuiltinChecks.all.keys.sorted()))
            }
            return make(nil, .check(t[1].text))
        case "client":
            guard t.count == 2 else { throw fail(nil, .missingArgument(statement: "client", what: "a name")) }
            return make(nil, .client(name: t[1].text))
        case "settle":
            guard t.count == 1 else { throw fail(t[1], .unexpectedArguments(statement: "settle")) }
            return make(nil, .settle)
        case "sleep":
            guard t.count == 2 else { throw fail(nil, .missingArgument(statement: "sleep", what: "a duration")) }
            return make(nil, .sleep(try seconds(t[1], fail: fail)))
        default: break
        }
        guard t.count >= 2 else { throw fail(t[0], .unknownStatement(t[0].text)) }
        let actor = t[0].text
        let verb = t[1]
        let args = Array(t[2...])
        func need(_ n: Int, _ usage: String) throws {
            guard args.count >= n else { throw fail(nil, .usage("\(actor) \(usage)")) }
        }
        switch verb.text {
        case "leave": return make(actor, .leave)
        case "disconnect": return make(actor, .disconnect)
        case "expect-closed": return make(actor, .expectClosed)
        case "expect-no-msg":
            let kv = try keyValues(args[...], allowed: ["timeout"], fail: fail)
            return make(actor, .expectNoMessage(timeout: try kv["timeout"].map { try seconds(Token(text: $0, column: verb.column), fail: fail) } ?? 0.2))
        case "expect-msg":
            try need(1, "expect-msg INIT|EVENT_FD|PEER_GONE [field=value…]")
            let type = args[0].text
            let allowed: [String: Set<String>] = [
                "INIT": ["version", "compatible", "id", "max-peers", "vectors", "protocol", "output", "fds"],
                "EVENT_FD": ["id", "vector", "fds"], "PEER_GONE": ["id", "fds"],
            ]
            guard let keys = allowed[type] else { throw fail(args[0], .unknownMessageType(args[0].text)) }
            let kv = try keyValues(args[1...], allowed: keys, fail: fail)
            var fields: [String: UInt64] = [:]
            for (k, v) in kv { fields[k] = try number(Token(text: v, column: verb.column), fail: fail) }
            return make(actor, .expectMessage(type: type, fields: fields))
        case "send":
            try need(1, "send <hex bytes>")
            let hex = args.map(\.text).joined()
            guard hex.count % 2 == 0, !hex.isEmpty else { throw fail(args[0], .notHexBytes(args[0].text)) }
            var bytes: [UInt8] = []
            var i = hex.startIndex
            while i < hex.endIndex {
                let j = hex.index(i, offsetBy: 2)
                guard let b = UInt8(hex[i..<j], radix: 16) else { throw fail(args[0], .notAHexByte(String(hex[i..<j]))) }
                bytes.append(b)
                i = j
            }
            return make(actor, .sendBytes(bytes))
        case "reset": return make(actor, .reset)
        case "ring":
            try need(2, "ring <peer> <vector>")
            let vector = try number(args[1], fail: fail)
            guard vector <= 0xFFFF else { throw fail(args[1], .doorbellVectorTooWide(vector)) }
            return make(actor, .ring(target: args[0].text, vector: vector))
        case "state":
            try need(1, "state <value>")
            return make(actor, .state(try number(args[0], fail: fail)))
        case "wait":
            guard args.first?.text == "irq" else { throw fail(args.first ?? verb, .usage("\(actor) wait irq [vector=N] [timeout=S]")) }
            let kv = try keyValues(args[1...], allowed: ["vector", "timeout", "pin", "address", "data"], fail: fail)
            func num(_ k: String) throws -> UInt64? { try kv[k].map { try number(Token(text: $0, column: verb.column), fail: fail) } }
            let vector = try num("vector").map { v -> Int in
                guard v <= 0xFFFF else { throw fail(args[1], .vectorOutOfRange(v)) }
                return Int(v)
            }
            let timeout = try kv["timeout"].map { try seconds(Token(text: $0, column: verb.column), fail: fail) } ?? 5
            let pin = try num("pin").map { UInt8(truncatingIfNeeded: $0) }
            return make(actor, .waitIRQ(vector: vector, timeout: timeout, pin: pin, address: try num("address"), data: try num("data")))
        case "expect":
            try need(1, "expect finding <ID> | no-findings | no-irq [timeout=S] | peers <ids> | id <n>")
            switch args[0].text {
            case "finding":
                try need(2, "expect finding <REQUIREMENT-ID>")
                guard isRequirementID(args[1].text) else { throw fail(args[1], .notARequirementID(args[1].text)) }
                return make(actor, .expectFinding(args[1].text))
            case "no-findings": return make(actor, .expectNoFindings)
            case "no-irq":
                let kv = try keyValues(args[1...], allowed: ["timeout"], fail: fail)
                return make(actor, .expectNoIRQ(timeout: try kv["timeout"].map { try seconds(Token(text: $0, column: verb.column), fail: fail) } ?? 0.2))
            case "peers":
                try need(2, "expect peers <id,id,…>")
                let ids = try args[1].text.split(separator: ",").map { s -> UInt32 in
                    guard let v = UInt32(s) else { throw fail(args[1], .notAPeerID(String(s))) }
                    return v
                }
                return make(actor, .expectPeers(ids))
            case "id":
                try need(2, "expect id <n>")
                return make(actor, .expectID(UInt32(truncatingIfNeeded: try number(args[1], fail: fail))))
            default:
                throw fail(args[0], .unknownExpectation(args[0].text))
            }
        default:
            if let bits = accessBits(verb.text, "read") {
                try need(1, "read\(bits) <space>:<offset> [== value [mask m]]")
                let (space, offset) = try location(args[0], fail: fail)
                var compare: (Script.Comparison, UInt64, mask: UInt64)?
                if args.count > 1 {
                    guard let op = Script.Comparison(rawValue: args[1].text) else { throw fail(args[1], .missingComparison) }
                    guard args.count >= 3 else { throw fail(nil, .missingExpectedValue) }
                    var mask: UInt64 = bits == 64 ? .max : (1 << UInt64(bits)) - 1
                    if args.count >= 5, args[3].text == "mask" { mask = try number(args[4], fail: fail) } else if args.count > 3 {
                        throw fail(args[3], .unexpectedAfterValue(args[3].text))
                    }
                    compare = (op, try number(args[2], fail: fail), mask)
                }
                return make(actor, .read(bits: bits, space: space, offset: offset, compare: compare))
            }
            if let bits = accessBits(verb.text, "write") {
                try need(2, "write\(bits) <space>:<offset> <value>")
                let (space, offset) = try location(args[0], fail: fail)
                return make(actor, .write(bits: bits, space: space, offset: offset, value: try number(args[1], fail: fail)))
            }
            throw fail(verb, .unknownCommand(verb.text))
        }
    }

    static func accessBits(_ s: String, _ prefix: String) -> Int? {
        guard s.hasPrefix(prefix), let b = Int(s.dropFirst(prefix.count)), [8, 16, 32, 64].contains(b) else { return nil }
        return b
    }

    static func location(_ t: Token, fail: (Token?, ScriptError.Reason) -> ScriptError) throws -> (Script.Space, UInt64) {
        let parts = t.text.split(separator: ":", maxSplits: 1).map(String.init)
        guard parts.count == 2, let space = Script.Space(rawValue: parts[0]) else {
            throw fail(t, .badLocation(t.text))
        }
        return (space, try number(Token(text: parts[1], column: t.column + parts[0].count + 1), fail: fail))
    }
}

extension String {
    var trimmed: String {
        var s = Substring(self)
        while s.first?.isWhitespace == true { s.removeFirst() }
        while s.last?.isWhitespace == true { s.removeLast() }
        return String(s)
    }
    var replacingUnderscores: String { String(filter { $0 != "_" }) }
}
