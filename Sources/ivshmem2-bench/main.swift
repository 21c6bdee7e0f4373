// ivshmem2-bench: performance as ratios against baselines measured in the same run.
//
//   ivshmem2-bench [--smoke] [--out DIR]      run everything, print the table, write DIR/results.json,
//                                             DIR/latency.svg and DIR/results.md
//   ivshmem2-bench echo-c MODE SPIN_US CPU    (internal) C eventfd echo on fds 3 (rx) and 4 (tx);
//                                             MODE: 0 blocking, 1 busy-poll, 2 spin-then-block
//   ivshmem2-bench echo-device SOCKET SPIN_US CPU   (internal) device B of the doorbell round trip
#if canImport(Glibc)
import Glibc
#endif
import CBench
import IvshmemPosix

let arguments = Array(CommandLine.arguments.dropFirst())

func fail(_ message: String) -> Never {
    writeErr("ivshmem2-bench: \(message)\n")
    exit(1)
}

switch arguments.first {
case "echo-c":
    guard arguments.count == 4, let mode = UInt32(arguments[1]), let spin = Int(arguments[2]), let cpu = Int32(arguments[3]) else {
        fail("usage: echo-c MODE SPIN_US CPU")
    }
    exit(Roles.echoC(mode: cb_wait_mode(rawValue: mode), spinMicroseconds: spin, cpu: cpu))
case "echo-device":
    guard arguments.count == 4, let spin = Int(arguments[2]), let cpu = Int32(arguments[3]) else { fail("usage: echo-device SOCKET SPIN_US CPU") }
    exit(Roles.echoDevice(socket: arguments[1], spinMicroseconds: spin, cpu: cpu))
default:
    var options = BenchOptions()
    var i = 0
    while i < arguments.count {
        switch arguments[i] {
        case "--smoke": options.smoke = true
        case "--out":
            i += 1
            guard i < arguments.count else { fail("--out needs a directory") }
            options.outputDirectory = arguments[i]
        case "--only":
            i += 1
            guard i < arguments.count else { fail("--only needs doorbell,registers,server,copy,virtio,trap") }
            options.only = Set(arguments[i].split(separator: ",").map(String.init))
        case "-h", "--help":
            writeOut("usage: ivshmem2-bench [--smoke] [--out DIR] [--only doorbell,registers,server,copy,virtio,trap]\n")
            exit(0)
        default: fail("unknown argument '\(arguments[i])'")
        }
        i += 1
    }
    exit(Runner(options: options).run())
}
