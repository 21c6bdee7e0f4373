import IvshmemHarness

/// Input: a script's text (bytes that are not UTF-8 become U+FFFD, as a file read with
/// replacement would). A parse error must point into the text; a parsed script's statements
/// must carry their own line numbers, in order, and each statement line must parse alone the
/// same way (what a statement means does not depend on the lines around it), `server` lines
/// excepted: alone they make a script without statements. "Alone" means after `join` lines
/// declaring the peers it names, which the parser requires before any use of a name.
enum ScriptFuzz {
    static func run(_ input: [UInt8]) -> FuzzTarget.Outcome {
        let text = String(decoding: input, as: UTF8.self)
        let lineCount = text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).count
        let script: Script
        do { script = try ScriptParser.parse(text, path: "fuzz.ivs") } catch let error as ScriptError {
            invariant((1...max(1, lineCount)).contains(error.line) && error.column >= 1,
                      "error at \(error.line):\(error.column) in a \(lineCount)-line script: \(error.message)")
            invariant(!error.message.isEmpty, "empty error message")
            return .accepted
        } catch {
            invariant(false, "the parser threw \(error), not a ScriptError")
            return .accepted
        }
        invariant(!script.cases.isEmpty, "a script without cases parsed")
        var previous = 0
        for statement in script.prelude + script.cases.flatMap({ $0.server + $0.statements }) {
            invariant(statement.line >= previous && statement.line <= lineCount, "statement line \(statement.line) after \(previous)")
            previous = statement.line
            // A `server` line alone is a script without statements; the others must stand alone.
            if case .server = statement.command { continue }
            guard script.cases.count < 64 else { continue }  // keep one input's cost bounded
            let alone: Script
            do { alone = try ScriptParser.parse(declarations(for: statement) + statement.text, path: "line.ivs") } catch {
                invariant(false, "line \(statement.line) '\(statement.text)' parsed in its script but alone fails: \(error)")
                return .accepted
            }
            guard let again = alone.cases.first?.statements.last else {
                invariant(false, "line \(statement.line) '\(statement.text)' alone parses to no statement")
                return .accepted
            }
            invariant(kind(again.command) == kind(statement.command) && again.actor == statement.actor,
                      "line \(statement.line) '\(statement.text)' alone parses as \(again.command), in its script as \(statement.command)")
        }
        return .accepted
    }

    /// `join` lines for the names `statement` uses (its actor, a doorbell target that is not a
    /// number), quoted when they hold spaces.
    static func declarations(for statement: Script.Statement) -> String {
        var names: [String] = []
        if let actor = statement.actor { names.append(actor) }
        if case .ring(let target, _) = statement.command, UInt64(target) == nil, !names.contains(target) { names.append(target) }
        return names.map { name in "join " + (name.contains(where: \.isWhitespace) || name.isEmpty ? "\"\(name)\"" : name) + "\n" }.joined()
    }

    /// The command's case name, without its payload.
    static func kind(_ command: Script.Command) -> String {
        String(describing: command).prefix { $0 != "(" }.description
    }
}
