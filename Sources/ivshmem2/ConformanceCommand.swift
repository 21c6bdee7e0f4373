import ArgumentParser
import IvshmemHarness
import IvshmemPosix

/// `ivshmem2 conformance`: the conformance suite under every profile, with the coverage matrix.
struct ConformanceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "conformance",
        abstract: "Run the conformance suite for each profile and print requirement coverage.",
        discussion: """
            Runs every script under --dir for each profile, --jobs cases at a time, and prints
            a matrix: requirement, number of cases, and per profile pass / FAIL / skip / - (no
            case), then every skipped case with the reason. On a terminal a progress line
            shows on stderr. Exit status 1 when a case fails, a requirement of the spec has
            no case, or a case names an unknown requirement; 0 otherwise. Without --dir and
            --spec the suite is looked up in the current directory, then where ivshmem2 is
            installed (PREFIX/share/ivshmem2).
            """)

    @Option(help: "Directory of conformance scripts (default: fixtures/conformance).") var dir: String?
    @Option(help: "The spec whose requirement IDs must be covered (default: spec/ivshmem2.md).") var spec: String?
    @Option(name: .customLong("profile"), help: "Profiles to run (repeatable; default all three).") var profiles: [String] = []
    @Option(help: "Write JUnit XML results here.") var junit: String?
    @Flag(help: "Print results as JSON instead of the matrix.") var json = false
    @Flag(help: "Print a line per case as it finishes (skipped cases with their reason).") var verbose = false
    @OptionGroup var jobs: JobsOptions
    @OptionGroup var logging: LoggingOptions

    func run() throws {
        try Signals.ignoreBrokenPipe()
        logging.apply()
        let dir = try self.dir ?? InstalledData.path("fixtures/conformance", option: "--dir")
        let spec = try self.spec ?? InstalledData.path("spec/ivshmem2.md", option: "--spec")
        let specText: String
        do { specText = String(decoding: try FileSystem.readFile(spec), as: UTF8.self) } catch {
            throw ToolFailure("conformance: cannot read the spec at \(spec): \(error)")
        }
        let progress = ProgressLine(quiet: logging.quiet)
        let verbose = self.verbose
        let report: ConformanceReport
        do {
            report = try Conformance.run(directory: dir, specText: specText, profiles: profiles.isEmpty ? Conformance.profiles : profiles, jobs: jobs.count) { r, done, total in
                if verbose || r.failure != nil {
                    progress.print(Reports.line(r))
                    if let f = r.failure { progress.print(f.render(path: r.script)) }
                }
                progress.update(done: done, total: total, failed: r.failure != nil, label: "\(r.script) [\(r.profile)]")
            }
        } catch let e as ScriptError {
            progress.finish()
            throw ToolFailure("conformance: \(e.description)", status: ExitStatusCode.badInput)
        } catch {
            progress.finish()
            throw ToolFailure("conformance: cannot read the scripts under \(dir): \(error)")
        }
        progress.finish()
        writeStdout(json ? Reports.json(report.results) : report.matrix())
        if let junit { try FileSystem.writeFile(junit, bytes: Array(Reports.junit(report.results).utf8)) }
        if !report.ok { throw ExitCode(1) }
    }
}
