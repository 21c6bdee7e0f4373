import IvshmemPosix

/// The requirement IDs a spec document defines (`- **ID** statement` lines), in order.
public enum RequirementCatalog {
    public static func ids(inSpecText text: String) -> [String] {
        var out: [String] = []
        for line in text.split(separator: "\n") where line.hasPrefix("- **") {
            let rest = line.dropFirst(4)
            guard let end = rest.range(of: "**") else { continue }
            let id = String(rest[..<end.lowerBound])
            if ScriptParser.isRequirementID(id) { out.append(id) }
        }
        return out
    }
}

/// The conformance suite: every script under a directory, run under each profile, mapped to
/// the spec's requirement IDs.
public struct ConformanceReport: Sendable {
    public var requirements: [String]
    public var profiles: [String]
    public var results: [CaseResult]

    /// Requirement IDs no case covers.
    public var uncovered: [String] {
        let covered = Set(results.flatMap(\.covers))
        return requirements.filter { !covered.contains($0) }
    }

    /// IDs cases name that the spec does not define, with the script naming them.
    public var unknown: [(id: String, script: String)] {
        let known = Set(requirements)
        var seen = Set<String>()
        var out: [(String, String)] = []
        for r in results {
            for id in r.covers where !known.contains(id) && seen.insert(id + r.script).inserted { out.append((id, r.script)) }
        }
        return out
    }

    public var failed: [CaseResult] { results.filter { $0.failure != nil } }
    public var ok: Bool { failed.isEmpty && uncovered.isEmpty && unknown.isEmpty }

    /// Result of one requirement under one profile: fail if any covering case failed, pass if
    /// one passed, skip if every covering case was skipped, "-" when none covers it.
    public func status(_ id: String, _ profile: String) -> String {
        let rs = results.filter { $0.profile == profile && $0.covers.contains(id) }
        if rs.isEmpty { return "-" }
        if rs.contains(where: { $0.failure != nil }) { return "FAIL" }
        if rs.contains(where: \.passed) { return "pass" }
        return "skip"
    }

    public func matrix() -> String {
        let w = max(12, (requirements.map(\.count).max() ?? 0) + 2)
        func pad(_ s: String, _ n: Int) -> String { s + String(repeating: " ", count: max(1, n - s.count)) }
        var out = pad("REQUIREMENT", w) + pad("CASES", 7) + profiles.map { pad($0, 11) }.joined() + "\n"
        for id in requirements {
            let cases = Set(results.filter { $0.covers.contains(id) }.map { "\($0.script)#\($0.caseName)" }).count
            out += pad(id, w) + pad(String(cases), 7) + profiles.map { pad(status(id, $0), 11) }.joined() + "\n"
        }
        let runs = results.filter { !$0.skipped }
        out += "\n\(requirements.count) requirements, \(requirements.count - uncovered.count) covered; \(runs.filter(\.passed).count) passed, \(failed.count) failed, \(results.filter(\.skipped).count) skipped case runs\n"
        let skips = results.filter(\.skipped)
        if !skips.isEmpty {
            out += "skipped case runs:\n"
            for r in skips { out += "  \(r.script): \(r.caseName) [\(r.profile)]: \(r.skipReason ?? "no reason recorded")\n" }
        }
        if !uncovered.isEmpty { out += "without a case: \(uncovered.joined(separator: " "))\n" }
        for u in unknown { out += "unknown requirement \(u.id) named in \(u.script)\n" }
        return out
    }
}

public enum Conformance {
    public static let profiles = ["spec", "jailhouse", "qemu-rfc"]

    /// Every `*.ivs` file under `directory`, sorted.
    public static func scripts(in directory: String) throws -> [String] {
        var out: [String] = []
        func walk(_ dir: String) throws {
            for name in try FileSystem.listDirectory(dir).sorted() {
                let path = dir + "/" + name
                if name.hasSuffix(".ivs") { out.append(path) } else if (try? FileSystem.status(ofPath: path))??.isDirectory == true { try walk(path) }
            }
        }
        try walk(directory)
        return out
    }

    /// Parses every script and runs each case under each profile, `jobs` cases at a time.
    public static func run(directory: String, specText: String, profiles: [String] = Conformance.profiles, runner: ScriptRunner = ScriptRunner(),
                           jobs: Int = ScriptRunner.defaultJobs, progress: @escaping @Sendable (CaseResult, Int, Int) -> Void = { _, _, _ in }) throws -> ConformanceReport {
        let parsed = try scripts(in: directory).map { path in
            try ScriptParser.parse(String(decoding: try FileSystem.readFile(path), as: UTF8.self), path: path)
        }
        let runs = CaseRun.all(parsed, profiles: profiles)
        let results = runner.run(runs, jobs: jobs) { r, done in progress(r, done, runs.count) }
        return ConformanceReport(requirements: RequirementCatalog.ids(inSpecText: specText), profiles: profiles, results: results)
    }
}
