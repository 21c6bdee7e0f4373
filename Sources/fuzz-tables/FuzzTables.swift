import IvshmemFuzz

// `make fuzz` builds this with libFuzzer (-sanitize=fuzzer, -D FUZZING): libFuzzer's main
// calls the entry point below. A normal build replays the files named on the command line.
#if FUZZING
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTablesTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    FuzzTarget.tables.libFuzzerEntry(data, size)
}
#else
@main struct FuzzTablesReplay {
    static func main() { FuzzReplay.main(.tables) }
}
#endif
