#if canImport(Glibc)
    import Glibc
#endif

extension HostWorld {
    /// Draws a plausible inference host for one detonation: a host name as clouds and clusters name them, a login or
    /// service account with its home under /home, a systemd service's environment, the files a Debian host has in
    /// /etc (its `os-release` is /usr's, which the sandbox shows), a writable home with `~/.cache/huggingface/`,
    /// `~/.config/` and `~/models/`, /var, /run and a read-only /sys, PID 1 an init and the command's pid from an
    /// ordinary range. Nothing in it names Airlock. Credentials and `/etc/resolv.conf` are left to their parts (add
    /// them to `files` and `environment`).
    ///
    /// - Parameters:
    ///   - name: the world's short name for reports.
    ///   - gpu: whether the host shows a GPU (`setGPU`).
    ///   - fileBytes: the size of each writable tmpfs (home, /var, /run): the profile's `limits.fileSizeBytes`
    ///     keeps bounding what the command can write.
    ///   - generator: the randomness (a seeded one in tests).
    public static func draw(
        name: String = "now", gpu: Bool = false, fileBytes: UInt64 = 64 << 20,
        using generator: inout some RandomNumberGenerator
    ) -> HostWorld {
        let hostname = drawHostName(&generator)
        let account = HostWorldData.accounts.randomElement(using: &generator)!
        let uid = UInt32.random(in: account.uid, using: &generator)
        let home = "/home/\(account.name)"
        let user = User(name: account.name, uid: uid, gid: uid, home: home)
        // Below the host's pid_max (which the sandbox's PID namespace shares): a pid above it is itself a tell.
        let pid = Int32.random(in: 600...min(48_000, WorldPersona.pidMax() - 1), using: &generator)
        var world = HostWorld(name: name, hostname: hostname, user: user)
        world.commandPid = pid
        world.rootSizeBytes = HostWorldData.rootSizesGiB.randomElement(using: &generator)! << 30
        world.initCommand = Bool.random(using: &generator) ? "/sbin/init" : "/lib/systemd/systemd"
        world.initName = "systemd"
        world.environment = [
            Variable("LANG", "C.UTF-8"),
            Variable("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
            Variable("HOME", home), Variable("LOGNAME", account.name), Variable("USER", account.name),
            Variable("SHELL", account.shell), Variable("INVOCATION_ID", hex(16, &generator)),
            Variable("JOURNAL_STREAM", "8:\(Int.random(in: 11_000...98_000, using: &generator))"),
            Variable("SYSTEMD_EXEC_PID", String(pid)),
        ]
        if Bool.random(using: &generator) { world.setEnvironment("PYTHONUNBUFFERED", "1") }
        if Bool.random(using: &generator) { world.setEnvironment("MODEL_DIR", "\(home)/models") }
        if Bool.random(using: &generator) { world.setEnvironment("HF_HOME", "\(home)/.cache/huggingface") }
        world.mounts = tree(user: user, fileBytes: fileBytes)
        world.files = etcFiles(world, machineID: hex(16, &generator)) + homeFiles(user)
        world.setGPU(gpu)
        return world
    }

    /// `draw` with the system's randomness.
    public static func draw(name: String = "now", gpu: Bool = false, fileBytes: UInt64 = 64 << 20) -> HostWorld {
        var generator = SystemRandomNumberGenerator()
        return draw(name: name, gpu: gpu, fileBytes: fileBytes, using: &generator)
    }

    private static func drawHostName(_ g: inout some RandomNumberGenerator) -> String {
        func n(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &g) }
        switch HostWorldData.HostNamePattern.allCases.randomElement(using: &g)! {
        case .ec2:
            // A default VPC is 172.31.0.0/16; others are commonly 10.x.
            let prefix = Bool.random(using: &g) ? "172-31" : "10-\([0, 0, 1, 16, 100].randomElement(using: &g)!)"
            return "ip-\(prefix)-\(n(0...255))-\(n(2...254))"
        case .gpuNode: return "gpu-node-\(String(format2: n(1...48)))"
        case .numbered: return "\(HostWorldData.hostStems.randomElement(using: &g)!)-\(n(0...24))"
        case .gke:
            return "gke-\(HostWorldData.gkeClusters.randomElement(using: &g)!)-"
                + "\(HostWorldData.gkePools.randomElement(using: &g)!)-\(hex(4, &g))-\(podSuffix(4, &g))"
        case .aks:
            return "aks-\(HostWorldData.aksPools.randomElement(using: &g)!)-\(n(10_000_000...39_999_999))-vmss"
                + "00000\(n(0...9))"
        case .pod:
            return "\(HostWorldData.deployments.randomElement(using: &g)!)-\(podSuffix(10, &g))-\(podSuffix(5, &g))"
        }
    }

    /// The world's tree: home (a tmpfs, writable like a real one) with its folders, /var, /run, /sys, /etc's links.
    private static func tree(user: User, fileBytes: UInt64) -> [MountSpec] {
        let home = user.home
        func m(_ kind: MountSpec.Kind, _ path: String, mode: UInt32? = nil, size: UInt64? = nil, target: String? = nil)
            -> MountSpec
        {
            MountSpec(
                kind: kind, source: nil, destination: path, target: target, contents: nil, sizeBytes: size,
                mode: mode, optional: false)
        }
        var mounts = [
            m(.tmpfs, "/var", mode: 0o755, size: fileBytes),
            m(.dir, "/var/tmp", mode: 0o1777), m(.dir, "/var/log", mode: 0o755), m(.dir, "/var/lib", mode: 0o755),
            m(.dir, "/var/lib/dbus", mode: 0o755), m(.dir, "/var/cache", mode: 0o755),
            m(.dir, "/var/spool", mode: 0o755), m(.dir, "/var/backups", mode: 0o755),
            m(.dir, "/var/mail", mode: 0o2775), m(.dir, "/var/local", mode: 0o2775), m(.dir, "/var/opt", mode: 0o755),
            m(.symlink, "/var/run", target: "/run"), m(.symlink, "/var/lock", target: "/run/lock"),
            m(.symlink, "/var/lib/dbus/machine-id", target: "/etc/machine-id"),
            m(.tmpfs, "/run", mode: 0o755, size: fileBytes),
            m(.dir, "/run/lock", mode: 0o1777), m(.dir, "/run/systemd/system", mode: 0o755),
            m(.dir, "/run/systemd/journal", mode: 0o755), m(.dir, "/run/user", mode: 0o755),
            m(.dir, "/run/user/\(user.uid)", mode: 0o700),
            m(.sysfs, "/sys"),
            m(.dir, "/home", mode: 0o755),
            m(.tmpfs, home, mode: 0o700, size: fileBytes),
            m(.dir, "\(home)/.cache", mode: 0o700), m(.dir, "\(home)/.cache/huggingface", mode: 0o755),
            m(.dir, "\(home)/.cache/huggingface/hub", mode: 0o755), m(.dir, "\(home)/.cache/pip", mode: 0o700),
            m(.dir, "\(home)/.config", mode: 0o700), m(.dir, "\(home)/.local/share", mode: 0o700),
            m(.dir, "\(home)/.local/bin", mode: 0o755), m(.dir, "\(home)/models", mode: 0o755),
            m(.symlink, "/etc/os-release", target: "../usr/lib/os-release"),
            m(.dir, "/root", mode: 0o700), m(.dir, "/opt", mode: 0o755), m(.dir, "/srv", mode: 0o755),
            m(.dir, "/mnt", mode: 0o755), m(.dir, "/media", mode: 0o755),
        ]
        return mounts
    }

    private static func etcFiles(_ world: HostWorld, machineID: String) -> [File] {
        let u = world.user
        let home = u.home
        let name = u.name
        let shell = HostWorldData.accounts.first { $0.name == name }?.shell ?? "/bin/bash"
        let gecos = HostWorldData.accounts.first { $0.name == name }?.gecos ?? ""
        let passwd = HostWorldData.systemPasswd + "\(name):x:\(u.uid):\(u.gid):\(gecos):\(home):\(shell)\n"
        let group = HostWorldData.systemGroups + "\(name):x:\(u.gid):\n"
        let hosts = """
            127.0.0.1\tlocalhost
            127.0.1.1\t\(world.hostname)

            # The following lines are desirable for IPv6 capable hosts
            ::1     localhost ip6-localhost ip6-loopback
            ff02::1 ip6-allnodes
            ff02::2 ip6-allrouters

            """
        return [
            File(path: "/etc/passwd", contents: passwd), File(path: "/etc/group", contents: group),
            File(path: "/etc/hostname", contents: "\(world.hostname)\n"), File(path: "/etc/hosts", contents: hosts),
            File(path: "/etc/machine-id", contents: "\(machineID)\n", mode: 0o444),
            File(path: "/etc/nsswitch.conf", contents: HostWorldData.nsswitch),
            File(path: "/etc/timezone", contents: "Etc/UTC\n"),
        ]
            + ["/etc/debian_version", "/etc/shells", "/etc/profile", "/etc/bash.bashrc", "/etc/issue"].compactMap {
                path in hostFile(path).map { File(path: path, contents: $0) }
            }
    }

    private static func homeFiles(_ u: User) -> [File] {
        let skel = { (file: String, fallback: String) in
            File(path: "\(u.home)/\(file)", contents: hostFile("/etc/skel/\(file)") ?? fallback)
        }
        return [
            skel(".profile", HostWorldData.skelProfile), skel(".bashrc", HostWorldData.skelBashrc),
            skel(".bash_logout", "# ~/.bash_logout: executed by bash(1) when login shell exits.\n"),
        ]
    }

    /// A small text file of the host's (/etc/skel), at most 16 KiB; nil when it cannot be read.
    private static func hostFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 16 << 10)
        var total = 0
        while total < bytes.count {
            let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + total, $0.count - total) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            total += n
        }
        guard total > 0, total < bytes.count else { return nil }
        return String(validating: bytes[0..<total], as: UTF8.self)
    }

    private static func hex(_ bytes: Int, _ g: inout some RandomNumberGenerator) -> String {
        let digits = Array("0123456789abcdef")
        return String((0..<(bytes * 2)).map { _ in digits[Int.random(in: 0..<16, using: &g)] })
    }

    private static func podSuffix(_ count: Int, _ g: inout some RandomNumberGenerator) -> String {
        String((0..<count).map { _ in HostWorldData.podAlphabet.randomElement(using: &g)! })
    }
}

extension String {
    /// Two digits at least: `07`.
    fileprivate init(format2 value: Int) { self = value < 10 ? "0\(value)" : String(value) }
}
