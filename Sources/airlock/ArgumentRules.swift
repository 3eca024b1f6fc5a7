import ArgumentParser

/// The range checks of the CLI's numeric options, one wording for all: a value outside the rule is a usage error
/// (exit 64) that states the rule and the value given. Every numeric option is declared with
/// `parsing: .unconditional`, so that `--timeout -1` reaches these checks (ArgumentParser would otherwise take `-1`
/// for an option and answer "Missing value"); NaN and the infinities fail every check.
enum ArgumentRules {
    /// Seconds: more than 0, at most `limit` (a day unless said otherwise).
    static func seconds(_ name: String, _ value: Double?, atMost limit: Double = 86_400) throws(ValidationError) {
        guard let value else { return }
        if !(value > 0 && value <= limit) {
            throw ValidationError(
                "\(name) must be more than 0 and at most \(whole(limit)) seconds, not \(whole(value))")
        }
    }

    /// Seconds: at least `low`, at most `high`.
    static func seconds(_ name: String, _ value: Double?, from low: Double, to high: Double) throws(ValidationError) {
        guard let value else { return }
        if !(value >= low && value <= high) {
            throw ValidationError(
                "\(name) must be at least \(whole(low)) and at most \(whole(high)) seconds, not \(whole(value))")
        }
    }

    /// A count within `range`.
    static func count(_ name: String, _ value: Int?, _ range: ClosedRange<Int>) throws(ValidationError) {
        guard let value else { return }
        if !range.contains(value) {
            throw ValidationError(
                "\(name) must be at least \(range.lowerBound) and at most \(range.upperBound), not \(value)")
        }
    }

    /// `86400`, not `86400.0`.
    static func whole(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : String(value)
    }
}
