import AirlockTrace
#if canImport(Glibc)
    import Glibc
#endif

/// Turns what the emulated network recorded (`NetworkSink.finish`) into the result's `network` and `dnsQuestions`:
/// each flow named from the DNS map, and tied to the trace event of the call that opened it (the first performed
/// `connect`/`sendto`/`sendmsg` to its address and port not yet claimed), whose phase it takes.
enum NetworkRecord {
    static func exchanges(
        _ recorded: (
            flows: [NetworkSink.Flow], questions: [NetworkSink.Question], questionsDropped: Int,
            names: [[UInt8]: String]
        ),
        trace: [TraceEvent]
    ) -> ([NetworkExchange], [DNSQuestion]) {
        var openers: [(seq: Int, phase: String?, address: [UInt8], port: UInt16)] = []
        for event in trace where ["connect", "sendto", "sendmsg"].contains(event.syscall) {
            // A non-blocking connect (Python's sockets with a timeout) opens its flow with EINPROGRESS.
            let opened: Bool
            switch event.performed {
            case .returned?: opened = true
            case .failed(let e)?: opened = e == "EINPROGRESS" || e == String(EINPROGRESS)
            case nil: opened = false
            }
            guard opened, let text = event.args.address, let port = event.args.port,
                let address = NetworkSink.bytes(text), (0...65535).contains(port)
            else {
                continue
            }
            openers.append((event.seq, event.phase, address, UInt16(port)))
        }
        var claimed = Set<Int>()
        var exchanges: [NetworkExchange] = []
        for flow in recorded.flows {
            let opener = openers.indices.first {
                !claimed.contains($0) && openers[$0].address == flow.address && openers[$0].port == flow.port
            }
            if let opener { claimed.insert(opener) }
            exchanges.append(
                NetworkExchange(
                    transport: flow.transport, name: recorded.names[flow.address],
                    address: NetworkSink.text(flow.address), port: flow.port, bytes: flow.bytes,
                    droppedBytes: flow.dropped, seq: opener.map { openers[$0].seq },
                    phase: opener.map { openers[$0].phase } ?? phase(at: flow.atNs, trace)))
        }
        let questions = recorded.questions.map {
            DNSQuestion(name: $0.name, type: $0.type, phase: phase(at: $0.atNs, trace))
        }
        return (exchanges, questions)
    }

    /// The phase of the last trace event at or before `ns`.
    static func phase(at ns: UInt64, _ trace: [TraceEvent]) -> String? {
        var phase: String? = nil
        for event in trace {
            if event.timeNs > ns { break }
            phase = event.phase ?? phase
        }
        return phase
    }
}
