import Foundation
import IvshmemModel
import IvshmemSpec
import Testing

/// The typed register map: hooks decoded and checked when the tables load (so a bad table names
/// its file and field instead of misbehaving), and the lock-free write path keeping registers,
/// the State Table and concurrent writers consistent.
@Suite("Register map")
struct RegisterMapTests {
    /// The built-in tables with `file` edited by `edit`.
    static func load(editing file: String, _ edit: (String) -> String) throws -> SpecTables {
        var files = SpecTables.builtInFiles
        files[file] = edit(files[file]!)
        return try SpecTables(files: files)
    }

    static func loadError(editing file: String, _ edit: (String) -> String) -> SpecError? {
        do {
            _ = try load(editing: file, edit)
            return nil
        } catch let e as SpecError {
            return e
        } catch {
            return nil
        }
    }

    @Test("REG-DB-1: an unknown hook name is a load error naming bar0.json and the field")
    func unknownHook() {
        let e = Self.loadError(editing: "bar0.json") { $0.replacingOccurrences(of: "\"hook\": \"doorbell\"", with: "\"hook\": \"doorbel\"") }
        #expect(e == .inFile("bar0.json", .unknownHook(field: "Doorbell", name: "doorbel")))
        #expect(e?.description.contains("bar0.json") == true)
    }

    @Test("REG-ST-1: a register region without the State hook is a load error, not a silent default")
    func missingHook() {
        let e = Self.loadError(editing: "bar0.json") { $0.replacingOccurrences(of: ", \"hook\": \"state\"", with: "") }
        #expect(e == .inFile("bar0.json", .missingHook(hook: "state", part: "the register region (BAR0)")))
    }

    @Test("MSIX-TBL-2: the MSI-X table entry needs its Vector Control hook")
    func missingVectorControl() {
        let e = Self.loadError(editing: "msix.json") { $0.replacingOccurrences(of: ", \"hook\": \"vectorControl\"", with: "") }
        #expect(e == .inFile("msix.json", .missingHook(hook: "vectorControl", part: "the MSI-X table entry")))
    }

    @Test("CFG-CMD-1: a BAR0 hook in config space is misplaced")
    func misplacedHook() {
        let e = Self.loadError(editing: "config-header.json") {
            $0.replacingOccurrences(of: "\"req\": \"CFG-CMD-1\"}", with: "\"req\": \"CFG-CMD-1\", \"hook\": \"doorbell\"}")
        }
        #expect(e == .inFile("config-header.json", .misplacedHook(field: "Command", hook: "doorbell", part: "the config header")))
    }

    @Test("REG-IC-1: a hooked register of the wrong width is a load error naming the field")
    func wrongWidth() {
        let e = Self.loadError(editing: "bar0.json") {
            $0.replacingOccurrences(of: "\"offset\": \"0x08\", \"width\": 4", with: "\"offset\": \"0x08\", \"width\": 2")
        }
        guard case .inFile("bar0.json", .invalidValue(field: "Interrupt Control", let key, text: "2")) = e else {
            Issue.record("expected a width error for Interrupt Control, got \(String(describing: e))")
            return
        }
        #expect(key.hasPrefix("width"))
    }

    @Test("REG-ACC-1: overlapping registers are a load error naming both")
    func overlap() {
        let e = Self.loadError(editing: "bar0.json") {
            $0.replacingOccurrences(of: "\"name\": \"State\",             \"offset\": \"0x10\"", with: "\"name\": \"State\",             \"offset\": \"0x0C\"")
        }
        guard case .inFile("bar0.json", .overlap(let what)) = e else {
            Issue.record("expected an overlap in bar0.json, got \(String(describing: e))")
            return
        }
        #expect(what.contains("State") && what.contains("Doorbell"))
    }

    @Test("REG-ID-1, REG-MAXP-1, REG-IC-1, REG-DB-1, REG-ST-1: the BAR0 register offsets come from the tables and follow a layout change")
    func registerOffsetsFollowTables() throws {
        let (_, stock) = try makeDevice(makeConfig())
        #expect(stock.registerOffsets == BAR0Registers(id: 0, maxPeers: 4, interruptControl: 8, doorbell: 0xC, state: 0x10))
        // Swap Doorbell and State: the device (and every tool using registerOffsets) follows.
        let tables = try Self.load(editing: "bar0.json") {
            $0.replacingOccurrences(of: "\"offset\": \"0x0C\"", with: "\"offset\": \"0xTMP\"")
                .replacingOccurrences(of: "\"offset\": \"0x10\"", with: "\"offset\": \"0x0C\"")
                .replacingOccurrences(of: "\"offset\": \"0xTMP\"", with: "\"offset\": \"0x10\"")
        }
        let memory = try SharedMemory(allocating: 0x3000)
        let moved = try IvshmemDevice(configuration: makeConfig(), sharedMemory: memory, link: nil, tables: tables)
        #expect(moved.registerOffsets.doorbell == 0x10 && moved.registerOffsets.state == 0x0C)
        moved.writeRegister(moved.registerOffsets.state, 0x55)
        #expect(moved.stateTableEntry(0) == 0x55, "State written at its new offset reaches the State Table")
    }

    @Test("REG-ST-2, SHM-ST-2: concurrent State writers leave the State Table entry equal to the register")
    func stateTableConverges() throws {
        let (_, d) = try makeDevice(makeConfig())
        let state = d.registerOffsets.state
        DispatchQueue.concurrentPerform(iterations: 4) { t in
            for k in 0..<20_000 { d.writeRegister(state, UInt32(t) << 24 | UInt32(k)) }
        }
        #expect(d.stateTableEntry(0) == d.readRegister(state))
    }

    @Test("CFG-ACC-1, CFG-CMD-1: concurrent writers of different bytes of one config word never lose each other's bytes")
    func concurrentByteWriters() throws {
        let (_, d) = try makeDevice(makeConfig())
        let cap = try #require(d.msixCap)
        d.configWrite(offset: PCIConfig.bar(0), size: 4, value: 0xFEB0_0000)  // so Memory Space on decodes a window
        // Command (bytes 4–5) and Interrupt Line (0x3C) are writable; write Command's low byte and
        // Interrupt Line from two threads, the MSI-X Control upper byte from a third.
        DispatchQueue.concurrentPerform(iterations: 3) { t in
            for k in 0..<20_000 {
                switch t {
                case 0: d.configWrite(offset: PCIConfig.command, size: 1, value: k % 2 == 0 ? 0x06 : 0x04)
                case 1: d.configWrite(offset: PCIConfig.interruptLine, size: 1, value: UInt32(k & 0xFF))
                default: d.configWrite(offset: cap + MSIXControl.capabilityOffset + 1, size: 1, value: k % 2 == 0 ? 0x80 : 0x00)
                }
            }
        }
        #expect(d.configRead(offset: PCIConfig.command, size: 2) == 0x04, "the last Command write (k odd) stands")
        #expect(d.configRead(offset: PCIConfig.interruptLine, size: 1) == UInt32(19_999 & 0xFF))
        #expect(d.configRead(offset: cap + MSIXControl.capabilityOffset, size: 2) & 0xC000 == 0)
        #expect(d.decodeWindows.isEmpty, "Memory Space off after the last Command write: the published windows say so too")
    }
}
