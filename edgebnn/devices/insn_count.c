/*
 * edgebnn's instruction counter: a QEMU TCG plugin for user-mode emulation (qemu-aarch64 -plugin).
 *
 * Counts the guest instructions every vCPU (thread) executes, how often each translated block ran, and, when
 * given marker addresses, the running counts each time a marker instruction (a function entry) executes.
 * Written at exit to out=PATH:
 *
 *   edgebnn-insn-count 1
 *   vcpu INDEX COUNT                 one line per vCPU that ran
 *   tb PC NINSNS EXECS               one line per translation of a block (PC hex)
 *   mark ID VCPU VCPU_COUNT TOTAL    one line per marker hit, in order
 *
 * Arguments: out=PATH (required), marks=PATH (optional: one hex address per line, its line number is its ID;
 * a line "ADDR s" is a secondary marker, logged only at its first hit after a primary marker's hit).
 * The few plugin API declarations below follow QEMU's documented plugin API (docs/devel/tcg-plugins,
 * API version 1: QEMU 7.x and 8.x).
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- declarations of the documented plugin API (version 1) ---- */
typedef uint64_t qemu_plugin_id_t;
typedef struct {
    const char *target_name;
    struct { int min; int cur; } version;
    bool system_emulation;
    union { struct { int smp_vcpus; int max_vcpus; } system; };
} qemu_info_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb, qemu_plugin_vcpu_udata_cb_t cb,
                                          enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *insn, qemu_plugin_vcpu_udata_cb_t cb,
                                            enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);
void qemu_plugin_outs(const char *string);

#define API_VERSION 1
__attribute__((visibility("default"))) int qemu_plugin_version = API_VERSION;

/* ---- state ---- */
#define MAX_VCPUS 4096
typedef struct { uint64_t pc; uint64_t n; uint64_t execs; } block_t;
typedef struct { uint32_t id; uint32_t vcpu; uint64_t vcpu_count; uint64_t total; } hit_t;

static uint64_t counts[MAX_VCPUS];          /* each written by its own vCPU thread only */
static unsigned int vcpus_seen;             /* highest vCPU index + 1 */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static block_t **blocks;
static size_t n_blocks, cap_blocks;
static hit_t *hits;
static size_t n_hits, cap_hits;
static uint64_t *marks;                     /* marker addresses, sorted, with their IDs */
static uint32_t *mark_ids;
static unsigned char *mark_secondary;
static size_t n_marks;
static int armed;                           /* a primary marker hit since the last logged secondary one */
static char *out_path;

static void grow(void **buf, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return;
    size_t cap2 = *cap ? *cap * 2 : 1024;
    while (cap2 < need)
        cap2 *= 2;
    void *p = realloc(*buf, cap2 * size);
    if (!p) {
        qemu_plugin_outs("edgebnn insn_count: out of memory\n");
        abort();
    }
    *buf = p;
    *cap = cap2;
}

static void on_block(unsigned int vcpu, void *udata)
{
    block_t *b = udata;
    if (vcpu < MAX_VCPUS) {
        counts[vcpu] += b->n;
        if (vcpu >= __atomic_load_n(&vcpus_seen, __ATOMIC_RELAXED))
            __atomic_store_n(&vcpus_seen, vcpu + 1, __ATOMIC_RELAXED);
    }
    __atomic_fetch_add(&b->execs, 1, __ATOMIC_RELAXED);
}

static void on_mark(unsigned int vcpu, void *udata)
{
    uint32_t id = (uint32_t)(uintptr_t)udata >> 1;
    if ((uintptr_t)udata & 1) {
        if (!__atomic_exchange_n(&armed, 0, __ATOMIC_RELAXED))
            return;
    } else {
        __atomic_store_n(&armed, 1, __ATOMIC_RELAXED);
    }
    uint64_t total = 0;
    unsigned int seen = __atomic_load_n(&vcpus_seen, __ATOMIC_RELAXED);
    for (unsigned int i = 0; i < seen; i++)
        total += __atomic_load_n(&counts[i], __ATOMIC_RELAXED);
    pthread_mutex_lock(&lock);
    grow((void **)&hits, &cap_hits, n_hits + 1, sizeof(hit_t));
    hits[n_hits++] = (hit_t){id, vcpu, vcpu < MAX_VCPUS ? counts[vcpu] : 0, total};
    pthread_mutex_unlock(&lock);
}

static long find_mark(uint64_t pc)
{
    size_t lo = 0, hi = n_marks;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (marks[mid] < pc)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n_marks && marks[lo] == pc ? (long)lo : -1;
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    block_t *b = calloc(1, sizeof(block_t));
    if (!b)
        abort();
    b->pc = qemu_plugin_tb_vaddr(tb);
    b->n = qemu_plugin_tb_n_insns(tb);
    pthread_mutex_lock(&lock);
    grow((void **)&blocks, &cap_blocks, n_blocks + 1, sizeof(block_t *));
    blocks[n_blocks++] = b;
    pthread_mutex_unlock(&lock);
    qemu_plugin_register_vcpu_tb_exec_cb(tb, on_block, QEMU_PLUGIN_CB_NO_REGS, b);
    for (size_t i = 0; n_marks && i < b->n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        long m = find_mark(qemu_plugin_insn_vaddr(insn));
        if (m >= 0)
            qemu_plugin_register_vcpu_insn_exec_cb(insn, on_mark, QEMU_PLUGIN_CB_NO_REGS,
                                                   (void *)(((uintptr_t)mark_ids[m] << 1) | mark_secondary[m]));
    }
}

static void write_results(qemu_plugin_id_t id, void *udata)
{
    FILE *f = fopen(out_path, "w");
    if (!f) {
        qemu_plugin_outs("edgebnn insn_count: cannot write the output file\n");
        return;
    }
    fprintf(f, "edgebnn-insn-count %d\n", API_VERSION);
    for (unsigned int i = 0; i < vcpus_seen; i++)
        fprintf(f, "vcpu %u %" PRIu64 "\n", i, counts[i]);
    for (size_t i = 0; i < n_blocks; i++)
        if (blocks[i]->execs)
            fprintf(f, "tb %" PRIx64 " %" PRIu64 " %" PRIu64 "\n", blocks[i]->pc, blocks[i]->n, blocks[i]->execs);
    for (size_t i = 0; i < n_hits; i++)
        fprintf(f, "mark %u %u %" PRIu64 " %" PRIu64 "\n", hits[i].id, hits[i].vcpu, hits[i].vcpu_count,
                hits[i].total);
    fprintf(f, "end\n");
    fclose(f);
}

static int read_marks(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[64];
    size_t cap_m = 0, cap_i = 0, cap_s = 0;
    uint32_t id = 0;
    while (fgets(line, sizeof line, f)) {
        char *end;
        grow((void **)&marks, &cap_m, n_marks + 1, sizeof(uint64_t));
        grow((void **)&mark_ids, &cap_i, n_marks + 1, sizeof(uint32_t));
        grow((void **)&mark_secondary, &cap_s, n_marks + 1, 1);
        marks[n_marks] = strtoull(line, &end, 16);
        mark_secondary[n_marks] = strchr(end, 's') != NULL;
        mark_ids[n_marks++] = id++;
    }
    fclose(f);
    for (size_t i = 1; i < n_marks; i++)  /* insertion sort keeps IDs and kinds beside their addresses */
        for (size_t j = i; j > 0 && marks[j - 1] > marks[j]; j--) {
            uint64_t a = marks[j]; marks[j] = marks[j - 1]; marks[j - 1] = a;
            uint32_t b = mark_ids[j]; mark_ids[j] = mark_ids[j - 1]; mark_ids[j - 1] = b;
            unsigned char c = mark_secondary[j]; mark_secondary[j] = mark_secondary[j - 1]; mark_secondary[j - 1] = c;
        }
    return 0;
}

__attribute__((visibility("default")))
int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    if (info->version.cur < API_VERSION || info->version.min > API_VERSION) {
        qemu_plugin_outs("edgebnn insn_count: this QEMU's plugin API is not version 1\n");
        return -1;
    }
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "out=", 4) == 0) {
            out_path = strdup(argv[i] + 4);
        } else if (strncmp(argv[i], "marks=", 6) == 0) {
            if (read_marks(argv[i] + 6) != 0) {
                qemu_plugin_outs("edgebnn insn_count: cannot read the marks file\n");
                return -1;
            }
        } else {
            qemu_plugin_outs("edgebnn insn_count: unknown argument (use out=PATH, marks=PATH)\n");
            return -1;
        }
    }
    if (!out_path) {
        qemu_plugin_outs("edgebnn insn_count: out=PATH is required\n");
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, write_results, NULL);
    return 0;
}
