/// What can be wrong with a set of spec tables. Every case names the file or field at fault.
public enum SpecError: Error, Equatable, CustomStringConvertible {
    case missingFile(String)
    case malformed(file: String, detail: String)
    case invalidValue(field: String, key: String, text: String)
    case unknownParameter(field: String, name: String)
    case unknownHook(field: String, name: String)
    case unknownProfile(String, known: [String])
    case overlap(String)

    public var description: String {
        switch self {
        case .missingFile(let f): return "spec table \(f) is missing"
        case .malformed(let f, let d): return "spec table \(f) is malformed: \(d)"
        case .invalidValue(let field, let key, let text): return "spec field '\(field)': '\(key)' has invalid value '\(text)'"
        case .unknownParameter(let field, let name): return "spec field '\(field)' uses unknown parameter @\(name)"
        case .unknownHook(let field, let name): return "spec field '\(field)' names unknown hook '\(name)'"
        case .unknownProfile(let p, let known): return "unknown profile '\(p)' (known: \(known.joined(separator: ", ")))"
        case .overlap(let d): return "spec layout overlaps: \(d)"
        }
    }
}
