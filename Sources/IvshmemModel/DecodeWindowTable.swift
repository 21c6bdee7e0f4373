import CIvshmemShim

/// The address ranges a device decodes, published by the device (under its lock) whenever
/// Command or a BAR changes and read by the platform on every access without a lock: a
/// sequence-locked table (`ivs_window_table`), so a reader never sees a half-updated BAR.
final class DecodeWindowTable: @unchecked Sendable {
    private let table: UnsafeMutablePointer<ivs_window_table>

    init() {
        table = .allocate(capacity: 1)
        table.initialize(to: ivs_window_table())
    }
    deinit { table.deallocate() }

    /// Replaces the windows (owner's lock held: one writer at a time).
    func publish(_ windows: [DecodeWindow]) {
        let list = windows.prefix(Int(IVS_MAX_WINDOWS)).map {
            ivs_window(base: $0.base, size: $0.size, bar: Int32($0.bar), is_io: $0.isIO ? 1 : 0)
        }
        list.withUnsafeBufferPointer { ivs_windows_publish(table, $0.baseAddress, UInt32($0.count)) }
    }

    /// The window of the given space holding `address`: (BAR index or -1, offset). Lock-free.
    @inline(__always)
    func lookup(_ address: UInt64, io: Bool) -> (bar: Int, offset: UInt64)? { reader.lookup(address, io: io) }

    /// The table's lock-free reader, for whoever outlives it not.
    var reader: DecodeWindowReader { DecodeWindowReader(table: table) }

    var windows: [DecodeWindow] {
        var out = [ivs_window](repeating: ivs_window(), count: Int(IVS_MAX_WINDOWS))
        let n = out.withUnsafeMutableBufferPointer { ivs_windows_copy(table, $0.baseAddress) }
        return out.prefix(Int(n)).map { DecodeWindow(bar: Int($0.bar), base: $0.base, size: $0.size, isIO: $0.is_io != 0) }
    }
}

/// A device's decode windows as the platform's access path reads them: the sequence-locked
/// table itself, one pointer away, so a decode does not walk platform → device → table
/// objects on every access. Valid while the device that owns the table lives (the platform's
/// slot keeps it).
public struct DecodeWindowReader: @unchecked Sendable {
    let table: UnsafePointer<ivs_window_table>

    /// The window of the given space holding `address`: (BAR index or -1, offset). Lock-free.
    @inline(__always)
    public func lookup(_ address: UInt64, io: Bool) -> (bar: Int, offset: UInt64)? {
        let hit = ivs_windows_lookup(table, address, io ? 1 : 0)
        guard hit.found != 0 else { return nil }
        return (Int(hit.bar), hit.offset)
    }
}
