internal import AirlockSystem

#if canImport(Glibc)
    import Glibc
#endif

/// How a client lives with a daemon that answers `busy` (docs/protocol.md, "Errors"): it sends the request again
/// after an exponential back-off with full jitter (a random wait between 0 and 50 ms, 100 ms, 200 ms, … up to 2 s),
/// until `seconds` have passed since the first attempt. Only errors that prove the request never started are
/// retried (`ClientError.isRetryable`): a request that was accepted and then failed is never sent twice, so a file
/// is never detonated twice for one ask.
public struct BusyRetry: Sendable {
    /// How long retries go on, from the first attempt, seconds; 0 never retries.
    public var seconds: Double
    /// The first back-off's upper bound, seconds; each later one doubles, up to `maxDelay`.
    public var firstDelay = 0.05
    /// The largest back-off, seconds.
    public var maxDelay = 2.0
    /// Called at a request's first retryable error, with it and the seconds retries go on for (the CLI says once
    /// that it is waiting); nil says nothing.
    public var onWaiting: (@Sendable (ClientError, Double) -> Void)?

    /// Retries for `seconds`, telling `onWaiting`.
    public init(seconds: Double, onWaiting: (@Sendable (ClientError, Double) -> Void)? = nil) {
        self.seconds = seconds
        self.onWaiting = onWaiting
    }

    /// The back-off before retry number `attempt` (0 for the first): uniformly random in 0 up to
    /// `min(maxDelay, firstDelay * 2^attempt)`.
    public func delay(attempt: Int) -> Double {
        let bound = min(maxDelay, firstDelay * Double(1 << min(attempt, 30)))
        return Double.random(in: 0...bound)
    }

    /// Runs `attempt` until it returns, throws an error that is not retryable, or `seconds` have passed; the last
    /// error is thrown then.
    public func run<T>(_ attempt: () throws(ClientError) -> T) throws(ClientError) -> T {
        let start = monotonicNs()
        var tries = 0
        while true {
            do {
                return try attempt()
            } catch {
                guard error.isRetryable else { throw error }
                let elapsed = Double(monotonicNs() - start) / 1e9
                let left = seconds - elapsed
                guard left > 0 else { throw error }
                if tries == 0 { onWaiting?(error, seconds) }
                let wait = min(delay(attempt: tries), left)
                tries += 1
                var ts = timespec(tv_sec: Int(wait), tv_nsec: Int((wait - wait.rounded(.down)) * 1e9))
                var rest = timespec()
                while nanosleep(&ts, &rest) != 0 && errno == EINTR { ts = rest }
            }
        }
    }
}
