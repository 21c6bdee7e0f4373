import IvshmemPosix

/// A descriptor closed when the last reference goes away.
///
/// A peer's eventfds and the shared-memory descriptor are referenced by every queued message
/// that carries them, so a peer that leaves while its eventfds still wait in another peer's
/// queue does not close them under that queue (SRV-GONE-4, SRV-IO-2).
final class OwnedDescriptor {
    let fd: FileDescriptor

    init(_ fd: FileDescriptor) { self.fd = fd }

    deinit { fd.closeQuietly() }
}
