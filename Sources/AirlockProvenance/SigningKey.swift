internal import Crypto

/// An EC public key read from PEM, on one of the curves model-signing accepts (P-256, P-384, P-521), with its
/// model-signing fingerprint.
struct ECVerifyingKey {
    enum Key {
        case p256(P256.Signing.PublicKey)
        case p384(P384.Signing.PublicKey)
        case p521(P521.Signing.PublicKey)
    }

    let key: Key
    /// The SubjectPublicKeyInfo DER, as read (only the canonical uncompressed form is accepted).
    let spki: [UInt8]
    /// Hex SHA-256 of the canonical PEM text: model-signing's `publicKey.hint`.
    let fingerprint: String

    /// "P-256" and so on, for messages.
    var curveName: String {
        switch key {
        case .p256: "P-256"
        case .p384: "P-384"
        case .p521: "P-521"
        }
    }

    /// `sha256:` and the first 16 hex digits of the fingerprint, for messages.
    var shortFingerprint: String { "sha256:\(fingerprint.prefix(16))…" }

    /// Reads a PEM `PUBLIC KEY` block (SubjectPublicKeyInfo). Private keys, certificates, non-EC keys and other curves
    /// are refused with a message saying which they are.
    init(pem: [UInt8]) throws(ProvenanceError) {
        guard pem.count <= 1 << 20 else {
            throw ProvenanceError(.limit, "public key: the PEM file is larger than 1 MiB")
        }
        let (label, body) = try PEM.firstBlock(pem)
        switch label {
        case "PUBLIC KEY": break
        case "PRIVATE KEY", "EC PRIVATE KEY", "ENCRYPTED PRIVATE KEY", "RSA PRIVATE KEY":
            throw ProvenanceError(
                .malformed,
                "public key: the PEM file holds a private key (\(label)); give the public key (openssl pkey -pubout)")
        case "CERTIFICATE":
            throw ProvenanceError(
                .unsupported,
                "public key: the PEM file holds a certificate; certificate-based verification is not supported yet, give the signer's public key"
            )
        case "RSA PUBLIC KEY":
            throw ProvenanceError(
                .unsupported,
                "public key: RSA keys are not supported (model-signing signs with EC keys on P-256, P-384 or P-521)")
        default:
            throw ProvenanceError(.malformed, "public key: expected a PEM PUBLIC KEY block, found \(label)")
        }
        guard let der = Base64.decode(body) else {
            throw ProvenanceError(.malformed, "public key: the PEM body is not valid base64")
        }
        spki = der
        let curve = try SPKI.ecCurve(der)
        do {
            switch curve {
            case .p256: key = .p256(try P256.Signing.PublicKey(x963Representation: SPKI.point(der)))
            case .p384: key = .p384(try P384.Signing.PublicKey(x963Representation: SPKI.point(der)))
            case .p521: key = .p521(try P521.Signing.PublicKey(x963Representation: SPKI.point(der)))
            }
        } catch {
            throw ProvenanceError(
                .malformed, "public key: the \(curve.rawValue) point is not on the curve or not valid")
        }
        fingerprint = Hex.encode(SHA256.hash(data: PEM.canonical(label: "PUBLIC KEY", der: der)))
    }

    /// Whether `signature` (DER ECDSA) is a valid signature of `message` under this key, hashed as model-signing does
    /// (SHA-256 for P-256, SHA-384 for P-384, SHA-512 for P-521). Only canonical DER is accepted, as OpenSSL does.
    func isValid(derSignature: [UInt8], message: [UInt8]) -> Bool {
        do {
            switch key {
            case .p256(let k):
                let s = try P256.Signing.ECDSASignature(derRepresentation: derSignature)
                return Array(s.derRepresentation) == derSignature && k.isValidSignature(s, for: message)
            case .p384(let k):
                let s = try P384.Signing.ECDSASignature(derRepresentation: derSignature)
                return Array(s.derRepresentation) == derSignature && k.isValidSignature(s, for: message)
            case .p521(let k):
                let s = try P521.Signing.ECDSASignature(derRepresentation: derSignature)
                return Array(s.derRepresentation) == derSignature && k.isValidSignature(s, for: message)
            }
        } catch {
            return false
        }
    }
}

/// PEM text: finding a block and writing the canonical form.
enum PEM {
    /// The label and base64 body (whitespace removed) of the first `-----BEGIN …-----` block. Text before it is
    /// skipped, as OpenSSL does.
    static func firstBlock(_ text: [UInt8]) throws(ProvenanceError) -> (String, [UInt8]) {
        let begin = Array("-----BEGIN ".utf8), dashes = Array("-----".utf8)
        guard let start = find(begin, in: text, from: 0) else {
            throw ProvenanceError(.malformed, "public key: not a PEM file (no -----BEGIN line)")
        }
        let labelStart = start + begin.count
        guard let labelEnd = find(dashes, in: text, from: labelStart),
            !text[labelStart..<labelEnd].contains(0x0A)
        else {
            throw ProvenanceError(.malformed, "public key: the PEM -----BEGIN line is not terminated")
        }
        let label = String(decoding: text[labelStart..<labelEnd], as: UTF8.self)
        let end = Array("-----END \(label)-----".utf8)
        let bodyStart = labelEnd + dashes.count
        guard let bodyEnd = find(end, in: text, from: bodyStart) else {
            throw ProvenanceError(.malformed, "public key: no -----END \(label)----- line")
        }
        let body = text[bodyStart..<bodyEnd].filter { $0 != 0x20 && $0 != 0x09 && $0 != 0x0A && $0 != 0x0D }
        return (label, body)
    }

    /// The PEM text Python's `cryptography` (and OpenSSL) writes: BEGIN line, base64 in 64-column lines, END line,
    /// each ending in a newline.
    static func canonical(label: String, der: [UInt8]) -> [UInt8] {
        var out = Array("-----BEGIN \(label)-----\n".utf8)
        let b64 = Base64.encode(der)
        var i = 0
        while i < b64.count {
            out.append(contentsOf: b64[i..<min(i + 64, b64.count)])
            out.append(0x0A)
            i += 64
        }
        out.append(contentsOf: "-----END \(label)-----\n".utf8)
        return out
    }

    private static func find(_ needle: [UInt8], in haystack: [UInt8], from: Int) -> Int? {
        guard needle.count <= haystack.count else { return nil }
        var i = from
        while i + needle.count <= haystack.count {
            if haystack[i] == needle[0] && haystack[i..<(i + needle.count)].elementsEqual(needle) { return i }
            i += 1
        }
        return nil
    }
}

/// Just enough DER to read an EC SubjectPublicKeyInfo and name what any other key is.
enum SPKI {
    enum Curve: String {
        case p256 = "P-256", p384 = "P-384", p521 = "P-521"

        /// Bytes of the uncompressed point: 0x04, X, Y.
        var pointSize: Int {
            switch self {
            case .p256: 65
            case .p384: 97
            case .p521: 133
            }
        }
    }

    // Object identifier contents (DER, without tag and length).
    private static let ecPublicKey: [UInt8] = [0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01]  // 1.2.840.10045.2.1
    private static let curves: [([UInt8], Curve)] = [
        ([0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07], .p256),  // 1.2.840.10045.3.1.7 prime256v1
        ([0x2B, 0x81, 0x04, 0x00, 0x22], .p384),  // 1.3.132.0.34 secp384r1
        ([0x2B, 0x81, 0x04, 0x00, 0x23], .p521),  // 1.3.132.0.35 secp521r1
    ]
    private static let otherAlgorithms: [([UInt8], String)] = [
        ([0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01], "RSA"),
        ([0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x0A], "RSA-PSS"),
        ([0x2B, 0x65, 0x70], "Ed25519"),
        ([0x2B, 0x65, 0x71], "Ed448"),
        ([0x2A, 0x86, 0x48, 0xCE, 0x38, 0x04, 0x01], "DSA"),
    ]

    /// One DER element: tag, and the range of its contents.
    private struct Element {
        let tag: UInt8
        let contents: Range<Int>
    }

    /// Reads the element at `at` (definite, minimal lengths only); `at` moves past it.
    private static func element(_ der: [UInt8], _ at: inout Int, end: Int) -> Element? {
        guard at + 2 <= end else { return nil }
        let tag = der[at]
        var length = Int(der[at + 1])
        var p = at + 2
        if length & 0x80 != 0 {
            let n = length & 0x7F
            guard n >= 1, n <= 3, p + n <= end, der[p] != 0 else { return nil }
            length = 0
            for _ in 0..<n {
                length = length << 8 | Int(der[p])
                p += 1
            }
            guard length >= 0x80 else { return nil }
        }
        guard length <= end - p else { return nil }
        at = p + length
        return Element(tag: tag, contents: p..<(p + length))
    }

    private static func fail(_ reason: String) -> ProvenanceError {
        ProvenanceError(.malformed, "public key: not a valid SubjectPublicKeyInfo (\(reason))")
    }

    /// The parts of a SubjectPublicKeyInfo: algorithm OID, parameters element (if any), key bit-string contents.
    private static func parts(_ der: [UInt8]) throws(ProvenanceError) -> (
        algorithm: ArraySlice<UInt8>, parameters: Element?, key: ArraySlice<UInt8>
    ) {
        var at = 0
        guard let top = element(der, &at, end: der.count), top.tag == 0x30, at == der.count else {
            throw fail("not one DER SEQUENCE")
        }
        var inner = top.contents.lowerBound
        guard let algorithmIdentifier = element(der, &inner, end: top.contents.upperBound),
            algorithmIdentifier.tag == 0x30
        else {
            throw fail("no AlgorithmIdentifier")
        }
        guard let bits = element(der, &inner, end: top.contents.upperBound), bits.tag == 0x03,
            inner == top.contents.upperBound
        else {
            throw fail("no BIT STRING key, or extra data")
        }
        var a = algorithmIdentifier.contents.lowerBound
        guard let oid = element(der, &a, end: algorithmIdentifier.contents.upperBound), oid.tag == 0x06 else {
            throw fail("no algorithm OBJECT IDENTIFIER")
        }
        var parameters: Element? = nil
        if a < algorithmIdentifier.contents.upperBound {
            guard let p = element(der, &a, end: algorithmIdentifier.contents.upperBound),
                a == algorithmIdentifier.contents.upperBound
            else {
                throw fail("bad algorithm parameters")
            }
            parameters = p
        }
        guard !bits.contents.isEmpty, der[bits.contents.lowerBound] == 0 else {
            throw fail("BIT STRING with unused bits")
        }
        return (der[oid.contents], parameters, der[(bits.contents.lowerBound + 1)..<bits.contents.upperBound])
    }

    /// The curve of an EC key; anything else is refused, naming the algorithm or curve.
    static func ecCurve(_ der: [UInt8]) throws(ProvenanceError) -> Curve {
        let (algorithm, parameters, key) = try parts(der)
        guard algorithm.elementsEqual(ecPublicKey) else {
            let name = otherAlgorithms.first { algorithm.elementsEqual($0.0) }?.1 ?? "algorithm \(oidText(algorithm))"
            throw ProvenanceError(
                .unsupported,
                "public key: \(name) keys are not supported (model-signing signs with EC keys on P-256, P-384 or P-521)"
            )
        }
        guard let parameters, parameters.tag == 0x06 else {
            throw ProvenanceError(
                .unsupported,
                "public key: EC keys with explicit curve parameters are not supported (use a named curve: P-256, P-384 or P-521)"
            )
        }
        let curveOID = der[parameters.contents]
        guard let curve = curves.first(where: { curveOID.elementsEqual($0.0) })?.1 else {
            let known: [([UInt8], String)] = [([0x2B, 0x81, 0x04, 0x00, 0x0A], " (secp256k1)")]
            let name = known.first { curveOID.elementsEqual($0.0) }?.1 ?? ""
            throw ProvenanceError(
                .unsupported,
                "public key: the EC curve \(oidText(curveOID))\(name) is not supported (model-signing accepts P-256, P-384 and P-521)"
            )
        }
        guard key.count == curve.pointSize, key.first == 0x04 else {
            throw ProvenanceError(
                .unsupported,
                "public key: only uncompressed \(curve.rawValue) points are supported (\(key.count) bytes, expected \(curve.pointSize) starting 0x04)"
            )
        }
        return curve
    }

    /// The uncompressed point of an EC SubjectPublicKeyInfo already checked by `ecCurve`.
    static func point(_ der: [UInt8]) throws(ProvenanceError) -> [UInt8] {
        Array(try parts(der).key)
    }

    /// Dotted text of an OID's contents ("1.3.132.0.10"), or "(invalid)".
    static func oidText(_ contents: ArraySlice<UInt8>) -> String {
        var arcs: [UInt64] = []
        var value: UInt64 = 0
        var bytesInArc = 0
        for byte in contents {
            bytesInArc += 1
            guard bytesInArc <= 9 else { return "(invalid)" }
            value = value << 7 | UInt64(byte & 0x7F)
            if byte & 0x80 == 0 {
                if arcs.isEmpty {
                    let first: UInt64 = value < 40 ? 0 : (value < 80 ? 1 : 2)
                    arcs.append(first)
                    arcs.append(value - first * 40)
                } else {
                    arcs.append(value)
                }
                value = 0
                bytesInArc = 0
            }
        }
        guard bytesInArc == 0, !arcs.isEmpty else { return "(invalid)" }
        return arcs.map { String($0) }.joined(separator: ".")
    }
}
