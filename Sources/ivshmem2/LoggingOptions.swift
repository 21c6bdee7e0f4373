import ArgumentParser
import IvshmemServer
import Logging

/// `--log-level` and `-q`, shared by every command: how much the tool says on stderr.
struct LoggingOptions: ParsableArguments {
    @Option(name: .customLong("log-level"),
            help: "Least severe log record shown: trace, debug, info, notice, warning, error or critical.",
            transform: { text in
                guard let level = Logger.Level(rawValue: text.lowercased()) else {
                    throw ValidationError("--log-level must be trace, debug, info, notice, warning, error or critical, got '\(text)'")
                }
                return level
            })
    var logLevel: Logger.Level?

    @Flag(name: [.customShort("q"), .long], help: "Quiet: errors only (no progress line, no prompt, log level error).")
    var quiet = false

    /// The level in force: -q wins, then --log-level, then the command's default.
    func level(default fallback: Logger.Level = .notice) -> Logger.Level {
        quiet ? .error : logLevel ?? fallback
    }

    /// Sends every logger's records at or above the level to stderr (call once per process).
    func apply(default fallback: Logger.Level = .notice) {
        let level = level(default: fallback)
        LoggingSystem.bootstrap { label in StderrLogHandler(label: label, logLevel: level) }
    }
}
