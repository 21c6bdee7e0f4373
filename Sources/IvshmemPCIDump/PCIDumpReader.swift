import CLibPCI
import CPCIShim

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Why a dump could not be decoded.
public enum PCIDumpError: Error, Equatable, CustomStringConvertible {
    /// libpci rejected the dump; the text is libpci's own message (e.g. "dump: Malformed line").
    case libpci(String)
    /// The text parsed but names no PCI function (no `bb:dd.f ` line).
    case noFunctions
    /// A function's dump holds fewer config bytes than decoding needs.
    case truncated(address: String, bytes: Int, needed: Int)
    /// Staging the text for libpci failed (memfd / temporary file).
    case io(String)

    public var description: String {
        switch self {
        case .libpci(let m): return "libpci: \(m)"
        case .noFunctions: return "the dump names no PCI function (expected a 'bb:dd.f ' line before 'xx: hh hh …' rows)"
        case .truncated(let a, let n, let need):
            return "\(a): the dump holds \(n) bytes of config space, \(need) are needed (dump all 256 bytes, lspci -xxx)"
        case .io(let m): return m
        }
    }
}

/// Decodes `lspci -xxx` style config-space dumps with libpci's dump access method.
public enum PCIDumpReader {
    /// Config bytes a function's dump must hold: the whole standard config space, since the
    /// capabilities of ivshmem v2 live in 40h–FFh (less and libpci reads them as FFh).
    public static let requiredBytes = 256

    /// Decodes every function in `dumpText`, in libpci's device-list order.
    public static func decode(dumpText: String) throws -> [DecodedFunction] {
        try decode(dumpText: dumpText, staging: .automatic)
    }

    /// Where the text is put for libpci to `fopen`.
    enum Staging {
        /// A memfd behind /proc/self/fd, or a temporary file in $TMPDIR (else /tmp) without one.
        case automatic
        /// A temporary file in `directory`, unlinked after decoding.
        case temporaryFile(directory: String)
    }

    static func decode(dumpText: String, staging: Staging) throws -> [DecodedFunction] {
        try withDumpFile(dumpText, staging: staging) { path in
            guard let access = ivs_pci_open_dump(path) else {
                let message = String(cString: ivs_pci_last_error())
                throw PCIDumpError.libpci(message.isEmpty ? "pci_init failed without a message" : message)
            }
            defer { pci_cleanup(access) }
            var devices: [UnsafeMutablePointer<pci_dev>] = []
            var d = access.pointee.devices
            while let dev = d {
                devices.append(dev)
                d = dev.pointee.next
            }
            guard !devices.isEmpty else { throw PCIDumpError.noFunctions }
            // libpci links new devices at the head of its list; report them in file order.
            return try devices.reversed().map(decodeFunction)
        }
    }

    static let fillFlags = PCI_FILL_IDENT | PCI_FILL_CLASS | PCI_FILL_BASES | PCI_FILL_CAPS | PCI_FILL_IRQ
        | PCI_FILL_CLASS_EXT | PCI_FILL_SUBSYS

    static func decodeFunction(_ d: UnsafeMutablePointer<pci_dev>) throws -> DecodedFunction {
        let p = d.pointee
        let address = DecodedFunction.formatAddress(domain: Int(p.domain), bus: p.bus, device: p.dev, function: p.func)

        // How much config space the dump holds: pci_read_block fails when the range runs past
        // the last byte the dump back-end saw.
        var config = [UInt8](repeating: 0, count: 4096)
        var available = 0
        for size in [4096, 256, 64] where available == 0 {
            let ok = config.withUnsafeMutableBufferPointer { pci_read_block(d, 0, $0.baseAddress, Int32(size)) }
            if ok != 0 { available = size }
        }
        guard available >= requiredBytes else {
            var n = 0
            while n < 256, (config.withUnsafeMutableBufferPointer { pci_read_block(d, 0, $0.baseAddress, Int32(n + 1)) }) != 0 { n += 1 }
            throw PCIDumpError.truncated(address: address, bytes: n, needed: requiredBytes)
        }
        config.removeSubrange(available...)

        guard ivs_pci_fill_info(d, Int32(fillFlags)) >= 0 else {
            throw PCIDumpError.libpci(String(cString: ivs_pci_last_error()))
        }
        let f = d.pointee
        let classCode = f.device_class
        let bases: [UInt64] = withUnsafeBytes(of: f.base_addr) { Array($0.bindMemory(to: UInt64.self)) }

        var caps: [Capability] = []
        var c = f.first_cap
        while let cap = c {
            if Int32(cap.pointee.type) == PCI_CAP_NORMAL { caps.append(Capability(id: UInt8(truncatingIfNeeded: cap.pointee.id), offset: Int(cap.pointee.addr))) }
            c = cap.pointee.next
        }

        return DecodedFunction(
            domain: Int(f.domain), bus: f.bus, device: f.dev, function: f.func,
            vendorID: f.vendor_id, deviceID: f.device_id,
            baseClass: UInt8(classCode >> 8), subClass: UInt8(classCode & 0xFF), progIF: f.prog_if,
            revision: f.rev_id, headerType: pci_read_byte(d, 0x0E),
            subsystemVendorID: f.subsys_vendor_id, subsystemID: f.subsys_id,
            command: pci_read_word(d, 0x04), status: pci_read_word(d, 0x06),
            capabilitiesPointer: pci_read_byte(d, 0x34) & 0xFC,
            interruptLine: UInt8(truncatingIfNeeded: f.irq), interruptPin: pci_read_byte(d, 0x3D),
            bars: decodeBARs(d, headerType: pci_read_byte(d, 0x0E) & 0x7F, libpci: bases),
            capabilities: caps,
            msix: decodeMSIX(d),
            vendorCapability: decodeVendor(d),
            configSpace: config)
    }

    static func decodeBARs(_ d: UnsafeMutablePointer<pci_dev>, headerType: UInt8, libpci: [UInt64]) -> [BaseAddressRegister] {
        // Type 0 headers have six BARs, type 1 (bridges) two, type 2 (CardBus) one.
        let count = headerType == 0 ? 6 : headerType == 1 ? 2 : 1
        var bars: [BaseAddressRegister] = []
        var i = 0
        while i < count {
            let reg = pci_read_long(d, Int32(0x10 + 4 * i))
            if reg & 1 == 1 {
                bars.append(BaseAddressRegister(index: i, register: reg, libpciBaseAddress: libpci[i], kind: .io,
                                                prefetchable: false, address: UInt64(reg & ~3)))
                i += 1
                continue
            }
            let prefetchable = reg & 0x8 != 0
            switch (reg >> 1) & 3 {
            case 2 where i + 1 < count:
                let high = pci_read_long(d, Int32(0x10 + 4 * (i + 1)))
                bars.append(BaseAddressRegister(index: i, register: reg, libpciBaseAddress: libpci[i], kind: .memory64,
                                                prefetchable: prefetchable, address: UInt64(high) << 32 | UInt64(reg & ~0xF)))
                bars.append(BaseAddressRegister(index: i + 1, register: high, libpciBaseAddress: libpci[i + 1], kind: .upperHalf,
                                                prefetchable: prefetchable, address: 0))
                i += 2
            case 1:
                bars.append(BaseAddressRegister(index: i, register: reg, libpciBaseAddress: libpci[i], kind: .memoryBelow1M,
                                                prefetchable: prefetchable, address: UInt64(reg & ~0xF)))
                i += 1
            default:
                bars.append(BaseAddressRegister(index: i, register: reg, libpciBaseAddress: libpci[i], kind: .memory32,
                                                prefetchable: prefetchable, address: UInt64(reg & ~0xF)))
                i += 1
            }
        }
        return bars
    }

    static func decodeMSIX(_ d: UnsafeMutablePointer<pci_dev>) -> MSIXCapability? {
        guard let cap = pci_find_cap(d, UInt32(PCI_CAP_ID_MSIX), UInt32(PCI_CAP_NORMAL)) else { return nil }
        let at = Int32(cap.pointee.addr)
        let control = pci_read_word(d, at + 2)
        let table = pci_read_long(d, at + 4)
        let pba = pci_read_long(d, at + 8)
        return MSIXCapability(
            offset: Int(at), messageControl: control, tableSize: Int(control & 0x7FF) + 1,
            enabled: control & 0x8000 != 0, functionMasked: control & 0x4000 != 0,
            tableBIR: Int(table & 7), tableOffset: table & ~7, pbaBIR: Int(pba & 7), pbaOffset: pba & ~7)
    }

    static func decodeVendor(_ d: UnsafeMutablePointer<pci_dev>) -> VendorCapability? {
        guard let cap = pci_find_cap(d, UInt32(PCI_CAP_ID_VNDR), UInt32(PCI_CAP_NORMAL)) else { return nil }
        let at = Int32(cap.pointee.addr)
        func quad(_ o: Int32) -> UInt64 {
            // Dword reads must stay naturally aligned (libpci reports unaligned reads as errors).
            UInt64(pci_read_long(d, at + o)) | UInt64(pci_read_long(d, at + o + 4)) << 32
        }
        let length = pci_read_byte(d, at + 2)
        // A field is decoded only when it lies inside the capability and inside config space.
        let fits = { (end: Int32) in Int32(length) >= end && at + end <= 0x100 }
        return VendorCapability(
            offset: Int(at), length: length, privilegedControl: pci_read_byte(d, at + 3),
            stateTableSize: fits(0x08) ? pci_read_long(d, at + 4) : 0,
            rwSectionSize: fits(0x10) ? quad(0x08) : 0,
            outputSectionSize: fits(0x18) ? quad(0x10) : 0,
            baseAddress: fits(0x20) ? quad(0x18) : nil)
    }

    // MARK: - Staging the text where libpci can open it

    /// Calls `body` with a path libpci's dump back-end can `fopen`: an anonymous memfd behind
    /// /proc/self/fd (nothing left on disk), or else a private temporary file that is unlinked
    /// afterwards. The descriptor is closed on every path.
    static func withDumpFile<T>(_ text: String, staging: Staging, _ body: (String) throws -> T) throws -> T {
        var bytes = Array(text.utf8)
        // libpci treats an unterminated last line as an error; lspci -xxx output ends in "\n".
        if let last = bytes.last, last != UInt8(ascii: "\n") { bytes.append(UInt8(ascii: "\n")) }

        let dir: String
        switch staging {
        case .temporaryFile(let d):
            dir = d
        case .automatic:
            let memfd = ivs_pci_memfd_create("ivshmem-pci-dump")
            if memfd >= 0 {
                defer { close(memfd) }
                if access("/proc/self/fd/\(memfd)", F_OK) == 0 {
                    try writeAll(memfd, bytes)
                    return try body("/proc/self/fd/\(memfd)")
                }
            }
            dir = getenv("TMPDIR").map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        }
        var template = Array("\(dir)/ivshmem-pci-dump-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw PCIDumpError.io("cannot create a temporary dump file in \(dir): \(String(cString: strerror(errno)))") }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        let path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        defer { unlink(path) }
        do {
            try writeAll(fd, bytes)
        } catch {
            close(fd)
            throw error
        }
        close(fd)
        return try body(path)
    }

    static func writeAll(_ fd: Int32, _ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { buf in
            var done = 0
            while done < buf.count {
                let n = write(fd, buf.baseAddress! + done, buf.count - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw PCIDumpError.io("cannot stage the dump for libpci: \(String(cString: strerror(errno)))")
                }
                done += n
            }
        }
    }
}

extension DecodedFunction {
    static func formatAddress(domain: Int, bus: UInt8, device: UInt8, function: UInt8) -> String {
        let bdf = "\(hex(bus, 2)):\(hex(device, 2)).\(function)"
        return domain == 0 ? bdf : "\(hex(domain, 4)):\(bdf)"
    }
}
