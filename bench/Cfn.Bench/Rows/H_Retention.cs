using System.Collections;
using System.ComponentModel.DataAnnotations;
using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;
using Cfn.Coordination;
using Cfn.Coordination.Loop;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Signals;
using Cfn.Coordination.Validation;

namespace Cfn.Bench.Rows;

/// <summary>
/// h (issue 17): what a finished cycle leaves in Redis, and for how long. Cycles run at a fixed rate (not as fast as
/// possible), each kind on a flushed database: <c>signal</c> (row c's round trip: SendAndWaitAsync → the receiver's inbox
/// read, which ACKs → the wait ends) and <c>work</c> (an item enqueued into a swarm served by coordinators running
/// <see cref="CoordinatorLoop"/> and validators running <see cref="ValidatorWorker"/> with a validation that answers at
/// once). Redis's used_memory is read at the start, every few seconds and at the end; at the end every key is counted by
/// family (SCAN) and each family's new keys are sampled (MEMORY USAGE, PTTL). The projection of steady-state memory per
/// 1,000 cycles/s is, per family, bytes per key × keys per cycle × the retention the keys were given × 1,000; keys that
/// grow per cycle without a TTL are a leak and reported as unbounded.
/// </summary>
internal sealed class H_Retention : IRow
{
    private const int SampleSize = 200;
    private const int Pairs = 10;
    private const int WorkCoordinators = 4;
    private const int Validators = 3;

    public string Key => "h";

    public async Task<RowResult> RunAsync(BenchContext ctx)
    {
        var rate = ctx.RetentionRate ?? 200;
        // An item carries four signals (two validation requests, two verdicts): 50 items/s move about as many signals
        // as 200 signal cycles/s.
        var workRate = ctx.RetentionWorkRate ?? 50;
        var seconds = ctx.RetentionSeconds ?? (ctx.Quick ? 2.5 : 60);
        var sampleEvery = TimeSpan.FromSeconds(ctx.Quick ? 0.5 : 5);
        // Its own connection with the protocol settings of the environment (the defaults when unset), so that a run with
        // e.g. IDEMPOTENCY_TTL_SECONDS=600 shows what that setting would do; the report names every setting in force.
        var options = CoordinationOptions.FromEnvironment();
        var loopOptions = LoopOptions.FromEnvironment();
        var validatorOptions = ValidatorOptions.FromEnvironment();
        await using var redis = await RedisContext.ConnectAsync(ctx.Configuration, options);
        var retentions = RetentionSettings(options, validatorOptions);

        var signal = await RunSignalAsync(ctx, redis, rate, seconds, sampleEvery, retentions);
        var work = await RunWorkAsync(ctx, redis, workRate, seconds, sampleEvery, retentions, loopOptions, validatorOptions);

        var settings = new JsonObject
        {
            ["coordination"] = Describe(options),
            ["loop"] = Describe(loopOptions),
            ["validator"] = Describe(validatorOptions),
            ["retentions_s"] = new JsonObject(retentions.Select(r => KeyValuePair.Create(r.Label, (JsonNode?)r.Seconds))),
        };
        var json = new JsonObject
        {
            ["rate_per_s"] = rate,
            ["work_rate_per_s"] = workRate,
            ["seconds"] = seconds,
            ["settings"] = settings,
            ["runs"] = new JsonArray(signal.Json, work.Json),
        };
        return new RowResult(json, [signal.Line, work.Line]);
    }

    private static async Task<SubRun> RunSignalAsync(BenchContext ctx, RedisContext redis, double rate, double seconds,
        TimeSpan sampleEvery, List<RetentionSetting> retentions)
    {
        await ctx.FlushAsync();
        var senders = new List<Coordinator>();
        var receivers = new List<Coordinator>();
        for (var i = 0; i < Pairs; i++)
        {
            senders.Add(await Coordinator.StartAsync(redis, ctx.Keys, ctx.Id("h-s", i), "bench", ctx.Metrics, runHeartbeatLoop: false));
            receivers.Add(await Coordinator.StartAsync(redis, ctx.Keys, ctx.Id("h-r", i), "bench", ctx.Metrics, runHeartbeatLoop: false));
        }

        using var stopReceiving = new CancellationTokenSource();
        var receiving = receivers.Select(r => C_Throughput.ReceiveAsync(r, stopReceiving.Token)).ToList();
        var latencies = Enumerable.Range(0, Pairs).Select(_ => new List<double>()).ToArray();
        async Task CycleAsync(int pair, bool measured)
        {
            var start = Stopwatch.GetTimestamp();
            var result = await senders[pair].Waiter.SendAndWaitAsync(receivers[pair].Id, SignalTypes.Completion, 0, timeout: TimeSpan.FromSeconds(60));
            A_AckRelease.Require(result.Wait);
            if (measured)
            {
                latencies[pair].Add(Stats.Ms(start, Stopwatch.GetTimestamp()));
            }
        }

        // Two unmeasured cycles per pair first, so what exists once per pair (inbox stream, consumer group, records of
        // the coordinators) is in the baseline and not counted as left by the cycles.
        for (var warm = 0; warm < 2; warm++)
        {
            await Task.WhenAll(Enumerable.Range(0, Pairs).Select(p => CycleAsync(p, measured: false)));
        }

        long completed = 0;
        var measure = await Measurement.BeginAsync(ctx, () => Interlocked.Read(ref completed), sampleEvery);
        var driven = await FixedRate.RunAsync(rate, seconds, Pairs, async pair =>
        {
            await CycleAsync(pair, measured: true);
            Interlocked.Increment(ref completed);
        });
        await Task.Delay(200); // the end-of-wait records are written without being awaited
        var result = await measure.EndAsync(completed, driven.Seconds, retentions, FamilyHints);

        await stopReceiving.CancelAsync();
        await Task.WhenAll(receiving);
        await BenchContext.DropAsync([.. senders, .. receivers]);
        await ctx.FlushAsync();

        var cycle = Stats.Summary(latencies.SelectMany(l => l));
        result.Json["kind"] = "signal";
        result.Json["pairs"] = Pairs;
        result.Json["cycle_latency"] = cycle;
        var setup = $"signal cycles (row c's send → inbox → ACK → wait ends) at {rate:N0}/s for {seconds:0.#} s, {Pairs} pairs; {SettingsText(retentions)}";
        return new SubRun(result.Json, new TableLine("h", "Redis memory a signal cycle leaves (issue 17)", setup,
            result.Summary(driven, "cycles"),
            $"cycle p50 ×{Stats.F(Stats.Get(cycle, "p50_ms") / ctx.Floor.PingP50Ms)}",
            "~16 GB per 1,000 signals/s (issue 17's estimate)", "≤ 1 GB per 1,000 cycles/s, no leak",
            Math.Max(result.ProjectedBytes, result.ProjectedWithOverheadBytes) <= 1e9 && result.LeakBytesPerCycle == 0));
    }

    private static async Task<SubRun> RunWorkAsync(BenchContext ctx, RedisContext redis, double rate, double seconds,
        TimeSpan sampleEvery, List<RetentionSetting> retentions, LoopOptions loopOptions, ValidatorOptions validatorOptions)
    {
        await ctx.FlushAsync();
        var swarm = $"bench-h-{ctx.Run}";
        await using var queue = new WorkQueue(redis);
        var registry = new ValidatorRegistry(redis);
        var performance = new ValidatorPerformance(redis, validatorOptions.StatsWindow);
        using var stop = new CancellationTokenSource();
        var participants = new List<Coordinator>();
        var running = new List<Task>();
        for (var i = 0; i < Validators; i++)
        {
            var validator = await Coordinator.StartAsync(redis, ctx.Keys, ctx.Id("h-v", i), Keys.ValidatorSwarm, ctx.Metrics);
            participants.Add(validator);
            var worker = new ValidatorWorker(validator, new InstantValidation(), validatorOptions, performance, registry);
            running.Add(Task.Run(() => worker.RunAsync(stop.Token)));
        }

        // Loops that find no live validator look again only after 2 s: start them once every validator is listed.
        var listed = Stopwatch.StartNew();
        while ((await registry.LiveAsync(TimeSpan.FromSeconds(30))).Count < Validators && listed.Elapsed < TimeSpan.FromSeconds(30))
        {
            await Task.Delay(20);
        }

        var loops = new List<CoordinatorLoop>();
        for (var i = 0; i < WorkCoordinators; i++)
        {
            var coordinator = await Coordinator.StartAsync(redis, ctx.Keys, ctx.Id("h-c", i), swarm, ctx.Metrics);
            participants.Add(coordinator);
            var loop = new CoordinatorLoop(coordinator, queue, loopOptions, registry, performance);
            loops.Add(loop);
            running.Add(Task.Run(() => loop.RunAsync(stop.Token)));
        }

        long Completed() => loops.Sum(l => l.State.ItemsCompleted);
        long enqueued = 0;
        async Task EnqueueAsync()
        {
            var n = Interlocked.Increment(ref enqueued);
            await queue.EnqueueAsync(swarm, null, JsonSerializer.SerializeToElement(new { n }));
        }

        // Unmeasured items first, so every coordinator and validator has worked once (their per-participant records are
        // then in the baseline).
        for (var i = 0; i < 2 * WorkCoordinators; i++)
        {
            await EnqueueAsync();
        }

        await DrainAsync(() => Completed() >= Interlocked.Read(ref enqueued), TimeSpan.FromSeconds(30));
        var before = Completed();
        var measure = await Measurement.BeginAsync(ctx, () => Completed() - before, sampleEvery);
        var driven = await FixedRate.RunAsync(rate, seconds, lanes: 1, _ => EnqueueAsync());
        var backlog = await queue.LengthAsync(swarm);
        var drainClock = Stopwatch.StartNew();
        var drained = await DrainAsync(() => Completed() >= Interlocked.Read(ref enqueued), TimeSpan.FromSeconds(ctx.Quick ? 15 : 60));
        var drainSeconds = drainClock.Elapsed.TotalSeconds;
        await Task.Delay(200);
        var items = Completed() - before;
        var result = await measure.EndAsync(items, driven.Seconds + drainSeconds, retentions, FamilyHints);

        await stop.CancelAsync();
        foreach (var task in running)
        {
            try
            {
                await task;
            }
            catch (OperationCanceledException)
            {
            }
        }

        await BenchContext.DropAsync(participants);
        await ctx.FlushAsync();

        result.Json["kind"] = "work";
        result.Json["coordinators"] = WorkCoordinators;
        result.Json["validators"] = Validators;
        result.Json["validators_per_item"] = loopOptions.ValidatorsPerItem;
        result.Json["items_failed"] = loops.Sum(l => l.State.ItemsFailed);
        result.Json["queue_backlog_at_stop"] = backlog;
        result.Json["drain_seconds"] = Stats.Round(drainSeconds, 2);
        result.Json["drained"] = drained;
        var setup = $"work items enqueued at {rate:N0}/s for {seconds:0.#} s into a swarm of {WorkCoordinators} coordinators (CoordinatorLoop) and {Validators} validators (ValidatorWorker, instant validation), {loopOptions.ValidatorsPerItem} validators per item";
        return new SubRun(result.Json, new TableLine("h", "Redis memory a work item leaves (issue 17)", setup,
            result.Summary(driven, "items") + $"; backlog at stop {backlog:N0}, drained in {Stats.F(drainSeconds)} s",
            "—", "—", "— (an item is two validation round trips and two verdicts)", null));
    }

    private static async Task<bool> DrainAsync(Func<bool> done, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (!done())
        {
            if (clock.Elapsed > timeout)
            {
                return false;
            }

            await Task.Delay(20);
        }

        return true;
    }

    /// <summary>The setting each family's TTL comes from, when the family is one the protocol sizes by a setting.</summary>
    private static readonly Dictionary<string, string> FamilyHints = new(StringComparer.Ordinal)
    {
        [Keys.IdempotencyPrefix] = nameof(CoordinationOptions.IdempotencyTtlSeconds),
        [Keys.AckPrefix] = nameof(CoordinationOptions.AckTtlSeconds),
        [Keys.InboxPrefix] = nameof(CoordinationOptions.SignalTtlSeconds),
        [Keys.SignalPrefix] = nameof(CoordinationOptions.SignalTtlSeconds),
        [Keys.WorkPrefix] = nameof(CoordinationOptions.WorkTtlSeconds),
        [KeyCensus.WorkRecords] = nameof(CoordinationOptions.WorkResultTtlSeconds),
    };

    /// <summary>
    /// Every retention in force, in seconds: the whole-second settings of the options (TTLs, by their environment
    /// variable when they have one), the validators' windows, and the week an unfinished work record is kept.
    /// </summary>
    private static List<RetentionSetting> RetentionSettings(CoordinationOptions options, ValidatorOptions validatorOptions)
    {
        var list = new List<RetentionSetting>();
        foreach (var p in typeof(CoordinationOptions).GetProperties(BindingFlags.Public | BindingFlags.Instance))
        {
            if (p.PropertyType == typeof(int) && p.Name.EndsWith("Seconds", StringComparison.Ordinal))
            {
                list.Add(new RetentionSetting(p.Name, EnvironmentName(p, e => CoordinationOptions.FromEnvironment(e)), (int)p.GetValue(options)!));
            }
        }

        list.Add(new RetentionSetting(nameof(ValidatorOptions.CacheTtlSeconds), "VALIDATION_CACHE_TTL_SECONDS", validatorOptions.CacheTtlSeconds));
        list.Add(new RetentionSetting(nameof(ValidatorOptions.StatsWindow), "VALIDATOR_STATS_WINDOW_MS ÷ 1000", (int)validatorOptions.StatsWindow.TotalSeconds));
        list.Add(new RetentionSetting("UnfinishedWorkRecord", "unfinished work record (a week)", 7 * 86_400));
        return list;
    }

    /// <summary>
    /// The variable that sets <paramref name="property"/>: its name in capitals with underscores when reading it from a
    /// test environment changes the property, else the property's own name (a setting without a variable).
    /// </summary>
    private static string EnvironmentName(PropertyInfo property, Func<IDictionary, object> read)
    {
        const int Probe = 4321;
        var name = string.Concat(property.Name.Select((c, i) => i > 0 && char.IsUpper(c) ? "_" + c : c.ToString())).ToUpperInvariant();
        try
        {
            return Equals(property.GetValue(read(new Hashtable { [name] = Probe.ToString(CultureInfo.InvariantCulture) })), Probe) ? name : property.Name;
        }
        catch (ValidationException)
        {
            return property.Name;
        }
    }

    private static string SettingsText(List<RetentionSetting> retentions) =>
        string.Join(", ", retentions.Where(r => r.Name.Contains("Ttl", StringComparison.Ordinal) || r.Name.Contains("Retention", StringComparison.Ordinal))
            .Where(r => r.Name is not (nameof(ValidatorOptions.CacheTtlSeconds) or nameof(CoordinationOptions.HeartbeatTtlSeconds) or nameof(CoordinationOptions.ActivityTtlSeconds)))
            .Select(r => $"{r.Label} {r.Seconds:N0} s"));

    /// <summary>Every simple public setting of an options object (durations in ms), for the report.</summary>
    private static JsonObject Describe(object options)
    {
        var json = new JsonObject();
        foreach (var p in options.GetType().GetProperties(BindingFlags.Public | BindingFlags.Instance).OrderBy(p => p.Name, StringComparer.Ordinal))
        {
            json[p.Name] = p.GetValue(options) switch
            {
                null => null,
                TimeSpan t => Stats.Round(t.TotalMilliseconds, 1),
                int i => i,
                double d => d,
                bool b => b,
                string or Uri => p.GetValue(options)!.ToString(),
                _ => null,
            };
        }

        return json;
    }

    internal static string Bytes(double bytes) => Math.Abs(bytes) switch
    {
        >= 1e9 => $"{Stats.F(bytes / 1e9)} GB",
        >= 1e6 => $"{Stats.F(bytes / 1e6)} MB",
        >= 1e3 => $"{Stats.F(bytes / 1e3)} KB",
        _ => $"{bytes:0} B",
    };

    private sealed record SubRun(JsonObject Json, TableLine Line);

    /// <summary>A validation that answers at once: the bench measures what the protocol stores, not validation time.</summary>
    private sealed class InstantValidation : IValidation
    {
        public Task<ValidationVerdict> ValidateAsync(ValidationRequest request, CancellationToken cancellationToken) =>
            Task.FromResult(ValidationVerdict.Pass);
    }
}

/// <summary>A retention in force: the options' property, what sets it (environment variable), its value in seconds.</summary>
internal sealed record RetentionSetting(string Name, string Label, int Seconds);

/// <summary>What a fixed-rate run did: cycles scheduled and done, how long it took, how late the latest start was.</summary>
internal sealed record DrivenRun(long Cycles, double Seconds, double MaxLateMs)
{
    public double PerSecond => Cycles / Seconds;
}

/// <summary>
/// Runs rate × seconds cycles on a fixed schedule: cycle n is due at n / rate, on lane n mod lanes (a lane runs its
/// cycles one after another). A cycle that comes due while its lane is busy starts late; the run then takes longer
/// than planned and its achieved rate is lower, both reported.
/// </summary>
internal static class FixedRate
{
    public static async Task<DrivenRun> RunAsync(double rate, double seconds, int lanes, Func<int, Task> cycle)
    {
        var total = (long)Math.Round(rate * seconds);
        var start = Stopwatch.GetTimestamp();
        var maxLateTicks = new long[lanes];
        var runs = Enumerable.Range(0, lanes).Select(lane => Task.Run(async () =>
        {
            for (long n = lane; n < total; n += lanes)
            {
                var due = start + (long)(n * Stopwatch.Frequency / rate);
                var early = due - Stopwatch.GetTimestamp();
                if (early > 0)
                {
                    await Task.Delay(TimeSpan.FromSeconds(early / (double)Stopwatch.Frequency));
                }

                maxLateTicks[lane] = Math.Max(maxLateTicks[lane], Stopwatch.GetTimestamp() - due);
                await cycle(lane);
            }
        })).ToList();
        await Task.WhenAll(runs);
        var elapsed = Stopwatch.GetElapsedTime(start).TotalSeconds;
        return new DrivenRun(total, elapsed, maxLateTicks.Max() * 1000.0 / Stopwatch.Frequency);
    }
}

/// <summary>
/// One sub-run's readings: used_memory and DBSIZE from the start of the measured cycles, every few seconds and at the
/// end; the keys present at the start (the baseline: what the participants hold whatever the cycles) and, at the end,
/// every key by family with a measured sample of the keys the cycles added.
/// </summary>
internal sealed class Measurement
{
    private readonly BenchContext _ctx;
    private readonly Func<long> _cycles;
    private readonly Dictionary<string, KeyMeasure> _baseline;
    private readonly long _start = Stopwatch.GetTimestamp();
    private readonly List<(double Seconds, long Cycles, long UsedMemory, long Keys)> _samples = [];
    private readonly TaskCompletionSource _stop = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Task _sampling;
    private string _summary = "";

    private Measurement(BenchContext ctx, Func<long> cycles, Dictionary<string, KeyMeasure> baseline, TimeSpan every)
    {
        _ctx = ctx;
        _cycles = cycles;
        _baseline = baseline;
        _sampling = Task.Run(async () =>
        {
            while (await Task.WhenAny(Task.Delay(every), _stop.Task) != _stop.Task)
            {
                await SampleAsync();
            }
        });
    }

    public double ProjectedBytes { get; private set; }

    public double ProjectedWithOverheadBytes { get; private set; }

    public double LeakBytesPerCycle { get; private set; }

    public JsonObject Json { get; } = [];

    public static async Task<Measurement> BeginAsync(BenchContext ctx, Func<long> cycles, TimeSpan every)
    {
        var keys = await KeyCensus.AllKeysAsync(ctx);
        var baseline = (await KeyCensus.MeasureAsync(ctx.Database, keys)).ToDictionary(m => m.Key, StringComparer.Ordinal);
        var measurement = new Measurement(ctx, cycles, baseline, every);
        await measurement.SampleAsync();
        return measurement;
    }

    private async Task SampleAsync()
    {
        var (used, keys) = await ReadAsync();
        var seconds = Stopwatch.GetElapsedTime(_start).TotalSeconds;
        lock (_samples)
        {
            _samples.Add((seconds, _cycles(), used, keys));
        }
    }

    /// <summary>used_memory and DBSIZE (which counts expired keys Redis has not reclaimed yet).</summary>
    private async Task<(long UsedMemory, long Keys)> ReadAsync()
    {
        var info = (string?)await _ctx.Server.ExecuteAsync("INFO", "memory") ?? "";
        var line = info.Split('\n').Select(l => l.Trim()).First(l => l.StartsWith("used_memory:", StringComparison.Ordinal));
        return (long.Parse(line["used_memory:".Length..], CultureInfo.InvariantCulture), await _ctx.Server.DatabaseSizeAsync(_ctx.DatabaseIndex));
    }

    /// <param name="cycles">Cycles done in the measured run.</param>
    /// <param name="runSeconds">How long they took (the oldest key the cycles left is about this old).</param>
    /// <param name="retentions">The retentions in force, to name where a TTL comes from.</param>
    /// <param name="hints">Family → the setting its TTL should come from.</param>
    public async Task<Measurement> EndAsync(long cycles, double runSeconds, List<RetentionSetting> retentions, Dictionary<string, string> hints)
    {
        _stop.TrySetResult();
        await _sampling;
        await SampleAsync();
        // Active expiry stops while under 10 % of the keys it samples have expired, so keys whose TTL ran out can stay
        // in memory a long time beside longer-lived ones. SCAN reclaims every expired key it meets: after it, used_memory
        // holds the live keys only, which is what MEMORY USAGE measured.
        var end = await KeyCensus.AllKeysAsync(_ctx);
        var (usedLive, keysLive) = await ReadAsync();
        var random = new Random(17);
        var families = new JsonArray();
        double projected = 0, leak = 0, leftPerCycle = 0;
        var perFamilyText = new List<string>();
        foreach (var family in KeyCensus.Families)
        {
            var inFamily = end.Where(k => KeyCensus.FamilyOf(k) == family).ToList();
            var baselineKeys = _baseline.Values.Where(m => KeyCensus.FamilyOf(m.Key) == family).ToList();
            if (inFamily.Count == 0 && baselineKeys.Count == 0)
            {
                continue;
            }

            var added = inFamily.Where(k => !_baseline.ContainsKey(k)).ToList();
            var sample = await KeyCensus.MeasureAsync(_ctx.Database, KeyCensus.Sample(added, 200, random));
            var old = await KeyCensus.MeasureAsync(_ctx.Database, inFamily.Where(_baseline.ContainsKey));
            // Growth of the keys that were there before the cycles (a stream or sorted set that keeps what it is given).
            var inKeyGrowth = old.Sum(m => m.Bytes) - baselineKeys.Sum(m => m.Bytes);
            var bytesPerKey = sample.Count == 0 ? 0 : sample.Average(m => m.Bytes);
            var keysPerCycle = cycles == 0 ? 0 : added.Count / (double)cycles;
            var familyLeft = cycles == 0 ? 0 : (added.Count * bytesPerKey + inKeyGrowth) / cycles;
            leftPerCycle += familyLeft;

            // Keys per cycle below 1 per 100 cycles (or under 20 in all) are the participants' own, not the cycles'.
            var perCycle = added.Count >= Math.Max(20, 0.01 * cycles);
            double familyProjected = 0, familyLeak = 0;
            var retained = new List<(double Seconds, string? Setting)>();
            if (perCycle && sample.Count > 0)
            {
                // Each sampled key stands for added/sample keys; one whose TTL is shorter than the run already had
                // older siblings expire, so it also stands for those (runSeconds / TTL of them).
                var share = added.Count / (double)sample.Count / cycles;
                foreach (var m in sample)
                {
                    if (m.PttlMs < 0)
                    {
                        familyLeak += share * m.Bytes;
                        continue;
                    }

                    var (seconds, setting) = Retention(m.PttlMs, runSeconds, retentions, hints.GetValueOrDefault(family));
                    retained.Add((seconds, setting));
                    familyProjected += share * Math.Max(1, runSeconds / seconds) * m.Bytes * seconds * 1000;
                }
            }

            projected += familyProjected;
            leak += familyLeak;
            var withoutTtl = sample.Count(m => m.PttlMs < 0);
            var ttlSeconds = sample.Where(m => m.PttlMs >= 0).Select(m => m.PttlMs / 1000.0).ToList();
            var retention = retained.Count == 0 ? default : retained.MaxBy(r => r.Seconds);
            // Keys that were there before and hold more at the end (a validator's durations, an untrimmed stream) grow
            // with the cycles but are bounded, if at all, by their own trimming, not by a TTL: named, not projected.
            var growsInside = cycles > 0 && inKeyGrowth / (double)cycles >= 1;
            var status = perCycle
                ? familyLeak > 0 ? "LEAK: grows per cycle without TTL" : "bounded by TTL"
                : growsInside ? "grows inside the participants' keys" : "participants' own (not per cycle)";
            var subPrefixes = inFamily.GroupBy(KeyCensus.SubPrefixOf).OrderByDescending(g => g.Count()).Take(8)
                .Select(g => KeyValuePair.Create(g.Key, (JsonNode?)g.Count()));
            families.Add(new JsonObject
            {
                ["family"] = family,
                ["status"] = status,
                ["keys_at_start"] = baselineKeys.Count,
                ["keys_at_end"] = inFamily.Count,
                ["keys_added"] = added.Count,
                ["keys_per_cycle"] = Stats.Round(keysPerCycle, 4),
                ["sampled"] = sample.Count,
                ["bytes_per_key"] = Stats.Round(bytesPerKey, 0),
                ["ttl_s_min"] = ttlSeconds.Count == 0 ? null : Stats.Round(ttlSeconds.Min(), 1),
                ["ttl_s_max"] = ttlSeconds.Count == 0 ? null : Stats.Round(ttlSeconds.Max(), 1),
                ["sampled_without_ttl"] = withoutTtl,
                ["retention_s"] = retained.Count == 0 ? null : retention.Seconds,
                ["retention_setting"] = retention.Setting,
                ["in_key_growth_bytes_per_cycle"] = cycles == 0 ? 0 : Stats.Round(inKeyGrowth / (double)cycles, 1),
                ["bytes_left_per_cycle"] = Stats.Round(familyLeft, 1),
                ["projected_bytes_per_1000_per_s"] = Math.Round(familyProjected),
                ["leak_bytes_per_cycle"] = Stats.Round(familyLeak, 1),
                ["sub_prefixes"] = new JsonObject(subPrefixes),
            });
            if (growsInside)
            {
                perFamilyText.Add($"{family} {string.Join(", ", old.Where(m => _baseline[m.Key].Bytes < m.Bytes).Select(m => KeyCensus.SubPrefixOf(m.Key)).Distinct())} grow by {inKeyGrowth / (double)cycles:N0} B inside their keys");
            }

            if (perCycle)
            {
                var ttl = familyLeak > 0 ? $"{withoutTtl}/{sample.Count} sampled without TTL" : $"TTL {retention.Seconds:N0} s";
                // The catch-all families say what they are made of.
                var what = family is KeyCensus.OtherCoordinator or KeyCensus.OtherBlocking or KeyCensus.Other
                    ? $" [{string.Join(", ", added.GroupBy(KeyCensus.SubPrefixOf).OrderByDescending(g => g.Count()).Take(3).Select(g => g.Key))}]"
                    : "";
                perFamilyText.Add($"{family}{what} {keysPerCycle:0.00} × {bytesPerKey:N0} B, {ttl} → {(familyLeak > 0 ? "unbounded" : H_Retention.Bytes(familyProjected))}");
            }
        }

        var samples = _samples.ToList();
        var run = samples.Where(s => s.Seconds <= runSeconds + 0.5).ToList();
        var slopePerSecond = Slope(run.Select(s => (s.Seconds, (double)s.UsedMemory)).ToList());
        var rate = cycles / runSeconds;
        var usedLeftPerCycle = cycles == 0 ? 0 : (samples[^1].UsedMemory - samples[0].UsedMemory) / (double)cycles;
        // MEMORY USAGE leaves out what Redis spends per key beside it (the expires entry, hash-table buckets); used_memory
        // counts it, so the projection is also given scaled by how much more used_memory grew than the keys measured.
        var liveLeftPerCycle = cycles == 0 ? 0 : (usedLive - samples[0].UsedMemory) / (double)cycles;
        var expiredUnreclaimed = Math.Max(0, samples[^1].Keys - keysLive);
        var overhead = leftPerCycle > 0 ? liveLeftPerCycle / leftPerCycle : 1;
        ProjectedBytes = projected;
        ProjectedWithOverheadBytes = projected * overhead;
        LeakBytesPerCycle = leak;
        Json["cycles"] = cycles;
        Json["memory"] = new JsonObject
        {
            ["used_memory_start"] = samples[0].UsedMemory,
            ["used_memory_end"] = samples[^1].UsedMemory,
            ["used_memory_left_per_cycle"] = Stats.Round(usedLeftPerCycle, 1),
            ["used_memory_live"] = usedLive,
            ["used_memory_live_left_per_cycle"] = Stats.Round(liveLeftPerCycle, 1),
            ["expired_keys_unreclaimed_at_end"] = expiredUnreclaimed,
            ["slope_bytes_per_s"] = Stats.Round(slopePerSecond, 0),
            ["slope_bytes_per_cycle"] = Stats.Round(slopePerSecond / rate, 1),
            ["keys_left_per_cycle"] = cycles == 0 ? 0 : Stats.Round((samples[^1].Keys - samples[0].Keys) / (double)cycles, 3),
            ["samples"] = new JsonArray([.. samples.Select(s => (JsonNode)new JsonObject
            {
                ["t_s"] = Stats.Round(s.Seconds, 2),
                ["cycles"] = s.Cycles,
                ["used_memory"] = s.UsedMemory,
                ["keys"] = s.Keys,
            })]),
        };
        Json["bytes_left_per_cycle_by_families"] = Stats.Round(leftPerCycle, 1);
        Json["families"] = families;
        Json["projected_bytes_per_1000_per_s"] = Math.Round(projected);
        Json["used_memory_to_memory_usage_ratio"] = Stats.Round(overhead, 3);
        Json["projected_with_overhead_bytes_per_1000_per_s"] = Math.Round(ProjectedWithOverheadBytes);
        Json["leak_bytes_per_cycle"] = Stats.Round(leak, 1);
        var unreclaimed = expiredUnreclaimed == 0 ? ""
            : $"; {expiredUnreclaimed:N0} expired keys not yet reclaimed, {H_Retention.Bytes(usedLive)} once SCAN removed them";
        _summary = $"{H_Retention.Bytes(usedLeftPerCycle)} left per {{0}} (used_memory {H_Retention.Bytes(samples[0].UsedMemory)} → {H_Retention.Bytes(samples[^1].UsedMemory)}{unreclaimed}, " +
            $"slope {H_Retention.Bytes(slopePerSecond)}/s = {H_Retention.Bytes(slopePerSecond / rate)} per {{0}}; by family {H_Retention.Bytes(leftPerCycle)}); " +
            $"per {{0}}: {string.Join("; ", perFamilyText)}; projected {H_Retention.Bytes(projected)} per 1,000 {{1}}/s " +
            $"({H_Retention.Bytes(ProjectedWithOverheadBytes)} with Redis's per-key overhead: used_memory grew ×{overhead:0.00} the keys' MEMORY USAGE)" +
            (leak > 0 ? $" plus a LEAK of {H_Retention.Bytes(leak * 1000 * 3600)} per hour at 1,000 {{1}}/s" : ", no key without TTL grows");
        return this;
    }

    /// <summary>The table's result cell: <paramref name="unit"/> is "cycles" or "items".</summary>
    public string Summary(DrivenRun driven, string unit) =>
        $"{driven.Cycles:N0} {unit} in {Stats.F(driven.Seconds)} s ({Stats.F(driven.PerSecond)}/s, latest start {Stats.F(driven.MaxLateMs)} ms late): " +
        string.Format(CultureInfo.InvariantCulture, _summary, unit.TrimEnd('s'), unit);

    /// <summary>
    /// The TTL a key was given: the setting in force that its PTTL can have come from (not below what is left, not
    /// beyond what is left plus the run's length), preferring <paramref name="hint"/>; else the PTTL rounded up.
    /// </summary>
    private static (double Seconds, string? Setting) Retention(long pttlMs, double runSeconds, List<RetentionSetting> retentions, string? hint)
    {
        var left = pttlMs / 1000.0;
        var fits = retentions.Where(r => r.Seconds >= left - 1 && r.Seconds <= left + runSeconds + 10).ToList();
        // Several settings share a value (3,600 s): only the family's own setting is named.
        if (fits.FirstOrDefault(r => r.Name == hint) is { } own)
        {
            return (own.Seconds, own.Label);
        }

        return fits.MinBy(r => r.Seconds) is { } other ? (other.Seconds, null) : (Math.Ceiling(left), null);
    }

    /// <summary>Least-squares slope of y over x.</summary>
    private static double Slope(List<(double X, double Y)> points)
    {
        if (points.Count < 2)
        {
            return 0;
        }

        var mx = points.Average(p => p.X);
        var my = points.Average(p => p.Y);
        var sxx = points.Sum(p => (p.X - mx) * (p.X - mx));
        return sxx == 0 ? 0 : points.Sum(p => (p.X - mx) * (p.Y - my)) / sxx;
    }
}
