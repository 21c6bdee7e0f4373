import CBench
import IvshmemModel

struct CopyResult {
    var size: Int
    var direction: String   // "write" (into shared memory) or "read"
    var oursGBps: Double
    var memcpyGBps: Double
}

/// `sharedMemoryWrite`/`sharedMemoryRead` (rights checked) of one block into/out of the R/W
/// section, against memcpy between the same two buffers. Ours and memcpy alternate; each
/// figure is the median of the repeats.
struct BulkCopyBench {
    let sizes: [Int]
    let bytesPerMeasurement: Int
    let repeats: Int

    func run() throws -> [CopyResult] {
        let largest = sizes.max() ?? 0
        let configuration = DeviceConfiguration(maxPeers: 2, vectors: 1, rwSectionSize: UInt64(largest) * 2)
        let geometry = try configuration.geometry()
        let memory = try IvshmemModel.SharedMemory(allocating: Int(geometry.totalSize))
        let device = try IvshmemDevice(configuration: configuration, sharedMemory: memory, link: nil)
        let offset = geometry.rwSectionOffset
        let shared = memory.base + Int(offset)
        let local = UnsafeMutableRawPointer.allocate(byteCount: largest, alignment: 4096)
        defer { local.deallocate() }
        local.initializeMemory(as: UInt8.self, repeating: 0xA5, count: largest)
        shared.initializeMemory(as: UInt8.self, repeating: 0x5A, count: largest)
        var out: [CopyResult] = []
        for size in sizes {
            let iterations = max(1, bytesPerMeasurement / size)
            for direction in ["write", "read"] {
                var ours: [Double] = [], base: [Double] = []
                for rep in 0..<repeats {
                    // Alternate which one runs first, so neither always gets the warmer cache.
                    func measureOurs() throws {
                        let t0 = nowNS()
                        if direction == "write" {
                            let src = UnsafeRawBufferPointer(start: local, count: size)
                            for _ in 0..<iterations { guard device.sharedMemoryWrite(offset: offset, from: src) else { throw BenchError("write refused") } }
                        } else {
                            let dst = UnsafeMutableRawBufferPointer(start: local, count: size)
                            for _ in 0..<iterations { guard device.sharedMemoryRead(offset: offset, into: dst) else { throw BenchError("read refused") } }
                        }
                        let t = Double(nowNS() - t0) / 1e9
                        ours.append(Double(size * iterations) / t / 1e9)
                    }
                    func measureMemcpy() {
                        let ns = direction == "write" ? cb_memcpy_bench(shared, local, size, iterations) : cb_memcpy_bench(local, shared, size, iterations)
                        base.append(Double(size * iterations) / (Double(ns) / 1e9) / 1e9)
                    }
                    if rep % 2 == 0 { try measureOurs(); measureMemcpy() } else { measureMemcpy(); try measureOurs() }
                }
                out.append(CopyResult(size: size, direction: direction, oursGBps: median(ours), memcpyGBps: median(base)))
            }
        }
        return out
    }
}

func median(_ v: [Double]) -> Double {
    let s = v.sorted()
    guard !s.isEmpty else { return .nan }
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}
