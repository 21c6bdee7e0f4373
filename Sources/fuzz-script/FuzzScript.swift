import IvshmemFuzz

// `make fuzz` builds this with libFuzzer (-sanitize=fuzzer, -D FUZZING): libFuzzer's main
// calls the entry point below. A normal build replays the files named on the command line.
#if FUZZING
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzScriptTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    FuzzTarget.script.libFuzzerEntry(data, size)
}
#else
@main struct FuzzScriptReplay {
    static func main() { FuzzReplay.main(.script) }
}
#endif
