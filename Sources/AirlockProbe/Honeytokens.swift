internal import Crypto
public import AirlockSandbox

/// Plants honeytokens in a world (issue 15): for each credential a real inference host keeps, a value unique to the
/// detonation in that credential's real format (prefix, length, alphabet, checksum where the format has one), in the
/// environment variables and files where the tools that use it look, with the modes those tools give them.
///
/// The values come from the system's random generator: a payload cannot predict them, and a match in outgoing bytes
/// (`ExfiltrationMatcher`) can only come from a read.
public enum Honeytokens {
    /// Adds the tokens' variables and files to `world` and records them in `world.honeytokens`.
    public static func plant(in world: inout HostWorld) {
        var random = SystemRandomNumberGenerator()
        plant(in: &world, using: &random)
    }

    /// Same, with `random` as the source (tests).
    public static func plant(in world: inout HostWorld, using random: inout some RandomNumberGenerator) {
        var home = Substring(world.user.home)
        while home.hasSuffix("/") { home = home.dropLast() }
        let user = world.user.name
        var tokens: [Honeytoken] = []
        func file(_ relative: String, _ contents: String, _ mode: UInt32 = 0o600) -> Honeytoken.Place {
            world.files.append(HostWorld.File(path: home + "/" + relative, contents: contents, mode: mode))
            return .file(home + "/" + relative)
        }
        func variable(_ name: String, _ value: String) -> Honeytoken.Place {
            world.setEnvironment(name, value)
            return .environment(name)
        }

        let hfBody = TokenText.draw(34, TokenText.letters, &random)
        let hf = "hf_" + hfBody
        let ghBody = TokenText.draw(30, TokenText.base62, &random)
        let github = "ghp_" + ghBody + TokenText.base62Checksum(ghBody)
        let wandb = TokenText.draw(40, TokenText.lowerHex, &random)
        let hfPlaces = [
            variable("HF_TOKEN", hf), file(".cache/huggingface/token", hf),
            file(
                ".cache/huggingface/stored_tokens",
                "[\(["default", "inference", "ci", "read"].randomElement(using: &random)!)]\nhf_token = \(hf)\n\n"),
        ]
        let netrc = file(
            ".netrc",
            "machine huggingface.co\n  login \(user)\n  password \(hf)\nmachine github.com\n  login \(user)\n"
                + "  password \(github)\nmachine api.wandb.ai\n  login user\n  password \(wandb)\n")
        tokens.append(
            Honeytoken(name: "Hugging Face token", value: hf, secrets: [Array(hfBody.utf8)], places: hfPlaces + [netrc])
        )

        let openaiA = TokenText.draw(74, TokenText.urlSafe, &random)
        let openaiB = TokenText.draw(74, TokenText.urlSafe, &random)
        let openai = "sk-proj-" + openaiA + "T3BlbkFJ" + openaiB
        tokens.append(
            Honeytoken(
                name: "OpenAI API key", value: openai, secrets: [Array(openaiA.utf8), Array(openaiB.utf8)],
                places: [variable("OPENAI_API_KEY", openai)]))
        let anthropicBody = TokenText.draw(93, TokenText.urlSafe, &random)
        let anthropic = "sk-ant-api03-" + anthropicBody + "AA"
        tokens.append(
            Honeytoken(
                name: "Anthropic API key", value: anthropic, secrets: [Array(anthropicBody.utf8)],
                places: [variable("ANTHROPIC_API_KEY", anthropic)]))

        let keyIdBody = TokenText.draw(16, TokenText.base32Upper, &random)
        let keyId = "AKIA" + keyIdBody
        let secretKey = TokenText.draw(40, TokenText.base64, &random)
        let region = ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1"].randomElement(using: &random)!
        let awsFile = file(
            ".aws/credentials", "[default]\naws_access_key_id = \(keyId)\naws_secret_access_key = \(secretKey)\n")
        tokens.append(
            Honeytoken(
                name: "AWS access key id", value: keyId, secrets: [Array(keyId.utf8)],
                places: [variable("AWS_ACCESS_KEY_ID", keyId), awsFile]))
        tokens.append(
            Honeytoken(
                name: "AWS secret access key", value: secretKey, secrets: [Array(secretKey.utf8)],
                places: [variable("AWS_SECRET_ACCESS_KEY", secretKey), awsFile]))
        tokens.append(
            Honeytoken(
                name: "AWS configuration", value: "", secrets: [],
                places: [file(".aws/config", "[default]\nregion = \(region)\noutput = json\n")]))

        tokens.append(
            Honeytoken(
                name: "GitHub token", value: github, secrets: [Array((ghBody + github.suffix(6)).utf8)],
                places: [
                    variable("GITHUB_TOKEN", github),
                    file(".git-credentials", "https://\(user):\(github)@github.com\n"),
                    netrc,
                ]))
        tokens.append(
            Honeytoken(
                name: "Weights & Biases API key", value: wandb, secrets: [Array(wandb.utf8)],
                places: [variable("WANDB_API_KEY", wandb), netrc]))

        let ssh = OpenSSHKey.draw(comment: "\(user)@\(world.hostname)", &random)
        tokens.append(
            Honeytoken(
                name: "SSH private key (ed25519)", value: ssh.privateFile, secrets: ssh.secrets,
                places: [file(".ssh/id_ed25519", ssh.privateFile)]))
        tokens.append(
            Honeytoken(
                name: "SSH public key and known hosts", value: ssh.publicLine, secrets: [],
                places: [
                    file(".ssh/id_ed25519.pub", ssh.publicLine, 0o644),
                    file(".ssh/known_hosts", OpenSSHKey.knownHosts, 0o644),
                ]))

        let dockerBody = TokenText.draw(27, TokenText.urlSafe, &random)
        let docker = "dckr_pat_" + dockerBody
        let auth = TokenText.base64Encode(Array("\(user):\(docker)".utf8))
        tokens.append(
            Honeytoken(
                name: "Docker Hub access token", value: docker, secrets: [Array(dockerBody.utf8)],
                places: [
                    file(
                        ".docker/config.json",
                        "{\n\t\"auths\": {\n\t\t\"https://index.docker.io/v1/\": {\n\t\t\t\"auth\": \"\(auth)\"\n\t\t}\n\t}\n}"
                    )
                ]))

        let kube = KubeToken.draw(user: user, &random)
        tokens.append(
            Honeytoken(
                name: "Kubernetes service-account token", value: kube.token, secrets: [Array(kube.signature.utf8)],
                places: [file(".kube/config", kube.config(user: user))]))
        world.honeytokens += tokens
    }
}

/// Alphabets, random draws and encodings of credential formats.
enum TokenText {
    static let letters = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".utf8)
    /// GitHub's alphabet, in the order its checksum encoding uses.
    static let base62 = Array("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".utf8)
    static let urlSafe = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
    static let base64 = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    static let base32Upper = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".utf8)
    static let lowerHex = Array("0123456789abcdef".utf8)

    static func draw(_ count: Int, _ alphabet: [UInt8], _ random: inout some RandomNumberGenerator) -> String {
        String(decoding: (0..<count).map { _ in alphabet.randomElement(using: &random)! }, as: UTF8.self)
    }

    /// GitHub's token checksum: CRC-32 of the random part, in base 62, six characters.
    static func base62Checksum(_ body: String) -> String {
        var value = UInt64(crc32(Array(body.utf8)))
        var out = [UInt8](repeating: base62[0], count: 6)
        for i in stride(from: 5, through: 0, by: -1) {
            out[i] = base62[Int(value % 62)]
            value /= 62
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            crc ^= UInt32(b)
            for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        return ~crc
    }

    /// Standard base64 with padding (`alphabet` for URL-safe).
    static func base64Encode(_ bytes: [UInt8], alphabet: [UInt8] = base64, pad: Bool = true) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var i = 0
        while i < bytes.count {
            let n = min(3, bytes.count - i)
            let b0 = UInt32(bytes[i]), b1 = n > 1 ? UInt32(bytes[i + 1]) : 0, b2 = n > 2 ? UInt32(bytes[i + 2]) : 0
            let v = b0 << 16 | b1 << 8 | b2
            for k in 0..<4 {
                if k <= n {
                    out.append(alphabet[Int((v >> (18 - 6 * UInt32(k))) & 63)])
                } else if pad {
                    out.append(UInt8(ascii: "="))
                }
            }
            i += 3
        }
        return String(decoding: out, as: UTF8.self)
    }
}
