import IvshmemHarness

/// Runs a file of the conformance suite (`fixtures/conformance/NAME`) under one profile, so a
/// Swift test exercises the harness's implementation of a requirement (its script and built-in
/// checks) instead of a second copy of it.
public enum ConformanceScripts {
    /// Whether every case of the file passed, and the report to show when not.
    public static func run(_ name: String, profile: String = "spec") throws -> (passed: Bool, report: String) {
        let script = try ScriptParser.parse(Repository.text("fixtures/conformance/" + name), path: name)
        let results = ScriptRunner().run(script, profile: profile)
        return (results.count == script.cases.count && results.allSatisfy(\.passed), Reports.text(results))
    }
}
