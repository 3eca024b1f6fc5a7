internal import Crypto

/// An Ed25519 key in OpenSSH's own private-key format (`openssh-key-v1`, unencrypted), as `ssh-keygen -t ed25519`
/// writes it: it parses as a key (ssh-keygen, paramiko, cryptography), and its public half matches its seed.
struct OpenSSHKey {
    /// `~/.ssh/id_ed25519`.
    var privateFile: String
    /// `~/.ssh/id_ed25519.pub`.
    var publicLine: String
    /// What only this key has: the base64 lines' runs that encode the seed alone (as the file shows them), and the
    /// seed's own bytes (for a payload that parses the key before sending it).
    var secrets: [[UInt8]]

    /// GitHub's published host key: what a `known_hosts` of a host that clones from GitHub holds.
    static let knownHosts =
        "github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n"

    static func draw(comment: String, _ random: inout some RandomNumberGenerator) -> OpenSSHKey {
        let seed = (0..<32).map { _ in UInt8.random(in: 0...255, using: &random) }
        // The seed is always 32 bytes: the initializer cannot fail.
        let publicKey = Array(try! Curve25519.Signing.PrivateKey(rawRepresentation: seed).publicKey.rawRepresentation)
        func string(_ bytes: [UInt8]) -> [UInt8] {
            let n = UInt32(bytes.count)
            return [UInt8(n >> 24), UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF)] + bytes
        }
        let type = Array("ssh-ed25519".utf8)
        let publicBlob = string(type) + string(publicKey)
        let check = (0..<4).map { _ in UInt8.random(in: 0...255, using: &random) }
        var section = check + check + string(type) + string(publicKey)
        let seedAt = section.count + 4
        section += string(seed + publicKey) + string(Array(comment.utf8))
        var pad: UInt8 = 1
        while section.count % 8 != 0 {
            section.append(pad)
            pad += 1
        }
        let head =
            Array("openssh-key-v1".utf8) + [0] + string(Array("none".utf8)) + string(Array("none".utf8)) + string([])
            + [0, 0, 0, 1] + string(publicBlob)
        let blob = head + string(section)
        let body = Array(TokenText.base64Encode(blob).utf8)
        var lines: [String] = []
        var i = 0
        while i < body.count {
            lines.append(String(decoding: body[i..<min(i + 70, body.count)], as: UTF8.self))
            i += 70
        }
        // Characters of the base64 text made of seed bits alone, cut where the file breaks its lines.
        let seedStart = head.count + 4 + seedAt
        let first = (seedStart * 8 + 5) / 6, end = ((seedStart + 32) * 8) / 6
        var secrets: [[UInt8]] = [seed]
        var run: [UInt8] = []
        for c in first..<end {
            if c % 70 == 0 && !run.isEmpty {
                secrets.append(run)
                run = []
            }
            run.append(body[c])
        }
        secrets.append(run)
        return OpenSSHKey(
            privateFile: "-----BEGIN OPENSSH PRIVATE KEY-----\n" + lines.joined(separator: "\n")
                + "\n-----END OPENSSH PRIVATE KEY-----\n",
            publicLine: "ssh-ed25519 \(TokenText.base64Encode(publicBlob)) \(comment)\n",
            secrets: secrets.filter { $0.count >= ExfiltrationMatcher.window })
    }
}

/// A Kubernetes service-account token (a JWT signed RS256) and the `~/.kube/config` that carries it.
struct KubeToken {
    var token: String
    /// The signature part: 256 random bytes, base64url.
    var signature: String

    static func draw(user: String, _ random: inout some RandomNumberGenerator) -> KubeToken {
        let url = { (b: [UInt8]) in TokenText.base64Encode(b, alphabet: TokenText.urlSafe, pad: false) }
        let kid = TokenText.draw(43, TokenText.urlSafe, &random)
        let issued = 1_700_000_000 + Int.random(in: 0..<60_000_000, using: &random)
        let header = url(Array("{\"alg\":\"RS256\",\"kid\":\"\(kid)\"}".utf8))
        let claims = url(
            Array(
                ("{\"aud\":[\"https://kubernetes.default.svc.cluster.local\"],\"exp\":\(issued + 31_536_000),"
                    + "\"iat\":\(issued),\"iss\":\"https://kubernetes.default.svc.cluster.local\","
                    + "\"sub\":\"system:serviceaccount:ml-serving:\(user)\"}").utf8))
        let signature = url((0..<256).map { _ in UInt8.random(in: 0...255, using: &random) })
        return KubeToken(token: "\(header).\(claims).\(signature)", signature: signature)
    }

    func config(user: String) -> String {
        """
        apiVersion: v1
        clusters:
        - cluster:
            server: https://10.96.0.1:443
          name: ml-serving
        contexts:
        - context:
            cluster: ml-serving
            namespace: ml-serving
            user: \(user)
          name: ml-serving
        current-context: ml-serving
        kind: Config
        preferences: {}
        users:
        - name: \(user)
          user:
            token: \(token)

        """
    }
}
