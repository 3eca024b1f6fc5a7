import AirlockAnalysis
import ArgumentParser

/// `--max-entries` and `--folder-budget`, shared by scan and probe: how much of each folder given is walked; the rest
/// is reported as not examined (docs/daemon.md, "Folder budgets").
struct FolderBudgetOptions: ParsableArguments {
    @Option(
        name: .customLong("max-entries"), parsing: .unconditional,
        help:
            "Most entries of each folder to walk, the rest reported as not examined (default 100000 here; through airlockd, at most the daemon's folderMaxEntries)."
    )
    var maxEntries: Int?

    @Option(
        name: .customLong("folder-budget"), parsing: .unconditional,
        help:
            "Seconds each folder's walk may take, the rest reported as not examined (default none here; through airlockd, at most the daemon's folderBudgetSeconds)."
    )
    var folderBudget: Double?

    func validate() throws {
        try ArgumentRules.count("--max-entries", maxEntries, 1...FolderBudget.maxEntriesLimit)
        try ArgumentRules.seconds("--folder-budget", folderBudget)
    }

    /// The budget of a local walk.
    var local: FolderBudget {
        FolderBudget(maxEntries: maxEntries ?? FolderBudget.local.maxEntries, seconds: folderBudget)
    }
}
