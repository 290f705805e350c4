/* node internal header (group*.c only): the region group driver's shared state. */
#ifndef TERN_NODE_GROUP_INTERNAL_H
#define TERN_NODE_GROUP_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "group.h"
#include "raft.h"
#include "raftlog.h"
#include "raftwire.h"
#include "transport.h"

/*
 * The envelope around a command in a RAFT_ENTRY_NORMAL entry, little-endian:
 *   u8 version (1) | u8[7] zero | u64 client_id | u64 seq | command bytes
 */
#define GROUP_ENVELOPE_VERSION 1
#define GROUP_ENVELOPE_BYTES   24
#define GROUP_ENTRY_BYTES_MAX  (NODE_GROUP_COMMAND_BYTES_MAX + GROUP_ENVELOPE_BYTES)
#define GROUP_LANES_MAX        256
#define GROUP_ADMIN_MAX        64
#define GROUP_APPLY_BATCH_MAX  256
#define GROUP_APPLY_BYTES_MAX  (16u << 20)
#define GROUP_CHUNK_BYTES      (1u << 20)
#define GROUP_FRAME_BYTES_MAX  (NODE_RAFTWIRE_ENTRY_BYTES_MAX + (1u << 20))

/* A proposal from node_group_submit until its done runs. */
typedef struct group_pending {
    struct group_pending *next, *prev; /* in g->pending (all) */
    struct group_pending *wait_next;   /* in g->unassigned while waiting for a lane */
    uint32_t lane;                     /* valid once assigned */
    bool assigned;
    uint64_t seq;
    uint8_t *entry; /* envelope + command, owned */
    size_t entry_len;
    node_group_done_fn done;
    void *arg;
    int64_t submitted_ms;
    uint64_t sent_to;   /* leader it was last proposed to or forwarded to (0: not sent) */
    uint64_t sent_term; /* term at sending */
} group_pending;

typedef struct {
    uint64_t next_seq; /* starts at 1 */
    group_pending *slots[NODE_GROUP_DEDUP_WINDOW];
} group_lane;

typedef struct group_barrier {
    struct group_barrier *next;
    node_group_done_fn done;
    void *arg;
    int64_t start_ms;
    uint64_t index; /* once its round answered */
} group_barrier;

/* Items handed to the loop thread by other threads (submit, barrier_wait). */
typedef struct group_inbox_item {
    struct group_inbox_item *next;
    group_pending *pending; /* a proposal, or NULL for a barrier */
    node_group_done_fn done;
    void *arg;
} group_inbox_item;

/* A leader-side ReadIndex asked by a follower. */
typedef struct {
    bool used;
    uint64_t peer;
    uint64_t peer_request_id;
    uint64_t request_id; /* ours, given to raft_read_index */
} group_fwd_read;

typedef enum {
    ADMIN_ADD = 1,
    ADMIN_PROMOTE = 2,
    ADMIN_REMOVE = 3,
    ADMIN_TRANSFER = 4,
} group_admin_op;

typedef struct {
    bool used;
    group_admin_op op;
    uint64_t node_id;
    char address[NODE_GROUP_ADDRESS_MAX];
    node_group_done_fn done;
    void *arg;
    int64_t start_ms;
    uint64_t request_id; /* forwarded: the request we sent */
    uint64_t sent_to;
    uint64_t index; /* the CONFIG entry (0: not yet known) */
} group_admin;

/* A persist batch handed to the persist thread (copied out of the raft update). */
typedef struct group_persist_job {
    struct group_persist_job *next;
    uint64_t persist_seq; /* 0: a maintenance job (compaction) */
    raft_entry *entries;  /* data points into `data` */
    size_t entries_count;
    uint8_t *data;
    bool save_hard_state;
    raft_hard_state hard_state;
    /* A received snapshot chunk. */
    bool has_chunk;
    raft_snapshot_meta chunk_meta;
    uint64_t chunk_offset;
    uint8_t *chunk_data;
    size_t chunk_len;
    bool chunk_done;
    /* Maintenance after a snapshot: save meta, compact the log, drop older snapshots. */
    bool compact;
    raft_snapshot_meta compact_meta;
    uint64_t compact_prefix_index;
    int rc; /* filled by the persist thread */
    double sync_seconds;
} group_persist_job;

/* An apply-thread result for one of our own proposals. */
typedef struct {
    uint64_t client_id;
    uint64_t seq;
    int status;
} group_apply_result;

/* Snapshot stream being served (leader, loop thread): the files of one snapshot directory. */
typedef struct {
    char *name; /* relative path */
    uint64_t size;
    uint64_t header_offset; /* of its header in the stream */
} group_stream_file;

typedef struct {
    uint64_t offset;
    uint32_t crc;
} group_crc_point;

typedef struct {
    uint64_t index; /* 0: none loaded */
    char dir[512];
    group_stream_file *files;
    size_t file_count;
    uint64_t trailer_offset; /* where the end marker starts */
    uint64_t total;          /* stream length */
    group_crc_point *points; /* ascending offsets with the CRC of the stream before them */
    size_t point_count, point_cap;
    int fd; /* cached open file */
    size_t fd_file;
} group_send_stream;

/* Snapshot stream being received (persist thread). */
typedef struct {
    uint64_t index; /* 0: none */
    uint64_t offset;
    uint32_t crc;
    char dir[512];
    /* Incremental parser. */
    int state; /* see group_snapshot.c */
    uint8_t hdr[512];
    size_t hdr_len, hdr_need;
    uint64_t file_left;
    int fd;
    bool complete;
} group_recv_stream;

struct node_group {
    uv_loop_t *loop;
    pthread_t loop_thread;
    node_group_config cfg; /* strings below are owned copies */
    char *region, *data_dir, *raft_dir, *s3_listen, *peer_listen;
    node_group_peer peers[NODE_GROUP_PEERS_MAX];
    size_t peer_count;
    node_group_sm sm;
    raft *r;
    raft_config rcfg;
    node_raftlog *log;
    node_transport *transport;
    uint64_t client_base;
    uint32_t lane_count;
    group_lane *lanes;
    uint32_t lane_cursor;

    /* Loop-thread state. */
    bool closing, failed, processing, process_again;
    uv_timer_t tick_timer;
    uint64_t last_tick_ms;
    uint64_t sweep_elapsed_ms, promote_elapsed_ms;
    uv_async_t persist_async, apply_async, inbox_async;
    int handles_open;
    void (*on_closed)(void *ctx);
    void *on_closed_ctx;
    raft_role role;
    uint64_t term, leader_id;
    int64_t leader_lost_ms;              /* when the leader became unknown (0: known) */
    group_persist_job *persist_inflight; /* the raft batch being persisted */
    bool snapshot_running;
    bool snapshots_supported;
    uint64_t snapshot_index; /* latest durable snapshot */
    uint64_t log_bytes_since_snapshot;
    uint64_t log_entries_since_snapshot;
    char *entry_buf; /* storage callback: last entry read */
    node_raftlog_entry *entry_read;

    /* Proposals. */
    group_pending pending; /* list head (sentinel) */
    group_pending *unassigned_head, *unassigned_tail;
    atomic_size_t pending_count;
    atomic_size_t pending_bytes;
    size_t pending_bytes_max;

    /* Read barriers: next round, in-flight round, waiting for apply. */
    group_barrier *barrier_next, *barrier_next_tail;
    group_barrier *barrier_round;
    group_barrier *barrier_applying;
    atomic_size_t barrier_count;
    uint64_t round_id; /* 0: no round in flight */
    uint64_t round_leader;
    int64_t round_start_ms;
    uint64_t next_request_id;
    group_fwd_read *fwd_reads;
    size_t fwd_reads_used;

    group_admin admin[GROUP_ADMIN_MAX];

    /* Gossiped S3 addresses, by peer id. */
    struct {
        uint64_t id;
        char s3[NODE_GROUP_ADDRESS_MAX];
        char peer[NODE_GROUP_ADDRESS_MAX];
    } info[NODE_GROUP_PEERS_MAX];
    /* Peers whose dialed connection has been up before (a later "up" is a reconnection). */
    uint64_t seen_up[NODE_GROUP_PEERS_MAX];

    /* Inbox from other threads. */
    pthread_mutex_t inbox_mu;
    group_inbox_item *inbox_head, *inbox_tail;

    /* Persist thread. */
    bool threads_started;
    pthread_t persist_thread;
    pthread_mutex_t persist_mu;
    pthread_cond_t persist_cond;
    group_persist_job *persist_head, *persist_tail; /* queued */
    group_persist_job *persist_done_head;           /* finished, for the loop */
    bool persist_stop;
    node_raftlog_hard_state saved_hs;
    uint64_t log_reset_after; /* a snapshot was installed: empty the log before appending */
    group_recv_stream recv;

    /* Apply thread. */
    pthread_t apply_thread;
    pthread_mutex_t apply_mu;
    pthread_cond_t apply_cond;
    bool apply_stop;
    uint64_t apply_target; /* committed index handed out by the core */
    atomic_uint_fast64_t applied;
    atomic_uint_fast64_t applied_term;
    group_apply_result *results;
    size_t results_count, results_cap;
    bool apply_failed;
    bool snapshot_requested;
    bool snapshot_result_ready;
    int snapshot_result_rc;
    raft_snapshot_meta snapshot_result;
    /* Install request from the persist thread. */
    bool install_requested, install_finished;
    char install_dir[512];
    int install_rc;
    uint64_t install_index;
    raft_conf apply_conf;    /* configuration as of the applied index (apply thread) */
    pthread_mutex_t meta_mu; /* the snapshot meta file */

    /* Leader side: snapshot served to followers. */
    group_send_stream send;

    /* Metrics (NULL without a registry). */
    node_gauge *m_term, *m_commit, *m_applied, *m_leader, *m_last;
    node_counter *m_prop_ok, *m_prop_err, *m_prop_unavail, *m_prop_timeout, *m_prop_again;
    node_counter *m_elections, *m_snap_sent, *m_snap_taken, *m_snap_installed;
    node_histogram *m_sync;
};

/* group_status.c */
int group__split_host_port(const char *addr, char *host, size_t host_len, int *port);
void group__metrics_init(node_group *g);
void group__metrics_update(node_group *g);

/* group.c */
void group__kick(node_group *g);
void group__fail(node_group *g, const char *why);
int64_t group__now_ms(void);
bool group__on_loop(const node_group *g);
const char *group__s3_of(node_group *g, uint64_t id);

/* group_propose.c: proposals, barriers, admin, frames from peers. */
void group__propose_dispatch_all(node_group *g);
void group__propose_complete_results(node_group *g, group_apply_result *results, size_t count);
void group__propose_sweep(node_group *g, int64_t now_ms);
void group__propose_close(node_group *g, int status);
void group__inbox_drain(node_group *g);
void group__barrier_on_reads(node_group *g, const raft_read_ready *reads, size_t count);
void group__barrier_on_applied(node_group *g);
void group__barrier_start_round(node_group *g);
void group__barrier_abandon_round(node_group *g);
void group__admin_on_progress(node_group *g);
void group__on_frame(node_group *g, uint64_t peer, uint16_t type, const uint8_t *bytes, size_t len);
void group__send_node_info(node_group *g, uint64_t peer);
int group__send_frame(node_group *g, uint64_t peer, const node_groupwire_msg *m);
void group__auto_promote(node_group *g);

/* group_threads.c: persist and apply threads. */
int group__threads_start(node_group *g, char *errmsg, size_t errmsg_len);
void group__threads_stop(node_group *g);
void group__persist_submit(node_group *g, group_persist_job *job);
void group__persist_job_free(group_persist_job *job);
void group__apply_set_target(node_group *g, uint64_t target);
void group__apply_request_snapshot(node_group *g);
int group__apply_install(node_group *g, const char *dir, const raft_snapshot_meta *meta);
int group__install_local_snapshot(node_group *g, const raft_snapshot_meta *meta, char *errmsg,
                                  size_t errmsg_len);

/* group_snapshot.c: snapshot files, meta, streams. */
int group__meta_load(const char *raft_dir, raft_snapshot_meta *out, char *errmsg,
                     size_t errmsg_len);
int group__meta_save(node_group *g, const raft_snapshot_meta *meta);
void group__snapshot_dir(const node_group *g, uint64_t index, char *out, size_t len);
long group__stream_read(node_group *g, uint64_t index, uint64_t offset, void *buf, size_t len);
void group__stream_close(group_send_stream *s);
int group__recv_chunk(node_group *g, const group_persist_job *job);
int group__snapshots_prune(node_group *g, uint64_t keep_index);
int group__rmtree(const char *path);
int group__fsync_path(const char *path);

#endif
