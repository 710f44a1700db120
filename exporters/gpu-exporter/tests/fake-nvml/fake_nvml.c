/*
 * A fake libnvidia-ml.so for gpu-exporter's tests: the NVML entry points the NVML backend
 * calls, answering from a key=value data file instead of a GPU.
 *
 * Built by the tests (src/testing/fake_nvml) and by the end-to-end test (tests/test_e2e_gpu.py
 * at the repository root) with
 *     cc -shared -fPIC -O2 -o libnvidia-ml.so.1 fake_nvml.c -lpthread
 * and, for the "older driver" case, with -DFAKE_OLD_DRIVER, which leaves out the entry points
 * a pre-R510 driver lacks (memory info v2, margin temperature, JPEG/OFA utilization), so that
 * nvml-wrapper reports them as symbols that failed to load.
 *
 * Driven by environment variables, read once in nvmlInit_v2:
 *   FAKE_NVML_DATA=<file>        key=value lines (see below); required
 *   FAKE_NVML_INIT_FAIL=<code>   nvmlInit_v2 returns this nvmlReturn_t
 *   FAKE_NVML_FAIL=<rule>,...    rule = <function>[@<gpu>]:<code>; that device entry point
 *                                (or every one, for function "*") returns <code>, for every
 *                                GPU or only GPU <gpu>
 *   FAKE_NVML_CALL_LOG=<file>    append `<function> <gpu>` (gpu -1: no device) for every entry
 *                                point that takes a device or lists them, so a test can see
 *                                what was asked (and what was not)
 *   FAKE_NVML_XID_AT_START=<gpu>:<xid>,...
 *                                critical XID errors that happened "at start": each is queued
 *                                once, into the first event set in which GPU <gpu> registers
 *                                for critical XID events (so a process that cannot call the
 *                                test hook below, such as the exporter binary in the end-to-end
 *                                test, still sees an XID on its first read)
 *
 * Data file (written by tests/fake-nvml/data.rs; examples/fake-nvml-data prints one for a
 * capture): `count=N`, `driver_version=...`, `cuda_version=13010`, `proc.<pid>.name=...`, and
 * per GPU `gpu<i>.<key>=<value>` (MIG devices: `gpu<i>.mig<j>.<key>`), values in NVML's own
 * units (mW, mJ, MHz, bytes, KB/s). A key that is absent makes its entry point return
 * NVML_ERROR_NOT_SUPPORTED, the way a driver answers for a field the board lacks. With
 * `energy_follows_power=1` each GPU's energy counter grows from `gpu<i>.energy` at the rate of
 * its `gpu<i>.power_usage` since nvmlInit_v2 (a GPU drawing steady power); without it the
 * counter stands still.
 *
 * Test hook: fakeNvmlInjectXid(gpu, xid) queues a critical XID event for GPU <gpu> (callable
 * only from inside the process that loaded the library; FAKE_NVML_XID_AT_START above is the
 * way in from outside).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef int nvmlReturn_t;
enum {
    OK = 0,
    E_UNINITIALIZED = 1,
    E_INVALID_ARGUMENT = 2,
    E_NOT_SUPPORTED = 3,
    E_NOT_FOUND = 6,
    E_INSUFFICIENT_SIZE = 7,
    E_TIMEOUT = 10,
    E_ARGUMENT_VERSION_MISMATCH = 25,
    E_UNKNOWN = 999,
};

#define MAX_GPUS 64
#define MAX_MIGS 8
#define TABLE_SLOTS 8192
#define MAX_RULES 32
#define MAX_EVENTS 1024
#define MAX_START_XIDS 32
#define XID_CRITICAL 8ULL

/* ---- key/value table (open addressing, FNV-1a) ---- */

struct entry {
    char *key;
    char *value;
};
static struct entry table[TABLE_SLOTS];

static uint64_t fnv(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

static void put(const char *key, const char *value) {
    uint64_t i = fnv(key) % TABLE_SLOTS;
    for (int n = 0; n < TABLE_SLOTS; n++, i = (i + 1) % TABLE_SLOTS) {
        if (table[i].key == NULL) {
            table[i].key = strdup(key);
            table[i].value = strdup(value);
            return;
        }
        if (strcmp(table[i].key, key) == 0) {
            free(table[i].value);
            table[i].value = strdup(value);
            return;
        }
    }
}

static const char *get(const char *key) {
    uint64_t i = fnv(key) % TABLE_SLOTS;
    for (int n = 0; n < TABLE_SLOTS; n++, i = (i + 1) % TABLE_SLOTS) {
        if (table[i].key == NULL)
            return NULL;
        if (strcmp(table[i].key, key) == 0)
            return table[i].value;
    }
    return NULL;
}

/* ---- devices ---- */

struct device {
    int gpu; /* index of the physical GPU */
    int mig; /* -1 for the GPU itself */
    char prefix[32];
};
typedef struct device *nvmlDevice_t;

static struct device gpus[MAX_GPUS];
static struct device migs[MAX_GPUS][MAX_MIGS];
static unsigned gpu_count;
static int initialized;

struct rule {
    char function[96];
    int gpu; /* -1: every GPU */
    int code;
};
static struct rule rules[MAX_RULES];
static int rule_count;

static FILE *call_log; /* FAKE_NVML_CALL_LOG */
static pthread_mutex_t call_log_lock = PTHREAD_MUTEX_INITIALIZER;
static struct timespec started; /* nvmlInit_v2, for energy_follows_power */

static void log_call(const char *function, nvmlDevice_t dev) {
    if (call_log == NULL)
        return;
    pthread_mutex_lock(&call_log_lock);
    fprintf(call_log, "%s %d\n", function, dev ? dev->gpu : -1);
    fflush(call_log);
    pthread_mutex_unlock(&call_log_lock);
}

/* The configured failure of `function` on `dev`, or OK. */
static nvmlReturn_t failure(const char *function, nvmlDevice_t dev) {
    log_call(function, dev);
    for (int i = 0; i < rule_count; i++) {
        if (strcmp(rules[i].function, function) != 0 && strcmp(rules[i].function, "*") != 0)
            continue;
        if (rules[i].gpu >= 0 && (dev == NULL || dev->gpu != rules[i].gpu))
            continue;
        return rules[i].code;
    }
    return OK;
}

static int valid(nvmlDevice_t dev) {
    if (dev == NULL)
        return 0;
    if (dev >= &gpus[0] && dev < &gpus[MAX_GPUS])
        return (unsigned)dev->gpu < gpu_count;
    if (dev >= &migs[0][0] && dev <= &migs[MAX_GPUS - 1][MAX_MIGS - 1])
        return (unsigned)dev->gpu < gpu_count && dev->mig >= 0;
    return 0;
}

/* Start of every device entry point: initialised, a known handle, no configured failure. */
#define ENTER(dev)                                     \
    do {                                               \
        if (!initialized)                              \
            return E_UNINITIALIZED;                    \
        if (!valid(dev))                               \
            return E_INVALID_ARGUMENT;                 \
        nvmlReturn_t injected = failure(__func__, dev); \
        if (injected != OK)                            \
            return injected;                           \
    } while (0)

static const char *dev_value(nvmlDevice_t dev, const char *key) {
    char full[160];
    snprintf(full, sizeof full, "%s.%s", dev->prefix, key);
    return get(full);
}

static nvmlReturn_t dev_u64(nvmlDevice_t dev, const char *key, unsigned long long *out) {
    const char *v = dev_value(dev, key);
    if (v == NULL)
        return E_NOT_SUPPORTED;
    if (out == NULL)
        return E_INVALID_ARGUMENT;
    *out = strtoull(v, NULL, 0);
    return OK;
}

static nvmlReturn_t dev_uint(nvmlDevice_t dev, const char *key, unsigned int *out) {
    unsigned long long v;
    nvmlReturn_t r = dev_u64(dev, key, &v);
    if (r == OK)
        *out = (unsigned int)v;
    return r;
}

static nvmlReturn_t dev_int(nvmlDevice_t dev, const char *key, int *out) {
    const char *v = dev_value(dev, key);
    if (v == NULL)
        return E_NOT_SUPPORTED;
    if (out == NULL)
        return E_INVALID_ARGUMENT;
    *out = (int)strtol(v, NULL, 0);
    return OK;
}

static nvmlReturn_t copy_string(const char *v, char *buf, unsigned int len) {
    if (v == NULL)
        return E_NOT_SUPPORTED;
    if (buf == NULL)
        return E_INVALID_ARGUMENT;
    if (strlen(v) + 1 > len)
        return E_INSUFFICIENT_SIZE;
    memcpy(buf, v, strlen(v) + 1);
    return OK;
}

static nvmlReturn_t dev_string(nvmlDevice_t dev, const char *key, char *buf, unsigned int len) {
    return copy_string(dev_value(dev, key), buf, len);
}

/* ---- events ---- */

struct event {
    int gpu;
    unsigned long long type;
    unsigned long long data;
};
struct event_set {
    unsigned long long registered[MAX_GPUS];
    struct event queue[MAX_EVENTS];
    int head, tail;
};
typedef struct event_set *nvmlEventSet_t;
typedef struct {
    nvmlDevice_t device;
    unsigned long long eventType;
    unsigned long long eventData;
    unsigned int gpuInstanceId;
    unsigned int computeInstanceId;
} nvmlEventData_t;

static struct event_set *the_set; /* the most recent set: where injected events go */
static pthread_mutex_t event_lock = PTHREAD_MUTEX_INITIALIZER;

/* FAKE_NVML_XID_AT_START: not yet queued while delivered == 0. */
struct start_xid {
    unsigned gpu;
    unsigned long long xid;
    int delivered;
};
static struct start_xid start_xids[MAX_START_XIDS];
static int start_xid_count;

/* Queue a critical XID event for `gpu` in `s` (event_lock held). 1 if queued, 0 if full. */
static int queue_xid(struct event_set *s, unsigned gpu, unsigned long long xid) {
    int next = (s->tail + 1) % MAX_EVENTS;
    if (next == s->head)
        return 0;
    s->queue[s->tail].gpu = (int)gpu;
    s->queue[s->tail].type = XID_CRITICAL;
    s->queue[s->tail].data = xid;
    s->tail = next;
    return 1;
}

/* ---- init ---- */

static void load_data(const char *path) {
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        char *eq = strchr(line, '=');
        if (eq == NULL || line[0] == '#')
            continue;
        *eq = 0;
        put(line, eq + 1);
    }
    fclose(f);
}

/* `<gpu>:<xid>,...` of FAKE_NVML_XID_AT_START; malformed items are skipped. */
static void load_start_xids(const char *spec) {
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", spec);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok && start_xid_count < MAX_START_XIDS;
         tok = strtok_r(NULL, ",", &save)) {
        char *colon = strchr(tok, ':');
        if (colon == NULL)
            continue;
        *colon = 0;
        struct start_xid *x = &start_xids[start_xid_count++];
        x->gpu = (unsigned)strtoul(tok, NULL, 10);
        x->xid = strtoull(colon + 1, NULL, 10);
        x->delivered = 0;
    }
}

static void load_rules(const char *spec) {
    char buf[2048];
    snprintf(buf, sizeof buf, "%s", spec);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok && rule_count < MAX_RULES;
         tok = strtok_r(NULL, ",", &save)) {
        char *colon = strrchr(tok, ':');
        if (colon == NULL)
            continue;
        *colon = 0;
        struct rule *r = &rules[rule_count++];
        r->code = atoi(colon + 1);
        r->gpu = -1;
        char *at = strchr(tok, '@');
        if (at) {
            *at = 0;
            r->gpu = atoi(at + 1);
        }
        snprintf(r->function, sizeof r->function, "%s", tok);
    }
}

nvmlReturn_t nvmlInit_v2(void) {
    const char *init_fail = getenv("FAKE_NVML_INIT_FAIL");
    if (init_fail && *init_fail)
        return atoi(init_fail);
    const char *data = getenv("FAKE_NVML_DATA");
    if (data == NULL || !*data)
        return E_UNKNOWN;
    if (!initialized) {
        load_data(data);
        const char *fail = getenv("FAKE_NVML_FAIL");
        if (fail)
            load_rules(fail);
        const char *log = getenv("FAKE_NVML_CALL_LOG");
        if (log && *log)
            call_log = fopen(log, "a");
        clock_gettime(CLOCK_MONOTONIC, &started);
        const char *xids = getenv("FAKE_NVML_XID_AT_START");
        if (xids)
            load_start_xids(xids);
        const char *count = get("count");
        gpu_count = count ? (unsigned)strtoul(count, NULL, 10) : 0;
        if (gpu_count > MAX_GPUS)
            gpu_count = MAX_GPUS;
        for (unsigned i = 0; i < MAX_GPUS; i++) {
            gpus[i].gpu = (int)i;
            gpus[i].mig = -1;
            snprintf(gpus[i].prefix, sizeof gpus[i].prefix, "gpu%u", i);
            for (int j = 0; j < MAX_MIGS; j++) {
                migs[i][j].gpu = (int)i;
                migs[i][j].mig = j;
                snprintf(migs[i][j].prefix, sizeof migs[i][j].prefix, "gpu%u.mig%d", i, j);
            }
        }
    }
    initialized++;
    return OK;
}

nvmlReturn_t nvmlInitWithFlags(unsigned int flags) {
    (void)flags;
    return nvmlInit_v2();
}

nvmlReturn_t nvmlShutdown(void) {
    if (!initialized)
        return E_UNINITIALIZED;
    initialized--;
    return OK;
}

const char *nvmlErrorString(nvmlReturn_t r) {
    switch (r) {
    case OK:
        return "Success";
    case E_NOT_SUPPORTED:
        return "Not Supported";
    case 15:
        return "GPU is lost";
    default:
        return "Unknown Error";
    }
}

/* ---- system ---- */

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    if (!initialized)
        return E_UNINITIALIZED;
    return copy_string(get("driver_version"), version, length);
}

nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int *version) {
    if (!initialized)
        return E_UNINITIALIZED;
    const char *v = get("cuda_version");
    if (v == NULL)
        return E_NOT_SUPPORTED;
    *version = atoi(v);
    return OK;
}

nvmlReturn_t nvmlSystemGetCudaDriverVersion(int *version) {
    return nvmlSystemGetCudaDriverVersion_v2(version);
}

nvmlReturn_t nvmlSystemGetProcessName(unsigned int pid, char *name, unsigned int length) {
    if (!initialized)
        return E_UNINITIALIZED;
    char key[64];
    snprintf(key, sizeof key, "proc.%u.name", pid);
    const char *v = get(key);
    if (v == NULL)
        return E_NOT_FOUND;
    return copy_string(v, name, length);
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) {
    if (!initialized)
        return E_UNINITIALIZED;
    nvmlReturn_t injected = failure(__func__, NULL);
    if (injected != OK)
        return injected;
    *count = gpu_count;
    return OK;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
    if (!initialized)
        return E_UNINITIALIZED;
    if (index >= gpu_count)
        return E_INVALID_ARGUMENT;
    nvmlReturn_t injected = failure(__func__, &gpus[index]);
    if (injected != OK)
        return injected;
    *device = &gpus[index];
    return OK;
}

/* ---- identity ---- */

nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t dev, unsigned int *index) {
    ENTER(dev);
    return dev_uint(dev, "index", index);
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t dev, char *uuid, unsigned int length) {
    ENTER(dev);
    return dev_string(dev, "uuid", uuid, length);
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t dev, char *name, unsigned int length) {
    ENTER(dev);
    return dev_string(dev, "name", name, length);
}

nvmlReturn_t nvmlDeviceGetSerial(nvmlDevice_t dev, char *serial, unsigned int length) {
    ENTER(dev);
    return dev_string(dev, "serial", serial, length);
}

nvmlReturn_t nvmlDeviceGetVbiosVersion(nvmlDevice_t dev, char *version, unsigned int length) {
    ENTER(dev);
    return dev_string(dev, "vbios", version, length);
}

typedef struct {
    char busIdLegacy[16];
    unsigned int domain;
    unsigned int bus;
    unsigned int device;
    unsigned int pciDeviceId;
    unsigned int pciSubSystemId;
    char busId[32];
} nvmlPciInfo_t;

nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t dev, nvmlPciInfo_t *pci) {
    ENTER(dev);
    const char *id = dev_value(dev, "bus_id");
    if (id == NULL)
        return E_NOT_SUPPORTED;
    memset(pci, 0, sizeof *pci);
    snprintf(pci->busId, sizeof pci->busId, "%s", id);
    snprintf(pci->busIdLegacy, sizeof pci->busIdLegacy, "%s", id + (strlen(id) > 12 ? 4 : 0));
    unsigned dom = 0, bus = 0, d = 0, fn = 0;
    sscanf(id, "%x:%x:%x.%x", &dom, &bus, &d, &fn);
    pci->domain = dom;
    pci->bus = bus;
    pci->device = d;
    return OK;
}

nvmlReturn_t nvmlDeviceGetCudaComputeCapability(nvmlDevice_t dev, int *major, int *minor) {
    ENTER(dev);
    nvmlReturn_t r = dev_int(dev, "cc_major", major);
    return r != OK ? r : dev_int(dev, "cc_minor", minor);
}

/* ---- modes ---- */

nvmlReturn_t nvmlDeviceGetComputeMode(nvmlDevice_t dev, int *mode) {
    ENTER(dev);
    return dev_int(dev, "compute_mode", mode);
}

nvmlReturn_t nvmlDeviceGetPerformanceState(nvmlDevice_t dev, int *pstate) {
    ENTER(dev);
    return dev_int(dev, "pstate", pstate);
}

nvmlReturn_t nvmlDeviceGetPersistenceMode(nvmlDevice_t dev, int *mode) {
    ENTER(dev);
    return dev_int(dev, "persistence", mode);
}

nvmlReturn_t nvmlDeviceGetDisplayActive(nvmlDevice_t dev, int *active) {
    ENTER(dev);
    return dev_int(dev, "display_active", active);
}

nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t dev, unsigned int *current, unsigned int *pending) {
    ENTER(dev);
    nvmlReturn_t r = dev_uint(dev, "mig_current", current);
    return r != OK ? r : dev_uint(dev, "mig_pending", pending);
}

nvmlReturn_t nvmlDeviceGetEccMode(nvmlDevice_t dev, int *current, int *pending) {
    ENTER(dev);
    nvmlReturn_t r = dev_int(dev, "ecc_current", current);
    return r != OK ? r : dev_int(dev, "ecc_pending", pending);
}

/* ---- thermals ---- */

nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t dev, int sensor, unsigned int *temp) {
    ENTER(dev);
    if (sensor != 0)
        return E_INVALID_ARGUMENT;
    return dev_uint(dev, "temp_gpu", temp);
}

nvmlReturn_t nvmlDeviceGetTemperatureThreshold(nvmlDevice_t dev, int type, unsigned int *temp) {
    ENTER(dev);
    char key[32];
    snprintf(key, sizeof key, "threshold%d", type);
    return dev_uint(dev, key, temp);
}

#ifndef FAKE_OLD_DRIVER
typedef struct {
    unsigned int version;
    int marginTemperature;
} nvmlMarginTemperature_t;

nvmlReturn_t nvmlDeviceGetMarginTemperature(nvmlDevice_t dev, nvmlMarginTemperature_t *m) {
    ENTER(dev);
    if (m->version != (unsigned)(sizeof *m | (1u << 24)))
        return E_ARGUMENT_VERSION_MISMATCH;
    return dev_int(dev, "margin_temp", &m->marginTemperature);
}
#endif

typedef struct {
    unsigned int fieldId;
    unsigned int scopeId;
    long long timestamp;
    long long latencyUsec;
    int valueType;
    nvmlReturn_t nvmlReturn;
    union {
        double dVal;
        unsigned int uiVal;
        unsigned long ulVal;
        unsigned long long ullVal;
        long long sllVal;
    } value;
} nvmlFieldValue_t;

nvmlReturn_t nvmlDeviceGetFieldValues(nvmlDevice_t dev, int count, nvmlFieldValue_t *values) {
    ENTER(dev);
    if (count <= 0 || values == NULL)
        return E_INVALID_ARGUMENT;
    for (int i = 0; i < count; i++) {
        char key[32];
        snprintf(key, sizeof key, "field%u", values[i].fieldId);
        unsigned long long v;
        values[i].nvmlReturn = dev_u64(dev, key, &v);
        if (values[i].nvmlReturn == OK) {
            values[i].valueType = 3; /* NVML_VALUE_TYPE_UNSIGNED_LONG_LONG */
            values[i].value.ullVal = v;
        }
    }
    return OK;
}

/* ---- power ---- */

nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t dev, unsigned int *mw) {
    ENTER(dev);
    return dev_uint(dev, "power_usage", mw);
}

nvmlReturn_t nvmlDeviceGetPowerManagementLimit(nvmlDevice_t dev, unsigned int *mw) {
    ENTER(dev);
    return dev_uint(dev, "power_limit", mw);
}

nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t dev, unsigned int *mw) {
    ENTER(dev);
    return dev_uint(dev, "enforced_limit", mw);
}

nvmlReturn_t nvmlDeviceGetPowerManagementDefaultLimit(nvmlDevice_t dev, unsigned int *mw) {
    ENTER(dev);
    return dev_uint(dev, "default_limit", mw);
}

nvmlReturn_t nvmlDeviceGetPowerManagementLimitConstraints(nvmlDevice_t dev, unsigned int *min,
                                                          unsigned int *max) {
    ENTER(dev);
    nvmlReturn_t r = dev_uint(dev, "limit_min", min);
    return r != OK ? r : dev_uint(dev, "limit_max", max);
}

nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t dev, unsigned long long *mj) {
    ENTER(dev);
    nvmlReturn_t r = dev_u64(dev, "energy", mj);
    unsigned long long mw;
    if (r == OK && get("energy_follows_power") && dev_u64(dev, "power_usage", &mw) == OK) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        double secs = (double)(now.tv_sec - started.tv_sec) + (now.tv_nsec - started.tv_nsec) / 1e9;
        *mj += (unsigned long long)((double)mw * secs); /* mW x s = mJ */
    }
    return r;
}

/* ---- memory ---- */

typedef struct {
    unsigned long long total, free, used;
} nvmlMemory_t;

typedef struct {
    unsigned int version;
    unsigned long long total, reserved, free, used;
} nvmlMemory_v2_t;

nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t dev, nvmlMemory_t *m) {
    ENTER(dev);
    nvmlReturn_t r = dev_u64(dev, "mem_total", &m->total);
    if (r == OK)
        r = dev_u64(dev, "mem_free", &m->free);
    if (r == OK)
        r = dev_u64(dev, "mem_used", &m->used);
    return r;
}

#ifndef FAKE_OLD_DRIVER
nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t dev, nvmlMemory_v2_t *m) {
    ENTER(dev);
    if (m->version != (unsigned)(sizeof *m | (2u << 24)))
        return E_ARGUMENT_VERSION_MISMATCH;
    nvmlReturn_t r = dev_u64(dev, "mem_total", &m->total);
    if (r == OK)
        r = dev_u64(dev, "mem_reserved", &m->reserved);
    if (r == OK)
        r = dev_u64(dev, "mem_free", &m->free);
    if (r == OK)
        r = dev_u64(dev, "mem_used", &m->used);
    return r;
}
#endif

/* ---- utilization ---- */

typedef struct {
    unsigned int gpu, memory;
} nvmlUtilization_t;

nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t dev, nvmlUtilization_t *u) {
    ENTER(dev);
    nvmlReturn_t r = dev_uint(dev, "util_gpu", &u->gpu);
    return r != OK ? r : dev_uint(dev, "util_memory", &u->memory);
}

static nvmlReturn_t engine(nvmlDevice_t dev, const char *key, unsigned int *util,
                           unsigned int *period) {
    nvmlReturn_t r = dev_uint(dev, key, util);
    if (r == OK && period)
        *period = 167000;
    return r;
}

nvmlReturn_t nvmlDeviceGetEncoderUtilization(nvmlDevice_t dev, unsigned int *u, unsigned int *p) {
    ENTER(dev);
    return engine(dev, "util_encoder", u, p);
}

nvmlReturn_t nvmlDeviceGetDecoderUtilization(nvmlDevice_t dev, unsigned int *u, unsigned int *p) {
    ENTER(dev);
    return engine(dev, "util_decoder", u, p);
}

#ifndef FAKE_OLD_DRIVER
nvmlReturn_t nvmlDeviceGetJpgUtilization(nvmlDevice_t dev, unsigned int *u, unsigned int *p) {
    ENTER(dev);
    return engine(dev, "util_jpeg", u, p);
}

nvmlReturn_t nvmlDeviceGetOfaUtilization(nvmlDevice_t dev, unsigned int *u, unsigned int *p) {
    ENTER(dev);
    return engine(dev, "util_ofa", u, p);
}
#endif

nvmlReturn_t nvmlDeviceGetEncoderStats(nvmlDevice_t dev, unsigned int *sessions, unsigned int *fps,
                                       unsigned int *latency_us) {
    ENTER(dev);
    nvmlReturn_t r = dev_uint(dev, "enc_sessions", sessions);
    if (r == OK)
        r = dev_uint(dev, "enc_fps", fps);
    if (r == OK)
        r = dev_uint(dev, "enc_latency", latency_us);
    return r;
}

/* ---- clocks, fans, PCIe ---- */

nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t dev, int type, unsigned int *mhz) {
    ENTER(dev);
    char key[32];
    snprintf(key, sizeof key, "clock%d", type);
    return dev_uint(dev, key, mhz);
}

nvmlReturn_t nvmlDeviceGetMaxClockInfo(nvmlDevice_t dev, int type, unsigned int *mhz) {
    ENTER(dev);
    char key[32];
    snprintf(key, sizeof key, "max_clock%d", type);
    return dev_uint(dev, key, mhz);
}

nvmlReturn_t nvmlDeviceGetNumFans(nvmlDevice_t dev, unsigned int *n) {
    ENTER(dev);
    return dev_uint(dev, "num_fans", n);
}

nvmlReturn_t nvmlDeviceGetFanSpeed_v2(nvmlDevice_t dev, unsigned int fan, unsigned int *speed) {
    ENTER(dev);
    char key[32];
    snprintf(key, sizeof key, "fan%u", fan);
    return dev_uint(dev, key, speed);
}

nvmlReturn_t nvmlDeviceGetCurrPcieLinkGeneration(nvmlDevice_t dev, unsigned int *v) {
    ENTER(dev);
    return dev_uint(dev, "pcie_gen", v);
}

nvmlReturn_t nvmlDeviceGetMaxPcieLinkGeneration(nvmlDevice_t dev, unsigned int *v) {
    ENTER(dev);
    return dev_uint(dev, "pcie_gen_max", v);
}

nvmlReturn_t nvmlDeviceGetCurrPcieLinkWidth(nvmlDevice_t dev, unsigned int *v) {
    ENTER(dev);
    return dev_uint(dev, "pcie_width", v);
}

nvmlReturn_t nvmlDeviceGetMaxPcieLinkWidth(nvmlDevice_t dev, unsigned int *v) {
    ENTER(dev);
    return dev_uint(dev, "pcie_width_max", v);
}

/* Like the real driver, which counts bytes over a 20 ms window inside the call (measured on
 * an H200 with driver 580.159.04: 21 ms each), this one takes 20 ms. */
nvmlReturn_t nvmlDeviceGetPcieThroughput(nvmlDevice_t dev, int counter, unsigned int *kbps) {
    ENTER(dev);
    struct timespec window = {0, 20 * 1000 * 1000};
    nanosleep(&window, NULL);
    /* NVML_PCIE_UTIL_TX_BYTES = 0, NVML_PCIE_UTIL_RX_BYTES = 1 */
    return dev_uint(dev, counter == 0 ? "pcie_tx" : "pcie_rx", kbps);
}

nvmlReturn_t nvmlDeviceGetPcieReplayCounter(nvmlDevice_t dev, unsigned int *v) {
    ENTER(dev);
    return dev_uint(dev, "pcie_replay", v);
}

nvmlReturn_t nvmlDeviceGetCurrentClocksThrottleReasons(nvmlDevice_t dev, unsigned long long *m) {
    ENTER(dev);
    return dev_u64(dev, "clocks_active", m);
}

nvmlReturn_t nvmlDeviceGetSupportedClocksThrottleReasons(nvmlDevice_t dev, unsigned long long *m) {
    ENTER(dev);
    return dev_u64(dev, "clocks_supported", m);
}

nvmlReturn_t nvmlDeviceGetCurrentClocksEventReasons(nvmlDevice_t dev, unsigned long long *m) {
    ENTER(dev);
    return dev_u64(dev, "clocks_active", m);
}

nvmlReturn_t nvmlDeviceGetSupportedClocksEventReasons(nvmlDevice_t dev, unsigned long long *m) {
    ENTER(dev);
    return dev_u64(dev, "clocks_supported", m);
}

/* ---- memory health ---- */

nvmlReturn_t nvmlDeviceGetTotalEccErrors(nvmlDevice_t dev, int error_type, int counter_type,
                                         unsigned long long *count) {
    ENTER(dev);
    char key[32];
    snprintf(key, sizeof key, "ecc%d.%d", error_type, counter_type);
    return dev_u64(dev, key, count);
}

nvmlReturn_t nvmlDeviceGetRetiredPages(nvmlDevice_t dev, int cause, unsigned int *count,
                                       unsigned long long *addresses) {
    ENTER(dev);
    char key[32];
    snprintf(key, sizeof key, "retired%d", cause);
    unsigned int n;
    nvmlReturn_t r = dev_uint(dev, key, &n);
    if (r != OK)
        return r;
    if (*count < n || addresses == NULL) {
        int too_small = *count < n;
        *count = n;
        return too_small ? E_INSUFFICIENT_SIZE : OK;
    }
    for (unsigned i = 0; i < n; i++)
        addresses[i] = 0x1000ULL * (i + 1);
    *count = n;
    return OK;
}

nvmlReturn_t nvmlDeviceGetRetiredPagesPendingStatus(nvmlDevice_t dev, int *pending) {
    ENTER(dev);
    return dev_int(dev, "retired_pending", pending);
}

nvmlReturn_t nvmlDeviceGetRemappedRows(nvmlDevice_t dev, unsigned int *corr, unsigned int *unc,
                                       unsigned int *pending, unsigned int *failure_occurred) {
    ENTER(dev);
    nvmlReturn_t r = dev_uint(dev, "remap_corr", corr);
    if (r == OK)
        r = dev_uint(dev, "remap_unc", unc);
    if (r == OK)
        r = dev_uint(dev, "remap_pending", pending);
    if (r == OK)
        r = dev_uint(dev, "remap_failure", failure_occurred);
    return r;
}

/* ---- processes ---- */

typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId;
    unsigned int computeInstanceId;
} nvmlProcessInfo_t;

/* `procs=<pid>:<bytes>;<pid>:<bytes>` (bytes may be `na`: NVML_VALUE_NOT_AVAILABLE) */
nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t dev, unsigned int *count,
                                                     nvmlProcessInfo_t *infos) {
    ENTER(dev);
    const char *spec = dev_value(dev, "procs");
    unsigned int n = 0;
    nvmlProcessInfo_t found[256];
    if (spec && *spec) {
        char buf[4096];
        snprintf(buf, sizeof buf, "%s", spec);
        char *save = NULL;
        for (char *tok = strtok_r(buf, ";", &save); tok && n < 256;
             tok = strtok_r(NULL, ";", &save)) {
            char *colon = strchr(tok, ':');
            found[n].pid = (unsigned)strtoul(tok, NULL, 10);
            found[n].usedGpuMemory = (colon && strcmp(colon + 1, "na") != 0)
                                         ? strtoull(colon + 1, NULL, 10)
                                         : ~0ULL;
            found[n].gpuInstanceId = 0xFFFFFFFFu;
            found[n].computeInstanceId = 0xFFFFFFFFu;
            n++;
        }
    }
    if (infos == NULL || *count < n) {
        int too_small = *count < n;
        *count = n;
        return too_small ? E_INSUFFICIENT_SIZE : OK;
    }
    memcpy(infos, found, n * sizeof *infos);
    *count = n;
    return OK;
}

/* ---- MIG ---- */

nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t dev, unsigned int *count) {
    ENTER(dev);
    return dev_uint(dev, "mig_max", count);
}

nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t dev, unsigned int index,
                                                 nvmlDevice_t *mig) {
    ENTER(dev);
    if (dev->mig >= 0 || index >= MAX_MIGS)
        return E_INVALID_ARGUMENT;
    struct device *m = &migs[dev->gpu][index];
    if (dev_value(m, "uuid") == NULL)
        return E_NOT_FOUND;
    *mig = m;
    return OK;
}

nvmlReturn_t nvmlDeviceGetGpuInstanceId(nvmlDevice_t dev, unsigned int *id) {
    ENTER(dev);
    return dev_uint(dev, "gi", id);
}

nvmlReturn_t nvmlDeviceGetComputeInstanceId(nvmlDevice_t dev, unsigned int *id) {
    ENTER(dev);
    return dev_uint(dev, "ci", id);
}

/* ---- events ---- */

nvmlReturn_t nvmlEventSetCreate(nvmlEventSet_t *set) {
    if (!initialized)
        return E_UNINITIALIZED;
    nvmlReturn_t injected = failure(__func__, NULL);
    if (injected != OK)
        return injected;
    *set = calloc(1, sizeof **set);
    pthread_mutex_lock(&event_lock);
    the_set = *set;
    pthread_mutex_unlock(&event_lock);
    return OK;
}

nvmlReturn_t nvmlDeviceGetSupportedEventTypes(nvmlDevice_t dev, unsigned long long *types) {
    ENTER(dev);
    *types = XID_CRITICAL | 0x1ULL | 0x4ULL; /* XID, single/double bit ECC */
    return OK;
}

nvmlReturn_t nvmlDeviceRegisterEvents(nvmlDevice_t dev, unsigned long long types,
                                      nvmlEventSet_t set) {
    ENTER(dev);
    if (set == NULL)
        return E_INVALID_ARGUMENT;
    pthread_mutex_lock(&event_lock);
    set->registered[dev->gpu] |= types;
    if (types & XID_CRITICAL) {
        for (int i = 0; i < start_xid_count; i++) {
            struct start_xid *x = &start_xids[i];
            if (!x->delivered && x->gpu == (unsigned)dev->gpu)
                x->delivered = queue_xid(set, x->gpu, x->xid);
        }
    }
    pthread_mutex_unlock(&event_lock);
    return OK;
}

nvmlReturn_t nvmlEventSetWait_v2(nvmlEventSet_t set, nvmlEventData_t *data, unsigned int ms) {
    (void)ms; /* never blocks: the exporter only polls with 0 ms */
    if (!initialized)
        return E_UNINITIALIZED;
    nvmlReturn_t injected = failure(__func__, NULL);
    if (injected != OK)
        return injected;
    nvmlReturn_t r = E_TIMEOUT;
    pthread_mutex_lock(&event_lock);
    if (set->head != set->tail) {
        struct event *e = &set->queue[set->head];
        set->head = (set->head + 1) % MAX_EVENTS;
        memset(data, 0, sizeof *data);
        data->device = &gpus[e->gpu];
        data->eventType = e->type;
        data->eventData = e->data;
        data->gpuInstanceId = 0xFFFFFFFFu;
        data->computeInstanceId = 0xFFFFFFFFu;
        r = OK;
    }
    pthread_mutex_unlock(&event_lock);
    return r;
}

nvmlReturn_t nvmlEventSetFree(nvmlEventSet_t set) {
    pthread_mutex_lock(&event_lock);
    if (the_set == set)
        the_set = NULL;
    pthread_mutex_unlock(&event_lock);
    free(set);
    return OK;
}

/* Test hook: queue a critical XID event for GPU `gpu` if that GPU registered for it. Returns 1
 * if queued, 0 if nobody listens. */
int fakeNvmlInjectXid(unsigned int gpu, unsigned long long xid) {
    int queued = 0;
    pthread_mutex_lock(&event_lock);
    struct event_set *s = the_set;
    if (s && gpu < MAX_GPUS && (s->registered[gpu] & XID_CRITICAL))
        queued = queue_xid(s, gpu, xid);
    pthread_mutex_unlock(&event_lock);
    return queued;
}
