import IvshmemPosix
import IvshmemWire
#if canImport(Glibc)
import Glibc
#endif

// MARK: - Peers and local users that attack the server (SRV-SHM-5…8, SRV-SOCK-3, -4, SRV-IO-4)

extension BuiltinChecks {
    static let serverHostileChecks: [BuiltinCheck] = [
        BuiltinCheck(name: "server-memfd-sealed", summary: "the memfd's size is sealed: a peer can neither truncate nor grow it nor change the seals") { ctx in
            try ServerCheckSupport.expectAccepted(ctx, ["--memfd", "-l", "64K"], requirement: "SRV-SHM-5") { _, c in
                let fd = c.kept[0]
                let seals = try IvshmemPosix.SharedMemory.seals(of: fd)
                try require(seals.isSuperset(of: [.shrink, .grow, .seal]), "seals shrink|grow|seal on the INIT fd", "\(seals)")
                for size in [0, 1 << 40] {
                    let refused = (try? fd.truncate(to: size)) == nil
                    try require(refused, "ftruncate(\(size)) of the INIT fd to fail", "it succeeded")
                }
                let size = try fd.size()
                try require(size == 64 << 10, "the size still 64 KiB", "\(size) bytes")
            }
        },
        BuiltinCheck(name: "server-resized-shm", summary: "with -M or -m, a peer that shrinks or grows the memory kills nothing: the server restores the size before the next INIT") { ctx in
            let name = ServerChild.uniqueShmName()
            defer { try? IvshmemPosix.SharedMemory.unlinkNamed(name) }
            let dir = try FileSystem.makeTemporaryDirectory(template: "/tmp/ivshmem2-shmdir.XXXXXX")
            defer { FileSystem.removeDirectoryTree(dir) }
            for backing in [["-M", name], ["-m", dir]] {
                let child = try ServerChild(arguments: backing + ["-l", "64K", "-n", "3"], shmName: backing[0] == "-M" ? name : nil, captureStderr: true)
                defer { child.stop() }
                try child.waitListening()
                let x = try child.connect()
                defer { x.close() }
                _ = try x.takeIntroduction()
                for hostileSize in [0, 1 << 40] {
                    try x.kept[0].truncate(to: hostileSize)
                    let y = try child.connect()
                    defer { y.close() }
                    _ = try y.expect(.initial(InitialInfo(id: 1, maxPeers: 3, vectors: 1, protocol: 0, outputSectionSize: 0)), who: "a newcomer after a resize to \(hostileSize)")
                    let size = try y.kept[0].size()
                    try require(size == 64 << 10, "the newcomer's INIT fd of 64 KiB after a peer resized it to \(hostileSize) (\(backing[0]))", "\(size) bytes")
                    // Now the newcomer truncates and leaves: zeroing its entry must not kill the server.
                    try y.kept[0].truncate(to: 0)
                    y.close()
                    _ = try x.take(until: .peerGone(id: 1))  // Y's eventfd, then its departure
                    try require(child.waitExit(timeout: 0) == nil, "the server still running (\(backing[0]))", "it ended: \(child.errorOutput())")
                }
            }
        },
        BuiltinCheck(name: "server-shm-foreign", summary: "an existing -M object readable by others is refused and left as it was") { ctx in
            let name = ServerChild.uniqueShmName()
            defer { try? IvshmemPosix.SharedMemory.unlinkNamed(name) }
            let planted = try IvshmemPosix.SharedMemory.openNamed(name, size: 8192, mode: 0o644)
            planted.closeQuietly()
            try ServerCheckSupport.expectRefusal(ctx, ["-M", name, "-l", "64K"], naming: ["/dev/shm/\(name)"], requirement: "SRV-SHM-7")
            let st = try FileSystem.status(ofPath: "/dev/shm/" + name)
            try require(st?.size == 8192 && st?.permissions == 0o644, "the planted object left as it was (8192 bytes, 0644)", st.map { "\($0.size) bytes, 0\(String($0.permissions, radix: 8))" } ?? "removed")
        },
        BuiltinCheck(name: "server-shm-locked", summary: "a second server with the same -M name refuses to start; the first one's object is untouched") { ctx in
            let name = ServerChild.uniqueShmName()
            let first = try ServerChild(arguments: ["-M", name, "-l", "64K"], shmName: name)
            defer { first.stop() }
            try first.waitListening()
            let x = try first.connect()
            defer { x.close() }
            _ = try x.takeIntroduction()
            let table = try x.mapSharedMemory(x.kept[0])
            ServerCheckSupport.store32(table, 0, 0x5A)
            try ServerCheckSupport.expectRefusal(ctx, ["-M", name, "-l", "64K"], naming: ["another server"], requirement: "SRV-SHM-8")
            try require(ServerCheckSupport.load32(table, 0) == 0x5A, "the first server's State Table entry kept", "0x\(String(ServerCheckSupport.load32(table, 0), radix: 16))")
            try require((try FileSystem.status(ofPath: "/dev/shm/" + name))?.size == 64 << 10, "/dev/shm/\(name) still there with 64 KiB", "removed or resized")
        },
        BuiltinCheck(name: "server-lock-symlink", summary: "a symbolic link at <socket>.lock is not followed: the server refuses to start") { ctx in
            let dir = try FileSystem.makeTemporaryDirectory(template: "/tmp/ivshmem2-lock.XXXXXX")
            defer { FileSystem.removeDirectoryTree(dir) }
            let socket = dir + "/s.sock"
            try require(symlink(dir + "/target", socket + ".lock") == 0, "a symbolic link planted at \(socket).lock", "symlink failed")
            let child = try ServerChild(arguments: ["-l", "64K"], socketPath: socket, captureStderr: true)
            defer { child.stop() }
            guard let status = child.waitExit(timeout: 5) else {
                throw CheckFailure(expected: "the server to refuse the planted lock link (SRV-SOCK-3)", actual: "still running after 5 s")
            }
            try require(status != .exited(0), "a non-zero exit status", "\(status)")
            try require(child.errorOutput().contains("symbolic link"), "a message naming the link", child.errorOutput())
            try require((try FileSystem.status(ofPath: dir + "/target")) == nil, "nothing created at the link's target", "\(dir)/target exists")
        },
        BuiltinCheck(name: "server-socket-mode-at-bind", summary: "the socket is created with the --mode permissions") { ctx in
            try ServerCheckSupport.expectAccepted(ctx, ["-l", "64K", "--mode", "0604"], requirement: "SRV-SOCK-4") { child, _ in
                let st = try FileSystem.status(ofPath: child.socketPath)
                try require(st?.permissions == 0o604, "socket file mode 0604", st.map { "0" + String($0.permissions, radix: 8) } ?? "missing")
            }
        },
        BuiltinCheck(name: "server-fd-bound", summary: "a peer that never reads is dropped when its queue holds too many descriptors; the server's descriptors come back") { ctx in
            let child = try ServerChild(arguments: ["-l", "64K", "-n", "4", "-V", "2", "--queue-fd-limit", "40"], captureStderr: true)
            defer { child.stop() }
            try child.waitListening()
            let silent = try child.connect()  // id 0, never reads
            defer { silent.close() }
            let reader = try child.connect()
            defer { reader.close() }
            _ = try reader.takeIntroduction()
            let baseline = child.openDescriptorCount()
            var dropped = false
            for cycle in 0..<2000 where !dropped {
                let churner = try child.connect()
                for v in 0..<UInt32(2) { try reader.expect(.eventFD(id: 2, vector: v), who: "R in cycle \(cycle)") }
                churner.close()
                while let (m, _) = try reader.nextDecoded(timeout: 5) {
                    if m == .peerGone(id: 0) { dropped = true }
                    if m == .peerGone(id: 2) { break }
                }
                reader.closeKept()
            }
            try require(dropped, "the silent peer dropped (PEER_GONE(0) to the reader, SRV-IO-4)", "not dropped after 2000 cycles")
            // The silent peer's socket and 2 eventfds are gone, and every departed churner's eventfds.
            // At most: the baseline may include descriptors still in flight when it was taken.
            try require(Monotonic.poll(timeout: 5) { child.openDescriptorCount() <= baseline - 3 }, "the server back to \(baseline - 3) descriptors", "\(child.openDescriptorCount())")
        },
    ]
}
