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
            are taken from the built-in tables). The report lists, per profile and mode,
            every config-space byte that differs from the stock spec (with the register
            it belongs to), then every conformance case whose outcome changes. Exit
            status 0 either way, 1 only when the tables cannot be read.
            """)

    @Option(help: "Directory with the modified tables.") var spec: String
    @Option(help: "Conformance scripts to re-run.") var dir: String = "fixtures/conformance"
    @Option(name: .customLong("profile"), help: "Profiles to run the scripts under (repeatable; default all).") var profiles: [String] = []

    func run() throws {
        let modified: SpecTables
        do { modified = try SpecTables(overlaying: spec) } catch {
            writeStderr("ivshmem2 spec check: \(error)\n")
            throw ExitCode(1)
        }
        let scripts = try Conformance.scripts(in: dir).map { path in
            try ScriptParser.parse(String(decoding: try FileSystem.readFile(path), as: UTF8.self), path: path)
        }
        let report = try SpecCheck.run(modified: modified, scripts: scripts, profiles: profiles.isEmpty ? Conformance.profiles : profiles)
        writeStdout(report.render())
    }
}
