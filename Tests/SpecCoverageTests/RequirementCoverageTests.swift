import Foundation
import IvshmemSpec
import Testing
import IvshmemTestSupport

/// The coverage gate: every requirement ID defined in spec/ivshmem2.md (and, with the `V1-`
/// prefix, in spec/ivshmem1.md) is named by at least one test, every ID a test or table names
/// exists, and the tables compiled into the library are the ones in spec/tables.
@Suite struct RequirementCoverageTests {
    static let root = Repository.root
    /// A v2 ID, or a v1 ID (the same topics behind `V1-`): one pattern, so that a v1 ID is never
    /// also read as the v2 ID it ends with.
    static var idPattern: Regex<AnyRegexOutput> { try! Regex(#"\b(?:V1-)?(?:CFG|CAP|MSIX|REG|SHM|IRQ|DEV|PROTO|WIRE|SRV)(?:-[A-Z]+)+-[0-9]+\b"#) }

    static func specText(_ name: String = "ivshmem2.md") throws -> String {
        try String(contentsOf: root.appendingPathComponent("spec/\(name)"), encoding: .utf8)
    }

    /// IDs a spec document defines: `- **ID** statement`.
    static func definedIDs(in name: String = "ivshmem2.md") throws -> [String] {
        let defs = try Regex(#"(?m)^- \*\*((?:V1-)?[A-Z]+(?:-[A-Z]+)+-[0-9]+)\*\*"#)
        return try specText(name).matches(of: defs).map { String($0.output[1].substring!) }
    }

    /// Every ID either document defines.
    static func allDefinedIDs() throws -> Set<String> {
        Set(try definedIDs()).union(try definedIDs(in: "ivshmem1.md"))
    }

    /// IDs named in test display names or test source across Tests/.
    static func testedIDs() throws -> [String: [String]] {
        var out: [String: [String]] = [:]
        let tests = root.appendingPathComponent("Tests")
        let files = FileManager.default.enumerator(at: tests, includingPropertiesForKeys: nil)?.allObjects.compactMap { $0 as? URL } ?? []
        for url in files where url.pathExtension == "swift" && url.lastPathComponent != "RequirementCoverageTests.swift" {
            let text = try String(contentsOf: url, encoding: .utf8)
            // Only IDs inside a @Test(...) display name count: a mention in a comment is not a test.
            for line in text.split(separator: "\n") where line.contains("@Test(") {
                for m in line.matches(of: idPattern) { out[String(line[m.range]), default: []].append(url.lastPathComponent) }
            }
        }
        return out
    }

    @Test("every requirement ID in spec/ivshmem2.md is unique")
    func idsAreUnique() throws {
        let ids = try Self.definedIDs()
        #expect(ids.count > 100, "expected the spec to define its requirements, found \(ids.count)")
        let dups = Dictionary(grouping: ids, by: { $0 }).filter { $0.value.count > 1 }.keys.sorted()
        #expect(dups.isEmpty, "defined more than once: \(dups)")
    }

    @Test("every requirement ID has at least one test that names it")
    func everyRequirementIsTested() throws {
        let defined = Set(try Self.definedIDs())
        let tested = try Self.testedIDs()
        let missing = defined.subtracting(tested.keys).sorted()
        #expect(missing.isEmpty, "\(missing.count) requirement(s) without a test: \(missing.joined(separator: ", "))")
    }

    @Test("every v1 requirement ID in spec/ivshmem1.md is unique, has the V1- prefix and a test that names it")
    func everyV1RequirementIsTested() throws {
        let ids = try Self.definedIDs(in: "ivshmem1.md")
        #expect(ids.count > 40, "expected spec/ivshmem1.md to define its requirements, found \(ids.count)")
        let dups = Dictionary(grouping: ids, by: { $0 }).filter { $0.value.count > 1 }.keys.sorted()
        #expect(dups.isEmpty, "defined more than once: \(dups)")
        #expect(ids.allSatisfy { $0.hasPrefix("V1-") }, "v1 IDs carry the V1- prefix")
        let missing = Set(ids).subtracting(try Self.testedIDs().keys).sorted()
        #expect(missing.isEmpty, "\(missing.count) v1 requirement(s) without a test: \(missing.joined(separator: ", "))")
    }

    @Test("spec/ivshmem1.md's index lists exactly its defined IDs")
    func v1IndexMatchesDefinitions() throws {
        let text = try Self.specText("ivshmem1.md")
        guard let r = text.range(of: "Requirement index") else {
            Issue.record("spec/ivshmem1.md has no requirement index")
            return
        }
        let rows = try Regex(#"(?m)^\| (V1-[A-Z]+(?:-[A-Z]+)+-[0-9]+) \|"#)
        let indexed = text[r.lowerBound...].matches(of: rows).map { String($0.output[1].substring!) }
        #expect(indexed == (try Self.definedIDs(in: "ivshmem1.md")))
    }

    @Test("no test names a requirement the spec does not define")
    func noUnknownRequirements() throws {
        let defined = try Self.allDefinedIDs()
        let unknown = try Self.testedIDs().filter { !defined.contains($0.key) }
        #expect(unknown.isEmpty, "unknown IDs: \(unknown.map { "\($0.key) in \($0.value.joined(separator: ", "))" }.sorted())")
    }

    @Test("test names list requirement IDs one by one, never as ranges")
    func noRanges() throws {
        let range = try Regex(#"[A-Z0-9]+(?:-[A-Z]+)+-[0-9]+\s*(?:…|\.\.\.?|–)\s*-?[0-9]+"#)
        var offenders: [String] = []
        let files = FileManager.default.enumerator(at: Self.root.appendingPathComponent("Tests"), includingPropertiesForKeys: nil)?.allObjects.compactMap { $0 as? URL } ?? []
        for url in files where url.pathExtension == "swift" {
            for line in try String(contentsOf: url, encoding: .utf8).split(separator: "\n") where line.contains("@Test(") && line.contains(range) {
                offenders.append("\(url.lastPathComponent): \(line.trimmingCharacters(in: .whitespaces))")
            }
        }
        #expect(offenders.isEmpty, "the coverage gate counts only IDs written out: \(offenders)")
    }

    @Test("every requirement ID cited by spec/tables exists in spec/ivshmem2.md or spec/ivshmem1.md")
    func tablesCiteKnownRequirements() throws {
        let defined = try Self.allDefinedIDs()
        let unknown = SpecTables.builtIn.citedRequirements.subtracting(defined).sorted()
        #expect(unknown.isEmpty, "tables cite undefined IDs: \(unknown)")
    }

    @Test("the tables compiled into the library are spec/tables (run `make tables` after editing)")
    func embeddedTablesMatchFiles() throws {
        let onDisk = try SpecTables(directory: Self.root.appendingPathComponent("spec/tables").path)
        #expect(onDisk == SpecTables.builtIn)
    }

    @Test("the spec's index lists exactly the defined IDs")
    func indexMatchesDefinitions() throws {
        let text = try Self.specText()
        guard let r = text.range(of: "## 15. Requirement index") else {
            Issue.record("spec/ivshmem2.md has no '## 15. Requirement index' section")
            return
        }
        let rows = try Regex(#"(?m)^\| ([A-Z]+(?:-[A-Z]+)+-[0-9]+) \|"#)
        let indexed = text[r.lowerBound...].matches(of: rows).map { String($0.output[1].substring!) }
        #expect(indexed == (try Self.definedIDs()))
    }
}
