import ArgumentParser
import IvshmemHarness
import IvshmemPosix

/// `ivshmem2 conformance`: the conformance suite under every profile, with the coverage matrix.
struct ConformanceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "conformance",
        abstract: "Run the conformance suite for each profile and print requirement coverage.",
        discussion: """
            Runs every script under --dir for each profile and prints a matrix:
            requirement, number of cases, and per profile pass / FAIL / skip / - (no
            case). Fails when a case fails, a requirement of the spec has no case, or a
            case names an unknown requirement.
            """)

    @Option(help: "Directory of conformance scripts.") var dir: String = "fixtures/conformance"
    @Option(help: "The spec whose requirement IDs must be covered.") var spec: String = "spec/ivshmem2.md"
    @Option(name: .customLong("profile"), help: "Profiles to run (repeatable; default all three).") var profiles: [String] = []
    @Option(help: "Write JUnit XML results here.") var junit: String?
    @Flag(help: "Print results as JSON instead of the matrix.") var json = false
    @Flag(help: "Print a line per case as it finishes.") var verbose = false

    func run() throws {
        try Signals.ignoreBrokenPipe()
        let specText: String
        do { specText = String(decoding: try FileSystem.readFile(spec), as: UTF8.self) } catch {
            throw ValidationError("cannot read the spec at \(spec): \(error) (run from the repository root or pass --spec)")
        }
        let report: ConformanceReport
        do {
            report = try Conformance.run(directory: dir, specText: specText, profiles: profiles.isEmpty ? Conformance.profiles : profiles) { r in
                if verbose || r.failure != nil {
                    writeStderr("\(r.skipped ? "SKIP" : r.passed ? "PASS" : "FAIL") \(r.script): \(r.caseName) [\(r.profile)]\n")
                    if let f = r.failure { writeStderr(f.render(path: r.script)) }
                }
            }
        } catch let e as ScriptError {
            throw ValidationError(e.description)
        }
        writeStdout(json ? Reports.json(report.results) : report.matrix())
        if let junit { try FileSystem.writeFile(junit, bytes: Array(Reports.junit(report.results).utf8)) }
        if !report.ok { throw ExitCode(1) }
    }
}
