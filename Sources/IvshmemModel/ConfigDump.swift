/// Config space in the `lspci -xxx` hex format (`xx: hh hh …`, 16 bytes a line, all 256
/// bytes), which `lspci -F` and libpci's dump access method read back.
public enum ConfigDump {
    public static func lspciHex(_ device: IvshmemDevice) -> String {
        var out = ""
        for row in stride(from: 0, to: ConfigSpace.size, by: 16) {
            out += hex2(row) + ":"
            for col in 0..<16 { out += " " + hex2(Int(device.configRead(offset: row + col, size: 1))) }
            out += "\n"
        }
        return out
    }

    static func hex2(_ v: Int) -> String {
        let s = String(v, radix: 16)
        return s.count < 2 ? "0" + s : s
    }
}
