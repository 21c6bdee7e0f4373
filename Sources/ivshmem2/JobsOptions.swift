import ArgumentParser
import IvshmemHarness

/// `-j/--jobs`, shared by the commands that run script cases (`run`, `conformance`,
/// `spec check`): how many case runs go at once, each with its own server.
struct JobsOptions: ParsableArguments {
    @Option(name: [.customShort("j"), .customLong("jobs")], help: "Case runs at once (each with its own server).")
    var count: Int = ScriptRunner.defaultJobs

    func validate() throws {
        guard count >= 1 else { throw ValidationError("--jobs must be at least 1, got \(count)") }
    }
}
