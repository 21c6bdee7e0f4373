import ArgumentParser
import IvshmemHarness
import IvshmemPosix

/// `ivshmem2 run FILE|DIR…`: register-level test scripts against a fresh server (or `--socket`).
struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run register-level test scripts against emulated devices.",
        discussion: """
            Each case of each script runs against a fresh embedded server (or the server at
            --socket), --jobs cases at a time. A directory stands for every .ivs file under
            it. On failure it prints the script line, expected versus actual, and the last
            trace events. Exit status: 0 when every case that ran passed, 1 when a case
            failed, 65 when a script cannot be read or parsed (nothing runs), 5 when every
            case was skipped (nothing was tested). The script format is documented in
            fixtures/scripts/README.md.
            """)

    @Argument(help: "Script files, or directories of them.") var files: [String]
    @Option(help: "Attach to this server socket instead of starting one per case (cases then run one at a time).") var socket: String?
    @Option(help: "Profile for peers that do not name one: spec, jailhouse, qemu-rfc.") var profile: String = "spec"
    @Option(help: "Write JUnit XML results here.") var junit: String?
    @Flag(help: "Print results as JSON instead of text.") var json = false
    @Option(help: "Write every case's trace here as JSON lines (with file, case and profile; time counts from the start of the run).") var trace: String?
    @Flag(help: "Also list skipped cases, with the reason.") var verbose = false
    @Flag(help: "Make the first driver-checking finding fatal (as Jailhouse stops a cell).") var strict = false
    @OptionGroup var jobs: JobsOptions
    @OptionGroup var logging: LoggingOptions

    func run() throws {
        try Signals.ignoreBrokenPipe()
        logging.apply()
        let runStart = Monotonic.now()
        var scripts: [Script] = []
        var parseFailed = false
        for f in try Self.expand(files) {
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
        if parseFailed { throw ExitCode(ExitStatusCode.badInput) }
        var runner = ScriptRunner(externalSocket: socket, defaultProfile: profile)
        runner.strict = strict
        let progress = ProgressLine(quiet: logging.quiet || json)
        let runs = scripts.flatMap { s in s.cases.indices.map { CaseRun(script: s, caseIndex: $0, profile: profile) } }
        let results = runner.run(runs, jobs: jobs.count) { r, done in
            progress.update(done: done, total: runs.count, failed: r.failure != nil, label: "\(r.script): \(r.caseName)")
        }
        progress.finish()
        writeStdout(json ? Reports.json(results) : Reports.text(results, verbose: verbose))
        if let junit { try FileSystem.writeFile(junit, bytes: Array(Reports.junit(results).utf8)) }
        if let trace {
            let text = results.map { r in r.trace.map { TraceRecorder.line($0, of: r, since: runStart) }.joined() }.joined()
            try FileSystem.writeFile(trace, bytes: Array(text.utf8))
        }
        if results.contains(where: { $0.failure != nil }) { throw ExitCode(ExitStatusCode.failure) }
        if !results.isEmpty && results.allSatisfy(\.skipped) {
            writeStderr("ivshmem2 run: no case ran: all \(results.count) were skipped under profile \(profile) (--verbose lists why)\n")
            throw ExitCode(ExitStatusCode.nothingRan)
        }
    }

    /// The script files: each argument that is a directory stands for every `.ivs` file under
    /// it (sorted); a directory without one is an error.
    static func expand(_ arguments: [String]) throws -> [String] {
        var out: [String] = []
        for a in arguments {
            guard (try? FileSystem.status(ofPath: a))??.isDirectory == true else { out.append(a); continue }
            let found: [String]
            do { found = try Conformance.scripts(in: a) } catch {
                throw ToolFailure("run: cannot list \(a): \(error)", status: ExitStatusCode.badInput)
            }
            guard !found.isEmpty else { throw ToolFailure("run: no .ivs scripts under \(a)", status: ExitStatusCode.badInput) }
            out += found
        }
        return out
    }
}
