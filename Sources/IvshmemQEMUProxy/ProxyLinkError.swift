import IvshmemPosix

/// Why the link to QEMU's proxy failed. Every case names the message (its command, raw when it
/// is not one QEMU 7.2 defines) and where it started on the stream, so that a malformed
/// message can be found in a capture.
public struct ProxyLinkError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable, Equatable {
        /// A command number QEMU 7.2 does not define, or one QEMU never sends (RET).
        case unknownCommand
        /// A payload size other than the command's.
        case badSize
        /// Descriptors where the command carries none, too few, or more than 8.
        case badDescriptors
        /// A field value QEMU never sends (an access length, an address beyond config space).
        case badField
        /// The stream ended inside a message, or a message was not completed in time.
        case truncated
        /// A system call on the link failed.
        case system
    }

    public var kind: Kind
    /// The raw command of the message concerned (nil when the header itself was incomplete).
    public var command: Int32?
    /// Byte offset on the stream at which the message starts.
    public var offset: UInt64
    public var message: String

    public init(_ kind: Kind, command: Int32?, offset: UInt64, _ message: String) {
        self.kind = kind
        self.command = command
        self.offset = offset
        self.message = message
    }

    public var description: String {
        let name: String
        if let command {
            name = ProxyCommand(rawValue: command).map { "command \(command) (\($0))" } ?? "command \(command) (unknown)"
        } else {
            name = "an incomplete header"
        }
        return "QEMU proxy link: \(message) [\(name), message at stream offset \(offset)]"
    }
}
