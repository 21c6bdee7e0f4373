import IvshmemFuzz

// `make fuzz` builds this with libFuzzer (-sanitize=fuzzer, -D FUZZING): libFuzzer's main
// calls the entry point below. A normal build replays the files named on the command line.
#if FUZZING
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzWireTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    FuzzTarget.wire.libFuzzerEntry(data, size)
}
#else
@main struct FuzzWireReplay {
    static func main() { FuzzReplay.main(.wire) }
}
#endif
