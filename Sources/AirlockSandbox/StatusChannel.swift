internal import CSandbox
import AirlockSystem
#if canImport(Glibc)
    import Glibc
#endif

/// One message from the sandbox's PID 1 on the status pipe (an `airlock_message`), decoded.
enum StatusMessage: Equatable {
    /// Set-up failed at `step` (an `airlock_step`); `index` is the mount (≥ 0), a /dev node (≤ -2), or -1.
    case setupFailed(step: UInt32, errno: Errno, index: Int32)
    /// The seccomp listener is open in PID 1 as this descriptor number.
    case listener(childFD: Int32)
    /// The command could not be executed.
    case execFailed(Errno)
    /// The command's process exists, with this PID inside the sandbox.
    case started(pid: Int32)
    /// The command ended with this wait status. PID 1 lives on while processes of the command's remain.
    case exited(status: Int32)
    /// The command ended and PID 1 still has children: processes outlived it.
    case remaining

    /// Decodes a record; nil for a type this supervisor does not know.
    init?(_ m: airlock_message) {
        switch m.type {
        case AIRLOCK_MSG_ERROR.rawValue: self = .setupFailed(step: m.step, errno: Errno(m.err), index: m.index)
        case AIRLOCK_MSG_LISTENER.rawValue: self = .listener(childFD: Int32(truncatingIfNeeded: m.value))
        case AIRLOCK_MSG_EXEC_FAILED.rawValue: self = .execFailed(Errno(m.err))
        case AIRLOCK_MSG_STARTED.rawValue: self = .started(pid: Int32(truncatingIfNeeded: m.value))
        case AIRLOCK_MSG_EXIT.rawValue: self = .exited(status: Int32(truncatingIfNeeded: m.value))
        case AIRLOCK_MSG_REMAINING.rawValue: self = .remaining
        default: return nil
        }
    }
}

/// The pipe on which the sandbox's PID 1 reports, read without blocking: fixed-size records, which may arrive split
/// across reads. It does not own the descriptor.
final class StatusChannel {
    /// The supervisor's (non-blocking) read end.
    let fd: FileDescriptor
    private var buffer: [UInt8] = []
    /// Whether PID 1 and the command have closed their ends (both exited, or exec succeeded and PID 1 is gone).
    private(set) var atEOF = false

    init(fd: FileDescriptor) { self.fd = fd }

    /// Reads whatever messages are available now.
    func read() -> [StatusMessage] {
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd.rawValue, $0.baseAddress, $0.count) }
            if n > 0 {
                buffer.append(contentsOf: chunk[0..<n])
                continue
            }
            if n == 0 { atEOF = true }
            if n < 0 && errno == EINTR { continue }
            break
        }
        let size = MemoryLayout<airlock_message>.size
        var messages: [StatusMessage] = []
        while buffer.count >= size {
            let m = buffer.withUnsafeBytes { $0.loadUnaligned(as: airlock_message.self) }
            if let message = StatusMessage(m) { messages.append(message) }
            buffer.removeFirst(size)
        }
        return messages
    }

    /// The error for a failed set-up step: the step's name from the C header's table, and for a step about one
    /// mount, which mount (`mounts` is the sandbox's whole mount list, the profile's then the request's).
    static func setupError(step: UInt32, errno: Errno, index: Int32, mounts: [MountSpec]) -> SandboxError {
        var what = airlock_step_name(step).map { String(cString: $0) } ?? "step \(step)"
        if [
            AIRLOCK_STEP_OPEN_SOURCE.rawValue, AIRLOCK_STEP_MOUNTPOINT.rawValue, AIRLOCK_STEP_MOUNT.rawValue,
            AIRLOCK_STEP_READONLY.rawValue,
        ].contains(step) {
            if index >= 0 && Int(index) < mounts.count {
                let mount = mounts[Int(index)]
                what += " \(mount.source.map { "\($0) → " } ?? "")\(mount.destination) (\(mount.kind.rawValue))"
            } else if index <= -2 {
                what += " (a /dev node)"
            }
        }
        return SandboxError(.setup, "sandbox set-up failed while \(what)", errno: errno)
    }
}
