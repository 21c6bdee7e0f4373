import CBench
import IvshmemModel
import IvshmemPlatform
import IvshmemSpec

struct RegisterResult {
    var name: String
    var oursPerSecond: Double
    var baselinePerSecond: Double
    var checksumsAgree: Bool
}

/// Config-space and BAR0 accesses through `PCIPlatform` (decode, masks, hooks, checking on)
/// against a C dispatcher built from the same tables' masks, on the same access mix.
struct RegisterBench {
    /// Per side, in `trials` alternating slices.
    let seconds: Double
    var trials = 30

    func run() throws -> [RegisterResult] {
        let configuration = DeviceConfiguration(maxPeers: 2, vectors: 2)
        let geometry = try configuration.geometry()
        let memory = try IvshmemModel.SharedMemory(allocating: Int(geometry.totalSize))
        let device = try IvshmemDevice(configuration: configuration, sharedMemory: memory, link: nil)
        let platform = PCIPlatform()
        let bdf = try BDF(device: 3)
        try platform.add(device, at: bdf)
        var firmware = Firmware()
        let bars = firmware.assign(platform, bdf)
        guard let bar0 = bars[0], let cap = device.layout.capabilities.first(where: { $0.kind == .msix }) else {
            throw BenchError("no BAR0 or MSI-X capability")
        }
        let msixControl = cap.offset + MSIXControl.capabilityOffset
        platform.configWrite(bdf, offset: msixControl, size: 2, value: platform.configRead(bdf, offset: msixControl, size: 2) | UInt32(MSIXControl.enable.rawValue))
        platform.mmioWrite(bar0 + device.registerOffsets.interruptControl, size: 4, value: UInt64(InterruptControlBits.enable))

        var c = try cDevice(for: device, bdf: bdf, memory: memory, ecamBase: platform.ecamBase)
        let command = platform.configRead(bdf, offset: PCIConfig.command, size: 2)
        let control = platform.configRead(bdf, offset: msixControl, size: 2)
        let line = platform.configRead(bdf, offset: PCIConfig.interruptLine, size: 1)
        func cfg(_ off: Int, _ size: Int, write: UInt32? = nil) -> cb_access {
            cb_access(space: 0, size: Int32(size), is_write: write == nil ? 0 : 1, offset: Int32(off), address: 0, value: UInt64(write ?? 0))
        }
        func mem(_ off: UInt64, write: UInt32? = nil) -> cb_access {
            cb_access(space: 1, size: 4, is_write: write == nil ? 0 : 1, offset: 0, address: bar0 + off, value: UInt64(write ?? 0))
        }
        let configMix = [
            cfg(0x00, 4), cfg(0x04, 2), cfg(0x04, 2, write: command), cfg(0x10, 4),
            cfg(cap.offset + 2, 2), cfg(cap.offset + 2, 2, write: control), cfg(0x3C, 1), cfg(0x3C, 1, write: line),
        ]
        let bar0Mix = [mem(0x00), mem(0x04), mem(0x08), mem(0x08, write: 1), mem(0x10), mem(0x10, write: 0)]
        var out: [RegisterResult] = []
        for (name, mix) in [("config space (8-access mix)", configMix), ("BAR0 registers (6-access mix)", bar0Mix)] {
            // Short slices of each side, alternating, summed per side: this machine is shared,
            // and its speed drifts by tens of percent over seconds; one long run per side turned
            // that drift into the ratio (0.58× to 0.91× for the same code). Alternating 30 ms
            // slices gives both sides the same conditions.
            let (ours, oursSum, base, baseSum) = mix.withUnsafeBufferPointer { buf in
                let swiftRounds = rounds(forSeconds: seconds / Double(trials)) { swiftPass(platform: platform, bdf: bdf, ops: buf, rounds: $0).0 }
                let cRounds = rounds(forSeconds: seconds / Double(trials)) { cPass(&c, ops: buf, rounds: $0).0 }
                var tSwift = 0.0, tC = 0.0
                for _ in 0..<trials {
                    tSwift += swiftPass(platform: platform, bdf: bdf, ops: buf, rounds: swiftRounds).0
                    tC += cPass(&c, ops: buf, rounds: cRounds).0
                }
                let n = Double(trials * buf.count)
                return (n * Double(swiftRounds) / tSwift, swiftPass(platform: platform, bdf: bdf, ops: buf, rounds: 1).1,
                        n * Double(cRounds) / tC, cPass(&c, ops: buf, rounds: 1).1)
            }
            out.append(RegisterResult(name: name, oursPerSecond: ours, baselinePerSecond: base, checksumsAgree: oursSum == baseSum))
        }
        return out
    }

    private func rounds(forSeconds s: Double, _ body: (Int) -> Double) -> Int {
        var r = 100
        while true {
            let t = body(r)
            if t > 0.005 { return max(1, Int(Double(r) * s / t)) }
            r *= 4
        }
    }

    private func swiftPass(platform: PCIPlatform, bdf: BDF, ops: UnsafeBufferPointer<cb_access>, rounds: Int) -> (Double, UInt64) {
        var sum: UInt64 = 0
        let t0 = nowNS()
        for _ in 0..<rounds {
            for a in ops {
                if a.space == 0 {
                    if a.is_write != 0 { platform.configWrite(bdf, offset: Int(a.offset), size: Int(a.size), value: UInt32(truncatingIfNeeded: a.value)) }
                    else { sum &+= UInt64(platform.configRead(bdf, offset: Int(a.offset), size: Int(a.size))) }
                } else {
                    if a.is_write != 0 { platform.mmioWrite(a.address, size: Int(a.size), value: a.value) }
                    else { sum &+= platform.mmioRead(a.address, size: Int(a.size)) }
                }
            }
        }
        return (Double(nowNS() - t0) / 1e9, sum)
    }

    private func cPass(_ c: inout cb_device, ops: UnsafeBufferPointer<cb_access>, rounds: Int) -> (Double, UInt64) {
        var sum: UInt64 = 0
        let t = cb_register_bench(&c, 1, ops.baseAddress, Int32(ops.count), rounds, &sum)
        return (Double(t) / 1e9, sum)
    }

    /// The C dispatcher's device: the same per-byte masks (resolved from the same tables), the
    /// current register values, the same BAR0 geometry and profile masks.
    func cDevice(for device: IvshmemDevice, bdf: BDF, memory: IvshmemModel.SharedMemory, ecamBase: UInt64) throws -> cb_device {
        var c = cb_device()
        c.bus = bdf.bus; c.dev = bdf.device; c.fn = bdf.function
        c.ecam_base = ecamBase
        let layout = device.layout
        let config = try ConfigSpace(layout: layout, tables: .builtIn)
        withUnsafeMutableBytes(of: &c.cfg_field) { $0.withMemoryRebound(to: Int16.self) { for i in $0.indices { $0[i] = -1 } } }
        withUnsafeMutableBytes(of: &c.reg_field) { $0.withMemoryRebound(to: Int16.self) { for i in $0.indices { $0[i] = -1 } } }
        c.msix_control_field = -1; c.doorbell_field = -1; c.state_field = -1
        for (index, f) in config.block.fields.enumerated() {
            if f.hook == .msixControl { c.msix_control_field = Int32(index) }
            for k in 0..<f.width {
                let i = f.offset + k
                let shift = UInt64(k * 8)
                withUnsafeMutableBytes(of: &c.cfg_wm) { $0[i] = UInt8(truncatingIfNeeded: f.writable >> shift) }
                withUnsafeMutableBytes(of: &c.cfg_w1c) { $0[i] = UInt8(truncatingIfNeeded: f.writeOneToClear >> shift) }
                withUnsafeMutableBytes(of: &c.cfg_rd) { $0[i] = f.readable ? 1 : 0 }
                withUnsafeMutableBytes(of: &c.cfg_field) { $0.storeBytes(of: Int16(index), toByteOffset: i * 2, as: Int16.self) }
            }
        }
        for i in 0..<256 {
            let v = UInt8(truncatingIfNeeded: device.configRead(offset: i, size: 1))
            withUnsafeMutableBytes(of: &c.cfg) { $0[i] = v }
        }
        let lookup = { (n: String) in layout.parameter(n) }
        c.reg_size = Int32(layout.registerRegionSize)
        for (index, f) in SpecTables.builtIn.bar0.enumerated() {
            let widthMask: UInt64 = f.width == 8 ? .max : (1 << UInt64(f.width * 8)) - 1
            let writable = try f.writable.resolve(field: f.name, lookup) & widthMask
            let w1c = try f.writeOneToClear.resolve(field: f.name, lookup) & widthMask
            var value = try f.reset.resolve(field: f.name, lookup) & widthMask
            if f.readable, f.width == 4 { value = UInt64(device.readRegister(UInt64(f.offset))) }
            if f.hook == .doorbell { c.doorbell_field = Int32(index) }
            if f.hook == .state { c.state_field = Int32(index) }
            for k in 0..<f.width {
                let i = f.offset + k
                let shift = UInt64(k * 8)
                withUnsafeMutableBytes(of: &c.reg) { $0[i] = UInt8(truncatingIfNeeded: value >> shift) }
                withUnsafeMutableBytes(of: &c.reg_wm) { $0[i] = UInt8(truncatingIfNeeded: writable >> shift) }
                withUnsafeMutableBytes(of: &c.reg_w1c) { $0[i] = UInt8(truncatingIfNeeded: w1c >> shift) }
                withUnsafeMutableBytes(of: &c.reg_rd) { $0[i] = f.readable ? 1 : 0 }
                withUnsafeMutableBytes(of: &c.reg_field) { $0.storeBytes(of: Int16(index), toByteOffset: i * 2, as: Int16.self) }
            }
        }
        c.reg_alias_mask = layout.profile.bar0WriteAliasMask
        c.doorbell_vector_mask = layout.profile.doorbellVectorMask
        guard let b0 = layout.bars.first(where: { $0.index == 0 }) else { throw BenchError("no BAR0") }
        c.bar0_size = b0.size
        c.bar0_is64 = b0.kind == .memory64Prefetchable ? 1 : 0
        c.state_slot = (memory.base + Int(device.id) * 4).assumingMemoryBound(to: UInt32.self)
        c.vectors = Int32(device.configuration.vectors)
        return c
    }
}

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}
