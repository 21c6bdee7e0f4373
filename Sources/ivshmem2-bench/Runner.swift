#if canImport(Glibc)
import Glibc
#endif
import CBench
import IvshmemPosix

/// One line of the results table.
struct Row {
    var section: String
    var item: String
    var ours: String
    var baseline: String
    var ratio: Double?
    var target: String
    /// nil: no target on this row.
    var met: Bool?
    var ratioNote = ""
}

struct Runner {
    let options: BenchOptions

    func run() -> Int32 {
        try? Signals.ignoreBrokenPipe()
        let machine = machineDescription()
        let started = Monotonic.now()
        let smoke = options.smoke
        writeErr("ivshmem2-bench\(smoke ? " (smoke)" : ""): \(machine.cpus) CPUs, \(machine.model), Linux \(machine.kernel)\n")
        var rows: [Row] = []
        var failures: [String] = []
        var json = JSON.object([:])
        json["machine"] = .object(["nproc": .number(Double(machine.cpus)), "cpu": .string(machine.model), "kernel": .string(machine.kernel)])
        json["mode"] = .string(smoke ? "smoke" : "full")

        // 1. Doorbell round trip.
        var latencies: [LatencyResult] = []
        if options.wants("doorbell") {
            writeErr("doorbell round trips…\n")
            let bench = DoorbellBench(iterations: smoke ? 300 : 20_000, budgetNS: smoke ? 300_000_000 : 2_500_000_000)
            latencies = bench.run(placements: Placement.all(cpus: machine.cpus))
            var entries: [JSON] = []
            for r in latencies {
                if let e = r.error { failures.append("\(r.label) [\(r.placement.name)]: \(e)") }
                entries.append(.object([
                    "label": .string(r.label), "mode": .string(r.mode), "placement": .string(r.placement.name),
                    "cpuA": .number(Double(r.placement.cpuA)), "cpuB": .number(Double(r.placement.cpuB)),
                    "baseline": .bool(r.isBaseline), "samples": .number(Double(r.samples)),
                    "p50_us": .number(r.percentile(50)), "p99_us": .number(r.percentile(99)), "p99_9_us": .number(r.percentile(99.9)),
                    "max_us": .number(Double(r.histogram.max) / 1000),
                    "error": r.error.map { .string($0) } ?? .null,
                ]))
            }
            json["doorbell"] = .array(entries)
            for mode in ["blocking", "trapped", "spin"] {
                for p in Placement.all(cpus: machine.cpus) {
                    let baseMode = mode == "trapped" ? "blocking" : mode
                    guard let ours = latencies.first(where: { !$0.isBaseline && $0.mode == mode && $0.placement.name == p.name }),
                          let base = latencies.first(where: { $0.isBaseline && $0.mode == baseMode && $0.placement.name == p.name }) else { continue }
                    let item: String, baseName: String
                    switch mode {
                    case "spin":
                        item = "spin-then-block, \(p.name) (\(p))"
                        baseName = p.sharesOneCPU ? "C spin-then-block \(DoorbellBench.spinMicroseconds) µs" : "C busy-poll"
                    case "trapped":
                        item = "blocking, A rings through a trapped MMIO window (C API), \(p.name) (\(p))"
                        baseName = "C blocking"
                    default:
                        item = "blocking, \(p.name) (\(p))"
                        baseName = "C blocking"
                    }
                    // Targets (issue 10): blocking p50 ≤ 1.25×, p99 ≤ 2×; spin-then-block p50 ≤ 1.5×.
                    // The trapped window adds a signal and a decode to the blocking path: no target.
                    let limits: [Double: Double] = switch mode {
                    case "blocking": [50: 1.25, 99: 2.0]
                    case "spin": [50: 1.5]
                    default: [:]
                    }
                    // Attribution (no target): the same round trip against C doing exactly the
                    // link's syscalls, so what the design costs (epoll, the WIRE-CLI-21 poll) and
                    // what the model adds are told apart.
                    let linkMode = mode == "spin" ? "spin-link" : mode == "blocking" ? "blocking-link" : ""
                    if let link = latencies.first(where: { $0.isBaseline && $0.mode == linkMode && $0.placement.name == p.name }),
                       ours.error == nil, link.error == nil, link.percentile(50) > 0 {
                        let o = ours.percentile(50), b = link.percentile(50)
                        rows.append(Row(section: "1. doorbell round trip", item: "\(item) p50, against C with the link's syscalls",
                                        ours: "\(format(o, 1)) µs", baseline: "\(format(b, 1)) µs \(link.label)",
                                        ratio: o / b, target: "—", met: nil))
                    }
                    for pct in [50.0, 99.0, 99.9] {
                        let limit = limits[pct]
                        let ok = ours.error == nil && base.error == nil
                        let o = ours.percentile(pct), b = base.percentile(pct)
                        let ratio = ok && b > 0 ? o / b : nil
                        rows.append(Row(section: "1. doorbell round trip", item: "\(item) p\(pct == 99.9 ? "99.9" : String(Int(pct)))",
                                        ours: ok ? "\(format(o, 1)) µs" : "failed", baseline: ok ? "\(format(b, 1)) µs \(baseName)" : "failed",
                                        ratio: ratio, target: limit.map { "≤ \(format($0, 2))×" } ?? "—",
                                        met: limit.map { l in ratio.map { $0 <= l } ?? false }))
                    }
                }
            }
        }

        // 2. Register path.
        if options.wants("registers") {
            writeErr("register path…\n")
            do {
                let results = try RegisterBench(seconds: smoke ? 0.02 : 1.0, trials: smoke ? 2 : 30).run()
                var entries: [JSON] = []
                for r in results {
                    if !r.checksumsAgree { failures.append("register path \(r.name): Swift and C read different values") }
                    let ratio = r.oursPerSecond / r.baselinePerSecond
                    rows.append(Row(section: "2. register path", item: r.name, ours: "\(format(r.oursPerSecond / 1e6, 2)) M/s",
                                    baseline: "\(format(r.baselinePerSecond / 1e6, 1)) M/s C dispatcher", ratio: ratio,
                                    target: "≥ 0.50×", met: ratio >= 0.5))
                    entries.append(.object(["name": .string(r.name), "ours_per_s": .number(r.oursPerSecond),
                                            "c_per_s": .number(r.baselinePerSecond), "ratio": .number(ratio), "same_values": .bool(r.checksumsAgree)]))
                }
                json["registers"] = .array(entries)
            } catch {
                failures.append("register path: \(error)")
            }
        }

        // 3. Server scale.
        if options.wants("server") {
            writeErr("server scale…\n")
            let bench = ServerScaleBench(peerCounts: smoke ? [2, 8, 16] : [2, 16, 64, 256, 1024], vectorCounts: [1, 4])
            let points = bench.run()
            var entries: [JSON] = []
            var previous: ScalePoint?
            for p in points {
                if let e = p.error { failures.append("server scale N=\(p.peers) V=\(p.vectors): \(e)") }
                let prev = previous?.vectors == p.vectors ? previous : nil
                func growth(_ a: Double?, _ b: Double?) -> String {
                    guard let a, let b, b > 0 else { return "" }
                    return " (×\(format(a / b, 1)))"
                }
                let isTarget = p.peers == 256
                let ratio = p.ratio
                rows.append(Row(section: "3. server scale", item: "N=\(p.peers) V=\(p.vectors), \(p.messages) msgs",
                                ours: p.oursSeconds.map { "\(format($0 * 1000, 1)) ms\(growth($0, prev?.oursSeconds))" } ?? "failed",
                                baseline: p.rawSeconds.map { "\(format($0 * 1000, 1)) ms\(growth($0, prev?.rawSeconds)) raw SCM_RIGHTS" } ?? "failed",
                                ratio: ratio, target: isTarget ? "≤ 1.30×" : "completes",
                                met: isTarget ? (ratio.map { $0 <= 1.3 } ?? false) : p.oursSeconds != nil))
                entries.append(.object([
                    "peers": .number(Double(p.peers)), "vectors": .number(Double(p.vectors)), "messages": .number(Double(p.messages)),
                    "ours_s": p.oursSeconds.map { .number($0) } ?? .null, "raw_s": p.rawSeconds.map { .number($0) } ?? .null,
                    "ours_growth": (p.oursSeconds != nil && prev?.oursSeconds != nil) ? .number(p.oursSeconds! / prev!.oursSeconds!) : .null,
                    "raw_growth": (p.rawSeconds != nil && prev?.rawSeconds != nil) ? .number(p.rawSeconds! / prev!.rawSeconds!) : .null,
                    "ratio": ratio.map { .number($0) } ?? .null, "error": p.error.map { .string($0) } ?? .null,
                ]))
                previous = p
            }
            json["server_scale"] = .array(entries)
        }

        // 4. Shared-memory bulk copy.
        if options.wants("copy") {
            writeErr("bulk copy…\n")
            do {
                let results = try BulkCopyBench(sizes: smoke ? [64 << 10] : [64 << 10, 256 << 10, 1 << 20],
                                                bytesPerMeasurement: smoke ? 16 << 20 : 512 << 20, repeats: smoke ? 1 : 5).run()
                var entries: [JSON] = []
                for r in results {
                    let ratio = r.oursGBps / r.memcpyGBps
                    rows.append(Row(section: "4. shared-memory bulk copy", item: "\(r.size >> 10) KiB \(r.direction == "write" ? "sharedMemoryWrite" : "sharedMemoryRead")",
                                    ours: "\(format(r.oursGBps, 2)) GB/s", baseline: "\(format(r.memcpyGBps, 2)) GB/s memcpy",
                                    ratio: ratio, target: "≥ 0.90×", met: ratio >= 0.9))
                    entries.append(.object(["bytes": .number(Double(r.size)), "direction": .string(r.direction),
                                            "ours_GBps": .number(r.oursGBps), "memcpy_GBps": .number(r.memcpyGBps), "ratio": .number(ratio)]))
                }
                json["bulk_copy"] = .array(entries)
            } catch {
                failures.append("bulk copy: \(error)")
            }
        }

        // 5. Virtio over ivshmem.
        if options.wants("virtio") {
            writeErr("virtio over ivshmem…\n")
            do {
                let (blocks, console) = try VirtioBench(bytesPerMeasurement: smoke ? 1 << 20 : 64 << 20, roundTrips: smoke ? 200 : 5000).run()
                var entries: [JSON] = []
                for r in blocks {
                    let ratio = r.oursMBps / r.fileMBps
                    rows.append(Row(section: "5. virtio over ivshmem", item: "block sequential \(r.direction), \(r.request >> 10) KiB requests",
                                    ours: "\(format(r.oursMBps, 1)) MB/s", baseline: "\(format(r.fileMBps, 1)) MB/s file \(r.direction == "write" ? "pwrite" : "pread")",
                                    ratio: ratio, target: "—", met: nil))
                    entries.append(.object(["request_bytes": .number(Double(r.request)), "direction": .string(r.direction),
                                            "ours_MBps": .number(r.oursMBps), "file_MBps": .number(r.fileMBps), "ratio": .number(ratio)]))
                }
                for pct in [50.0, 99.0] {
                    let ours = console.percentile(console.oursUS, pct), pipe = console.percentile(console.pipeUS, pct)
                    rows.append(Row(section: "5. virtio over ivshmem", item: "console byte round trip p\(Int(pct))",
                                    ours: "\(format(ours, 1)) µs", baseline: "\(format(pipe, 1)) µs pipe echo",
                                    ratio: ours / pipe, target: "—", met: nil))
                }
                entries.append(.object(["console_samples": .number(Double(console.samples)),
                                        "console_p50_us": .number(console.percentile(console.oursUS, 50)), "console_p99_us": .number(console.percentile(console.oursUS, 99)),
                                        "pipe_p50_us": .number(console.percentile(console.pipeUS, 50)), "pipe_p99_us": .number(console.percentile(console.pipeUS, 99))]))
                json["virtio"] = .array(entries)
            } catch {
                failures.append("virtio: \(error)")
            }
        }

        // 6. The C API's trapped MMIO window, per access.
        if options.wants("trap") {
            writeErr("trapped MMIO window…\n")
            do {
                let results = try TrappedAccessBench(seconds: smoke ? 0.02 : 0.5).run()
                var entries: [JSON] = []
                for r in results {
                    if !r.valuesAgree { failures.append("trapped window \(r.name): the window and \(r.accessor) disagree") }
                    let ratio = r.trappedNS / r.accessorNS
                    rows.append(Row(section: "6. trapped MMIO window (C API)", item: "\(r.name), per access",
                                    ours: "\(format(r.trappedNS / 1000, 2)) µs trapped", baseline: "\(format(r.accessorNS / 1000, 3)) µs \(r.accessor)",
                                    ratio: ratio, target: "—", met: nil))
                    entries.append(.object(["name": .string(r.name), "trapped_ns": .number(r.trappedNS), "accessor_ns": .number(r.accessorNS),
                                            "accessor": .string(r.accessor), "ratio": .number(ratio), "same_values": .bool(r.valuesAgree)]))
                }
                json["trapped_window"] = .array(entries)
            } catch {
                failures.append("trapped window: \(error)")
            }
        }

        let elapsed = Monotonic.now() - started
        let table = Report.table(rows: rows, machine: machine, smoke: smoke, elapsed: elapsed)
        writeOut(table)
        json["rows"] = .array(rows.map { r in
            .object(["section": .string(r.section), "item": .string(r.item), "ours": .string(r.ours), "baseline": .string(r.baseline),
                     "ratio": r.ratio.map { .number($0) } ?? .null, "target": .string(r.target), "met": r.met.map { .bool($0) } ?? .null])
        })
        json["failures"] = .array(failures.map { .string($0) })
        json["elapsed_s"] = .number(elapsed)
        let dir = options.outputDirectory
        _ = mkdir(dir, 0o755)
        do {
            try FileSystem.writeFile(dir + "/results.json", bytes: Array((json.render(indent: 0) + "\n").utf8))
            try FileSystem.writeFile(dir + "/results.md", bytes: Array(table.utf8))
            if !latencies.isEmpty {
                try FileSystem.writeFile(dir + "/latency.svg", bytes: Array(Report.svg(latencies, machine: machine).utf8))
            }
            writeOut("\nwrote \(dir)/results.json, \(dir)/results.md\(latencies.isEmpty ? "" : ", \(dir)/latency.svg")\n")
        } catch {
            failures.append("writing results: \(error)")
        }
        for f in failures { writeErr("FAILED: \(f)\n") }
        return failures.isEmpty ? 0 : 1
    }
}
