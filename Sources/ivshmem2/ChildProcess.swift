import ArgumentParser
import IvshmemPosix

/// Starts this binary with `arguments` as a child whose stdout lines are echoed as
/// `[name] line` (the demo's transcript).
func spawnSelf(name: String, arguments: [String], echo: @escaping (String, String) -> Void) throws -> LineProcess {
    let child = try LineProcess(name: name, executable: try SpawnedProcess.currentExecutablePath(), arguments: arguments)
    child.onLine = { echo(name, $0) }
    return child
}

extension LineProcess {
    /// Sends a line and echoes it as `> line`.
    func say(_ line: String, echo: (String, String) -> Void) throws {
        echo(name, "> " + line)
        try send(line)
    }

    /// A command-line error naming this child, with its stderr.
    func failure(_ what: String) -> ToolFailure {
        let err = drainStandardError()
        return ToolFailure("\(name) \(what)" + (err.isEmpty ? "" : "; its stderr:\n" + err))
    }
}
