import ArgumentParser
import IvshmemHarness
import IvshmemPosix

/// `ivshmem2 run FILE…`: register-level test scripts against a fresh server (or `--socket`).
struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run register-level test scripts against emulated devices.",
        discussion: """
            Each case of each script runs against a fresh embedded server (or the server
            at
            --socket). On failure it prints the script line, expected versus actual, and the
            last trace events. Exit status: 0 when every case passed, 1 otherwise. The
            script format is documented in fixtures/scripts/README.md.
            """)

    @Argument(help: "Script files.") var files: [String]
    @Option(help: "Attach to this server socket instead of starting one per case.") var socket: String?
    @Option(help: "Profile for peers that do not name one: spec, jailhouse, qemu-rfc.") var profile: String = "spec"
    @Option(help: "Write JUnit XML results here.") var junit: String?
    @Flag(help: "Print results as JSON instead of text.") var json = false
    @Option(help: "Write every case's trace here as JSON lines.") var trace: String?
    @Flag(help: "Also list skipped cases.") var verbose = false
    @Flag(help: "Make the first driver-checking finding fatal (as Jailhouse stops a cell).") var strict = false

    func run() throws {
        try Signals.ignoreBrokenPipe()
        var scripts: [Script] = []
        var parseFailed = false
        for f in files {
            do {
                let bytes = try FileSystem.readFile(f)
                scripts.append(try ScriptParser.parse(String(decoding: bytes, as: UTF8.self), path: f))
            } catch let e as ScriptError {
                writeStderr("\(e)\n")
                parseFailed = true
            } catch {
                writeStderr("\(f): cannot read: \(error)\n")
                parseFailed = true
            }
        }
        if parseFailed { throw ExitCode(1) }
        var runner = ScriptRunner(externalSocket: socket, defaultProfile: profile)
        runner.strict = strict
        var results: [CaseResult] = []
        for s in scripts { results += runner.run(s) }
        writeStdout(json ? Reports.json(results) : Reports.text(results, verbose: verbose))
        if let junit { try FileSystem.writeFile(junit, bytes: Array(Reports.junit(results).utf8)) }
        if let trace {
            let text = results.map { r in r.trace.map { e -> String in
                var e = e
                e.detail = "[\(r.caseName) | \(r.profile)] " + (e.detail ?? "")
                return TraceRecorder.line(e)
            }.joined() }.joined()
            try FileSystem.writeFile(trace, bytes: Array(text.utf8))
        }
        if results.contains(where: { $0.failure != nil }) { throw ExitCode(1) }
    }
}
