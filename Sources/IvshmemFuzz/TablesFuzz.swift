import IvshmemHarness
import IvshmemModel
import IvshmemSpec

/// Input: one or more table files, each introduced by a line `=== <file name>` (one of
/// `SpecTables.fileNames`); files the input does not give are the built-in ones, as for
/// `spec check --spec DIR`. An unknown file name rejects the input.
///
/// Tables that load are then built into devices the way `spec check` does — every profile with
/// MSI-X, with INTx and with an I/O register region — and each device's config space and
/// registers are read and written, so a table value the loader accepts cannot trap the model.
enum TablesFuzz {
    static let marker = "=== "

    static func run(_ input: [UInt8]) -> FuzzTarget.Outcome {
        guard let edited = sections(input) else { return .rejected }
        var files = SpecTables.builtInFiles
        files.merge(edited) { _, new in new }
        let tables: SpecTables
        do { tables = try SpecTables(files: files) } catch {
            invariant(!"\(error)".isEmpty, "empty error text")
            return .accepted
        }
        invariant(tables.profiles["spec"] != nil, "tables without a spec profile loaded")
        _ = tables.citedRequirements
        guard files != SpecTables.builtInFiles else { return .accepted }  // nothing new to build
        for (_, configuration) in SpecCheck.variants(tables).prefix(12) {
            exercise(configuration, tables)
        }
        return .accepted
    }

    /// Splits the input at `=== name` lines; nil when a name is not a table file or text comes
    /// before the first marker. (Works on bytes: splitting a String into lines costs more than
    /// the rest of a run.)
    static func sections(_ input: [UInt8]) -> [String: String]? {
        let marker = Array(Self.marker.utf8)
        var out: [String: String] = [:]
        var name: String?
        var bodyStart = 0
        func finish(at end: Int) {
            // The newline before the next marker belongs to the marker line.
            if let name { out[name] = String(decoding: input[bodyStart..<max(bodyStart, end - 1)], as: UTF8.self) }
        }
        var lineStart = 0
        while lineStart <= input.count {
            let lineEnd = input[lineStart...].firstIndex(of: UInt8(ascii: "\n")) ?? input.count
            if input[lineStart..<lineEnd].starts(with: marker) {
                finish(at: lineStart)
                let file = String(decoding: input[(lineStart + marker.count)..<lineEnd], as: UTF8.self)
                guard SpecTables.fileNames.contains(file) else { return nil }
                name = file
                bodyStart = min(lineEnd + 1, input.count)
            } else if name == nil {
                return nil
            }
            lineStart = lineEnd + 1
        }
        finish(at: input.count + 1)
        return out.isEmpty ? nil : out
    }

    /// Builds one device from `tables`, then reads every config byte, writes all-ones to every
    /// config dword and reads it back, and does the same for every register the BAR0 table names.
    static func exercise(_ configuration: DeviceConfiguration, _ tables: SpecTables) {
        guard let fabric = try? LocalFabric(template: configuration, tables: tables),
              let device = try? fabric.addDevice() else { return }
        for offset in 0..<ConfigSpace.size { _ = device.configRead(offset: offset, size: 1) }
        for offset in stride(from: 0, to: ConfigSpace.size, by: 4) {
            device.configWrite(offset: offset, size: 4, value: 0xFFFF_FFFF)
            _ = device.configRead(offset: offset, size: 4)
        }
        for field in tables.bar0 {
            let offset = UInt64(field.offset)
            _ = device.barRead(0, offset: offset, size: field.width)
            device.barWrite(0, offset: offset, size: field.width, value: .max)
        }
        for index in 0..<3 { _ = device.programmedAddress(bar: index) }
        device.reset()
        _ = device.findings
    }
}
