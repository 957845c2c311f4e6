/* starling client: one federated client (or --virtual N of them in one process). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/fed.h"
#include "client/dp.h"
#include "client/secagg.h"
#include "client/runtime.h"
#include "client/trainer.h"
#include "core/log.h"
#include "core/rng.h"
#include "privacy/secagg/wire.h"

static const char usage[] =
    "Usage: starling client --config FILE --client-index I [options]\n\n"
    "Join a federation as dataset client I (wire id I+1): register, train locally on each\n"
    "task, reply with the update; reconnect with backoff if the coordinator goes away.\n\n"
    "  --coordinator EP       coordinator endpoint (as net.coordinator), e.g. tcp://host:7700\n"
    "  --client-index I       dataset client index, 0-based\n"
    "  --virtual N            run clients I .. I+N-1 in this process (sharing the base model)\n"
    "  --key PREFIX           CURVE key pair DIR/NAME (default <net.keys_dir>/client)\n"
    "  --data NAME            dataset (as data.name)\n"
    "  --data-opt K=V         dataset option (repeatable)\n"
    "Fault injection (experiments):\n"
    "  --kill-probability P   crash (exit) on receiving a task with probability P\n"
    "  --straggler-delay S    wait a uniform 0..S seconds before training each task\n"
    "  --crash-at R:POINT     exit (code 4, not restarted by `starling cluster`) in round R:\n"
    "                         POINT = task: on receiving the round's task, before training\n"
    "                         (no update); unmask: after its upload (with SecAgg on receiving\n"
    "                         the unmasking request, else on the next task)\n\n";

/* Where a planned crash (--crash-at) happens. Both points are defined so that a run with
 * and one without SecAgg agree on whether the dying client's update counts in round R:
 * `task` leaves it out of both, `unmask` keeps it in both (SecAgg rebuilds its masks from
 * the others' shares; the plain coordinator already has its update). */
typedef enum { CRASH_NONE = 0, CRASH_TASK, CRASH_UNMASK } crash_point_t;

typedef struct {
    uint64_t seed;
    double kill_p;
    double straggle_s;
    uint64_t crash_round;
    crash_point_t crash_point;
} faults_t;

static const faults_t *fault_plan; /* for the SecAgg hook, whose ctx is the trainer */

static int parse_crash_at(const char *s, faults_t *f)
{
    char *end;
    unsigned long long r = strtoull(s, &end, 10);
    if (end == s || *end != ':' || r < 1 || s[0] == '-')
        return -1;
    if (!strcmp(end + 1, "task"))
        f->crash_point = CRASH_TASK;
    else if (!strcmp(end + 1, "unmask"))
        f->crash_point = CRASH_UNMASK;
    else
        return -1;
    f->crash_round = (uint64_t)r;
    return 0;
}

static void planned_crash(uint64_t client_id, uint64_t round, const char *where)
{
    SL_WARN("client %llu: planned crash in round %llu %s", (unsigned long long)client_id,
            (unsigned long long)round, where);
    _exit(CLI_EXIT_PLANNED_CRASH); /* a crash: no BYE, no cleanup */
}

/* Crash or delay per task, from a seeded stream so experiments are reproducible. */
static int fault_hook(void *ctx, const sl_client_task_t *task)
{
    const faults_t *f = ctx;
    /* ">=": a client not sampled in round R dies at its first task after R */
    if (f->crash_point == CRASH_TASK && task->round >= f->crash_round)
        planned_crash(task->client_id, task->round, "on receiving its task");
    if (f->crash_point == CRASH_UNMASK && task->round > f->crash_round)
        planned_crash(task->client_id, task->round, "on its first task after uploading in the crash round");
    sl_rng_t r;
    sl_rng_init(&r, f->seed, "fault", task->round, task->client_id);
    if (f->kill_p > 0 && sl_rng_uniform(&r) < f->kill_p) {
        SL_WARN("client %llu: injected crash in round %llu", (unsigned long long)task->client_id,
                (unsigned long long)task->round);
        _exit(3); /* a crash: no BYE, no cleanup */
    }
    if (f->straggle_s > 0) {
        double s = sl_rng_uniform(&r) * f->straggle_s;
        struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
        nanosleep(&ts, NULL);
    }
    return 0;
}

/* DP privatize hook (client/dp.h): clip + noise per the TASK's dp fields; a no-op when the
 * task has dp_mode off or central. The callbacks' ctx is the trainer, so the config the
 * noise source needs is kept here (one per process, shared by the virtual clients). */
static const sl_config_t *dp_cfg;

static int dp_privatize(void *ctx, const sl_client_task_t *task, float *delta, size_t dim)
{
    (void)ctx;
    return sl_dp_client_apply(dp_cfg, task, delta, dim, NULL);
}

/* SecAgg+ hooks (client/secagg.h), when secagg.enabled: the callbacks' ctx is the trainer,
 * so each virtual client's SecAgg state is found by its sl_client_t. */
static sl_client_t **sa_clients;
static sl_client_secagg_t **sa_states;
static size_t sa_n;

static sl_client_secagg_t *sa_of(const sl_client_t *c)
{
    for (size_t i = 0; i < sa_n; i++)
        if (sa_clients[i] == c)
            return sa_states[i];
    return NULL;
}

static int sa_masked(void *ctx, sl_client_t *c, const sl_client_task_t *task, const float *delta, size_t dim)
{
    (void)ctx;
    sl_client_secagg_t *cs = sa_of(c);
    if (!cs)
        return sl_error(SL_ESTATE, "secagg: no state for this client");
    return sl_client_secagg_masked(cs, c, task, delta, dim);
}

static int sa_message(void *ctx, sl_client_t *c, uint64_t round, uint32_t stage, const uint8_t *blob, size_t len)
{
    (void)ctx;
    sl_client_secagg_t *cs = sa_of(c);
    if (!cs)
        return sl_error(SL_ESTATE, "secagg: no state for this client");
    /* the stage of a SECAGG_DOWN is the SecAgg message type; by the unmasking request the
     * server has this client's masked input */
    if (fault_plan && fault_plan->crash_point == CRASH_UNMASK && round == fault_plan->crash_round &&
        stage == SL_SECAGG_MSG_UNMASK_REQ)
        planned_crash(sl_client_id(c), round, "at the SecAgg unmasking request");
    return sl_client_secagg_on_message(cs, c, round, stage, blob, len);
}

static int parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (*end || end == s || !(v >= lo && v <= hi))
        return -1;
    *out = v;
    return 0;
}

int cmd_client(int argc, char **argv)
{
    enum {
        OPT_COORD = CLI_OPT_FIRST_FREE,
        OPT_INDEX,
        OPT_VIRTUAL,
        OPT_KEY,
        OPT_KILL,
        OPT_STRAGGLE,
        OPT_CRASH_AT
    };
    static const struct option longopts[] = {{"coordinator", required_argument, NULL, OPT_COORD},
                                             {"client-index", required_argument, NULL, OPT_INDEX},
                                             {"virtual", required_argument, NULL, OPT_VIRTUAL},
                                             {"key", required_argument, NULL, OPT_KEY},
                                             CLI_DATA_LONG_OPTIONS,
                                             {"kill-probability", required_argument, NULL, OPT_KILL},
                                             {"straggler-delay", required_argument, NULL, OPT_STRAGGLE},
                                             {"crash-at", required_argument, NULL, OPT_CRASH_AT},
                                             CLI_COMMON_LONG_OPTIONS,
                                             {NULL, 0, NULL, 0}};
    cli_common_t common = {0};
    const char *coord = NULL, *key = NULL;
    double index = -1, virt = 1;
    faults_t faults = {0};
    int opt;
    opterr = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        int handled = cli_common_option(&common, opt, optarg, "client");
        if (handled < 0)
            return -handled;
        if (handled)
            continue;
        switch (opt) {
        case OPT_COORD:
            coord = optarg;
            break;
        case OPT_KEY:
            key = optarg;
            break;
        case OPT_INDEX:
            if (parse_double(optarg, 0, 1e9, &index) || index != (double)(long)index)
                return cli_usage_error("client", "--client-index: expected an integer >= 0, got \"%s\"", optarg);
            break;
        case OPT_VIRTUAL:
            if (parse_double(optarg, 1, 1e6, &virt) || virt != (double)(long)virt)
                return cli_usage_error("client", "--virtual: expected an integer >= 1, got \"%s\"", optarg);
            break;
        case OPT_KILL:
            if (parse_double(optarg, 0, 1, &faults.kill_p))
                return cli_usage_error("client", "--kill-probability: expected a number in [0, 1], got \"%s\"",
                                       optarg);
            break;
        case OPT_STRAGGLE:
            if (parse_double(optarg, 0, 86400, &faults.straggle_s))
                return cli_usage_error("client", "--straggler-delay: expected seconds >= 0, got \"%s\"", optarg);
            break;
        case OPT_CRASH_AT:
            if (parse_crash_at(optarg, &faults))
                return cli_usage_error("client",
                                       "--crash-at: expected ROUND:task or ROUND:unmask (ROUND >= 1), got \"%s\"",
                                       optarg);
            break;
        default:
            return cli_usage_error("client", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (common.help) {
        printf("%s%s", usage, cli_common_help);
        return CLI_EXIT_OK;
    }
    if (optind < argc)
        return cli_usage_error("client", "unexpected argument '%s'", argv[optind]);
    if (index < 0)
        return cli_usage_error("client", "--client-index I is required");

    sl_config_t cfg;
    int rc = cli_load_config(&common, &cfg);
    if (rc)
        return rc;
    if (coord)
        snprintf(cfg.net.coordinator, sizeof cfg.net.coordinator, "%s", coord);
    char tag[32];
    snprintf(tag, sizeof tag, "client-%ld", (long)index);
    sl_log_set_tag(tag);
    cli_fed_signals();
    faults.seed = (uint64_t)cfg.run.seed;
    fault_plan = &faults;
    dp_cfg = &cfg;

    size_t first = (size_t)index, n = (size_t)virt;
    sl_dataset_t *ds = NULL;
    sl_model_t *base = NULL;
    sl_client_trainer_t **trainers = NULL;
    sl_client_t **clients = NULL;
    sl_keypair_t *kp = NULL;
    if ((rc = sl_dataset_open(&ds, &cfg)) != 0 || (rc = cli_fed_model(&cfg, ds, &base)) != 0)
        goto cleanup;
    if (first + n > sl_dataset_num_clients(ds)) {
        rc = sl_error(SL_EINVAL, "clients %zu..%zu: dataset %s has %zu clients", first, first + n - 1,
                      cfg.data.name, sl_dataset_num_clients(ds));
        goto cleanup;
    }
    trainers = calloc(n, sizeof *trainers);
    clients = calloc(n, sizeof *clients);
    if (cfg.secagg.enabled) {
        sa_states = calloc(n, sizeof *sa_states);
        sa_clients = clients;
        sa_n = n;
        for (size_t i = 0; sa_states && i < n; i++)
            if ((rc = sl_client_secagg_new(&sa_states[i], &cfg)) != 0)
                goto cleanup;
    }
    if (!trainers || !clients || (cfg.secagg.enabled && !sa_states)) {
        rc = sl_error(SL_ENOMEM, "out of memory");
        goto cleanup;
    }
    for (size_t i = 0; i < n; i++) {
        if ((rc = sl_client_trainer_new(&trainers[i], base, &cfg, ds, first + i)) != 0)
            goto cleanup;
        if (faults.kill_p > 0 || faults.straggle_s > 0 || faults.crash_point != CRASH_NONE)
            sl_client_trainer_set_task_hook(trainers[i], fault_hook, &faults);
        sl_client_opts_t co = {0};
        sl_client_trainer_bind(trainers[i], &co);
        co.privatize = dp_privatize;
        if (cfg.secagg.enabled) {
            co.masked = sa_masked;
            co.secagg = sa_message;
        }
        co.heartbeat_s = (double)cfg.net.heartbeat_ms / 1000.0;
        if ((rc = sl_client_new(&clients[i], &co)) != 0)
            goto cleanup;
    }

    sl_client_runtime_opts_t ro = {0};
    ro.transport.role = SL_TRANSPORT_CLIENT;
    ro.transport.endpoint = cfg.net.coordinator;
    ro.transport.max_message_bytes = (size_t)cfg.net.max_message_bytes;
    ro.transport.heartbeat_ms = (int)cfg.net.heartbeat_ms;
    ro.stop = &cli_fed_stop;
    /* A key problem (key not allow-listed, wrong net.server_public_key) does not heal by
     * retrying: after a minute of nothing but failed handshakes, exit with the diagnosis
     * rather than loop for ever. A minute, not a few attempts, because the coordinator
     * answers "400" also to a key in a ban cool-down and to any key while it is at its
     * connection cap, which do heal; the shipped systemd unit restarts the client anyway. */
    ro.handshake_give_up = 60.0;
    if ((rc = sl_keypair_new(&kp)) != 0 || (rc = cli_fed_security(&cfg, &ro.transport, kp, key, "client")) != 0)
        goto cleanup;
    SL_INFO("%zu client(s) %zu..%zu connecting to %s", n, first, first + n - 1, cfg.net.coordinator);
    rc = sl_client_run(clients, n, &ro);
    if (rc == 0)
        SL_INFO("done: %s", sl_client_status(clients[0]));

cleanup:
    if (rc && rc != SL_EINTR)
        fprintf(stderr, "starling client: %s\n", sl_last_error()[0] ? sl_last_error() : sl_strerror(rc));
    for (size_t i = 0; clients && i < n; i++)
        sl_client_destroy(&clients[i]);
    for (size_t i = 0; trainers && i < n; i++)
        sl_client_trainer_destroy(&trainers[i]);
    for (size_t i = 0; sa_states && i < n; i++)
        sl_client_secagg_destroy(&sa_states[i]);
    free(sa_states);
    fault_plan = NULL;
    sa_states = NULL;
    sa_clients = NULL;
    sa_n = 0;
    free(clients);
    free(trainers);
    sl_keypair_destroy(&kp);
    sl_model_destroy(&base);
    sl_dataset_destroy(&ds);
    if (rc == SL_EINTR)
        return 130;
    return rc ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}
