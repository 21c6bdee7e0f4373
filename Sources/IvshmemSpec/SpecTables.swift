#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The whole machine-readable spec: the tables under `spec/tables/`. The device model is built
/// from a value of this type, so editing the tables changes the model.
public struct SpecTables: Sendable, Equatable {
    public var header: [RegisterField]
    public var vendorCapability: [RegisterField]
    public var vendorCapabilityID: UInt8
    public var msixCapability: [RegisterField]
    public var msixCapabilityID: UInt8
    public var msixTableEntry: [RegisterField]
    public var pbaRequirement: String
    public var bar0: [RegisterField]
    public var bar0Size: SpecValue
    public var sections: [SharedMemorySectionSpec]
    public var pageSize: UInt64
    public var profiles: [String: ProfileSpec]
    /// The v1 device's header and register region (spec/ivshmem1.md §1, §3); its MSI-X
    /// capability and table entries are ``msixCapability`` and ``msixTableEntry``.
    public var v1Header: [RegisterField]
    public var v1Bar0: [RegisterField]
    public var v1Bar0Size: SpecValue

    /// The file names a spec directory must hold, in the order they are read.
    public static let fileNames = [
        "config-header.json", "vendor-capability.json", "msix.json", "bar0.json",
        "shared-memory.json", "profiles.json", "v1-config-header.json", "v1-bar0.json",
    ]

    /// The tables compiled into the library (generated from `spec/tables/` by `make`).
    public static let builtIn: SpecTables = {
        do { return try SpecTables(files: EmbeddedTables.files) } catch {
            preconditionFailure("built-in spec tables do not parse: \(error)")
        }
    }()

    /// Parses the tables from file contents keyed by file name; errors name the file by its
    /// entry in `paths` when it has one (where it was read from).
    public init(files: [String: String], paths: [String: String] = [:]) throws {
        func data(_ name: String) throws -> Data {
            guard let text = files[name] else { throw SpecError.missingFile(name) }
            return Data(text.utf8)
        }
        func decode<T: Decodable>(_ type: T.Type, _ name: String) throws -> T {
            let file = paths[name] ?? name
            do { return try JSONDecoder().decode(type, from: try data(name)) } catch let e as SpecError {
                if case .missingFile = e { throw e }
                throw SpecError.inFile(file, e)
            } catch {
                if let problem = JSONSyntax.firstProblem(in: files[name] ?? "") {
                    throw SpecError.malformed(file: file, detail: "not valid JSON: \(problem)")
                }
                throw SpecError.malformed(file: file, detail: Self.describe(error))
            }
        }
        let h = try decode(FieldList.self, "config-header.json")
        let v = try decode(CapabilityFile.self, "vendor-capability.json")
        let m = try decode(MSIXFile.self, "msix.json")
        let b = try decode(BAR0File.self, "bar0.json")
        let s = try decode(SharedMemoryFile.self, "shared-memory.json")
        let p = try decode(ProfilesFile.self, "profiles.json")
        let v1h = try decode(FieldList.self, "v1-config-header.json")
        let v1b = try decode(BAR0File.self, "v1-bar0.json")
        try HookRules.v1ConfigHeader.validate(v1h.fields, file: "v1-config-header.json", part: "the v1 config header")
        try HookRules.v1Bar0.validate(v1b.registers, file: "v1-bar0.json", part: "the v1 register region (BAR0)")
        v1Header = v1h.fields
        v1Bar0 = v1b.registers
        v1Bar0Size = try SpecValue(text: v1b.size, field: "v1-bar0", key: "size")
        header = h.fields
        vendorCapability = v.fields
        vendorCapabilityID = try Self.byte(v.capabilityID, "vendor-capability.json", "capabilityID")
        msixCapability = m.capability
        msixCapabilityID = try Self.byte(m.capabilityID, "msix.json", "capabilityID")
        msixTableEntry = m.tableEntry
        for (file, fields, id) in [("vendor-capability.json", v.fields, vendorCapabilityID), ("msix.json", m.capability, msixCapabilityID)] {
            guard let idField = fields.first(where: { $0.offset == 0 && $0.width == 1 }), idField.reset == .literal(UInt64(id)) else {
                throw SpecError.malformed(file: file, detail: "the capability's byte at offset 0 must reset to capabilityID 0x\(String(id, radix: 16))")
            }
        }
        // Hooks are checked here, once, so that a bad table fails to load with its file and
        // field named (and `spec check` reports it) instead of misbehaving in the model.
        try HookRules.configHeader.validate(h.fields, file: "config-header.json", part: "the config header")
        try HookRules.vendorCapability.validate(v.fields, file: "vendor-capability.json", part: "the vendor capability")
        try HookRules.msixCapability.validate(m.capability, file: "msix.json", part: "the MSI-X capability")
        try HookRules.msixTableEntry.validate(m.tableEntry, file: "msix.json", part: "the MSI-X table entry")
        try HookRules.bar0.validate(b.registers, file: "bar0.json", part: "the register region (BAR0)")
        pbaRequirement = m.pba.req
        bar0 = b.registers
        bar0Size = try SpecValue(text: b.size, field: "bar0", key: "size")
        sections = s.sections
        guard let ps = SpecValue.parseNumber(s.pageSize), ps > 0, ps & (ps - 1) == 0 else {
            throw SpecError.invalidValue(field: "shared-memory", key: "pageSize", text: s.pageSize)
        }
        guard ps == SharedMemoryGeometry.pageSize else {
            throw SpecError.invalidValue(field: "shared-memory", key: "pageSize (only 0x1000 is supported)", text: s.pageSize)
        }
        pageSize = ps
        profiles = p.profiles
        guard profiles["spec"] != nil else { throw SpecError.malformed(file: "profiles.json", detail: "no 'spec' profile") }
    }

    /// Reads the tables from a directory (e.g. a modified copy of `spec/tables`).
    public init(directory: String) throws {
        var files: [String: String] = [:]
        for name in Self.fileNames {
            let path = directory + "/" + name
            guard let d = FileManager.default.contents(atPath: path), let text = String(data: d, encoding: .utf8) else {
                throw SpecError.missingFile(path)
            }
            files[name] = text
        }
        try self.init(files: files)
    }

    /// The built-in tables' file contents by name.
    public static var builtInFiles: [String: String] { EmbeddedTables.files }

    /// Reads the tables in `directory` over the built-in ones: a file the directory lacks is
    /// taken from the built-in set, so a spec change needs only the files it edits.
    ///
    /// Every other file in the directory is an error naming it (a misspelt table would
    /// otherwise be ignored silently), except notes: `*.txt`, `*.md` and hidden files.
    public init(overlaying directory: String) throws {
        let overlay = try Self.overlayFiles(directory)
        try self.init(files: overlay.files, paths: overlay.paths)
    }

    /// The file contents of a spec-change directory over the built-in ones, and the path of
    /// each file read from the directory (see ``init(overlaying:)``).
    public static func overlayFiles(_ directory: String) throws -> (files: [String: String], paths: [String: String]) {
        var files = EmbeddedTables.files
        var paths: [String: String] = [:]
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: directory) } catch {
            throw SpecError.missingFile("\(directory) (cannot list it: \(error))")
        }
        for name in names.sorted() where !fileNames.contains(name) {
            if name.hasPrefix(".") || name.hasSuffix(".txt") || name.hasSuffix(".md") { continue }
            throw SpecError.unexpectedFile(directory + "/" + name, known: fileNames)
        }
        for name in fileNames {
            let path = directory + "/" + name
            if let d = FileManager.default.contents(atPath: path) {
                guard let text = String(data: d, encoding: .utf8) else { throw SpecError.malformed(file: path, detail: "not UTF-8") }
                files[name] = text
                paths[name] = path
            }
        }
        guard !paths.isEmpty else {
            throw SpecError.missingFile("\(directory)/{\(Self.fileNames.joined(separator: ","))} (none of the table files is there)")
        }
        return (files, paths)
    }

    /// A decoding error in table terms: where (the JSON path) and what.
    static func describe(_ error: any Error) -> String {
        func path(_ keys: [any CodingKey]) -> String {
            keys.map { k in k.intValue.map { "[\($0)]" } ?? "." + k.stringValue }.joined().drop { $0 == "." }.description
        }
        guard let e = error as? DecodingError else { return "\(error)" }
        switch e {
        case .keyNotFound(let key, let c): return "\(path(c.codingPath + [key])): missing"
        case .typeMismatch(_, let c), .valueNotFound(_, let c), .dataCorrupted(let c):
            return "\(path(c.codingPath).isEmpty ? "top level" : path(c.codingPath)): \(c.debugDescription)"
        @unknown default: return "\(error)"
        }
    }

    /// Every requirement ID the tables cite.
    public var citedRequirements: Set<String> {
        var ids = Set<String>()
        for f in header + vendorCapability + msixCapability + msixTableEntry + bar0 + v1Header + v1Bar0 { ids.insert(f.requirement) }
        for s in sections { ids.insert(s.req) }
        ids.insert(pbaRequirement)
        return ids
    }

    private static func byte(_ text: String, _ file: String, _ key: String) throws -> UInt8 {
        guard let v = SpecValue.parseNumber(text), v <= 0xFF else {
            throw SpecError.invalidValue(field: file, key: key, text: text)
        }
        return UInt8(v)
    }
}

/// One shared-memory section: its size and the rights peers have on it.
public struct SharedMemorySectionSpec: Sendable, Equatable, Codable {
    public var name: String
    public var size: String
    public var perPeer: Bool
    public var owner: String?
    public var others: String
    public var req: String
}

/// One behaviour profile (`spec`, `jailhouse`, `qemu-rfc`) as declared in `profiles.json`.
public struct ProfileSpec: Sendable, Equatable, Codable {
    public struct CapabilityPlacement: Sendable, Equatable, Codable {
        public var kind: String
        public var offset: String
    }
    public var description: String
    public var capabilities: [CapabilityPlacement]
    public var sharedMemory: String
    public var maxVectors: Int
    public var doorbellVectorMask: String
    public var bar0WriteAliasMask: String
    public var maskedEvents: String
    public var oneShotSurvivesReset: Bool
    public var outputSectionsOverStateTableWhenRWEmpty: Bool
    public var subsystemVendorID: String
    public var subsystemID: String
    /// Whether INTx mode and an I/O register region may be configured (DEV-CFG-7).
    public var intx: Bool
    public var ioRegisters: Bool
    /// A fixed BAR1 layout (Jailhouse); absent: PBA at max(800h, 16·V), BAR1 a power of two.
    /// INTx pin = (PCI device number mod 4) + 1 instead of the configured pin (CFG-INT-2).
    public var intxPinFromSlot: Bool?
    public var msixPBAOffset: String?
    public var msixBARSize: String?
}

private struct FieldList: Decodable { var fields: [RegisterField] }
private struct CapabilityFile: Decodable { var capabilityID: String; var fields: [RegisterField] }
private struct MSIXFile: Decodable {
    struct PBA: Decodable { var req: String }
    var capabilityID: String
    var capability: [RegisterField]
    var tableEntry: [RegisterField]
    var pba: PBA
}
private struct BAR0File: Decodable { var size: String; var registers: [RegisterField] }
private struct SharedMemoryFile: Decodable { var pageSize: String; var sections: [SharedMemorySectionSpec] }
private struct ProfilesFile: Decodable { var profiles: [String: ProfileSpec] }
