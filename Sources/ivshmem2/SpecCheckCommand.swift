import ArgumentParser
import IvshmemHarness
import IvshmemPosix
import IvshmemSpec

/// `ivshmem2 spec check`: what a change to the spec tables does to the model.
struct SpecCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "spec", abstract: "Work with the spec tables.", subcommands: [SpecCheckCommand.self])
}

struct SpecCheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Rebuild the model from modified spec tables and report what changes.",
        discussion: """
            --spec DIR holds modified copies of some or all of spec/tables/*.json (missing files
            are taken from the built-in tables; any other file but *.txt and *.md notes is an
            error). The report lists, per profile and mode, every config-space byte that
            differs from the stock spec (with the register it belongs to), then every
            conformance case whose outcome changes, then a summary line. Only the case runs
            the change can affect run (those that build a device, under the profiles the
            change touches), --jobs at a time, under the stock and the modified tables; a wait
            for an interrupt gives up as soon as nothing more can come. On a terminal a
            progress line shows on stderr.

            Exit status (as git diff --exit-code): 0 when nothing changed, 1 when a byte or an
            outcome changed or a variant no longer builds (0 with --exit-zero), 1 when the
            tables cannot be read (with the file, line and column of a JSON error).
            """)

    @Option(help: "Directory with the modified tables.") var spec: String
    @Option(help: "Conformance scripts to re-run (default: fixtures/conformance).") var dir: String?
    @Option(name: .customLong("profile"), help: "Profiles to run the scripts under (repeatable; default all).") var profiles: [String] = []
    @OptionGroup var jobs: JobsOptions
    @Flag(name: .customLong("exit-zero"), help: "Exit 0 even when something changed (only an error exits 1).") var exitZero = false
    @OptionGroup var logging: LoggingOptions

    func run() throws {
        try Signals.ignoreBrokenPipe()
        logging.apply()
        let modified: SpecTables
        do { modified = try SpecTables(overlaying: spec) } catch {
            throw ToolFailure("spec check: \(error)")
        }
        let dir = try self.dir ?? InstalledData.path("fixtures/conformance", option: "--dir")
        let scripts: [Script]
        do {
            scripts = try Conformance.scripts(in: dir).map { path in
                try ScriptParser.parse(String(decoding: try FileSystem.readFile(path), as: UTF8.self), path: path)
            }
        } catch let e as ScriptError {
            throw ToolFailure("spec check: \(e.description)")
        } catch {
            throw ToolFailure("spec check: cannot read the scripts under \(dir): \(error)")
        }
        let progress = ProgressLine(quiet: logging.quiet)
        let report = try SpecCheck.run(modified: modified, scripts: scripts, profiles: profiles.isEmpty ? Conformance.profiles : profiles, jobs: jobs.count) { done, total in
            progress.update(done: done, total: total, failed: false, label: "case runs (stock and modified)")
        }
        progress.finish()
        writeStdout(report.render() + "\n" + report.summary + " in \(Double(Int(report.seconds * 10)) / 10) s\n")
        if report.changed && !exitZero { throw ExitCode(ExitStatusCode.failure) }
    }
}
