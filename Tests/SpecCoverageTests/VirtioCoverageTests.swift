import Foundation
import Testing

/// The coverage gate for spec/virtio-ivshmem.md (as RequirementCoverageTests is for
/// spec/ivshmem2.md): its VIRTIO-… IDs are unique, indexed, each named by a @Test display name
/// and covered by a case of fixtures/conformance-virtio, and nothing names an ID it lacks.
@Suite struct VirtioCoverageTests {
    static let root = RequirementCoverageTests.root
    static var idPattern: Regex<AnyRegexOutput> { try! Regex(#"\bVIRTIO(?:-[A-Z]+)+-[0-9]+\b"#) }

    static func specText() throws -> String {
        try String(contentsOf: root.appendingPathComponent("spec/virtio-ivshmem.md"), encoding: .utf8)
    }

    static func definedIDs() throws -> [String] {
        let defs = try Regex(#"(?m)^- \*\*(VIRTIO(?:-[A-Z]+)+-[0-9]+)\*\*"#)
        return try specText().matches(of: defs).map { String($0.output[1].substring!) }
    }

    /// IDs in the lines of the files under `folder` with `suffix` that satisfy `keep`.
    static func namedIDs(in folder: String, suffix: String, _ keep: (Substring) -> Bool) throws -> Set<String> {
        var out = Set<String>()
        let files = FileManager.default.enumerator(at: root.appendingPathComponent(folder), includingPropertiesForKeys: nil)?.allObjects.compactMap { $0 as? URL } ?? []
        for url in files where url.path.hasSuffix(suffix) {
            for line in try String(contentsOf: url, encoding: .utf8).split(separator: "\n") where keep(line) {
                for m in line.matches(of: idPattern) { out.insert(String(line[m.range])) }
            }
        }
        return out
    }

    @Test("every requirement ID in spec/virtio-ivshmem.md is unique and in its index")
    func uniqueAndIndexed() throws {
        let ids = try Self.definedIDs()
        #expect(ids.count >= 25, "expected the transport's requirements, found \(ids.count)")
        #expect(Set(ids).count == ids.count, "defined more than once: \(Dictionary(grouping: ids, by: { $0 }).filter { $0.value.count > 1 }.keys.sorted())")
        let text = try Self.specText()
        let index = try #require(text.range(of: "## 14. Requirement index"))
        let rows = try Regex(#"(?m)^\| (VIRTIO(?:-[A-Z]+)+-[0-9]+) \|"#)
        #expect(text[index.lowerBound...].matches(of: rows).map { String($0.output[1].substring!) } == ids)
    }

    @Test("every virtio requirement ID is named by a test, and tests name only defined ones")
    func everyRequirementTested() throws {
        let defined = Set(try Self.definedIDs())
        let tested = try Self.namedIDs(in: "Tests", suffix: ".swift") { $0.contains("@Test(") }
        #expect(defined.subtracting(tested).sorted() == [], "virtio requirements without a test")
        #expect(tested.subtracting(defined).sorted() == [], "tests name undefined virtio IDs")
    }

    @Test("every virtio requirement ID is covered by a conformance case, and cases cover only defined ones")
    func everyRequirementHasACase() throws {
        let defined = Set(try Self.definedIDs())
        let covered = try Self.namedIDs(in: "fixtures/conformance-virtio", suffix: ".ivs") { $0.hasPrefix("covers ") }
        #expect(defined.subtracting(covered).sorted() == [], "virtio requirements without a conformance case")
        #expect(covered.subtracting(defined).sorted() == [], "cases cover undefined virtio IDs")
    }
}
