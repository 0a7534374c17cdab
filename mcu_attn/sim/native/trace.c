/* Native half of the profiler (mcu_attn/sim/native.py): Unicorn hook callbacks that record one inference's
 * execution without a Python call per block, and the flash cache model's LRU replay over those records.
 *
 * Recording. `ma_trace_block` is a UC_HOOK_BLOCK callback, `ma_trace_read` a UC_HOOK_MEM_READ callback limited
 * to the flash range; both take the `ma_trace` as user data. A block is interned once: (start, size) -> id
 * through an open-addressing hash table, and marked when it starts at a layer's entry address. Per executed
 * block the trace keeps its id in order (4 bytes), switches the current row when the block enters a layer
 * (profile.py's rule: the next layer at that address after the current one, else the first) and records the
 * switch as a mark (position, row), and counts the transition from the previous block: (row of the previous
 * block, previous id, this id) in a second hash table. Each block except the last has exactly one outgoing
 * transition, so the transitions give how often each block ran in each row, and which of its runs ended in a
 * jump (the successor does not start where the block ends). For every data read from flash the trace keeps
 * its address and the row it happened in. These are the streams the Python hooks record, summarised on the
 * fly (profile.py does the same summary with numpy for the Python hooks and QEMU).
 *
 * Replay. `ma_data_misses` and `ma_fetch_misses` run the fully associative LRU of cycles.py (`_lru_misses`, the
 * specification) over the data-read lines and the executed code lines, and add each miss to the row (layer)
 * of the access. Lines are relative to the start of flash, so the cache state is a doubly linked list over an
 * array of `span` lines: each access is O(1). A repeat of the line just used is a hit that changes nothing
 * (the line buffer); with `sequential_free`, a miss on the line right after the previous one costs nothing
 * (the prefetcher fetched it) but still enters the cache.
 *
 * Allocation failures set `failed` and stop recording; the caller reports them.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A hash table from nonzero 64-bit keys to 64-bit values (open addressing, linear probing). */
typedef struct {
    uint64_t *key;              /* 0: empty slot */
    uint64_t *value;
    uint64_t size, used;        /* size: a power of two, at least twice `used` */
} table;

#define MAX_BLOCKS (1u << 24)   /* ids fit 24 bits of a transition key */
#define MAX_ROWS (1u << 15)

typedef struct {
    uint32_t *order;            /* executed blocks in order: ids into block_start / block_size */
    uint64_t count, capacity;
    uint32_t *block_start;      /* distinct blocks */
    uint32_t *block_size;
    uint8_t *block_entry;       /* 1: starts at a layer's entry address */
    uint64_t blocks, block_capacity;
    table ids;                  /* 1 << 63 | start << 32 | size -> id */
    table transitions;          /* 1 << 63 | row << 48 | previous id << 24 | id -> count */
    const uint32_t *entry;      /* the layers' entry addresses, in layer order */
    uint32_t entries;
    int32_t row;                /* the current row: 0 before the first layer, 1 + layer index after */
    int64_t *mark_position;     /* row switches: from order[mark_position[k]] on, the row is mark_row[k] */
    int32_t *mark_row;
    uint64_t marks, mark_capacity;
    uint32_t *read_address;     /* data reads from flash */
    int32_t *read_row;          /* the row each happened in */
    uint64_t reads, read_capacity;
    uint64_t *row_reads;        /* reads per row (entries + 1 rows) */
    int failed;
} ma_trace;

static int table_open(table *t)
{
    t->size = 1024u;
    t->used = 0u;
    t->key = calloc(t->size, sizeof *t->key);
    t->value = calloc(t->size, sizeof *t->value);
    return t->key != NULL && t->value != NULL;
}

static void table_close(table *t)
{
    free(t->key);
    free(t->value);
}

/* `entries` addresses in layer order; the trace keeps the pointer (the caller keeps the array alive). */
ma_trace *ma_trace_new(const uint32_t *entry, uint32_t entries)
{
    ma_trace *trace = calloc(1, sizeof *trace);
    if (trace == NULL) {
        return NULL;
    }
    trace->entry = entry;
    trace->entries = entries;
    trace->row_reads = calloc(entries + 1u, sizeof *trace->row_reads);
    if (!table_open(&trace->ids) || !table_open(&trace->transitions) || entries + 1u >= MAX_ROWS
        || trace->row_reads == NULL) {
        trace->failed = 1;
    }
    return trace;
}

void ma_trace_free(ma_trace *trace)
{
    if (trace == NULL) {
        return;
    }
    free(trace->order);
    free(trace->block_start);
    free(trace->block_size);
    free(trace->block_entry);
    table_close(&trace->ids);
    table_close(&trace->transitions);
    free(trace->mark_position);
    free(trace->mark_row);
    free(trace->read_address);
    free(trace->read_row);
    free(trace->row_reads);
    free(trace);
}

static int grow(void **array, size_t item, uint64_t *capacity, uint64_t needed)
{
    if (needed <= *capacity) {
        return 1;
    }
    uint64_t wanted = *capacity ? *capacity * 2u : 65536u;
    void *bigger = realloc(*array, wanted * item);
    if (bigger == NULL) {
        return 0;
    }
    *array = bigger;
    *capacity = wanted;
    return 1;
}

static uint64_t slot_of(uint64_t key, uint64_t size)
{
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdull; /* the finaliser of MurmurHash3: spreads nearby keys */
    key ^= key >> 33;
    return key & (size - 1u);
}

static int table_grow(table *t)
{
    table bigger = {calloc(t->size * 2u, sizeof(uint64_t)), calloc(t->size * 2u, sizeof(uint64_t)),
                    t->size * 2u, t->used};
    if (bigger.key == NULL || bigger.value == NULL) {
        table_close(&bigger);
        return 0;
    }
    for (uint64_t i = 0; i < t->size; ++i) {
        if (t->key[i] != 0u) {
            uint64_t slot = slot_of(t->key[i], bigger.size);
            while (bigger.key[slot] != 0u) {
                slot = (slot + 1u) & (bigger.size - 1u);
            }
            bigger.key[slot] = t->key[i];
            bigger.value[slot] = t->value[i];
        }
    }
    table_close(t);
    *t = bigger;
    return 1;
}

/* The slot of `key`, inserted with value `fresh` when absent; NULL when the table cannot grow. */
static uint64_t *table_find(table *t, uint64_t key, uint64_t fresh, int *inserted)
{
    uint64_t slot = slot_of(key, t->size);
    while (t->key[slot] != 0u) {
        if (t->key[slot] == key) {
            *inserted = 0;
            return &t->value[slot];
        }
        slot = (slot + 1u) & (t->size - 1u);
    }
    if (2u * (t->used + 1u) > t->size) {
        if (!table_grow(t)) {
            return NULL;
        }
        return table_find(t, key, fresh, inserted);
    }
    t->key[slot] = key;
    t->value[slot] = fresh;
    t->used++;
    *inserted = 1;
    return &t->value[slot];
}

static int64_t intern(ma_trace *trace, uint32_t start, uint32_t size)
{
    int inserted;
    uint64_t *id = table_find(&trace->ids, (1ull << 63) | ((uint64_t)start << 32) | size, trace->blocks, &inserted);
    if (id == NULL) {
        return -1;
    }
    if (!inserted) {
        return (int64_t)*id;
    }
    uint64_t capacity = trace->block_capacity;
    if (trace->blocks >= MAX_BLOCKS
        || !grow((void **)&trace->block_start, sizeof(uint32_t), &capacity, trace->blocks + 1u)) {
        return -1;
    }
    capacity = trace->block_capacity;
    if (!grow((void **)&trace->block_size, sizeof(uint32_t), &capacity, trace->blocks + 1u)) {
        return -1;
    }
    capacity = trace->block_capacity;
    if (!grow((void **)&trace->block_entry, 1, &capacity, trace->blocks + 1u)) {
        return -1;
    }
    trace->block_capacity = capacity;
    trace->block_start[trace->blocks] = start;
    trace->block_size[trace->blocks] = size;
    trace->block_entry[trace->blocks] = 0;
    for (uint32_t i = 0; i < trace->entries; ++i) {
        trace->block_entry[trace->blocks] |= trace->entry[i] == start;
    }
    return (int64_t)trace->blocks++;
}

/* The row after entering the layer function at `start` (profile.py `_rows`). */
static int32_t next_row(const ma_trace *trace, uint32_t start)
{
    int32_t first = -1;
    for (uint32_t i = 0; i < trace->entries; ++i) {
        if (trace->entry[i] == start) {
            if ((int32_t)i + 1 > trace->row) {
                return (int32_t)i + 1;
            }
            if (first < 0) {
                first = (int32_t)i + 1;
            }
        }
    }
    return first;
}

void ma_trace_block(void *uc, uint64_t address, uint32_t size, void *user)
{
    ma_trace *trace = user;
    (void)uc;
    if (trace->failed) {
        return;
    }
    int64_t id = intern(trace, (uint32_t)address, size);
    if (id < 0 || !grow((void **)&trace->order, sizeof(uint32_t), &trace->capacity, trace->count + 1u)) {
        trace->failed = 1;
        return;
    }
    if (trace->count > 0u) {
        int inserted;
        uint64_t key = (1ull << 63) | ((uint64_t)trace->row << 48) | ((uint64_t)trace->order[trace->count - 1u] << 24)
                       | (uint64_t)id;
        uint64_t *count = table_find(&trace->transitions, key, 0u, &inserted);
        if (count == NULL) {
            trace->failed = 1;
            return;
        }
        ++*count;
    }
    if (trace->block_entry[id]) {
        uint64_t capacity = trace->mark_capacity;
        if (!grow((void **)&trace->mark_position, sizeof(int64_t), &capacity, trace->marks + 1u)
            || !grow((void **)&trace->mark_row, sizeof(int32_t), &trace->mark_capacity, trace->marks + 1u)) {
            trace->failed = 1;
            return;
        }
        trace->row = next_row(trace, (uint32_t)address);
        trace->mark_position[trace->marks] = (int64_t)trace->count;
        trace->mark_row[trace->marks] = trace->row;
        trace->marks++;
    }
    trace->order[trace->count++] = (uint32_t)id;
}

void ma_trace_read(void *uc, int type, uint64_t address, int size, int64_t value, void *user)
{
    ma_trace *trace = user;
    (void)uc;
    (void)type;
    (void)size;
    (void)value;
    if (trace->failed) {
        return;
    }
    uint64_t capacity = trace->read_capacity;
    if (!grow((void **)&trace->read_address, sizeof(uint32_t), &capacity, trace->reads + 1u)
        || !grow((void **)&trace->read_row, sizeof(int32_t), &trace->read_capacity, trace->reads + 1u)) {
        trace->failed = 1;
        return;
    }
    trace->read_address[trace->reads] = (uint32_t)address;
    trace->read_row[trace->reads] = trace->row; /* a read always happens inside a block: count > 0 */
    trace->row_reads[trace->row]++;
    trace->reads++;
}

/* The transitions as four arrays of `ma_trace_transitions` entries: row, previous id, id, count. */
void ma_trace_transition_list(const ma_trace *trace, int32_t *row, uint32_t *previous, uint32_t *id, int64_t *count)
{
    uint64_t k = 0;
    for (uint64_t i = 0; i < trace->transitions.size; ++i) {
        uint64_t key = trace->transitions.key[i];
        if (key != 0u) {
            row[k] = (int32_t)((key >> 48) & 0x7FFFu);
            previous[k] = (uint32_t)((key >> 24) & 0xFFFFFFu);
            id[k] = (uint32_t)(key & 0xFFFFFFu);
            count[k] = (int64_t)trace->transitions.value[i];
            ++k;
        }
    }
}

/* Accessors, so that Python needs no copy of the struct layout. */
uint64_t ma_trace_count(const ma_trace *t) { return t->count; }
uint64_t ma_trace_blocks(const ma_trace *t) { return t->blocks; }
uint64_t ma_trace_marks(const ma_trace *t) { return t->marks; }
uint64_t ma_trace_transitions(const ma_trace *t) { return t->transitions.used; }
uint64_t ma_trace_reads(const ma_trace *t) { return t->reads; }
int ma_trace_failed(const ma_trace *t) { return t->failed; }
const uint32_t *ma_trace_order(const ma_trace *t) { return t->order; }
const uint32_t *ma_trace_block_start(const ma_trace *t) { return t->block_start; }
const uint32_t *ma_trace_block_size(const ma_trace *t) { return t->block_size; }
const int64_t *ma_trace_mark_position(const ma_trace *t) { return t->mark_position; }
const int32_t *ma_trace_mark_row(const ma_trace *t) { return t->mark_row; }
const uint32_t *ma_trace_read_address(const ma_trace *t) { return t->read_address; }
const int32_t *ma_trace_read_row(const ma_trace *t) { return t->read_row; }
const uint64_t *ma_trace_row_reads(const ma_trace *t) { return t->row_reads; }

/* The large buffers change hands (Python frees them with ma_free when its arrays are gone): no copy. */
void *ma_trace_take_order(ma_trace *t) { void *p = t->order; t->order = NULL; return p; }
void *ma_trace_take_read_address(ma_trace *t) { void *p = t->read_address; t->read_address = NULL; return p; }
void *ma_trace_take_read_row(ma_trace *t) { void *p = t->read_row; t->read_row = NULL; return p; }
void ma_free(void *p) { free(p); }

/* ---- the LRU replay ------------------------------------------------------------------------------------- */

typedef struct {
    int32_t *newer, *older;     /* the list, most recent first; -1 ends it */
    uint8_t *cached;
    int32_t head, tail;
    uint32_t used, capacity;
    int64_t previous;           /* the line of the previous access, -1 before the first */
    int sequential_free;
} lru;

static int lru_open(lru *cache, uint32_t span, uint32_t capacity, int sequential_free)
{
    memset(cache, 0, sizeof *cache);
    cache->newer = malloc((size_t)span * sizeof(int32_t));
    cache->older = malloc((size_t)span * sizeof(int32_t));
    cache->cached = calloc(span, 1);
    cache->head = cache->tail = -1;
    cache->capacity = capacity;
    cache->previous = -1;
    cache->sequential_free = sequential_free;
    return cache->newer != NULL && cache->older != NULL && cache->cached != NULL;
}

static void lru_close(lru *cache)
{
    free(cache->newer);
    free(cache->older);
    free(cache->cached);
}

static void lru_unlink(lru *cache, int32_t line)
{
    int32_t newer = cache->newer[line], older = cache->older[line];
    if (newer >= 0) cache->older[newer] = older; else cache->head = older;
    if (older >= 0) cache->newer[older] = newer; else cache->tail = newer;
}

static void lru_push(lru *cache, int32_t line)
{
    cache->newer[line] = -1;
    cache->older[line] = cache->head;
    if (cache->head >= 0) cache->newer[cache->head] = line; else cache->tail = line;
    cache->head = line;
}

/* 1 when the access to `line` costs the wait states. */
static int lru_access(lru *cache, int32_t line)
{
    if (line == cache->previous) {
        return 0; /* the line buffer */
    }
    int miss;
    if (cache->cached[line]) {
        lru_unlink(cache, line);
        lru_push(cache, line);
        miss = 0;
    } else {
        miss = !(cache->sequential_free && cache->previous >= 0 && line == cache->previous + 1);
        if (cache->capacity > 0u) {
            lru_push(cache, line);
            cache->cached[line] = 1;
            if (++cache->used > cache->capacity) {
                int32_t oldest = cache->tail;
                lru_unlink(cache, oldest);
                cache->cached[oldest] = 0;
                cache->used--;
            }
        }
    }
    cache->previous = line;
    return miss;
}

/* Data reads at `addresses[i]` in row `rows[i]`; lines of `line_bytes` counted from `base` (< span). 0 on success,
 * 1 without memory, 2 for an address outside the lines. */
int ma_data_misses(const uint32_t *addresses, const int32_t *rows, uint64_t n, uint32_t base, uint32_t line_bytes,
                   uint32_t span, uint32_t capacity, int64_t *row_misses)
{
    lru cache;
    if (!lru_open(&cache, span, capacity, 0)) {
        lru_close(&cache);
        return 1;
    }
    int status = 0;
    for (uint64_t i = 0; i < n && status == 0; ++i) {
        uint32_t line = (addresses[i] - base) / line_bytes;
        if (addresses[i] < base || line >= span) {
            status = 2; /* outside the flash range: the caller passed the wrong range */
        } else {
            row_misses[rows[i]] += lru_access(&cache, (int32_t)line);
        }
    }
    lru_close(&cache);
    return status;
}

/* Instruction fetch: the executed blocks `order[i]` (ids into first/last, the flash lines a block spans,
 * relative to the start of flash; first > last for a block outside flash), in the rows the marks give (row 0
 * before the first mark). 0 on success. */
int ma_fetch_misses(const uint32_t *order, uint64_t n, const int64_t *mark_position, const int32_t *mark_row,
                    uint64_t marks, const int64_t *first, const int64_t *last, uint32_t span, uint32_t capacity,
                    int sequential_free, int64_t *row_misses)
{
    lru cache;
    if (!lru_open(&cache, span, capacity, sequential_free)) {
        lru_close(&cache);
        return 1;
    }
    int32_t row = 0;
    uint64_t next = 0;
    for (uint64_t i = 0; i < n; ++i) {
        while (next < marks && (uint64_t)mark_position[next] <= i) {
            row = mark_row[next++];
        }
        uint32_t block = order[i];
        for (int64_t line = first[block]; line <= last[block]; ++line) {
            row_misses[row] += lru_access(&cache, (int32_t)line);
        }
    }
    lru_close(&cache);
    return 0;
}
