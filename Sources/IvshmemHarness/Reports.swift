/// Renders case results for people (text), programs (JSON) and CI systems (JUnit XML).
public enum Reports {
    /// One line for a finished case: `PASS|FAIL|SKIP script: case [profile]`, with the reason
    /// of a skip.
    public static func line(_ r: CaseResult) -> String {
        let status = r.skipped ? "SKIP" : r.passed ? "PASS" : "FAIL"
        return "\(status) \(r.script): \(r.caseName) [\(r.profile)]" + (r.skipReason.map { ": \($0)" } ?? "") + "\n"
    }

    public static func text(_ results: [CaseResult], verbose: Bool = false) -> String {
        var out = ""
        for r in results {
            if r.skipped { if verbose { out += line(r) }; continue }
            if let f = r.failure {
                out += "FAIL \(r.script): \(r.caseName) [\(r.profile)]\n" + f.render(path: r.script)
            } else {
                out += "PASS \(r.script): \(r.caseName) [\(r.profile)] (\(ms(r.duration)))\n"
            }
            let findings = r.findingSummary
            if !findings.isEmpty {
                out += "    findings: " + findings.map { "\($0.peer) \($0.requirement)" + ($0.count > 1 ? " ×\($0.count)" : "") }.joined(separator: ", ") + "\n"
            }
        }
        let passed = results.filter(\.passed).count
        let failed = results.filter { $0.failure != nil }.count
        let skipped = results.filter(\.skipped).count
        out += "\(passed) passed, \(failed) failed" + (skipped > 0 ? ", \(skipped) skipped" + (verbose ? "" : " (--verbose lists them with the reason)") : "") + "\n"
        return out
    }

    static func ms(_ s: Double) -> String { "\(Int((s * 1000).rounded())) ms" }

    public static func json(_ results: [CaseResult]) -> String {
        let items = results.map { r -> String in
            var f = [
                "\"script\":\(jsonString(r.script))", "\"case\":\(jsonString(r.caseName))", "\"profile\":\(jsonString(r.profile))",
                "\"status\":\"\(r.skipped ? "skipped" : r.passed ? "passed" : "failed")\"",
                "\"covers\":[" + r.covers.map(jsonString).joined(separator: ",") + "]",
                "\"seconds\":\(format6(r.duration))",
            ]
            f.append("\"findings\":[" + r.findingSummary.map { "{\"peer\":\(jsonString($0.peer)),\"requirement\":\(jsonString($0.requirement)),\"count\":\($0.count)}" }.joined(separator: ",") + "]")
            if let reason = r.skipReason { f.append("\"skip_reason\":\(jsonString(reason))") }
            if let x = r.failure {
                f.append("\"failure\":{\"line\":\(x.line),\"statement\":\(jsonString(x.statement)),\"expected\":\(jsonString(x.expected)),\"actual\":\(jsonString(x.actual))}")
            }
            return "{" + f.joined(separator: ",") + "}"
        }
        return "[\n" + items.joined(separator: ",\n") + "\n]\n"
    }

    public static func junit(_ results: [CaseResult]) -> String {
        var out = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n"
        let byScript = Dictionary(grouping: results, by: \.script)
        for script in byScript.keys.sorted() {
            let rs = byScript[script]!
            out += "  <testsuite name=\(xml(script)) tests=\"\(rs.count)\" failures=\"\(rs.filter { $0.failure != nil }.count)\" skipped=\"\(rs.filter(\.skipped).count)\" time=\"\(format6(rs.map(\.duration).reduce(0, +)))\">\n"
            for r in rs {
                out += "    <testcase classname=\(xml(script)) name=\(xml("\(r.caseName) [\(r.profile)]")) time=\"\(format6(r.duration))\""
                if r.skipped {
                    out += "><skipped message=\(xml(r.skipReason ?? "skipped"))/></testcase>\n"
                } else if let f = r.failure {
                    out += ">\n      <failure message=\(xml("line \(f.line): expected \(f.expected), got \(f.actual)"))>\(escape(f.render(path: r.script)))</failure>\n    </testcase>\n"
                } else {
                    out += "/>\n"
                }
            }
            out += "  </testsuite>\n"
        }
        return out + "</testsuites>\n"
    }

    static func escape(_ s: String) -> String {
        var o = ""
        for c in s {
            switch c {
            case "&": o += "&amp;"
            case "<": o += "&lt;"
            case ">": o += "&gt;"
            case "\"": o += "&quot;"
            default: o.append(c)
            }
        }
        return o
    }

    static func xml(_ s: String) -> String { "\"" + escape(s) + "\"" }
}
