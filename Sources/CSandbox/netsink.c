/*
 * The emulated network's kernel side (NetworkSink.swift): entering the sandbox's network namespace from a thread of
 * the supervisor, making every address local there (loopback up, "AnyIP" local routes for 0.0.0.0/0 and ::/0, so
 * nothing can route out), and the datagram calls that need the destination address a packet was sent to
 * (IP_PKTINFO / IPV6_PKTINFO). Nothing here allocates.
 */
#define _GNU_SOURCE
#include "airlock_sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

int airlock_net_enter(int nsfd) { return (int)syscall(SYS_setns, nsfd, CLONE_NEWNET); }

static void al_attr(struct nlmsghdr *h, unsigned short type, const void *data, unsigned short len) {
    struct rtattr *a = (struct rtattr *)((char *)h + NLMSG_ALIGN(h->nlmsg_len));
    a->rta_type = type;
    a->rta_len = RTA_LENGTH(len);
    memcpy(RTA_DATA(a), data, len);
    h->nlmsg_len = NLMSG_ALIGN(h->nlmsg_len) + RTA_ALIGN(a->rta_len);
}

/* Sends one request and waits for its acknowledgement: 0, or -errno. */
static int al_request(int nl, struct nlmsghdr *h) {
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    if (sendto(nl, h, h->nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0) return -errno;
    char reply[512];
    for (;;) {
        ssize_t n = recv(nl, reply, sizeof reply, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        struct nlmsghdr *r = (struct nlmsghdr *)reply;
        if ((size_t)n < sizeof *r || r->nlmsg_seq != h->nlmsg_seq) continue;
        if (r->nlmsg_type == NLMSG_ERROR && (size_t)n >= NLMSG_LENGTH(sizeof(struct nlmsgerr))) {
            struct nlmsgerr *e = (struct nlmsgerr *)NLMSG_DATA(r);
            return e->error; /* 0: acknowledged */
        }
        return -EPROTO;
    }
}

/* RTM_NEWADDR: `addr`/prefix on lo, the host's own address (what getsockname shows for an outgoing connection). */
static int al_address(int nl, uint32_t addr, unsigned char prefix, unsigned int seq) {
    struct {
        struct nlmsghdr h;
        struct ifaddrmsg a;
        char attrs[64];
    } m;
    memset(&m, 0, sizeof m);
    m.h.nlmsg_type = RTM_NEWADDR;
    m.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE | NLM_F_ACK;
    m.h.nlmsg_seq = seq;
    m.h.nlmsg_len = NLMSG_LENGTH(sizeof m.a);
    m.a.ifa_family = AF_INET;
    m.a.ifa_prefixlen = prefix;
    m.a.ifa_scope = RT_SCOPE_UNIVERSE;
    m.a.ifa_index = if_nametoindex("lo");
    al_attr(&m.h, IFA_LOCAL, &addr, 4);
    al_attr(&m.h, IFA_ADDRESS, &addr, 4);
    return al_request(nl, &m.h);
}

/* One RTM_NEWROUTE: `local <any>/0 dev lo table local [src prefsrc]`, for `family`. */
static int al_local_route(int nl, int family, unsigned int seq, uint32_t prefsrc) {
    struct {
        struct nlmsghdr h;
        struct rtmsg r;
        char attrs[64];
    } m;
    memset(&m, 0, sizeof m);
    m.h.nlmsg_type = RTM_NEWROUTE;
    m.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE | NLM_F_ACK;
    m.h.nlmsg_seq = seq;
    m.r.rtm_family = (unsigned char)family;
    m.r.rtm_dst_len = 0;
    m.r.rtm_table = RT_TABLE_LOCAL;
    m.r.rtm_protocol = RTPROT_BOOT;
    m.r.rtm_scope = RT_SCOPE_HOST;
    m.r.rtm_type = RTN_LOCAL;
    m.h.nlmsg_len = NLMSG_LENGTH(sizeof m.r);
    int lo = (int)if_nametoindex("lo");
    if (lo <= 0) lo = 1;
    al_attr(&m.h, RTA_OIF, &lo, sizeof lo);
    if (family == AF_INET && prefsrc) al_attr(&m.h, RTA_PREFSRC, &prefsrc, 4);
    return al_request(nl, &m.h);
}

int airlock_net_setup(int ipv6, uint32_t address) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return -errno;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
    int rc = ioctl(s, SIOCGIFFLAGS, &ifr);
    if (rc == 0) {
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        rc = ioctl(s, SIOCSIFFLAGS, &ifr);
    }
    int err = rc < 0 ? -errno : 0;
    close(s);
    if (err) return err;
    int nl = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (nl < 0) return -errno;
    struct timeval bound = {.tv_sec = 1, .tv_usec = 0};
    (void)setsockopt(nl, SOL_SOCKET, SO_RCVTIMEO, &bound, sizeof bound);
    err = address ? al_address(nl, address, 20, 3) : 0;
    if (err == 0) err = al_local_route(nl, AF_INET, 1, address);
    /* IPv6 may be disabled for new namespaces (net.ipv6.conf.default.disable_ipv6): IPv4 alone then. */
    if (err == 0 && ipv6) (void)al_local_route(nl, AF_INET6, 2, 0);
    close(nl);
    return err;
}

int airlock_net_socket(int family, int type, uint16_t port) {
    int s = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s < 0) return -1;
    int one = 1, zero = 0;
    (void)setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    int rc;
    if (family == AF_INET6) {
        /* TCP: one listener for both families (accepted v4 flows carry mapped addresses); UDP: v6 only, a socket of
         * its own per family keeps each family's packet information simple. */
        int v6only = type == SOCK_DGRAM ? 1 : 0;
        (void)setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, v6only ? &one : &zero, sizeof one);
        if (type == SOCK_DGRAM) (void)setsockopt(s, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof one);
        struct sockaddr_in6 a;
        memset(&a, 0, sizeof a);
        a.sin6_family = AF_INET6;
        a.sin6_port = htons(port);
        a.sin6_addr = in6addr_any;
        rc = bind(s, (struct sockaddr *)&a, sizeof a);
    } else {
        if (type == SOCK_DGRAM) (void)setsockopt(s, IPPROTO_IP, IP_PKTINFO, &one, sizeof one);
        struct sockaddr_in a;
        memset(&a, 0, sizeof a);
        a.sin_family = AF_INET;
        a.sin_port = htons(port);
        a.sin_addr.s_addr = htonl(INADDR_ANY);
        rc = bind(s, (struct sockaddr *)&a, sizeof a);
    }
    if (rc == 0 && type == SOCK_STREAM) rc = listen(s, 64);
    if (rc < 0) {
        int e = errno;
        close(s);
        errno = e;
        return -1;
    }
    return s;
}

ssize_t airlock_net_recv(int fd, uint8_t *buf, size_t cap, struct sockaddr_storage *peer, uint8_t dst[16]) {
    struct iovec v = {.iov_base = buf, .iov_len = cap};
    char control[256];
    struct msghdr m;
    memset(&m, 0, sizeof m);
    memset(dst, 0, 16);
    m.msg_name = peer;
    m.msg_namelen = sizeof *peer;
    m.msg_iov = &v;
    m.msg_iovlen = 1;
    m.msg_control = control;
    m.msg_controllen = sizeof control;
    ssize_t n = recvmsg(fd, &m, MSG_DONTWAIT | MSG_TRUNC);
    if (n < 0) return -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
            struct in_pktinfo info;
            memcpy(&info, CMSG_DATA(c), sizeof info);
            memcpy(dst, &info.ipi_addr, 4);
        } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
            struct in6_pktinfo info;
            memcpy(&info, CMSG_DATA(c), sizeof info);
            memcpy(dst, &info.ipi6_addr, 16);
        }
    }
    return n;
}

ssize_t airlock_net_reply(int fd, const uint8_t *buf, size_t len, const struct sockaddr_storage *peer,
                          const uint8_t src[16]) {
    struct iovec v = {.iov_base = (void *)buf, .iov_len = len};
    char control[64];
    memset(control, 0, sizeof control);
    struct msghdr m;
    memset(&m, 0, sizeof m);
    m.msg_name = (void *)peer;
    m.msg_namelen = peer->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    m.msg_iov = &v;
    m.msg_iovlen = 1;
    m.msg_control = control;
    struct cmsghdr *c = (struct cmsghdr *)control;
    if (peer->ss_family == AF_INET6) {
        struct in6_pktinfo info;
        memset(&info, 0, sizeof info);
        memcpy(&info.ipi6_addr, src, 16);
        c->cmsg_level = IPPROTO_IPV6;
        c->cmsg_type = IPV6_PKTINFO;
        c->cmsg_len = CMSG_LEN(sizeof info);
        memcpy(CMSG_DATA(c), &info, sizeof info);
        m.msg_controllen = CMSG_SPACE(sizeof info);
    } else {
        struct in_pktinfo info;
        memset(&info, 0, sizeof info);
        memcpy(&info.ipi_spec_dst, src, 4);
        c->cmsg_level = IPPROTO_IP;
        c->cmsg_type = IP_PKTINFO;
        c->cmsg_len = CMSG_LEN(sizeof info);
        memcpy(CMSG_DATA(c), &info, sizeof info);
        m.msg_controllen = CMSG_SPACE(sizeof info);
    }
    return sendmsg(fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
}

int airlock_net_accept(int fd) { return accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC); }
