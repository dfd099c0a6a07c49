/*
 * roomgen.c - papo's rooms load generator: single-threaded epoll WebSocket
 * clients in rooms of equal size, a stepped message rate, one JSON line a step.
 *
 * Build:  gcc -O2 -o roomgen roomgen.c      (bench/roomgen.py builds bench/.build/)
 * Run:    ./roomgen --port 8765 --clients 10000 --room-size 10 \
 *                   --senders-per-room 1 --steps 1000,2000,5000 \
 *                   --step-seconds 5 --server-pid PID
 *
 * Derived from ../shared/bench/loadgen.c (the team's broadcast load
 * generator), copied here. Kept as it was: the paced connect phase, the
 * RFC 6455 handshake and framing, the 1 ms pacing tick, the message text
 * "bench <sender-id> <seq> <t_ns> xxx..." (t_ns is CLOCK_MONOTONIC here, so
 * latency needs no clock sync), the kernel receive timestamps
 * (SO_TIMESTAMPNS, unless --no-rx-ts), the log-linear latency histogram,
 * answering pings and the graceful close. What changed:
 *
 *  - The loop polls epoll and sleeps on the 1 ms timerfd alone (see
 *    event_loop; --eager: as loadgen.c, woken by every arrival).
 *
 *  - Rooms. Client i is in room i / K (--room-size K, which must divide
 *    --clients); the first S clients of each room (--senders-per-room S)
 *    send. Once all are connected every client sends the plain-text line
 *    "/join #b<room>" (as bench/rooms.py did); its join is confirmed when it
 *    receives "* you are in #b<room>" followed by ':' or ' ' (papo's answer
 *    in English, hence the default path "/?lang=en"). The run waits until
 *    every client connected and joined, at most --join-timeout seconds, and
 *    otherwise stops with an "error" line and exit status 1.
 *  - A stepped rate instead of one rate per sender: --steps R1,R2,... total
 *    messages/s over all senders, each step for --step-seconds D. Message m
 *    of a step is due at start + m / R and is sent by sender m mod senders,
 *    which is loadgen's stagger: every sender sends R / senders a second,
 *    evenly spaced, the senders offset. The senders are taken room by room
 *    in turn, so each room's messages are evenly spaced too; --sender-order
 *    clients takes them in client order instead, as bench/loadgen.py does: a
 *    room's S senders follow each other, and papo shares its writes between
 *    those messages (rooms of 1 000: ~5 000 instead of ~9 000 µs a message).
 *  - After a step's window a drain (until every expected delivery arrived,
 *    at most --drain s); only tokens stamped inside a step's window count
 *    for it, so a late message of one step never counts in the next.
 *  - Expected deliveries per message: K - 1, the other members of the
 *    sender's room. A token received in another room is counted as
 *    "cross_room" (an error), a token from the receiver itself as "echo",
 *    a sequence number not above the last one this receiver saw from that
 *    sender as "out_of_order" (duplicates and reordering), a token naming
 *    no sender of this run as "bad_tokens".
 *  - A warm-up after the joins: one message in each room, from its first
 *    sender; the steps start once all of its deliveries arrived (or 99 %
 *    and none for 1 s: a lossy server), at most --warm-timeout s, else an
 *    error. A server can confirm joins well
 *    before it has written them (papo's store works in the background):
 *    this message is delivered after them, its CPU use would not show it.
 *  - --server-pid PID: the server's CPU (utime + stime of all its threads,
 *    /proc/PID/stat): per message in and per delivery from a step's start
 *    to the end of its drain, as a share of a CPU (like ours) over the
 *    window, and
 *    after the warm-up a wait until the server is quiet (under --quiet of a
 *    CPU for 0.5 s, at most --quiet-timeout s).
 *  - Output: one JSON line on stdout per event: "ready" (connected and
 *    joined), "quiet" (warm-up and quiet wait over), "step" (one per
 *    step), "error". It stops after the first step that fails (ratio <
 *    0.999, p99 >= 250 ms, or any cross_room, out_of_order or bad token),
 *    unless --keep-going (to see where the tool itself saturates).
 *  - Dropped: --senders, --rate, --duration, --warmup, --subprotocol,
 *    --hello, --template and the human-readable report. --connect-timeout
 *    is 180 s (10 000 clients to a Python server on a busy machine).
 *
 * A "step" line: offered_msgs_per_s (the step's rate), sent and
 * msgs_in_per_s (sent in the window / D), expected (sent * (K - 1)),
 * deliveries and deliveries_per_s (at most expected, / D), ratio
 * (deliveries / expected), p50/p90/p99/p999/max_ms (every delivery of the
 * step); with --server-pid (else null) server_cpu_s (window and drain),
 * us_per_msg_in and us_per_delivery (from it), server_cpu_pct (over the
 * window); loadgen_cpu_pct (ours, over the window), loadgen_core and
 * loadgen_core_busy_pct (our CPU, all processes: is it shared?),
 * server_core and server_core_busy_pct (the same for the server's CPU when
 * it is pinned to one: well above server_cpu_pct, other processes took it;
 * /proc/stat samples CPUs on the tick, so on a CPU often idle it can also
 * read below a process's own share, which is exact: a rough figure);
 * drain_s, open, closed (connections lost so far), server_closes (close
 * frames), cross_room, echo, out_of_order, bad_tokens, unmeasured (tokens of
 * an earlier step), batched_tokens (tokens beyond the first in a frame),
 * send_dropped (our backlog over 8 MiB), sched_lag_max_ms (how late our sends
 * went out), rx_frames, other_frames (no token), rx_bytes, reads (recvmsg
 * calls), pings, latency_clock, ok.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define GBUF_SIZE   (256 * 1024)       /* shared receive scratch buffer */
#define MAX_FRAME   (16u << 20)        /* reject larger server frames */
#define MAX_HDR     16384              /* max HTTP response header size */
#define WBUF_LIMIT  (8u << 20)         /* drop sends if backlog exceeds this */
#define TICK_NS     1000000LL          /* pacing tick: 1 ms */
#define MAX_STEPS   64
#define PASS_RATIO  0.999              /* as bench/rooms.py's RATIO and P99_MS */
#define PASS_P99_MS 250.0

/* ------------------------------------------------------------ options */
static struct {
    const char *host, *path;
    int port, clients, room_size, senders_per_room, size, max_pending, rx_ts, server_pid;
    int keep_going, eager, client_order;
    int nsteps;
    double steps[MAX_STEPS];
    double step_seconds, drain, connect_rate, connect_timeout, join_timeout, close_timeout;
    double quiet, quiet_timeout, warm_timeout;
} opt = { "127.0.0.1", "/?lang=en", 8765, 100, 10, 1, 64, 100, 1, 0, 0, 0, 0,
          0, {0}, 5.0, 5.0, 5000.0, 180.0, 300.0, 2.0, 0.1, 60.0, 300.0 };
/* rx_ts (default on, --no-rx-ts to disable): take the receive time from the
 * kernel's SCM_TIMESTAMPNS (when the data reached our socket) instead of the
 * moment this loop got around to it, so bursts queued behind our own
 * processing don't inflate latency. Kernel stamps are CLOCK_REALTIME and are
 * mapped to CLOCK_MONOTONIC with rt_offset, refreshed every tick. */

/* ------------------------------------------------------------ state */
typedef struct { uint8_t *p; size_t len, cap; } buf_t;

enum { ST_NEW, ST_CONNECTING, ST_HANDSHAKE, ST_OPEN, ST_CLOSED };
enum { PH_CONNECT, PH_JOIN, PH_WARM, PH_QUIET, PH_RUN, PH_DRAIN, PH_DONE, PH_CLOSING };

typedef struct {
    int fd, id, room, state;
    uint32_t ev;            /* current epoll interest mask */
    buf_t rbuf;             /* leftover input: partial header / frame */
    buf_t wbuf;             /* pending output, valid from woff */
    size_t woff;
    buf_t frag;             /* fragmented message being reassembled */
    uint64_t seq;           /* next message sequence number (senders) */
    int64_t *last_seq;      /* per sender of my room: last seq received, -1 none */
    char key[25];           /* Sec-WebSocket-Key we sent (base64) */
    int close_sent;         /* we already sent a close frame */
    int joined;             /* our /join was confirmed */
} client_t;

static client_t *cl;
static int *senders, nsenders, nrooms;
static int epfd, tfd, phase = PH_CONNECT;
static int next_connect, pending;           /* connect-phase bookkeeping */
static int64_t t_start, m_start, m_end, drain_end, last_tick, joined_at;
static int64_t quiet_at;                    /* next server CPU sample (PH_QUIET) */
static int64_t warm_at;                     /* when the warm-up messages went out */
static uint64_t warm_got;                   /* their deliveries so far */
static int64_t warm_done, warm_last;        /* ... and the last one's time */
static double quiet_cpu;
static int step;                            /* index into opt.steps */
static uint64_t step_next;                  /* next message index of this step */
static int my_cpu = -1;                     /* the one CPU we're pinned to */
static int server_cpu = -1;                 /* the server's, if pinned to one */
static uint8_t gbuf[GBUF_SIZE];
static struct sockaddr_in addr;
static uint64_t rng_state;
static int64_t rt_offset;                   /* CLOCK_REALTIME - CLOCK_MONOTONIC */
static long clk_tck;

static struct {
    int connected, connect_failures, disconnects, server_closes, joined, join_errors;
    uint64_t sent_total, rx_msgs, other_msgs, rx_bytes, pings, kernel_ts;
    int64_t connect_ns;
} st;

/* Per step; reset at each step's start. */
static struct {
    uint64_t sent, send_dropped, deliveries, echo, unmeasured, out_of_order, dup_tokens;
    uint64_t cross_room, bad_tokens, rx_msgs0, other_msgs0, rx_bytes0, reads;
    int64_t sched_lag_max;
    struct sample { int64_t t; double own, server; long long busy, total, sbusy, stotal; }
        start, end;                       /* at the window's start and end */
} ss;

/* ------------------------------------------------------------ helpers */
static void die(const char *m) { perror(m); exit(2); }

static inline int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int64_t realtime_offset(void) {
    struct timespec r;
    clock_gettime(CLOCK_REALTIME, &r);
    return (int64_t)r.tv_sec * 1000000000LL + r.tv_nsec - now_ns();
}

/* Busy and total jiffies of CPU `cpu` from /proc/stat (all processes, irq
 * and softirq included): shows whether our core was saturated or shared. */
static void core_jiffies(int cpu, long long *busy, long long *total) {
    char line[512], name[16];
    *busy = *total = 0;
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return;
    snprintf(name, sizeof name, "cpu%d ", cpu);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, name, strlen(name))) {
            long long v[10] = {0};
            sscanf(line + strlen(name), "%lld %lld %lld %lld %lld %lld %lld %lld",
                   &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]);
            for (int i = 0; i < 8; i++) *total += v[i];
            *busy = *total - v[3] - v[4];               /* minus idle, iowait */
            break;
        }
    fclose(f);
}

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
           (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* The server's CPU seconds (utime + stime, every thread): fields 14 and 15
 * of /proc/PID/stat, counted after the ")" that ends the command name.
 * -1 without --server-pid or once the process is gone. */
static double server_cpu_seconds(void) {
    if (opt.server_pid <= 0) return -1;
    char path[64], text[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", opt.server_pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    char *p = strrchr(text, ')');
    unsigned long long ut, stt;
    if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
                     &ut, &stt) != 2)
        return -1;
    return (double)(ut + stt) / clk_tck;
}

static inline uint64_t rnd(void) {          /* xorshift64* */
    rng_state ^= rng_state >> 12; rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

static void buf_reserve(buf_t *b, size_t need) {
    if (b->cap >= need) return;
    size_t c = b->cap ? b->cap : 256;
    while (c < need) c *= 2;
    if (!(b->p = realloc(b->p, c))) die("realloc");
    b->cap = c;
}
static void buf_append(buf_t *b, const void *d, size_t n) {
    buf_reserve(b, b->len + n);
    memcpy(b->p + b->len, d, n);
    b->len += n;
}
static void buf_free(buf_t *b) { free(b->p); b->p = NULL; b->len = b->cap = 0; }

static void base64(const uint8_t *in, int n, char *out) {
    static const char t[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    int i, o = 0;
    for (i = 0; i + 2 < n; i += 3) {
        uint32_t v = in[i] << 16 | in[i + 1] << 8 | in[i + 2];
        out[o++] = t[v >> 18]; out[o++] = t[(v >> 12) & 63];
        out[o++] = t[(v >> 6) & 63]; out[o++] = t[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = in[i] << 16;
        out[o++] = t[v >> 18]; out[o++] = t[(v >> 12) & 63];
        out[o++] = '='; out[o++] = '=';
    } else if (n - i == 2) {
        uint32_t v = in[i] << 16 | in[i + 1] << 8;
        out[o++] = t[v >> 18]; out[o++] = t[(v >> 12) & 63];
        out[o++] = t[(v >> 6) & 63]; out[o++] = '=';
    }
    out[o] = 0;
}

/* ------------------------------------------------------------ histogram
 * Values in microseconds. Index < 2048: exact. Above: 1024 sub-buckets per
 * power of two (relative error < 0.1 %). Reset at each step's start. */
#define SUB_BITS 10
#define SUB      (1 << SUB_BITS)
#define MAX_SHIFT 30
#define HBUCKETS (2 * SUB + MAX_SHIFT * SUB)
static uint64_t hist[HBUCKETS], hist_n, hist_max_ns;

static int hidx(uint64_t v) {
    if (v < 2 * SUB) return (int)v;
    int shift = (63 - __builtin_clzll(v)) - SUB_BITS;
    if (shift > MAX_SHIFT) return HBUCKETS - 1;
    return 2 * SUB + (shift - 1) * SUB + (int)((v >> shift) - SUB);
}
static double hmid_us(int i) {                 /* bucket midpoint */
    if (i < 2 * SUB) return i + 0.5;
    int shift = (i - 2 * SUB) / SUB + 1;
    uint64_t lo = (uint64_t)((i - 2 * SUB) % SUB + SUB) << shift;
    return lo + (double)(1ULL << shift) / 2;
}
static void hist_add(int64_t ns) {
    if (ns < 0) ns = 0;
    hist[hidx((uint64_t)ns / 1000)]++;
    hist_n++;
    if ((uint64_t)ns > hist_max_ns) hist_max_ns = ns;
}
static double hist_pct_ms(double p) {
    if (!hist_n) return 0;
    uint64_t want = (uint64_t)(p * hist_n + 0.999999), acc = 0;
    if (want < 1) want = 1;
    for (int i = 0; i < HBUCKETS; i++)
        if ((acc += hist[i]) >= want) {
            double v = hmid_us(i) / 1000.0, mx = hist_max_ns / 1e6;
            return v < mx ? v : mx;
        }
    return hist_max_ns / 1e6;
}
static void hist_reset(void) { memset(hist, 0, sizeof hist); hist_n = hist_max_ns = 0; }

/* ------------------------------------------------------------ I/O */
static void set_interest(client_t *c, uint32_t ev) {
    if (c->ev == ev) return;
    struct epoll_event e = { .events = ev, .data.ptr = c };
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &e) < 0) die("epoll_ctl mod");
    c->ev = ev;
}

static void close_client(client_t *c) {
    if (c->state == ST_CLOSED || c->state == ST_NEW) return;
    if (c->state == ST_CONNECTING || c->state == ST_HANDSHAKE) {
        st.connect_failures++;
        pending--;
    } else if (c->state == ST_OPEN) {
        st.connected--;
        if (phase < PH_DONE) st.disconnects++;
    }
    close(c->fd);                   /* also removes it from the epoll set */
    c->fd = -1;
    c->state = ST_CLOSED;
    buf_free(&c->rbuf); buf_free(&c->wbuf); buf_free(&c->frag);
    c->woff = 0;
}

/* Write as much pending output as the socket takes; keep the rest queued
 * and watch EPOLLOUT until it drains. Returns -1 if the client died. */
static int flush(client_t *c) {
    while (c->woff < c->wbuf.len) {
        ssize_t w = send(c->fd, c->wbuf.p + c->woff, c->wbuf.len - c->woff,
                         MSG_NOSIGNAL);
        if (w > 0) { c->woff += w; continue; }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        close_client(c);
        return -1;
    }
    if (c->woff == c->wbuf.len) c->woff = c->wbuf.len = 0;
    else if (c->woff > 65536 && c->woff * 2 > c->wbuf.len) {
        memmove(c->wbuf.p, c->wbuf.p + c->woff, c->wbuf.len - c->woff);
        c->wbuf.len -= c->woff; c->woff = 0;
    }
    if (c->state == ST_HANDSHAKE || c->state == ST_OPEN)
        set_interest(c, EPOLLIN | (c->wbuf.len ? EPOLLOUT : 0));
    return 0;
}

/* Append one masked client frame carrying payload[0..n) to the output buffer. */
static void queue_frame(client_t *c, int opcode, const uint8_t *payload, size_t n) {
    uint8_t hdr[14];
    size_t hl = 2;
    hdr[0] = 0x80 | opcode;
    if (n < 126) hdr[1] = 0x80 | n;
    else if (n < 65536) { hdr[1] = 0x80 | 126; hdr[2] = n >> 8; hdr[3] = n; hl = 4; }
    else {
        hdr[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++) hdr[2 + i] = (uint64_t)n >> (56 - 8 * i);
        hl = 10;
    }
    uint32_t mk = (uint32_t)rnd();
    memcpy(hdr + hl, &mk, 4);
    hl += 4;
    buf_reserve(&c->wbuf, c->wbuf.len + hl + n);
    uint8_t *p = c->wbuf.p + c->wbuf.len;
    memcpy(p, hdr, hl);
    p += hl;
    if (n) memcpy(p, payload, n);
    const uint8_t *m = hdr + hl - 4;
    for (size_t i = 0; i < n; i++) p[i] ^= m[i & 3];
    c->wbuf.len += hl + n;
}

/* Build "bench <id> <seq> <t_ns> xxx…" into msgbuf, the 'x' padding making
 * the payload --size bytes when possible. Returns its length. */
static uint8_t *msgbuf;

static size_t build_message(int id, uint64_t seq, int64_t t) {
    size_t n = (size_t)snprintf((char *)msgbuf, 80, "bench %d %llu %lld", id,
                                (unsigned long long)seq, (long long)t);
    if ((size_t)opt.size > n) {
        msgbuf[n++] = ' ';
        memset(msgbuf + n, 'x', opt.size - n);
        n = opt.size;
    }
    return n;
}

/* ------------------------------------------------------------ receiving */
static inline int parse_u64(const uint8_t **pp, const uint8_t *end, uint64_t *out) {
    const uint8_t *p = *pp;
    uint64_t v = 0;
    if (p >= end || *p < '0' || *p > '9') return 0;
    while (p < end && *p >= '0' && *p <= '9') v = v * 10 + (*p++ - '0');
    *out = v; *pp = p;
    return 1;
}

/* Next "bench " in [p, end): memchr for 'b' (SIMD) beats memmem on short
 * payloads; the common case (payload starts with it) costs one compare. */
static inline const uint8_t *find_token(const uint8_t *p, const uint8_t *end) {
    while (end - p >= 6) {
        if (p[0] == 'b' && memcmp(p, "bench ", 6) == 0) return p;
        const uint8_t *q = memchr(p + 1, 'b', (size_t)(end - p) - 6);
        if (!q) return NULL;
        p = q;
    }
    return NULL;
}

/* A frame without a token while joining: papo's answer to our /join is
 * "* you are in #b<room>: <members>, <n> online" (or "... (topic: ...)"). */
static void check_join(client_t *c, const uint8_t *p, size_t n) {
    static const char want[] = "* you are in #b";
    const uint8_t *q = memmem(p, n, want, sizeof want - 1);
    if (q) {
        const uint8_t *s = q + sizeof want - 1, *end = p + n;
        uint64_t room;
        if (parse_u64(&s, end, &room) && s < end && (*s == ':' || *s == ' ') &&
            (int)room == c->room) {
            c->joined = 1;
            st.joined++;
            return;
        }
    }
    if (n >= 8 && !memcmp(p, "* error:", 8)) {           /* e.g. a room limit */
        if (st.join_errors++ < 3)
            fprintf(stderr, "# client %d, /join #b%d: %.*s\n", c->id, c->room,
                    (int)(n < 200 ? n : 200), p);
    }
}

/* A complete data message: find every "bench <id> <seq> <t_ns>" token. */
static void on_message(client_t *c, const uint8_t *p, size_t n, int64_t t) {
    const uint8_t *end = p + n, *q = p;
    int found = 0;
    st.rx_msgs++;
    while ((q = find_token(q, end)) != NULL) {
        const uint8_t *s = q + 6;
        uint64_t id, seq, ts;
        q += 6;
        if (!parse_u64(&s, end, &id) || s >= end || *s++ != ' ' ||
            !parse_u64(&s, end, &seq) || s >= end || *s++ != ' ' ||
            !parse_u64(&s, end, &ts))
            continue;
        found++;
        q = s;
        int slot = (int)(id % (uint64_t)opt.room_size);
        if (id >= (uint64_t)opt.clients || slot >= opt.senders_per_room) {
            ss.bad_tokens++;                   /* no sender of ours sent that */
            continue;
        }
        if ((int)id / opt.room_size != c->room) { ss.cross_room++; continue; }
        if ((int)id == c->id) {
            if ((int64_t)ts >= m_start && (int64_t)ts < m_end) ss.echo++;
            continue;
        }
        if ((int64_t)seq <= c->last_seq[slot]) ss.out_of_order++;
        else c->last_seq[slot] = (int64_t)seq;
        if (phase >= PH_RUN && (int64_t)ts >= m_start && (int64_t)ts < m_end) {
            ss.deliveries++;
            hist_add(t - (int64_t)ts);
        } else if (phase == PH_WARM && (int64_t)ts >= warm_at) {
            warm_got++;
            warm_last = t;
        }
        else ss.unmeasured++;                  /* an earlier step's, late */
    }
    if (!found) {
        st.other_msgs++;
        if (!c->joined) check_join(c, p, n);
    } else if (found > 1) ss.dup_tokens += found - 1;   /* batched by server */
}

/* Handle one frame. Returns -1 if the client was closed. */
static int on_frame(client_t *c, int fin, int op, uint8_t *p, size_t n, int64_t t) {
    switch (op) {
    case 0x1: case 0x2:                                   /* text / binary */
        if (fin) { on_message(c, p, n, t); break; }
        c->frag.len = 0;
        buf_append(&c->frag, p, n);
        break;
    case 0x0:                                             /* continuation */
        buf_append(&c->frag, p, n);
        if (c->frag.len > MAX_FRAME) { close_client(c); return -1; }
        if (fin) { on_message(c, c->frag.p, c->frag.len, t); c->frag.len = 0; }
        break;
    case 0x8:                                             /* close: echo it */
        st.server_closes++;
        if (!c->close_sent) {
            queue_frame(c, 0x8, p, n >= 2 ? 2 : 0);
            flush(c);
        }
        close_client(c);
        return -1;
    case 0x9:                                             /* ping -> pong */
        st.pings++;
        queue_frame(c, 0xA, p, n);
        break;
    case 0xA: break;                                      /* pong */
    default: close_client(c); return -1;                 /* protocol error */
    }
    return 0;
}

/* Parse all complete frames in d[0..len). Returns bytes consumed or -1. */
static long parse_frames(client_t *c, uint8_t *d, size_t len, int64_t t) {
    size_t off = 0;
    while (len - off >= 2) {
        uint8_t b0 = d[off], b1 = d[off + 1];
        uint64_t n = b1 & 0x7f;
        size_t hl = 2;
        if (n == 126) {
            if (len - off < 4) break;
            n = (uint64_t)d[off + 2] << 8 | d[off + 3];
            hl = 4;
        } else if (n == 127) {
            if (len - off < 10) break;
            n = 0;
            for (int i = 0; i < 8; i++) n = n << 8 | d[off + 2 + i];
            hl = 10;
        }
        if (b1 & 0x80) hl += 4;                 /* servers must not mask */
        if (n > MAX_FRAME) { close_client(c); return -1; }
        if (len - off < hl + n) break;          /* frame not complete yet */
        uint8_t *p = d + off + hl;
        if (b1 & 0x80)
            for (size_t i = 0; i < n; i++) p[i] ^= d[off + hl - 4 + (i & 3)];
        if (on_frame(c, b0 & 0x80, b0 & 0x0f, p, n, t) < 0) return -1;
        off += hl + n;
    }
    return (long)off;
}

/* Parse the HTTP 101 response. Returns header length, 0 if incomplete, -1 if
 * the handshake failed (client closed). */
static int try_handshake(client_t *c, const uint8_t *d, size_t len) {
    const uint8_t *e = memmem(d, len, "\r\n\r\n", 4);
    if (!e) {
        if (len > MAX_HDR) { close_client(c); return -1; }
        return 0;
    }
    size_t hl = e - d + 4;
    char h[MAX_HDR + 1];
    if (hl > MAX_HDR) { close_client(c); return -1; }
    memcpy(h, d, hl);
    h[hl] = 0;
    if (strncmp(h, "HTTP/1.1 101", 12) != 0 ||
        !strcasestr(h, "\r\nsec-websocket-accept:")) {
        if (st.connect_failures < 3)
            fprintf(stderr, "# handshake rejected: %.80s\n", h);
        close_client(c);
        return -1;
    }
    c->state = ST_OPEN;
    pending--;
    st.connected++;
    return (int)hl;
}

/* Socket readable: read into the shared buffer (prefixed by any leftover
 * partial frame), parse complete frames, stash the incomplete tail. */
static void on_readable(client_t *c, int64_t t_now) {
    for (int round = 0; round < 2; round++) {  /* bounded: level-triggered */
        int64_t t = t_now;                    /* receive time for latency */
        size_t pre = c->rbuf.len, room;
        uint8_t *base;
        if (pre <= GBUF_SIZE / 2) {           /* usual case: small leftover */
            base = gbuf; room = GBUF_SIZE - pre;
            if (pre) memcpy(gbuf, c->rbuf.p, pre);
        } else {                              /* big frame in progress */
            buf_reserve(&c->rbuf, pre + GBUF_SIZE / 2);
            base = c->rbuf.p; room = GBUF_SIZE / 2;
        }
        ssize_t n;
        if (opt.rx_ts) {          /* recvmsg + SCM_TIMESTAMPNS (kernel rx time) */
            struct iovec iov = { base + pre, room };
            union { char b[256]; struct cmsghdr align; } cb;
            struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
                                 .msg_control = cb.b, .msg_controllen = sizeof cb.b };
            n = recvmsg(c->fd, &mh, 0);
            for (struct cmsghdr *cm = n > 0 ? CMSG_FIRSTHDR(&mh) : NULL; cm;
                 cm = CMSG_NXTHDR(&mh, cm))
                if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_TIMESTAMPNS) {
                    struct timespec ts;
                    memcpy(&ts, CMSG_DATA(cm), sizeof ts);
                    int64_t k = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec - rt_offset;
                    if (k > 0 && k <= t) { st.kernel_ts++; t = k; }
                }
        } else n = recv(c->fd, base + pre, room, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (n <= 0) { close_client(c); return; }      /* EOF or error */
        st.rx_bytes += n;
        ss.reads++;
        size_t avail = pre + n, used = 0;
        c->rbuf.len = 0;
        if (c->state == ST_HANDSHAKE) {
            int h = try_handshake(c, base, avail);
            if (h < 0) return;
            used = h;
        }
        if (c->state == ST_OPEN) {
            long k = parse_frames(c, base + used, avail - used, t);
            if (k < 0) return;
            used += k;
        }
        size_t rest = avail - used;
        if (base == gbuf) {
            if (rest) { buf_reserve(&c->rbuf, rest); memcpy(c->rbuf.p, gbuf + used, rest); }
        } else memmove(c->rbuf.p, c->rbuf.p + used, rest);
        c->rbuf.len = rest;
        if ((size_t)n < room) break;          /* socket drained */
    }
    if (c->wbuf.len > c->woff) flush(c);      /* pongs queued while parsing */
}

/* ------------------------------------------------------------ connecting */
static void start_connect(client_t *c) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) { st.connect_failures++; c->state = ST_CLOSED; return; }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (opt.rx_ts) setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0 &&
        errno != EINPROGRESS) {
        close(fd); st.connect_failures++; c->state = ST_CLOSED; return;
    }
    c->fd = fd;
    c->state = ST_CONNECTING;
    c->ev = EPOLLOUT;
    struct epoll_event e = { .events = EPOLLOUT, .data.ptr = c };
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e) < 0) die("epoll_ctl add");
    pending++;
}

static void on_connected(client_t *c) {
    int err = 0;
    socklen_t sl = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &sl);
    if (err) { close_client(c); return; }
    uint8_t raw[16];
    for (int i = 0; i < 16; i++) raw[i] = (uint8_t)rnd();
    base64(raw, 16, c->key);
    char req[2048];
    int n = snprintf(req, sizeof req,
        "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n", opt.path, opt.host, opt.port, c->key);
    c->state = ST_HANDSHAKE;
    buf_append(&c->wbuf, req, n);
    flush(c);
}

/* ------------------------------------------------------------ phases */
static void fail(const char *fmt, int a, int b) {
    char msg[256];
    snprintf(msg, sizeof msg, fmt, a, b);
    fprintf(stderr, "roomgen: %s\n", msg);
    printf("{\"event\":\"error\",\"error\":\"%s\",\"connected\":%d,\"joined\":%d,"
           "\"connect_failures\":%d,\"server_closes\":%d}\n",
           msg, st.connected, st.joined, st.connect_failures, st.server_closes);
    fflush(stdout);
    exit(1);
}

/* CPU counters now: ours, the server's, and both CPUs' (all processes). */
static void sample(struct sample *s, int64_t t) {
    s->t = t;
    s->own = cpu_seconds();
    s->server = server_cpu_seconds();
    s->busy = s->total = s->sbusy = s->stotal = 0;
    if (my_cpu >= 0) core_jiffies(my_cpu, &s->busy, &s->total);
    if (server_cpu >= 0) core_jiffies(server_cpu, &s->sbusy, &s->stotal);
}

static void begin_step(int64_t t) {
    memset(&ss, 0, sizeof ss);
    hist_reset();
    m_start = t;
    m_end = t + (int64_t)(opt.step_seconds * 1e9);
    step_next = 0;
    ss.rx_msgs0 = st.rx_msgs;
    ss.other_msgs0 = st.other_msgs;
    ss.rx_bytes0 = st.rx_bytes;
    sample(&ss.start, t);
    phase = PH_RUN;
}

static void after_join(int64_t t) {
    joined_at = t;
    printf("{\"event\":\"ready\",\"clients\":%d,\"rooms\":%d,\"room_size\":%d,"
           "\"senders\":%d,\"connect_s\":%.3f,\"join_s\":%.3f,\"rx_ts\":%d}\n",
           opt.clients, nrooms, opt.room_size, nsenders, st.connect_ns / 1e9,
           (t - t_start - st.connect_ns) / 1e9, opt.rx_ts);
    fflush(stdout);
    /* Warm-up: one message in each room, from its first sender. A server still
     * busy with the joins' writes (papo's store) delivers it after them. */
    warm_at = t;
    for (int r = 0; r < nrooms; r++) {
        client_t *c = &cl[senders[r]];
        size_t n = build_message(c->id, c->seq++, t);
        queue_frame(c, 0x1, msgbuf, n);
        flush(c);
    }
    phase = PH_WARM;
}

/* The "quiet" line, then the first step. */
static void start_steps(int64_t t, const char *quiet) {
    printf("{\"event\":\"quiet\",\"warm_s\":%.3f,\"quiet_s\":%.3f,\"quiet\":%s}\n",
           (warm_done - joined_at) / 1e9, (t - warm_done) / 1e9, quiet);
    fflush(stdout);
    begin_step(t);
}

static void after_warm(int64_t t) {
    warm_done = t;
    if (opt.server_pid > 0) {
        phase = PH_QUIET;
        quiet_at = t + 500000000LL;
        quiet_cpu = server_cpu_seconds();
    } else start_steps(t, "null");
}

/* The step's line; returns whether it passed. */
static int end_step(int64_t t) {
    /* Rates over the window (d). CPU shares over the window too (what the
     * step's rate took); the server's CPU per message and per delivery over
     * the window and its drain (what the step's messages cost). */
    struct sample *a = &ss.start, *w = &ss.end, drained;
    sample(&drained, t);
    double d = opt.step_seconds, win = (w->t - a->t) / 1e9;
    double own_pct = win > 0 ? 100.0 * (w->own - a->own) / win : 0;
    double server = a->server >= 0 && drained.server >= 0 ? drained.server - a->server : -1;
    double server_pct = a->server >= 0 && w->server >= 0 && win > 0
                            ? 100.0 * (w->server - a->server) / win : -1;
    double core_busy = w->total > a->total
                           ? 100.0 * (w->busy - a->busy) / (w->total - a->total) : -1;
    double server_core_busy = w->stotal > a->stotal
                                  ? 100.0 * (w->sbusy - a->sbusy) / (w->stotal - a->stotal) : -1;
    uint64_t expected = ss.sent * (uint64_t)(opt.room_size - 1);
    uint64_t delivered = ss.deliveries < expected ? ss.deliveries : expected;
    double ratio = expected ? (double)ss.deliveries / expected : 0;
    double p50 = hist_pct_ms(0.50), p90 = hist_pct_ms(0.90), p99 = hist_pct_ms(0.99),
           p999 = hist_pct_ms(0.999);
    int ok = expected && ratio >= PASS_RATIO && p99 < PASS_P99_MS && !ss.cross_room &&
             !ss.out_of_order && !ss.bad_tokens;
    char srv[160] = "\"server_cpu_s\":null,\"server_cpu_pct\":null,"
                    "\"us_per_msg_in\":null,\"us_per_delivery\":null";
    if (server >= 0)
        snprintf(srv, sizeof srv, "\"server_cpu_s\":%.3f,\"server_cpu_pct\":%.1f,"
                 "\"us_per_msg_in\":%.2f,\"us_per_delivery\":%.3f", server,
                 server_pct, ss.sent ? 1e6 * server / ss.sent : 0.0,
                 delivered ? 1e6 * server / delivered : 0.0);
    printf("{\"event\":\"step\",\"step\":%d,\"offered_msgs_per_s\":%g,\"sent\":%llu,"
           "\"msgs_in_per_s\":%.0f,\"expected\":%llu,\"deliveries\":%llu,"
           "\"deliveries_per_s\":%.0f,\"ratio\":%.6f,\"p50_ms\":%.3f,\"p90_ms\":%.3f,"
           "\"p99_ms\":%.3f,\"p999_ms\":%.3f,\"max_ms\":%.3f,%s,"
           "\"loadgen_cpu_pct\":%.1f,\"loadgen_core\":%d,\"loadgen_core_busy_pct\":%.1f,"
           "\"server_core\":%d,\"server_core_busy_pct\":%.1f,"
           "\"drain_s\":%.3f,\"open\":%d,\"closed\":%d,\"server_closes\":%d,"
           "\"cross_room\":%llu,\"echo\":%llu,\"out_of_order\":%llu,\"bad_tokens\":%llu,"
           "\"unmeasured\":%llu,\"batched_tokens\":%llu,\"send_dropped\":%llu,"
           "\"sched_lag_max_ms\":%.3f,\"rx_frames\":%llu,\"other_frames\":%llu,"
           "\"rx_bytes\":%llu,\"reads\":%llu,\"pings\":%llu,\"latency_clock\":\"%s\",\"ok\":%s}\n",
           step, opt.steps[step], (unsigned long long)ss.sent, ss.sent / d,
           (unsigned long long)expected, (unsigned long long)ss.deliveries, delivered / d,
           ratio, p50, p90, p99, p999, hist_max_ns / 1e6, srv, own_pct, my_cpu,
           core_busy, server_cpu, server_core_busy, (t - m_end) / 1e9, st.connected, st.disconnects, st.server_closes,
           (unsigned long long)ss.cross_room, (unsigned long long)ss.echo,
           (unsigned long long)ss.out_of_order, (unsigned long long)ss.bad_tokens,
           (unsigned long long)ss.unmeasured, (unsigned long long)ss.dup_tokens,
           (unsigned long long)ss.send_dropped, ss.sched_lag_max / 1e6,
           (unsigned long long)(st.rx_msgs - ss.rx_msgs0),
           (unsigned long long)(st.other_msgs - ss.other_msgs0),
           (unsigned long long)(st.rx_bytes - ss.rx_bytes0), (unsigned long long)ss.reads,
           (unsigned long long)st.pings,
           !opt.rx_ts ? "user" : st.kernel_ts ? "kernel_rx" : "user(no kernel ts)",
           ok ? "true" : "false");
    fflush(stdout);
    return ok;
}

/* Send every message of the step due by t and before `before` (the window's
 * end): message m at m_start + m / rate,
 * from sender m mod nsenders (loadgen's stagger with one global counter). */
static void send_due(int64_t t, int64_t before) {
    double per_ns = opt.steps[step] / 1e9;
    for (;;) {
        int64_t due = m_start + (int64_t)(step_next / per_ns);
        if (due > t || due >= before) break;
        if (t - due > ss.sched_lag_max) ss.sched_lag_max = t - due;
        client_t *c = &cl[senders[step_next % (uint64_t)nsenders]];
        step_next++;
        if (c->state != ST_OPEN) continue;                /* counted in closed */
        if (c->wbuf.len - c->woff > WBUF_LIMIT) { ss.send_dropped++; continue; }
        size_t n = build_message(c->id, c->seq++, t);
        queue_frame(c, 0x1, msgbuf, n);
        st.sent_total++;
        ss.sent++;
        flush(c);
    }
}

static void on_tick(int64_t t) {
    rt_offset = realtime_offset();
    if (phase == PH_CONNECT) {
        int64_t allowed = (int64_t)((t - t_start) / 1e9 * opt.connect_rate) + 1;
        while (next_connect < opt.clients && next_connect < allowed &&
               pending < opt.max_pending)
            start_connect(&cl[next_connect++]);
        if (next_connect == opt.clients && pending == 0) {
            st.connect_ns = t - t_start;
            fprintf(stderr, "# connected %d failed %d in %.2fs\n", st.connected,
                    st.connect_failures, st.connect_ns / 1e9);
            if (st.connected < opt.clients)
                fail("only %d of %d clients connected", st.connected, opt.clients);
            for (int i = 0; i < opt.clients; i++) {     /* every client joins now */
                char m[64];
                int k = snprintf(m, sizeof m, "/join #b%d", cl[i].room);
                queue_frame(&cl[i], 0x1, (const uint8_t *)m, (size_t)k);
                flush(&cl[i]);
            }
            phase = PH_JOIN;
        } else if (t - t_start > (int64_t)(opt.connect_timeout * 1e9))
            fail("only %d of %d clients connected within --connect-timeout",
                 st.connected, opt.clients);
        return;
    }
    if (phase == PH_JOIN) {
        if (st.connected < opt.clients)
            fail("the server closed clients while they joined: %d of %d open",
                 st.connected, opt.clients);
        if (st.joined == opt.clients) after_join(t);
        else if (t - t_start - st.connect_ns > (int64_t)(opt.join_timeout * 1e9))
            fail("only %d of %d clients saw their /join confirmed within --join-timeout",
                 st.joined, opt.clients);
        return;
    }
    if (phase == PH_WARM) {
        uint64_t want = (uint64_t)nrooms * (opt.room_size - 1);
        if (warm_got >= want) after_warm(t);
        else if (warm_got >= want * 0.99 && t - warm_last > 1000000000LL) {
            fprintf(stderr, "# warm-up: %llu of %llu delivered (none for 1 s); starting\n",
                    (unsigned long long)warm_got, (unsigned long long)want);
            after_warm(t);
        }
        else if (t - warm_at > (int64_t)(opt.warm_timeout * 1e9))
            fail("the warm-up (one message per room) got %d of %d deliveries within "
                 "--warm-timeout", (int)warm_got, nrooms * (opt.room_size - 1));
        return;
    }
    if (phase == PH_QUIET) {
        if (t < quiet_at) return;
        double cpu = server_cpu_seconds();
        int quiet = cpu < 0 || cpu - quiet_cpu < opt.quiet * 0.5;
        if (quiet || t - warm_done > (int64_t)(opt.quiet_timeout * 1e9)) {
            if (!quiet)
                fprintf(stderr, "# the server is still busy after %.0f s; starting anyway\n",
                        opt.quiet_timeout);
            start_steps(t, quiet ? "true" : "false");
            return;
        }
        quiet_cpu = cpu;
        quiet_at = t + 500000000LL;
        return;
    }
    if (phase == PH_RUN) {
        if (t >= m_end) {
            send_due(t, m_end);           /* those due since the last tick, ... */
            m_end = t + 1;                /* ... stamped t: still in this window */
            sample(&ss.end, t);
            phase = PH_DRAIN;
            drain_end = m_end + (int64_t)(opt.drain * 1e9);
        } else send_due(t, m_end);
    }
    if (phase == PH_DRAIN) {
        uint64_t expected = ss.sent * (uint64_t)(opt.room_size - 1);
        if (t >= drain_end || ss.deliveries >= expected) {
            int ok = end_step(t);
            if ((ok || opt.keep_going) && ++step < opt.nsteps) begin_step(t);
            else phase = PH_DONE;
        }
    }
}

/* Run the epoll loop until the test is done (closing == 0), or until every
 * client is closed or `deadline` passes (closing == 1).
 *
 * By default the loop never sleeps in epoll_wait: it polls (timeout 0) and,
 * once caught up, sleeps on the 1 ms timerfd alone. Over loopback the server
 * pays, in its send, for waking a receiver asleep in epoll_wait (a cross-CPU
 * wake-up: 15-17 % of papo's perf samples at 100k deliveries/s to rooms of
 * 1 000 when woken by every arrival, 4-6 % with this loop), a cost remote
 * clients never put on it. Latency is unchanged by the wait: it is taken
 * from the kernel's receive timestamp. --eager restores loadgen.c's way
 * (woken by every arrival), to compare. */
static void event_loop(int closing, int64_t deadline) {
    struct epoll_event evs[1024];
    while (closing ? (st.connected > 0 && now_ns() < deadline) : phase < PH_DONE) {
        int n = epoll_wait(epfd, evs, 1024, opt.eager ? 100 : 0);
        if (n < 0) { if (errno == EINTR) continue; die("epoll_wait"); }
        for (int i = 0; i < n; i++) {
            int64_t t = now_ns();
            client_t *c = evs[i].data.ptr;
            uint32_t e = evs[i].events;
            if (!c) {                                  /* timer tick */
                uint64_t exp;
                if (read(tfd, &exp, sizeof exp) < 0) { /* spurious */ }
                last_tick = t;
                if (!closing) on_tick(t);
                continue;
            }
            if (!closing && t - last_tick >= TICK_NS) { last_tick = t; on_tick(t); }
            if (c->state == ST_CLOSED) continue;       /* closed earlier in batch */
            if (c->state == ST_CONNECTING) {
                if (e & (EPOLLOUT | EPOLLERR | EPOLLHUP)) on_connected(c);
                continue;
            }
            if (e & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(c, t);
            if (c->state != ST_CLOSED && (e & EPOLLOUT)) flush(c);
        }
        if (!opt.eager && n < 1024) {       /* all caught up: sleep to the next tick */
            uint64_t exp;
            if (read(tfd, &exp, sizeof exp) < 0 && errno != EINTR) die("read timerfd");
            int64_t t = now_ns();
            last_tick = t;
            if (!closing) on_tick(t);
        }
    }
}

/* Graceful end: close frame to every open client, then keep reading until the
 * server answers with its close frame / EOF, at most `secs` seconds; whatever
 * is left is closed hard. Avoids RST storms (and server log spam). */
static void close_all(double secs) {
    phase = PH_CLOSING;
    for (int i = 0; i < opt.clients; i++) {
        client_t *c = &cl[i];
        if (c->state != ST_OPEN) { close_client(c); continue; }
        uint8_t code[2] = { 0x03, 0xE8 };                   /* 1000 normal */
        queue_frame(c, 0x8, code, 2);
        c->close_sent = 1;
        flush(c);                   /* then wait for the server's close */
    }
    event_loop(1, now_ns() + (int64_t)(secs * 1e9));
    for (int i = 0; i < opt.clients; i++) close_client(&cl[i]);
}

/* ------------------------------------------------------------ main */
static void usage(void) {
    fprintf(stderr,
        "usage: roomgen [--host H] [--port P] [--path /?lang=en] [--clients N]\n"
        "  [--room-size K] [--senders-per-room S] --steps R1,R2,... (msgs/s in all)\n"
        "  [--step-seconds D] [--drain T] [--size B] [--server-pid PID] [--quiet F]\n"
        "  [--quiet-timeout T] [--warm-timeout T] [--connect-rate C/s] [--max-pending M]\n"
        "  [--connect-timeout T] [--join-timeout T] [--close-timeout T] [--no-rx-ts]\n"
        "  [--keep-going (run every step, even after one failed)]\n"
        "  [--eager (woken by every arrival, as loadgen.c; default: 1 ms ticks)]\n"
        "  [--sender-order rooms|clients (default rooms: a room's messages evenly spaced)]\n");
    exit(2);
}

static void parse_steps(const char *s) {
    char *end;
    opt.nsteps = 0;
    while (*s) {
        if (opt.nsteps == MAX_STEPS) usage();
        double v = strtod(s, &end);
        if (end == s || v <= 0) usage();
        opt.steps[opt.nsteps++] = v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') usage();
    }
}

int main(int argc, char **argv) {
    static struct option lo[] = {
        {"host", 1, 0, 'h'}, {"port", 1, 0, 'p'}, {"path", 1, 0, 'P'},
        {"clients", 1, 0, 'n'}, {"room-size", 1, 0, 'K'},
        {"senders-per-room", 1, 0, 's'}, {"steps", 1, 0, 'r'},
        {"step-seconds", 1, 0, 'd'}, {"drain", 1, 0, 'D'}, {"size", 1, 0, 'b'},
        {"server-pid", 1, 0, 'S'}, {"quiet", 1, 0, 'q'}, {"quiet-timeout", 1, 0, 'Q'},
        {"warm-timeout", 1, 0, 'W'},
        {"connect-rate", 1, 0, 'c'}, {"max-pending", 1, 0, 'k'},
        {"connect-timeout", 1, 0, 't'}, {"join-timeout", 1, 0, 'J'},
        {"close-timeout", 1, 0, 'T'}, {"no-rx-ts", 0, 0, 'u'},
        {"keep-going", 0, 0, 'G'}, {"eager", 0, 0, 'E'}, {"sender-order", 1, 0, 'O'}, {"help", 0, 0, '?'},
        {0, 0, 0, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 'h': opt.host = optarg; break;
        case 'p': opt.port = atoi(optarg); break;
        case 'P': opt.path = optarg; break;
        case 'n': opt.clients = atoi(optarg); break;
        case 'K': opt.room_size = atoi(optarg); break;
        case 's': opt.senders_per_room = atoi(optarg); break;
        case 'r': parse_steps(optarg); break;
        case 'd': opt.step_seconds = atof(optarg); break;
        case 'D': opt.drain = atof(optarg); break;
        case 'b': opt.size = atoi(optarg); break;
        case 'S': opt.server_pid = atoi(optarg); break;
        case 'q': opt.quiet = atof(optarg); break;
        case 'Q': opt.quiet_timeout = atof(optarg); break;
        case 'W': opt.warm_timeout = atof(optarg); break;
        case 'c': opt.connect_rate = atof(optarg); break;
        case 'k': opt.max_pending = atoi(optarg); break;
        case 't': opt.connect_timeout = atof(optarg); break;
        case 'J': opt.join_timeout = atof(optarg); break;
        case 'T': opt.close_timeout = atof(optarg); break;
        case 'u': opt.rx_ts = 0; break;
        case 'G': opt.keep_going = 1; break;
        case 'E': opt.eager = 1; break;
        case 'O':
            if (!strcmp(optarg, "clients")) opt.client_order = 1;
            else if (strcmp(optarg, "rooms")) usage();
            break;
        default: usage();
        }
    }
    if (opt.clients < 1 || opt.room_size < 2 || opt.clients % opt.room_size ||
        opt.senders_per_room < 1 || opt.senders_per_room > opt.room_size ||
        opt.max_pending < 1 || opt.nsteps < 1 || opt.step_seconds <= 0 || opt.size > 4096) {
        fprintf(stderr, "roomgen: --room-size (>= 2) must divide --clients, "
                "1 <= --senders-per-room <= --room-size, and --steps is needed\n");
        usage();
    }
    if (!(msgbuf = malloc(96 + (opt.size > 0 ? opt.size : 0)))) die("malloc");
    clk_tck = sysconf(_SC_CLK_TCK);

    /* Raise the fd limit: N sockets + epoll + timerfd + stdio. All N are needed. */
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rlim_t need = (rlim_t)opt.clients + 16;
    if (rl.rlim_cur < need) {
        struct rlimit nr = { need, rl.rlim_max > need ? rl.rlim_max : need };
        if (setrlimit(RLIMIT_NOFILE, &nr) < 0) {
            nr.rlim_cur = nr.rlim_max = rl.rlim_max;
            if (setrlimit(RLIMIT_NOFILE, &nr) < 0 || rl.rlim_max < need)
                fail("the fd limit (%d) is below --clients + 16 (%d)",
                     (int)rl.rlim_max, (int)need);
        }
    }
    signal(SIGPIPE, SIG_IGN);
    cpu_set_t cs;
    if (sched_getaffinity(0, sizeof cs, &cs) == 0 && CPU_COUNT(&cs) == 1)
        for (int i = 0; i < CPU_SETSIZE; i++) if (CPU_ISSET(i, &cs)) { my_cpu = i; break; }
    if (opt.server_pid > 0 && sched_getaffinity(opt.server_pid, sizeof cs, &cs) == 0 &&
        CPU_COUNT(&cs) == 1)
        for (int i = 0; i < CPU_SETSIZE; i++) if (CPU_ISSET(i, &cs)) { server_cpu = i; break; }
    if (getrandom(&rng_state, sizeof rng_state, 0) != sizeof rng_state || !rng_state)
        rng_state = (uint64_t)now_ns() ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15ULL;

    addr.sin_family = AF_INET;
    addr.sin_port = htons(opt.port);
    if (inet_pton(AF_INET, opt.host, &addr.sin_addr) != 1) {
        fprintf(stderr, "--host must be an IPv4 address\n");
        return 2;
    }
    nrooms = opt.clients / opt.room_size;
    nsenders = nrooms * opt.senders_per_room;
    int64_t *seqs = malloc(sizeof *seqs * (size_t)opt.clients * opt.senders_per_room);
    if (!(cl = calloc(opt.clients, sizeof *cl)) || !seqs ||
        !(senders = malloc(sizeof *senders * (size_t)nsenders)))
        die("calloc");
    for (int i = 0; i < opt.clients; i++) {
        cl[i].id = i;
        cl[i].fd = -1;
        cl[i].room = i / opt.room_size;
        cl[i].last_seq = seqs + (size_t)i * opt.senders_per_room;
        for (int j = 0; j < opt.senders_per_room; j++) cl[i].last_seq[j] = -1;
    }
    /* Senders in turn room by room (consecutive messages go to different rooms,
     * each room's messages evenly spaced), or with --sender-order clients in
     * client order (a room's S senders one after the other: its messages come
     * S at a time, which lets a server share its writes between them). */
    for (int i = 0; i < nsenders; i++)
        senders[i] = opt.client_order
                         ? (i / opt.senders_per_room) * opt.room_size + i % opt.senders_per_room
                         : (i % nrooms) * opt.room_size + i / nrooms;

    if ((epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) die("epoll_create1");
    if ((tfd = timerfd_create(CLOCK_MONOTONIC, (opt.eager ? TFD_NONBLOCK : 0) | TFD_CLOEXEC)) < 0)
        die("timerfd_create");
    struct itimerspec its = { { 0, TICK_NS }, { 0, TICK_NS } };
    timerfd_settime(tfd, 0, &its, NULL);
    struct epoll_event te = { .events = EPOLLIN, .data.ptr = NULL };
    if (opt.eager) epoll_ctl(epfd, EPOLL_CTL_ADD, tfd, &te);

    rt_offset = realtime_offset();
    t_start = now_ns();
    event_loop(0, 0);
    close_all(opt.close_timeout);
    return 0;
}
