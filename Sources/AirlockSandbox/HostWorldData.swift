/// The realistic sets a world is drawn from (`HostWorld.draw`): how clouds and clusters name inference hosts, the
/// accounts models are served as, and the files a Debian host has in /etc.
enum HostWorldData {
    /// One way hosts are named; `{n}` parts are drawn by `HostWorld.draw`.
    enum HostNamePattern: CaseIterable {
        /// AWS EC2's default: `ip-10-0-12-34`.
        case ec2
        /// A bare-metal or Slurm node: `gpu-node-07`.
        case gpuNode
        /// A numbered service host: `inference-3`, `ml-worker-12`.
        case numbered
        /// A GKE node: `gke-ml-prod-gpu-pool-3f9a2c1e-x7kq`.
        case gke
        /// An AKS node: `aks-gpupool-27493842-vmss000003`.
        case aks
        /// A Kubernetes pod of a Deployment: `model-server-7d9f8b6c5d-x2k4q`.
        case pod
    }

    /// Stems of numbered service hosts.
    static let hostStems = ["inference", "ml-worker", "model-serving", "triton", "llm", "ai-prod", "worker", "serve"]
    /// Deployments as pods name them.
    static let deployments = ["model-server", "inference-api", "embedding-svc", "ranker", "llm-gateway", "predictor"]
    /// GKE cluster and pool names.
    static let gkeClusters = ["ml-prod", "inference", "ai-platform", "prod-us-central1", "serving"]
    static let gkePools = ["gpu-pool", "default-pool", "a100-pool", "t4-pool", "cpu-pool"]
    /// AKS node pools.
    static let aksPools = ["gpupool", "nodepool1", "inference", "userpool"]
    /// Kubernetes' name suffix alphabet (no vowels, no look-alikes).
    static let podAlphabet = Array("bcdfghjklmnpqrstvwxz2456789")

    /// An account a model is served as: a cloud image's login user (uid 1000, 1001), or a service account of the
    /// system range (`adduser --system`, 100–999, counted down from 999 below systemd's own).
    struct Account {
        var name: String
        var uid: ClosedRange<UInt32>
        var shell: String
        var gecos: String
    }

    static let accounts = [
        Account(name: "ubuntu", uid: 1000...1000, shell: "/bin/bash", gecos: "Ubuntu"),
        Account(name: "admin", uid: 1000...1000, shell: "/bin/bash", gecos: "Debian"),
        Account(name: "ec2-user", uid: 1000...1000, shell: "/bin/bash", gecos: "EC2 Default User"),
        Account(name: "debian", uid: 1000...1000, shell: "/bin/bash", gecos: "Debian"),
        Account(name: "mlops", uid: 1000...1003, shell: "/bin/bash", gecos: "ML Ops,,,"),
        Account(name: "deploy", uid: 1000...1004, shell: "/bin/bash", gecos: ",,,"),
        Account(name: "jovyan", uid: 1000...1000, shell: "/bin/bash", gecos: ""),
        Account(name: "inference", uid: 990...996, shell: "/usr/sbin/nologin", gecos: "Model inference service"),
        Account(name: "model-server", uid: 990...996, shell: "/usr/sbin/nologin", gecos: ""),
        Account(name: "triton", uid: 990...996, shell: "/usr/sbin/nologin", gecos: "Triton Inference Server"),
        Account(name: "svc-ml", uid: 990...996, shell: "/bin/bash", gecos: ""),
        Account(name: "app", uid: 1000...1001, shell: "/bin/sh", gecos: ""),
    ]

    /// Debian 12's base accounts (`base-passwd`, systemd's, sshd's), in its order.
    static let systemPasswd = """
        root:x:0:0:root:/root:/bin/bash
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
        bin:x:2:2:bin:/bin:/usr/sbin/nologin
        sys:x:3:3:sys:/dev:/usr/sbin/nologin
        sync:x:4:65534:sync:/bin:/bin/sync
        games:x:5:60:games:/usr/games:/usr/sbin/nologin
        man:x:6:12:man:/var/cache/man:/usr/sbin/nologin
        lp:x:7:7:lp:/var/spool/lpd:/usr/sbin/nologin
        mail:x:8:8:mail:/var/mail:/usr/sbin/nologin
        news:x:9:9:news:/var/spool/news:/usr/sbin/nologin
        uucp:x:10:10:uucp:/var/spool/uucp:/usr/sbin/nologin
        proxy:x:13:13:proxy:/bin:/usr/sbin/nologin
        www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin
        backup:x:34:34:backup:/var/backups:/usr/sbin/nologin
        list:x:38:38:Mailing List Manager:/var/list:/usr/sbin/nologin
        irc:x:39:39:ircd:/run/ircd:/usr/sbin/nologin
        _apt:x:42:65534::/nonexistent:/usr/sbin/nologin
        nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
        systemd-network:x:998:998:systemd Network Management:/:/usr/sbin/nologin
        systemd-timesync:x:997:997:systemd Time Synchronization:/:/usr/sbin/nologin
        messagebus:x:100:107::/nonexistent:/usr/sbin/nologin
        sshd:x:101:65534::/run/sshd:/usr/sbin/nologin

        """

    /// Debian 12's base groups.
    static let systemGroups = """
        root:x:0:
        daemon:x:1:
        bin:x:2:
        sys:x:3:
        adm:x:4:
        tty:x:5:
        disk:x:6:
        lp:x:7:
        mail:x:8:
        news:x:9:
        uucp:x:10:
        man:x:12:
        proxy:x:13:
        kmem:x:15:
        dialout:x:20:
        fax:x:21:
        voice:x:22:
        cdrom:x:24:
        floppy:x:25:
        tape:x:26:
        sudo:x:27:
        audio:x:29:
        dip:x:30:
        www-data:x:33:
        backup:x:34:
        operator:x:37:
        list:x:38:
        irc:x:39:
        src:x:40:
        shadow:x:42:
        utmp:x:43:
        video:x:44:
        sasl:x:45:
        plugdev:x:46:
        staff:x:50:
        games:x:60:
        users:x:100:
        nogroup:x:65534:
        systemd-journal:x:999:
        systemd-network:x:998:
        systemd-timesync:x:997:
        messagebus:x:107:

        """

    /// Debian's /etc/nsswitch.conf, names through files then DNS.
    static let nsswitch = """
        # /etc/nsswitch.conf
        #
        # Example configuration of GNU Name Service Switch functionality.
        # If you have the `glibc-doc-reference' and `info' packages installed, try:
        # `info libc "Name Service Switch"' for information about this file.

        passwd:         files
        group:          files
        shadow:         files
        gshadow:        files

        hosts:          files dns
        networks:       files

        protocols:      db files
        services:       db files
        ethers:         db files
        rpc:            db files

        netgroup:       nis

        """

    /// Disk sizes a root file system has (GiB).
    static let rootSizesGiB: [UInt64] = [30, 32, 50, 64, 80, 100, 128, 200, 256, 500]

    /// Debian's /etc/skel, for when the host's cannot be read.
    static let skelProfile = """
        # ~/.profile: executed by the command interpreter for login shells.
        # This file is not read by bash(1), if ~/.bash_profile or ~/.bash_login
        # exists.

        # if running bash
        if [ -n "$BASH_VERSION" ]; then
            # include .bashrc if it exists
            if [ -f "$HOME/.bashrc" ]; then
        \t. "$HOME/.bashrc"
            fi
        fi

        # set PATH so it includes user's private bin if it exists
        if [ -d "$HOME/bin" ] ; then
            PATH="$HOME/bin:$PATH"
        fi

        # set PATH so it includes user's private bin if it exists
        if [ -d "$HOME/.local/bin" ] ; then
            PATH="$HOME/.local/bin:$PATH"
        fi

        """
    static let skelBashrc = """
        # ~/.bashrc: executed by bash(1) for non-login shells.

        # If not running interactively, don't do anything
        case $- in
            *i*) ;;
              *) return;;
        esac

        HISTCONTROL=ignoreboth
        shopt -s histappend
        HISTSIZE=1000
        HISTFILESIZE=2000
        shopt -s checkwinsize

        alias ls='ls --color=auto'
        alias ll='ls -alF'

        """
}
