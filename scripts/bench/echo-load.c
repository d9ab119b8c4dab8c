/* An independent echo load generator, to check that `sockit bench` is not the
 * bottleneck: N connections on one epoll loop, each sending SIZE bytes and
 * reading SIZE bytes back, for SECS seconds. Replies are counted, not checked.
 * Usage: echo-load HOST PORT CONNS SIZE SECS   -> prints round trips per second
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s HOST PORT CONNS SIZE SECS\n", argv[0]);
        return 2;
    }
    int conns = atoi(argv[3]), size = atoi(argv[4]);
    double secs = atof(argv[5]);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    inet_pton(AF_INET, argv[1], &addr.sin_addr);
    int ep = epoll_create1(0);
    int *fds = calloc(conns, sizeof(int)), *have = calloc(conns, sizeof(int));
    char *msg = malloc(size), *buf = malloc(size);
    memset(msg, 'a', size);
    for (int i = 0; i < conns; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
        if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) { perror("connect"); return 1; }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (unsigned)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        fds[i] = fd;
        if (write(fd, msg, size) != size) { perror("write"); return 1; }
    }
    long long trips = 0;
    struct epoll_event events[256];
    double end = now() + secs;
    while (now() < end) {
        int n = epoll_wait(ep, events, 256, 100);
        for (int e = 0; e < n; e++) {
            int i = events[e].data.u32;
            ssize_t r = read(fds[i], buf, size - have[i]);
            if (r <= 0) { fprintf(stderr, "connection %d ended\n", i); return 1; }
            have[i] += r;
            if (have[i] == size) {
                have[i] = 0;
                trips++;
                if (write(fds[i], msg, size) != size) { perror("write"); return 1; }
            }
        }
    }
    printf("%.0f\n", trips / secs);
    return 0;
}
