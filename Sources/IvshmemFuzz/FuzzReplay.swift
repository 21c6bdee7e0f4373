import Foundation

/// What a fuzz executable does when built without libFuzzer: runs the files (or every file
/// under the directories) named on the command line through its target, so a crasher can be
/// reproduced and debugged in a normal build.
public enum FuzzReplay {
    /// Every regular file at or under `path`, sorted.
    public static func files(under path: String) -> [String] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { return [] }
        guard isDirectory.boolValue else { return [path] }
        let entries = (try? FileManager.default.subpathsOfDirectory(atPath: path)) ?? []
        return entries.sorted().map { path + "/" + $0 }.filter {
            var dir: ObjCBool = false
            return FileManager.default.fileExists(atPath: $0, isDirectory: &dir) && !dir.boolValue
        }
    }

    public static func main(_ target: FuzzTarget, arguments: [String] = Array(CommandLine.arguments.dropFirst())) -> Never {
        guard !arguments.isEmpty, !arguments.contains(where: { $0.hasPrefix("-") }) else {
            let usage = """
                usage: fuzz-\(target.rawValue) FILE|DIR…
                Runs each input through the \(target.rawValue) fuzz target (a libFuzzer build: make fuzz).

                """
            FileHandle.standardError.write(Data(usage.utf8))
            exit(2)
        }
        var count = 0
        for argument in arguments {
            let paths = files(under: argument)
            guard !paths.isEmpty else {
                FileHandle.standardError.write(Data("fuzz-\(target.rawValue): no input at \(argument)\n".utf8))
                exit(2)
            }
            for path in paths {
                guard let data = FileManager.default.contents(atPath: path) else {
                    FileHandle.standardError.write(Data("fuzz-\(target.rawValue): cannot read \(path)\n".utf8))
                    exit(2)
                }
                target.run([UInt8](data))
                count += 1
            }
        }
        FileHandle.standardOutput.write(Data("fuzz-\(target.rawValue): \(count) inputs ran without a crash\n".utf8))
        exit(0)
    }
}
