/*
 * roommock.c - a stand-in for papo's plain-text rooms, to check roomgen.
 *
 * Build:  gcc -O2 -o roommock roommock.c      (bench/roomgen.py does it)
 * Run:    ./roommock --port 8766 [--drop N] [--misroute N] [--echo]
 *
 * Not a server to use: just enough of papo's plain-text mode for roomgen to
 * be checked against a server whose behaviour is known and much cheaper
 * than papo's. A WebSocket upgrade (the Sec-WebSocket-Accept value is a
 * placeholder: roomgen does not check it), then per text frame:
 * "/join #b<N>" moves the connection to room N and is answered
 * "* you are in #b<N>: mock, 1 online"; any other line goes to the other
 * members of the connection's room as "[#b<N>] guest-<i>: <line>".
 * Output is queued per connection and written once per event-loop round
 * (as papo's outbox does). Faults, to see that roomgen notices them:
 * --drop N skips every Nth delivery, --misroute N sends every Nth delivery
 * to a member of the next room instead, --echo also sends a line back to
 * its sender. Single-threaded epoll, level-triggered; it runs until killed.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_CONNS 65536
#define MAX_ROOMS 65536

typedef struct { uint8_t *p; size_t len, cap, off; } buf_t;
typedef struct conn {
    int fd, id, room, open, dirty;
    buf_t in, out;
} conn_t;
typedef struct { int *m, n, cap; } room_t;

static conn_t *conns[MAX_CONNS];
static room_t rooms[MAX_ROOMS];
static int *dirty, ndirty, epfd, next_id;
static unsigned long drop_every, misroute_every, deliveries;
static int echo;

static void die(const char *m) { perror(m); exit(2); }

static void reserve(buf_t *b, size_t need) {
    if (b->cap >= need) return;
    size_t c = b->cap ? b->cap : 512;
    while (c < need) c *= 2;
    if (!(b->p = realloc(b->p, c))) die("realloc");
    b->cap = c;
}

static void frame(conn_t *c, const char *a, size_t an, const uint8_t *b, size_t bn) {
    size_t n = an + bn, hl = n < 126 ? 2 : 4;
    reserve(&c->out, c->out.len + hl + n);
    uint8_t *p = c->out.p + c->out.len;
    p[0] = 0x81;
    if (n < 126) p[1] = (uint8_t)n;
    else { p[1] = 126; p[2] = (uint8_t)(n >> 8); p[3] = (uint8_t)n; }
    memcpy(p + hl, a, an);
    memcpy(p + hl + an, b, bn);
    c->out.len += hl + n;
    if (!c->dirty) { c->dirty = 1; dirty[ndirty++] = c->fd; }
}

static void drop(conn_t *c) {
    if (!c->open) return;
    c->open = 0;
    if (c->room >= 0) {                              /* leave the room */
        room_t *r = &rooms[c->room];
        for (int i = 0; i < r->n; i++)
            if (r->m[i] == c->fd) { r->m[i] = r->m[--r->n]; break; }
    }
    close(c->fd);
}

static void join(conn_t *c, int room) {
    if (room < 0 || room >= MAX_ROOMS) return;
    room_t *r = &rooms[room];
    if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 16;
        if (!(r->m = realloc(r->m, sizeof *r->m * r->cap))) die("realloc");
    }
    r->m[r->n++] = c->fd;
    c->room = room;
    char line[64];
    int k = snprintf(line, sizeof line, "* you are in #b%d: mock, 1 online", room);
    frame(c, line, (size_t)k, NULL, 0);
}

static void say(conn_t *c, const uint8_t *text, size_t n) {
    if (c->room < 0) return;
    char head[64];
    int k = snprintf(head, sizeof head, "[#b%d] guest-%d: ", c->room, c->id);
    room_t *r = &rooms[c->room];
    for (int i = 0; i < r->n; i++) {
        conn_t *to = conns[r->m[i]];
        if (to == c && !echo) continue;
        deliveries++;
        if (drop_every && deliveries % drop_every == 0) continue;
        if (misroute_every && deliveries % misroute_every == 0) {
            room_t *other = &rooms[c->room + 1 < MAX_ROOMS ? c->room + 1 : 0];
            if (other->n) to = conns[other->m[0]];
        }
        frame(to, head, (size_t)k, text, n);
    }
}

static void on_text(conn_t *c, uint8_t *p, size_t n) {
    if (n > 8 && !memcmp(p, "/join #b", 8)) join(c, atoi((char *)p + 8));
    else say(c, p, n);
}

/* Parse the complete client frames in c->in; returns 0, or -1 to drop. */
static int frames(conn_t *c) {
    uint8_t *d = c->in.p;
    size_t len = c->in.len, off = 0;
    while (len - off >= 6) {
        uint8_t b0 = d[off], b1 = d[off + 1];
        uint64_t n = b1 & 0x7f;
        size_t hl = 2;
        if (n == 126) { n = (uint64_t)d[off + 2] << 8 | d[off + 3]; hl = 4; }
        else if (n == 127) return -1;
        if (!(b1 & 0x80)) return -1;                 /* clients must mask */
        hl += 4;
        if (len - off < hl + n) break;
        uint8_t *p = d + off + hl, *mk = p - 4;
        for (size_t i = 0; i < n; i++) p[i] ^= mk[i & 3];
        int op = b0 & 0x0f;
        if (op == 0x8) {                             /* close: answer it */
            frame(c, "\x03\xe8", 2, NULL, 0);
            c->out.p[c->out.len - 4] = 0x88;
            return -1;
        }
        if (op == 0x1) {
            uint8_t keep = p[n];                     /* NUL-terminate for atoi */
            p[n] = 0;
            on_text(c, p, n);
            p[n] = keep;
        }
        off += hl + n;
    }
    memmove(d, d + off, len - off);
    c->in.len = len - off;
    return 0;
}

static void on_read(conn_t *c) {
    reserve(&c->in, c->in.len + 65537);
    ssize_t n = recv(c->fd, c->in.p + c->in.len, 65536, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) { drop(c); return; }
    c->in.len += (size_t)n;
    if (c->id < 0) {                                 /* the HTTP upgrade */
        c->in.p[c->in.len] = 0;
        char *e = strstr((char *)c->in.p, "\r\n\r\n");
        if (!e) return;
        static const char ok[] =
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Accept: placeholder=\r\n\r\n";
        reserve(&c->out, c->out.len + sizeof ok);
        memcpy(c->out.p + c->out.len, ok, sizeof ok - 1);
        c->out.len += sizeof ok - 1;
        c->id = next_id++;
        size_t used = (size_t)(e + 4 - (char *)c->in.p);
        memmove(c->in.p, c->in.p + used, c->in.len - used);
        c->in.len -= used;
        frame(c, "* welcome to the mock", 21, NULL, 0);
    }
    if (frames(c) < 0) {
        if (write(c->fd, c->out.p + c->out.off, c->out.len - c->out.off) < 0) { /* gone */ }
        drop(c);
    }
}

/* Write each dirty connection's queued output; keep those the kernel did not
 * take whole for the next round. */
static void flush_dirty(void) {
    int k = 0;
    for (int i = 0; i < ndirty; i++) {
        conn_t *c = conns[dirty[i]];
        if (!c->open) { c->dirty = 0; continue; }
        while (c->out.off < c->out.len) {
            ssize_t w = send(c->fd, c->out.p + c->out.off, c->out.len - c->out.off,
                             MSG_NOSIGNAL);
            if (w > 0) { c->out.off += (size_t)w; continue; }
            if (w < 0 && errno == EINTR) continue;
            if (w < 0 && errno != EAGAIN) drop(c);
            break;
        }
        if (c->open && c->out.off < c->out.len) { dirty[k++] = dirty[i]; continue; }
        c->dirty = 0;
        c->out.off = c->out.len = 0;
    }
    ndirty = k;
}

int main(int argc, char **argv) {
    static struct option lo[] = {
        {"port", 1, 0, 'p'}, {"drop", 1, 0, 'd'}, {"misroute", 1, 0, 'm'},
        {"echo", 0, 0, 'e'}, {0, 0, 0, 0}};
    int ch, port = 8766;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        if (ch == 'p') port = atoi(optarg);
        else if (ch == 'd') drop_every = strtoul(optarg, NULL, 10);
        else if (ch == 'm') misroute_every = strtoul(optarg, NULL, 10);
        else if (ch == 'e') echo = 1;
        else { fprintf(stderr, "usage: roommock [--port P] [--drop N] [--misroute N] [--echo]\n"); return 2; }
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl = { MAX_CONNS, MAX_CONNS };
    setrlimit(RLIMIT_NOFILE, &rl);
    if (!(dirty = malloc(sizeof *dirty * MAX_CONNS))) die("malloc");
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 4096) < 0) die("listen");
    if ((epfd = epoll_create1(0)) < 0) die("epoll_create1");
    struct epoll_event le = { .events = EPOLLIN, .data.fd = ls };
    epoll_ctl(epfd, EPOLL_CTL_ADD, ls, &le);
    struct epoll_event evs[1024];
    for (;;) {
        int n = epoll_wait(epfd, evs, 1024, ndirty ? 1 : -1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == ls) {
                int s;
                while ((s = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    if (s >= MAX_CONNS) { close(s); continue; }
                    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    conn_t *c = conns[s];
                    if (!c && !(c = conns[s] = calloc(1, sizeof *c))) die("calloc");
                    free(c->in.p); free(c->out.p);
                    *c = (conn_t){ .fd = s, .id = -1, .room = -1, .open = 1 };
                    struct epoll_event e = { .events = EPOLLIN, .data.fd = s };
                    epoll_ctl(epfd, EPOLL_CTL_ADD, s, &e);
                }
                continue;
            }
            if (conns[fd] && conns[fd]->open) on_read(conns[fd]);
        }
        flush_dirty();
    }
}
