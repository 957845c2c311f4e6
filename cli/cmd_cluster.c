/* starling cluster: a whole federation on this machine, as real processes.
 *
 * One coordinator and ceil(clients / per-process) client processes, all children of this
 * one, talking over ipc:// with throwaway CURVE keys (the same secured path as a real
 * deployment). The parent follows metrics.jsonl for the progress display, forwards
 * Ctrl-C, restarts crashed clients (they rejoin), and leaves no orphan: children get
 * SIGTERM if the parent dies (PR_SET_PDEATHSIG).
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/fed.h"
#include "cli/progress.h"
#include "coordinator/report.h"
#include "core/keys.h"
#include "core/log.h"

static const char usage[] =
    "Usage: starling cluster --config FILE [options]\n\n"
    "Run a local federation: a coordinator and client processes over ipc://, secured with\n"
    "throwaway CURVE keys. Shows progress, and leaves the run folder\n"
    "<run.out_dir>/<run.name> with config.ini, metrics.jsonl, summary.json, report.html,\n"
    "checkpoints/ and logs/.\n\n"
    "  --clients N            client count (default federation.clients, else every dataset client)\n"
    "  --per-process K        virtual clients per client process (default 1)\n"
    "  --resume RUN_DIR       continue a stopped or killed run from its last checkpoint\n"
    "  --insecure             plain ipc:// without CURVE (net.insecure = true)\n"
    "  --kill-clients P       each sampled client crashes mid-round with probability P\n"
    "                         (crashed client processes are restarted and rejoin)\n"
    "  --straggler-delay S    clients wait a uniform 0..S seconds before training\n"
    "  --crash-client I:R:POINT  the process of client I exits at a fixed point of round R\n"
    "                         and is not restarted (POINT = task | unmask, see `starling\n"
    "                         client --crash-at`); repeatable, one per client process\n"
    "  --no-progress          plain log lines instead of the live bar\n\n";

#define MAX_ARGS 96

typedef struct {
    pid_t pid;
    int index;        /* first client index */
    int count;        /* virtual clients */
    int restarts;
    char crash_at[48]; /* --crash-at ROUND:POINT for this process, or "" */
} proc_t;

typedef struct {
    const char *self;
    char run_dir[2048];
    char cfg_path[2200];
    char endpoint[2200];
    int secure;
    int per_process;
    double kill_p, straggle_s;
} cluster_t;

static pid_t spawn(char *const argv[], const char *log_path)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    /* child: die with the parent; log to the run folder; stdout to the log too */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    signal(SIGINT, SIG_IGN); /* Ctrl-C reaches the parent, which stops us in order */
    FILE *f = freopen(log_path, "a", stdout);
    if (f)
        dup2(fileno(stdout), STDERR_FILENO);
    execv(argv[0], argv);
    _exit(127);
}

static pid_t start_coordinator(const cluster_t *c, int n_clients, int resume)
{
    char *argv[MAX_ARGS];
    int a = 0;
    char bind[2300], start[32], log_path[2300];
    snprintf(bind, sizeof bind, "net.bind=%s", c->endpoint);
    snprintf(start, sizeof start, "%d", n_clients);
    snprintf(log_path, sizeof log_path, "%s/logs/coordinator.log", c->run_dir);
    argv[a++] = (char *)c->self;
    argv[a++] = "coordinator";
    argv[a++] = "--config";
    argv[a++] = (char *)c->cfg_path;
    argv[a++] = "--set";
    argv[a++] = bind;
    argv[a++] = resume ? "--resume" : "--run-dir";
    argv[a++] = (char *)c->run_dir;
    argv[a++] = "--start-clients";
    argv[a++] = start;
    argv[a] = NULL;
    return spawn(argv, log_path);
}

static pid_t start_client(const cluster_t *c, const proc_t *p, int proc_no)
{
    char *argv[MAX_ARGS];
    int a = 0;
    char coord[2300], idx[32], virt[32], key[2300], log_path[2300], kill[64], straggle[64];
    char crash_at[sizeof p->crash_at];
    snprintf(coord, sizeof coord, "%s", c->endpoint);
    snprintf(idx, sizeof idx, "%d", p->index);
    snprintf(virt, sizeof virt, "%d", p->count);
    snprintf(key, sizeof key, "%s/keys/clients/client-%d", c->run_dir, proc_no);
    snprintf(log_path, sizeof log_path, "%s/logs/client-%d.log", c->run_dir, proc_no);
    argv[a++] = (char *)c->self;
    argv[a++] = "client";
    argv[a++] = "--config";
    argv[a++] = (char *)c->cfg_path;
    argv[a++] = "--coordinator";
    argv[a++] = coord;
    argv[a++] = "--client-index";
    argv[a++] = idx;
    argv[a++] = "--virtual";
    argv[a++] = virt;
    if (c->secure) {
        argv[a++] = "--key";
        argv[a++] = key;
    }
    if (c->kill_p > 0) {
        snprintf(kill, sizeof kill, "%.17g", c->kill_p);
        argv[a++] = "--kill-probability";
        argv[a++] = kill;
    }
    if (c->straggle_s > 0) {
        snprintf(straggle, sizeof straggle, "%.17g", c->straggle_s);
        argv[a++] = "--straggler-delay";
        argv[a++] = straggle;
    }
    if (p->crash_at[0]) {
        snprintf(crash_at, sizeof crash_at, "%s", p->crash_at);
        argv[a++] = "--crash-at";
        argv[a++] = crash_at;
    }
    argv[a] = NULL;
    return spawn(argv, log_path);
}

/* mkdir -p */
static int make_dirs(const char *path)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return sl_error(SL_EIO, "cannot create %s: %s", buf, strerror(errno));
            *p = '/';
        }
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return sl_error(SL_EIO, "cannot create %s: %s", buf, strerror(errno));
    return 0;
}

/* A fresh run replaces what a previous run of the same name left. */
static void clear_previous_run(const char *dir)
{
    static const char *const files[] = {"metrics.jsonl", "summary.json", "baseline.json", "report.html",
                                        "config.ini", "checkpoints/last.ckpt"};
    char path[4300];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    snprintf(path, sizeof path, "rm -rf '%s/keys' '%s/logs'", dir, dir);
    if (strchr(dir, '\'') == NULL && system(path) != 0)
        SL_WARN("could not clear %s/keys and %s/logs", dir, dir);
}

/* Throwaway keys: keys/coordinator.*, keys/clients/client-<p>.* (the allow-list folder). */
static int make_keys(const cluster_t *c, int n_procs, char *server_pub, size_t cap)
{
    char dir[2300];
    snprintf(dir, sizeof dir, "%s/keys/clients", c->run_dir);
    int rc = make_dirs(dir);
    snprintf(dir, sizeof dir, "%s/keys", c->run_dir);
    sl_keypair_t *kp = NULL;
    if (rc || (rc = sl_keypair_new(&kp)) != 0 || (rc = sl_keypair_generate(kp)) != 0 ||
        (rc = sl_keypair_save(kp, dir, "coordinator")) != 0)
        goto done;
    snprintf(server_pub, cap, "%s/keys/coordinator.pub", c->run_dir);
    snprintf(dir, sizeof dir, "%s/keys/clients", c->run_dir);
    for (int p = 0; p < n_procs && rc == 0; p++) {
        char name[32];
        snprintf(name, sizeof name, "client-%d", p);
        if ((rc = sl_keypair_generate(kp)) == 0)
            rc = sl_keypair_save(kp, dir, name);
    }
done:
    sl_keypair_destroy(&kp);
    return rc;
}

static cJSON *read_json(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return cJSON_Parse(buf);
}

static double json_number(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* Follow metrics.jsonl: feed new complete lines to the progress display. */
typedef struct {
    long offset;
    uint64_t rounds_seen;
    double bytes;
    double last_accuracy, last_loss, last_eps;
} follow_t;

static void follow_metrics(const cluster_t *c, follow_t *fw, cli_progress_t *pg, uint64_t rounds)
{
    char path[2300];
    snprintf(path, sizeof path, "%s/metrics.jsonl", c->run_dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    fseek(f, fw->offset, SEEK_SET);
    char line[8192];
    while (fgets(line, sizeof line, f)) {
        size_t len = strlen(line);
        if (len == 0 || line[len - 1] != '\n')
            break; /* partial line: read it next time */
        fw->offset += (long)len;
        cJSON *o = cJSON_Parse(line);
        if (!o)
            continue;
        double round = json_number(o, "round");
        double acc = json_number(o, "central_accuracy");
        if (!isfinite(acc))
            acc = json_number(o, "accuracy");
        double loss = json_number(o, "train_loss");
        double eps = json_number(o, "epsilon");
        double up = json_number(o, "bytes_up"), down = json_number(o, "bytes_down");
        double reported = json_number(o, "reported"), dropped = json_number(o, "dropped");
        fw->bytes += (isfinite(up) ? up : 0) + (isfinite(down) ? down : 0);
        if (isfinite(acc))
            fw->last_accuracy = acc;
        fw->last_loss = loss;
        fw->last_eps = eps;
        fw->rounds_seen = isfinite(round) ? (uint64_t)round : fw->rounds_seen + 1;
        cli_progress_field(pg, "acc", "%.4f", fw->last_accuracy);
        cli_progress_field(pg, "loss", "%.4f", loss);
        cli_progress_field(pg, "clients", "%.0f ok/%.0f dropped", reported, dropped);
        cli_progress_field(pg, "moved", "%.1f MB", fw->bytes / 1e6);
        if (isfinite(eps))
            cli_progress_field(pg, "eps", "%.3f", eps);
        cli_progress_update(pg, fw->rounds_seen, 1);
        if (!pg->tty)
            cli_progress_log(pg, "round %llu/%llu  accuracy %.4f  loss %.4f  clients %.0f ok %.0f dropped  %.1f MB%s",
                             (unsigned long long)fw->rounds_seen, (unsigned long long)rounds, fw->last_accuracy, loss,
                             reported, dropped, fw->bytes / 1e6, isfinite(eps) ? "  (eps in metrics)" : "");
        cJSON_Delete(o);
    }
    fclose(f);
}

static void print_final(const cluster_t *c, const follow_t *fw)
{
    char path[2300];
    snprintf(path, sizeof path, "%s/baseline.json", c->run_dir);
    cJSON *base = read_json(path);
    snprintf(path, sizeof path, "%s/summary.json", c->run_dir);
    cJSON *sum = read_json(path);
    const cJSON *status = sum ? cJSON_GetObjectItemCaseSensitive(sum, "status") : NULL;
    printf("\n%-34s %s\n", "status", cJSON_IsString(status) ? status->valuestring : "unknown");
    printf("%-34s %llu\n", "rounds completed", (unsigned long long)fw->rounds_seen);
    if (base)
        printf("%-34s %.2f%%\n", "accuracy, base model only", 100 * json_number(base, "accuracy"));
    if (isfinite(fw->last_accuracy))
        printf("%-34s %.2f%%\n", "accuracy, federated (held-out)", 100 * fw->last_accuracy);
    if (isfinite(fw->last_eps))
        printf("%-34s %.4f\n", "privacy spent, epsilon", fw->last_eps);
    printf("%-34s %.1f MB\n", "data moved (up + down)", fw->bytes / 1e6);
    printf("%-34s %s/\n", "results", c->run_dir);
    cJSON_Delete(base);
    cJSON_Delete(sum);
}

int cmd_cluster(int argc, char **argv)
{
    enum {
        OPT_CLIENTS = CLI_OPT_FIRST_FREE,
        OPT_PER_PROC,
        OPT_RESUME,
        OPT_INSECURE,
        OPT_KILL,
        OPT_STRAGGLE,
        OPT_CRASH,
        OPT_NO_PROGRESS
    };
    static const struct option longopts[] = {{"clients", required_argument, NULL, OPT_CLIENTS},
                                             {"per-process", required_argument, NULL, OPT_PER_PROC},
                                             {"resume", required_argument, NULL, OPT_RESUME},
                                             {"insecure", no_argument, NULL, OPT_INSECURE},
                                             {"kill-clients", required_argument, NULL, OPT_KILL},
                                             {"straggler-delay", required_argument, NULL, OPT_STRAGGLE},
                                             {"crash-client", required_argument, NULL, OPT_CRASH},
                                             {"no-progress", no_argument, NULL, OPT_NO_PROGRESS},
                                             CLI_COMMON_LONG_OPTIONS,
                                             {NULL, 0, NULL, 0}};
    cli_common_t common = {0};
    cluster_t c = {0};
    c.per_process = 1;
    long n_clients = 0;
    int insecure = 0, progress_on = 1;
    const char *resume = NULL;
    /* --crash-client I:R:POINT, checked against the client count once it is known */
    enum { MAX_CRASHES = 64 };
    long crash_client[MAX_CRASHES];
    char crash_at[MAX_CRASHES][48];
    int n_crashes = 0;
    int opt;
    opterr = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        int handled = cli_common_option(&common, opt, optarg, "cluster");
        if (handled < 0)
            return -handled;
        if (handled)
            continue;
        char *end = NULL;
        switch (opt) {
        case OPT_CLIENTS:
            n_clients = strtol(optarg, &end, 10);
            if (*end || n_clients < 1)
                return cli_usage_error("cluster", "--clients: expected a positive integer, got \"%s\"", optarg);
            break;
        case OPT_PER_PROC:
            c.per_process = (int)strtol(optarg, &end, 10);
            if (*end || c.per_process < 1)
                return cli_usage_error("cluster", "--per-process: expected a positive integer, got \"%s\"", optarg);
            break;
        case OPT_RESUME:
            resume = optarg;
            break;
        case OPT_INSECURE:
            insecure = 1;
            break;
        case OPT_KILL:
            c.kill_p = strtod(optarg, &end);
            if (*end || !(c.kill_p >= 0 && c.kill_p <= 1))
                return cli_usage_error("cluster", "--kill-clients: expected a probability in [0, 1], got \"%s\"",
                                       optarg);
            break;
        case OPT_STRAGGLE:
            c.straggle_s = strtod(optarg, &end);
            if (*end || !(c.straggle_s >= 0))
                return cli_usage_error("cluster", "--straggler-delay: expected seconds >= 0, got \"%s\"", optarg);
            break;
        case OPT_CRASH: {
            long ci = strtol(optarg, &end, 10);
            char *pt = NULL;
            long cr = end != optarg && *end == ':' ? strtol(end + 1, &pt, 10) : 0;
            /* checked here too: a client refusing it would be restarted over and over */
            if (ci < 0 || cr < 1 || !pt || *pt != ':' || (strcmp(pt + 1, "task") && strcmp(pt + 1, "unmask")))
                return cli_usage_error("cluster", "--crash-client: expected CLIENT:ROUND:POINT, got \"%s\"",
                                       optarg);
            if (n_crashes == MAX_CRASHES)
                return cli_usage_error("cluster", "--crash-client: at most %d", MAX_CRASHES);
            crash_client[n_crashes] = ci;
            snprintf(crash_at[n_crashes++], sizeof crash_at[0], "%s", end + 1);
            break;
        }
        case OPT_NO_PROGRESS:
            progress_on = 0;
            break;
        default:
            return cli_usage_error("cluster", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (common.help) {
        printf("%s%s", usage, cli_common_help);
        return CLI_EXIT_OK;
    }
    if (optind < argc)
        return cli_usage_error("cluster", "unexpected argument '%s'", argv[optind]);

    sl_config_t cfg;
    int rc = cli_load_config(&common, &cfg);
    if (rc)
        return rc;
    if (insecure)
        cfg.net.insecure = 1;
    c.secure = !cfg.net.insecure;
    static char self[4096];
    ssize_t sn = readlink("/proc/self/exe", self, sizeof self - 1);
    if (sn <= 0)
        return cli_fail("cluster", sl_error(SL_EIO, "cannot find this executable (/proc/self/exe)"));
    self[sn] = '\0';
    c.self = self;

    /* The run folder, absolute (children may resolve paths differently). */
    char rel[4096], cwd[2048];
    if (resume)
        snprintf(rel, sizeof rel, "%s", resume);
    else
        snprintf(rel, sizeof rel, "%s/%s", cfg.run.out_dir, cfg.run.name);
    if (rel[0] == '/' || !getcwd(cwd, sizeof cwd))
        snprintf(c.run_dir, sizeof c.run_dir, "%s", rel);
    else
        snprintf(c.run_dir, sizeof c.run_dir, "%s/%s", cwd, rel);
    if (!resume) {
        clear_previous_run(c.run_dir);
    } else {
        char ck[2300];
        snprintf(ck, sizeof ck, "%s/checkpoints/last.ckpt", c.run_dir);
        if (access(ck, R_OK) != 0)
            return cli_fail("cluster", sl_error(SL_ENOTFOUND, "--resume %s: no checkpoint at %s", resume, ck));
    }
    char logs[2300];
    snprintf(logs, sizeof logs, "%s/logs", c.run_dir);
    if ((rc = make_dirs(logs)) != 0)
        return cli_fail("cluster", rc);

    /* How many clients: --clients, federation.clients, else every dataset client. */
    if (n_clients == 0)
        n_clients = (long)cfg.federation.clients;
    if (n_clients == 0) {
        sl_dataset_t *ds = NULL;
        if ((rc = sl_dataset_open(&ds, &cfg)) != 0)
            return cli_fail("cluster", rc);
        n_clients = (long)sl_dataset_num_clients(ds);
        sl_dataset_destroy(&ds);
    }
    int n_procs = (int)((n_clients + c.per_process - 1) / c.per_process);
    for (int i = 0; i < n_crashes; i++) {
        if (crash_client[i] >= n_clients)
            return cli_usage_error("cluster", "--crash-client %ld:%s: there are %ld clients", crash_client[i],
                                   crash_at[i], n_clients);
        for (int j = 0; j < i; j++)
            if (crash_client[j] / c.per_process == crash_client[i] / c.per_process)
                return cli_usage_error("cluster",
                                       "--crash-client: clients %ld and %ld share a process (--per-process %d)",
                                       crash_client[j], crash_client[i], c.per_process);
    }

    /* ipc:// paths are limited to ~107 bytes: fall back to /tmp for deep run folders. */
    if (strlen(c.run_dir) + 16 < 100)
        snprintf(c.endpoint, sizeof c.endpoint, "ipc://%s/coord.sock", c.run_dir);
    else
        snprintf(c.endpoint, sizeof c.endpoint, "ipc:///tmp/starling-%ld.sock", (long)getpid());

    /* Keys (fresh per run, also on resume: the run's state does not depend on them). */
    if (c.secure) {
        char keys[2300];
        snprintf(keys, sizeof keys, "rm -rf '%s/keys'", c.run_dir);
        if (resume && strchr(c.run_dir, '\'') == NULL && system(keys) != 0)
            SL_WARN("could not remove old keys");
        char server_pub[2300];
        if ((rc = make_keys(&c, n_procs, server_pub, sizeof server_pub)) != 0)
            return cli_fail("cluster", rc);
        snprintf(keys, sizeof keys, "%s/keys", c.run_dir);
        snprintf(cfg.net.keys_dir, sizeof cfg.net.keys_dir, "%s", keys);
        snprintf(keys, sizeof keys, "%s/keys/clients", c.run_dir);
        snprintf(cfg.net.authorized_clients, sizeof cfg.net.authorized_clients, "%s", keys);
        snprintf(cfg.net.server_public_key, sizeof cfg.net.server_public_key, "%s", server_pub);
    }
    /* --log-level / --quiet reach the children through the configuration they read. */
    if (common.log_level_given)
        snprintf(cfg.run.log_level, sizeof cfg.run.log_level, "%s", sl_log_level_name(sl_log_get_level()));
    /* train.threads = 0 means every core for one process; n_procs processes each taking
     * every core would oversubscribe them (BLAS threads spinning against each other). */
    if (cfg.train.threads == 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        cfg.train.threads = cores > n_procs ? cores / n_procs : 1;
    }
    /* Every child reads exactly this effective configuration. */
    snprintf(c.cfg_path, sizeof c.cfg_path, "%s/cluster.ini", c.run_dir);
    FILE *cf = fopen(c.cfg_path, "w");
    if (!cf || sl_config_write(&cfg, cf) != 0) {
        if (cf)
            fclose(cf);
        return cli_fail("cluster", sl_error(SL_EIO, "cannot write %s", c.cfg_path));
    }
    fclose(cf);

    cli_fed_signals();
    proc_t *procs = calloc((size_t)n_procs, sizeof *procs);
    if (!procs)
        return cli_fail("cluster", sl_error(SL_ENOMEM, "out of memory"));
    fprintf(stderr, "starling cluster: %ld clients in %d processes, %s, run folder %s\n", n_clients, n_procs,
            c.secure ? "CURVE-encrypted ipc" : "plain ipc (insecure)", c.run_dir);
    pid_t coord = start_coordinator(&c, (int)n_clients, resume != NULL);
    for (int p = 0; p < n_procs; p++) {
        procs[p].index = p * c.per_process;
        procs[p].count = (int)((p + 1) * c.per_process <= n_clients ? c.per_process : n_clients - p * c.per_process);
        for (int i = 0; i < n_crashes; i++)
            if (crash_client[i] / c.per_process == p)
                snprintf(procs[p].crash_at, sizeof procs[p].crash_at, "%s", crash_at[i]);
        procs[p].pid = start_client(&c, &procs[p], p);
    }

    cli_progress_t pg;
    cli_progress_init(&pg, progress_on && sl_log_get_level() <= SL_LOG_INFO);
    cli_progress_begin(&pg, "round", (uint64_t)cfg.federation.rounds);
    follow_t fw = {0};
    fw.last_accuracy = NAN;
    fw.last_eps = NAN;
    int coord_status = -1, stopping = 0;
    double stop_deadline = 0;
    while (coord_status < 0) {
        struct timespec ts = {0, 200 * 1000 * 1000};
        nanosleep(&ts, NULL);
        follow_metrics(&c, &fw, &pg, (uint64_t)cfg.federation.rounds);
        if (cli_fed_stop && !stopping) {
            stopping = 1;
            stop_deadline = cli_now() + 15;
            cli_progress_log(&pg, "stopping: asking the coordinator to end the run");
            kill(coord, SIGTERM);
        }
        if (stopping && cli_now() > stop_deadline)
            kill(coord, SIGKILL);
        int st;
        pid_t pid;
        while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
            if (pid == coord) {
                coord_status = st;
                continue;
            }
            for (int p = 0; p < n_procs; p++) {
                if (procs[p].pid != pid)
                    continue;
                procs[p].pid = 0;
                int crashed = !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
                if (WIFEXITED(st) && WEXITSTATUS(st) == CLI_EXIT_PLANNED_CRASH) {
                    cli_progress_log(&pg, "client process %d ended by a planned crash (--crash-client); "
                                          "the federation goes on without it", p);
                    continue;
                }
                if (crashed && !stopping) {
                    procs[p].restarts++;
                    cli_progress_log(&pg, "client process %d %s; restarting it (it rejoins)", p,
                                     WIFSIGNALED(st) ? "was killed" : "crashed");
                    procs[p].pid = start_client(&c, &procs[p], p);
                }
            }
        }
    }
    follow_metrics(&c, &fw, &pg, (uint64_t)cfg.federation.rounds);
    cli_progress_end(&pg);

    /* The coordinator sent BYE; give clients a moment, then make sure none is left. */
    double deadline = cli_now() + 10;
    for (;;) {
        int alive = 0;
        for (int p = 0; p < n_procs; p++) {
            if (procs[p].pid && waitpid(procs[p].pid, NULL, WNOHANG) == procs[p].pid)
                procs[p].pid = 0;
            alive += procs[p].pid != 0;
        }
        if (!alive)
            break;
        if (cli_now() > deadline) {
            for (int p = 0; p < n_procs; p++)
                if (procs[p].pid)
                    kill(procs[p].pid, SIGKILL);
        }
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    free(procs);

    int ok = WIFEXITED(coord_status) && WEXITSTATUS(coord_status) == 0;
    if (sl_report_write(c.run_dir, NULL) != 0)
        SL_WARN("report: %s", sl_last_error());
    print_final(&c, &fw);
    if (!ok) {
        fprintf(stderr, "starling cluster: the coordinator %s; see %s/logs/coordinator.log\n",
                WIFSIGNALED(coord_status) ? "was killed" : "failed", c.run_dir);
        return stopping ? 130 : CLI_EXIT_FAIL;
    }
    return stopping ? 130 : CLI_EXIT_OK;
}
