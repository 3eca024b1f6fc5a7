import Foundation

/// Checks JSON output against the schemas in docs/ with Python's jsonschema (Draft 7): reports (ReportSchemaTests),
/// manifests and verification lines (ManifestSchemaTests).
package enum SchemaValidation {
    /// A `json.load` hook that refuses duplicate keys (Python keeps the last silently; Airlock's reader refuses them).
    package static let uniqueKeys = """
        def unique(pairs):
            keys = [k for k, _ in pairs]
            dup = sorted({k for k in keys if keys.count(k) > 1})
            if dup:
                raise ValueError("duplicate keys %s" % dup)
            return dict(pairs)
        """

    /// Validates every line of each JSON Lines file against the schema; prints `file:line: path: message` per error
    /// and exits 1 when there is any. Keys must be unique: JSON Schema cannot say so, and Airlock's own reader
    /// (`AirlockJSON`) refuses duplicates.
    package static let validator = """
        import json, sys, jsonschema
        \(uniqueKeys)
        schema = json.load(open(sys.argv[1]))
        jsonschema.Draft7Validator.check_schema(schema)
        validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())
        bad = lines = 0
        for name in sys.argv[2:]:
            for n, line in enumerate(open(name, encoding="utf-8"), 1):
                lines += 1
                try:
                    report = json.loads(line, object_pairs_hook=unique)
                except ValueError as e:
                    bad += 1
                    print("%s:%d: %s" % (name, n, e))
                    continue
                for e in validator.iter_errors(report):
                    bad += 1
                    print("%s:%d: /%s: %s" % (name, n, "/".join(map(str, e.absolute_path)), e.message[:300]))
        print("%d reports, %d errors" % (lines, bad))
        sys.exit(1 if bad or not lines else 0)
        """

    /// Runs the host's python3; returns its exit status and standard output (standard error appended).
    package static func python(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = arguments
        let out = Pipe()
        process.standardOutput = out
        process.standardError = out
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    package static let manifestSchema = "\(repositoryRoot)/docs/manifest.schema.json"

    /// Validates each file (one JSON document each) against the schema given first; prints `file: /path: message` per
    /// error and `N valid` at the end; exits 0 only when every file is valid. Keys must be unique (the schema cannot
    /// say so; Airlock's reader refuses duplicates).
    package static let documentValidator = """
        import json, sys, jsonschema
        \(SchemaValidation.uniqueKeys)
        schema = json.load(open(sys.argv[1]))
        jsonschema.Draft7Validator.check_schema(schema)
        validator = jsonschema.Draft7Validator(schema)
        good = 0
        for name in sys.argv[2:]:
            try:
                document = json.load(open(name, encoding="utf-8"), object_pairs_hook=unique)
            except ValueError as e:
                print("%s: %s" % (name, e))
                continue
            errors = list(validator.iter_errors(document))
            for e in errors:
                print("%s: /%s: %s" % (name, "/".join(map(str, e.absolute_path)), e.message[:300]))
            good += not errors
        print("%d valid" % good)
        sys.exit(0 if good == len(sys.argv) - 2 else 1)
        """

    /// Runs the validator on `files`.
    package static func validateManifests(_ files: [String]) throws -> (status: Int32, output: String) {
        try SchemaValidation.python(["-c", documentValidator, manifestSchema] + files)
    }
}
