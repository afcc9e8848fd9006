using System.Diagnostics;
using System.Net.Http;
using System.Security.Cryptography;
using StackExchange.Redis;

namespace Cfn.Chaos;

/// <summary>
/// One chaos run, start to verdict: a private redis-server with AOF; a swarm manager, two timeout handlers, validators
/// and coordinators (in <see cref="ChaosOptions.Swarms"/> swarms; they are also the hosts of replacements) as separate
/// <c>cfn serve</c> processes; the generator and the fault injector for <see cref="ChaosOptions.Duration"/>, with the
/// ownership sampler all along; then the drain, the checks, and a graceful stop of everything.
/// </summary>
public static class ChaosRunner
{
    public static async Task<ChaosReport> RunAsync(ChaosOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (!File.Exists(options.CfnDll))
        {
            throw new FileNotFoundException($"cfn.dll not found at {options.CfnDll} (build first: dotnet build cfn.slnx -c Release)");
        }

        var logs = Path.Combine(options.WorkDirectory, "logs");
        Directory.CreateDirectory(logs);
        var report = new ChaosReport { LogDirectory = logs };
        var clock = Stopwatch.StartNew();
        var cpuBefore = ChildrenCpuSeconds();
        var random = new Random(options.Seed);
        await using var redis = await RedisServer.StartAsync(Path.Combine(options.WorkDirectory, "redis"));
        var swarms = Enumerable.Range(0, options.Swarms).Select(i => $"swarm-{(char)('a' + i)}").ToList();
        report.Settings["seconds"] = options.Duration.TotalSeconds;
        report.Settings["seed"] = options.Seed;
        report.Settings["rate"] = options.Rate;
        report.Settings["coordinators"] = $"{options.Coordinators} in {options.Swarms} swarms";
        report.Settings["validators"] = options.Validators;
        report.Settings["deathMs"] = options.DeathMs;
        report.Settings["blockingTimeoutMs"] = options.BlockingTimeoutMs;
        report.Settings["redis"] = redis.Endpoint;
        options.Log($"chaos: redis-server {redis.Endpoint} (AOF always), seed {options.Seed}, logs in {logs}");

        var common = CommonEnvironment(options, redis.Port);
        var processes = new List<ManagedProcess>();
        ManagedProcess Add(string name, string role, Dictionary<string, string> extra)
        {
            var environment = new Dictionary<string, string>(common, StringComparer.Ordinal);
            var port = RedisServer.FreePort();
            environment["HTTP_PORT"] = port.ToString();
            foreach (var (key, value) in extra)
            {
                environment[key] = value;
            }

            var process = new ManagedProcess(name, role, port, environment, options.CfnDll, logs);
            processes.Add(process);
            return process;
        }

        var manager = Add("swarm-manager", "swarm-manager", []);
        var heldHandler = Add("timeout-handler-0", "timeout-handler", []);
        var knobHandler = Add("timeout-handler-1", "timeout-handler", new() { ["ESCALATION_STEP_DELAY_MS"] = options.EscalationStepDelayMs.ToString() });
        var validators = Enumerable.Range(0, options.Validators).Select(i => Add($"validator-{i}", "validator", new() { ["COORDINATOR_ID"] = $"validator-{i}" })).ToList();
        var coordinators = Enumerable.Range(0, options.Coordinators)
            .Select(i => Add($"coordinator-{i}", "coordinator", new() { ["COORDINATOR_ID"] = $"coordinator-{i}", ["SWARM_ID"] = swarms[i % swarms.Count] }))
            .ToList();

        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        var ledger = new Ledger();
        FaultInjector? injector = null;
        OwnershipSampler? sampler = null;
        var checker = new Checker(options, processes, report);
        try
        {
            await StartAllAsync([manager, heldHandler, knobHandler, .. validators], http, options);
            await StartAllAsync(coordinators, http, options);
            options.Log($"chaos: {processes.Count} processes ready after {clock.Elapsed.TotalSeconds:0.0} s");

            using var connection = await ConnectionMultiplexer.ConnectAsync(
                $"{redis.Endpoint},abortConnect=false,connectTimeout=2000,syncTimeout=5000,asyncTimeout=5000,connectRetry=5");
            sampler = new OwnershipSampler(connection, options.StaleThresholdMs);
            injector = new FaultInjector(options, coordinators, validators, heldHandler, knobHandler, redis, random);
            manager.UnexpectedExit = (p, run) =>
            {
                injector.UnexpectedExits.Enqueue(run);
                if (!p.Finishing)
                {
                    p.Start();
                }
            };

            using var samplerStop = new CancellationTokenSource();
            var sampling = Task.Run(() => sampler.RunAsync(samplerStop.Token));
            using (var chaos = new CancellationTokenSource(options.Duration))
            {
                var generating = Task.Run(() => ledger.RunAsync(http, manager.HttpPort, swarms, options.Rate, chaos.Token));
                var faulting = Task.Run(() => injector.RunAsync(chaos.Token));
                await Task.WhenAll(generating, faulting);
            }

            options.Log($"chaos: generator stopped after {ledger.Entries.Count} items, {injector.Faults.Count} faults; quiescing");
            var quiesced = Stopwatch.StartNew();
            await injector.QuiesceAsync();
            await DrainAsync(connection, ledger, options, quiesced);
            await samplerStop.CancelAsync();
            await sampling;
            await checker.CaptureAsync(connection);
        }
        finally
        {
            // Coordinators first (their loops give items back), then the rest; in parallel, each with a grace period.
            await Task.WhenAll(coordinators.Select(p => p.StopAsync(TimeSpan.FromSeconds(12))));
            await Task.WhenAll(processes.Except(coordinators).Select(p => p.StopAsync(TimeSpan.FromSeconds(12))));
        }

        checker.Judge(ledger.Entries, injector!, sampler!, injector!.Faults);
        foreach (var group in injector.Faults.GroupBy(f => f.Kind))
        {
            report.FaultsByKind[group.Key] = group.Count();
        }

        foreach (var _ in injector.NotInjected)
        {
            report.FaultsByKind["not_injected:sigkill_timeout-handler_mid_escalation"] =
                report.FaultsByKind.GetValueOrDefault("not_injected:sigkill_timeout-handler_mid_escalation") + 1;
        }

        report.Figure("restarts by the runner (same ID, new instance)", processes.Sum(p => Math.Max(0, p.Runs.Count - 1)));
        report.Figure("processes left dead on purpose", string.Join(',', processes.Where(p => p.Retired).Select(p => p.Name)) is { Length: > 0 } r ? r : "none");
        report.Figure("run time (s)", Math.Round(clock.Elapsed.TotalSeconds, 1));
        var cpu = ChildrenCpuSeconds() - cpuBefore;
        report.Figure("CPU of every process and redis-server (s)", Math.Round(cpu, 1));
        report.Figure("average cores used", Math.Round(cpu / clock.Elapsed.TotalSeconds, 2));
        return report;
    }

    /// <summary>CPU seconds of every child process that has ended and been waited for (cutime + cstime of /proc/self/stat).</summary>
    private static double ChildrenCpuSeconds()
    {
        try
        {
            var stat = File.ReadAllText("/proc/self/stat");
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            // After the command: state is field 3, so cutime (16) and cstime (17) are at 13 and 14 here.
            return (long.Parse(fields[13], System.Globalization.CultureInfo.InvariantCulture) + long.Parse(fields[14], System.Globalization.CultureInfo.InvariantCulture)) / 100.0;
        }
        catch (Exception e) when (e is IOException or FormatException or IndexOutOfRangeException or UnauthorizedAccessException)
        {
            return 0;
        }
    }

    private static Dictionary<string, string> CommonEnvironment(ChaosOptions options, int redisPort)
    {
        var environment = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["REDIS_HOST"] = "127.0.0.1",
            ["REDIS_PORT"] = redisPort.ToString(),
            ["REDIS_POOL_SIZE"] = "2",
            ["BLOCKING_COORDINATION_SECRET"] = Convert.ToHexString(RandomNumberGenerator.GetBytes(24)),
            ["LOG_FORMAT"] = "text",
            ["HEARTBEAT_INTERVAL_MS"] = options.HeartbeatIntervalMs.ToString(),
            ["HEARTBEAT_TTL_SECONDS"] = "30",
            ["HEARTBEAT_STALE_THRESHOLD_MS"] = options.StaleThresholdMs.ToString(),
            ["HEARTBEAT_MONITOR_INTERVAL_MS"] = options.MonitorIntervalMs.ToString(),
            ["HEARTBEAT_MAX_WARNINGS"] = options.MaxWarnings.ToString(),
            ["BLOCKING_TIMEOUT_MS"] = options.BlockingTimeoutMs.ToString(),
            ["ACK_POLL_INTERVAL_MS"] = "500",
            ["ACTIVITY_CHECK_INTERVAL_MS"] = "2000",
            ["CLEANUP_INTERVAL_MS"] = "10000",
            ["CLEANUP_STALE_THRESHOLD_SECONDS"] = "15",
            ["SPAWN_TIMEOUT_MS"] = options.SpawnTimeoutMs.ToString(),
            // Time is compressed here as everywhere else: a dead handler's escalation is resumed after the lease, which
            // must outlast one step (the knob handler sleeps EscalationStepDelayMs after each).
            ["ESCALATION_LEASE_MS"] = (options.EscalationStepDelayMs + 1500).ToString(),
            ["SWARM_MANAGER_INTERVAL_MS"] = "500",
            ["VALIDATION_DURATION_MEDIAN_MS"] = options.ValidationMedianMs.ToString(),
            ["VALIDATION_DURATION_P95_MS"] = options.ValidationP95Ms.ToString(),
            ["VALIDATION_FAILURE_RATE"] = "0.05",
            ["VALIDATOR_REGISTRATION_INTERVAL_MS"] = "500",
            ["VALIDATOR_STALE_THRESHOLD_MS"] = "2000",
            ["VALIDATORS_PER_ITEM"] = "2",
            ["EXTERNAL_CALL_RATE"] = "0",
        };
        foreach (var (key, value) in options.ExtraEnvironment)
        {
            environment[key] = value;
        }

        return environment;
    }

    private static async Task StartAllAsync(IReadOnlyList<ManagedProcess> processes, HttpClient http, ChaosOptions options)
    {
        foreach (var process in processes)
        {
            process.Start();
        }

        var ready = await Task.WhenAll(processes.Select(p => p.WaitReadyAsync(http, TimeSpan.FromSeconds(90))));
        var notReady = processes.Where((_, i) => !ready[i]).ToList();
        if (notReady.Count > 0)
        {
            var tails = notReady.Select(p => $"{p.Name}:\n  " + string.Join("\n  ", p.Runs.SelectMany(LogFiles.Read).TakeLast(10).Select(l => l.Message)));
            throw new InvalidOperationException($"not ready within 90 s: {string.Join(", ", notReady)}\n{string.Join('\n', tails)}");
        }

        options.Log($"chaos: ready {string.Join(", ", processes.Select(p => $"{p.Name}(:{p.HttpPort})"))}");
    }

    /// <summary>
    /// Waits until every accepted item has a completed K10 record and the queues are empty, and at least the death time
    /// plus 3 s after the faults ended (so a process left dead is declared dead and escalated before the checks). While
    /// items keep completing the drain goes on, up to three times <see cref="ChaosOptions.DrainTimeout"/>; it ends early
    /// when nothing completed for the last <see cref="ChaosOptions.DrainTimeout"/> / 2 (what is left then is stuck, not slow).
    /// </summary>
    private static async Task DrainAsync(IConnectionMultiplexer redis, Ledger ledger, ChaosOptions options, Stopwatch sinceQuiesce)
    {
        var accepted = ledger.Entries.Where(e => e.Accepted).Select(e => e.WorkId).ToHashSet(StringComparer.Ordinal);
        var settle = TimeSpan.FromMilliseconds(options.DeathMs + 3000);
        var stall = options.DrainTimeout / 2;
        var lastLog = TimeSpan.Zero;
        var lastDone = -1;
        var lastProgress = TimeSpan.Zero;
        while (true)
        {
            var (done, queued, open, escalating) = await ProgressAsync(redis, accepted);
            if (done > lastDone)
            {
                lastDone = done;
                lastProgress = sinceQuiesce.Elapsed;
            }

            // Escalations still running count as not drained: a dead coordinator's state goes in its last step (D17).
            var drained = done == accepted.Count && queued == 0 && escalating == 0;
            var stalled = sinceQuiesce.Elapsed - lastProgress >= stall && sinceQuiesce.Elapsed >= options.DrainTimeout;
            if ((drained && sinceQuiesce.Elapsed >= settle) || stalled || sinceQuiesce.Elapsed >= options.DrainTimeout * 3)
            {
                options.Log($"chaos: drain {(drained ? "complete" : stalled ? "stalled" : "timed out")} after {sinceQuiesce.Elapsed.TotalSeconds:0} s: {done}/{accepted.Count} completed, {queued} queued, {escalating} escalations unfinished, {open}");
                return;
            }

            if (sinceQuiesce.Elapsed - lastLog >= TimeSpan.FromSeconds(5))
            {
                lastLog = sinceQuiesce.Elapsed;
                options.Log($"chaos: draining: {done}/{accepted.Count} completed, {queued} queued, {escalating} escalations unfinished, {open}");
            }

            await Task.Delay(500);
        }
    }

    private static async Task<(int Done, long Queued, string Open, long Escalating)> ProgressAsync(IConnectionMultiplexer redis, HashSet<string> accepted)
    {
        try
        {
            var server = redis.GetServers()[0];
            var database = redis.GetDatabase();
            var keys = new List<RedisKey>();
            await foreach (var key in server.KeysAsync(pattern: "coordinator:work:*", pageSize: 1000))
            {
                keys.Add(key);
            }

            var done = new HashSet<string>(StringComparer.Ordinal);
            var open = new Dictionary<string, int>(StringComparer.Ordinal);
            foreach (var chunk in keys.Chunk(500))
            {
                var values = await database.StringGetAsync(chunk);
                for (var i = 0; i < chunk.Length; i++)
                {
                    var json = (string?)values[i];
                    var status = json is null ? null : System.Text.Json.JsonDocument.Parse(json).RootElement.GetProperty("status").GetString();
                    var workId = ((string)chunk[i]!).Split(':')[^1];
                    if (status == "completed")
                    {
                        done.Add(workId);
                    }
                    else if (status is not null)
                    {
                        open[status] = open.GetValueOrDefault(status) + 1;
                    }
                }
            }

            var queued = 0L;
            await foreach (var key in server.KeysAsync(pattern: "swarm:*:queue", pageSize: 1000))
            {
                queued += await database.ListLengthAsync(key);
            }

            var escalating = await database.SortedSetLengthAsync("coordinator:escalating");
            return (done.Count(accepted.Contains), queued, open.Count == 0 ? "none open" : string.Join(' ', open.Select(o => $"{o.Key}={o.Value}")), escalating);
        }
        catch (Exception e) when (e is RedisException or TimeoutException or System.Text.Json.JsonException or KeyNotFoundException)
        {
            return (0, -1, "redis read failed: " + e.Message, -1);
        }
    }
}
