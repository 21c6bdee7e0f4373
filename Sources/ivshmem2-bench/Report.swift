import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Histogram

/// A minimal JSON value (no Foundation needed).
enum JSON {
    case null, bool(Bool), number(Double), string(String), array([JSON]), object([(String, JSON)])

    static func object(_ d: [String: JSON]) -> JSON { .object(d.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }) }

    subscript(key: String) -> JSON? {
        get { if case .object(let o) = self { return o.first { $0.0 == key }?.1 }; return nil }
        set {
            guard case .object(var o) = self else { return }
            o.removeAll { $0.0 == key }
            if let newValue { o.append((key, newValue)) }
            self = .object(o)
        }
    }

    func render(indent: Int) -> String {
        let pad = String(repeating: "  ", count: indent + 1), end = String(repeating: "  ", count: indent)
        switch self {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .number(let n):
            if n.isNaN || n.isInfinite { return "null" }
            if n == n.rounded(), abs(n) < 1e15 { return String(Int(n)) }
            return "\(n)"
        case .string(let s): return JSON.quote(s)
        case .array(let a):
            if a.isEmpty { return "[]" }
            return "[\n" + a.map { pad + $0.render(indent: indent + 1) }.joined(separator: ",\n") + "\n\(end)]"
        case .object(let o):
            if o.isEmpty { return "{}" }
            return "{\n" + o.map { pad + JSON.quote($0.0) + ": " + $0.1.render(indent: indent + 1) }.joined(separator: ",\n") + "\n\(end)}"
        }
    }

    static func quote(_ s: String) -> String {
        guard let data = try? JSONSerialization.data(withJSONObject: s, options: [.fragmentsAllowed, .withoutEscapingSlashes]) else { return "\"\"" }
        return String(decoding: data, as: UTF8.self)
    }
}

enum Report {
    static func table(rows: [Row], machine: (cpus: Int, model: String, kernel: String), smoke: Bool, elapsed: Double) -> String {
        var s = "## ivshmem2 benchmarks\(smoke ? " (smoke run: few iterations, small N — not for judging)" : "")\n\n"
        s += "Machine: \(machine.cpus) vCPUs (nproc), \(machine.model), Linux \(machine.kernel). Run time \(format(elapsed, 0)) s.\n"
        s += "Ratio = ours / baseline for times (lower is better), ours / baseline for rates (higher is better); "
        s += "baselines are measured in the same run.\n\n"
        s += "| section | measurement | ours | baseline | ratio | target | met |\n"
        s += "| --- | --- | --- | --- | ---: | --- | --- |\n"
        for r in rows {
            let met = r.met.map { $0 ? "✅ met" : "❌ missed" } ?? ""
            s += "| \(r.section) | \(r.item) | \(r.ours) | \(r.baseline) | \(r.ratio.map { format($0, 2) + "×" } ?? "—") | \(r.target) | \(met) |\n"
        }
        let targeted = rows.filter { $0.met != nil }
        s += "\n\(targeted.filter { $0.met == true }.count) of \(targeted.count) targets met.\n"
        return s
    }

    /// Percentile plot of every round-trip distribution: one panel per wait mode, x the
    /// percentile on a log scale (0 … 99.99 %), y the round trip in µs on a log scale.
    static func svg(_ results: [LatencyResult], machine: (cpus: Int, model: String, kernel: String)) -> String {
        let panelW = 520.0, panelH = 380.0, left = 70.0, top = 60.0, gap = 90.0
        let width = left + 2 * panelW + gap + 40, height = top + panelH + 150
        let xs = stride(from: 0.0, through: 4.0, by: 0.05).map { $0 }
        func pct(_ x: Double) -> Double { 100 * (1 - pow(10, -x)) }
        let valid = results.filter { $0.error == nil && $0.samples > 0 }
        var lo = Double.infinity, hi = 0.0
        for r in valid {
            for x in xs { let v = max(r.percentile(pct(x)), 0.05); lo = min(lo, v); hi = max(hi, v) }
        }
        if !lo.isFinite { lo = 1; hi = 10 }
        let yMin = floor(log10(lo)), yMax = max(ceil(log10(hi)), yMin + 1)
        let colors = ["same-cpu": "#1f77b4", "cross-cpu": "#d62728", "unpinned": "#2ca02c"]
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" font-family=\"sans-serif\" font-size=\"12\">\n"
        s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        s += "<text x=\"\(left)\" y=\"24\" font-size=\"16\">ivshmem2 doorbell round trip vs C eventfd ping-pong (percentile distribution)</text>\n"
        s += "<text x=\"\(left)\" y=\"42\" fill=\"#555\">\(esc("\(machine.cpus) vCPUs, \(machine.model), Linux \(machine.kernel). Solid: device A → server-less doorbell → device B → back to A; dashed: C baseline."))</text>\n"
        for (pi, mode) in ["blocking", "spin"].enumerated() {
            let x0 = left + Double(pi) * (panelW + gap), y0 = top
            func px(_ x: Double) -> Double { x0 + x / 4 * panelW }
            func py(_ us: Double) -> Double { y0 + panelH - (log10(max(us, 0.05)) - yMin) / (yMax - yMin) * panelH }
            s += "<text x=\"\(x0)\" y=\"\(y0 - 6)\" font-weight=\"bold\">\(mode == "spin" ? "spin-then-block (baseline: C busy-poll; same-cpu: C spin-then-block)" : "blocking (baseline: C blocking read)")</text>\n"
            s += "<rect x=\"\(x0)\" y=\"\(y0)\" width=\"\(panelW)\" height=\"\(panelH)\" fill=\"none\" stroke=\"#333\"/>\n"
            for (x, label) in [(0.0, "0%"), (1.0, "90%"), (2.0, "99%"), (3.0, "99.9%"), (4.0, "99.99%")] {
                s += "<line x1=\"\(px(x))\" y1=\"\(y0)\" x2=\"\(px(x))\" y2=\"\(y0 + panelH)\" stroke=\"#ddd\"/>"
                s += "<text x=\"\(px(x))\" y=\"\(y0 + panelH + 16)\" text-anchor=\"middle\">\(label)</text>\n"
            }
            s += "<text x=\"\(x0 + panelW / 2)\" y=\"\(y0 + panelH + 34)\" text-anchor=\"middle\">percentile</text>\n"
            var e = yMin
            while e <= yMax {
                let v = pow(10, e)
                s += "<line x1=\"\(x0)\" y1=\"\(py(v))\" x2=\"\(x0 + panelW)\" y2=\"\(py(v))\" stroke=\"#ddd\"/>"
                s += "<text x=\"\(x0 - 6)\" y=\"\(py(v) + 4)\" text-anchor=\"end\">\(v >= 1 ? String(Int(v)) : format(v, 1)) µs</text>\n"
                e += 1
            }
            for r in valid where r.mode == mode {
                let points = xs.map { x in "\(format(px(x), 1)),\(format(py(r.percentile(pct(x))), 1))" }.joined(separator: " ")
                let color = colors[r.placement.name] ?? "#000"
                s += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"\(r.isBaseline ? " stroke-dasharray=\"6,4\"" : "") points=\"\(points)\"/>\n"
            }
        }
        var ly = top + panelH + 60
        for (name, color) in [("same-cpu", "#1f77b4"), ("cross-cpu", "#d62728"), ("unpinned", "#2ca02c")] {
            let p = Placement.all(cpus: machine.cpus).first { $0.name == name }
            guard let p else { continue }
            s += "<line x1=\"\(left)\" y1=\"\(ly - 4)\" x2=\"\(left + 30)\" y2=\"\(ly - 4)\" stroke=\"\(color)\" stroke-width=\"2\"/>"
            s += "<text x=\"\(left + 38)\" y=\"\(ly)\">\(esc("\(name): \(p)")) — solid ours, dashed C</text>\n"
            ly += 20
        }
        return s + "</svg>\n"
    }

    static func esc(_ s: String) -> String {
        s.replacingAll("&", "&amp;").replacingAll("<", "&lt;").replacingAll(">", "&gt;")
    }
}

extension String {
    func replacingAll(_ a: Character, _ b: String) -> String {
        var out = ""
        for c in self { if c == a { out += b } else { out.append(c) } }
        return out
    }
}
