#if canImport(Glibc)
    import Glibc
#endif

/// Log lines on stderr with the priority prefix journald reads (`<3>` error … `<7>` debug).
public enum Log {
    /// syslog priorities.
    public enum Priority: Int, Sendable {
        case err = 3, warning = 4, notice = 5, info = 6, debug = 7
    }

    /// Writes one line. A newline in `message` becomes a space: one event, one journal entry.
    public static func write(_ priority: Priority, _ message: String) {
        let line = "<\(priority.rawValue)>airlockd: " + String(message.map { $0 == "\n" ? " " : $0 }) + "\n"
        try? FileDescriptor(2).writeAll(Array(line.utf8))
    }
}
