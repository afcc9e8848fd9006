using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Cfn.Tests.Infrastructure;
using StackExchange.Redis;

namespace Cfn.Tests.Deploy;

/// <summary>
/// Issue 5 item 1: every SPEC §3.2 family on <c>/metrics</c> (and <c>/prometheus/metrics</c>) of a real <c>cfn up</c>,
/// and of the <c>serve --role</c> process that owns it, with the exact type, label names and histogram buckets. The run
/// is made lively so that the families carry samples: validators slower than <c>BLOCKING_TIMEOUT_MS</c> (waits time
/// out and complete), an external endpoint that never answers (external timeouts, an <c>external:</c> breaker), and
/// a dead coordinator (a registry entry whose heartbeat stopped a minute ago, as after <c>kill -9</c> once its K1 key
/// expired), which the timeout handler warns about, declares dead and escalates.
/// </summary>
[Collection(Name)]
public sealed class MetricsExportTests
{
    /// <summary>Runs alone, after the parallel tests: four cfn processes at once would starve the other process tests on a small machine.</summary>
    public const string Name = "metrics export (runs alone)";

    private const string Secret = "metrics-test-secret-0123456789abcdef0123456789abcdef";

    private static readonly TimeSpan Startup = TimeSpan.FromSeconds(90);

    /// <summary>Families that only carry samples after events cfn up does not cause on its own; their # TYPE must still be there.</summary>
    private static readonly string[] TypeOnly = ["ack_verification_failures_total", "cleanup_runs_total"];

    [Fact]
    public async Task Up_ExportsEverySpecFamily_WithExactTypesLabelsAndBuckets()
    {
        using var blackhole = new TcpListener(IPAddress.Loopback, 0);
        blackhole.Start(); // accepts connections (the kernel's backlog) and never answers: every call times out
        var blackholePort = ((IPEndPoint)blackhole.LocalEndpoint).Port;
        var http = CfnRun.FreePort();
        // Two validators for four coordinators asking two each: a validator ACKs each request as it arrives, so the first
        // waits complete at once, and once its bounded queue is full the later ones time out (validations are slower
        // than the timeout), which gives both kinds of wait to see.
        await using var up = CfnRun.Start(["up", "--http-port", $"{http}", "--swarms", "2", "--coordinators", "2", "--validators", "2"],
            new Dictionary<string, string?>
            {
                ["REDIS_URL"] = null,
                ["REDIS_HOST"] = null,
                ["BLOCKING_COORDINATION_SECRET"] = Secret,
                ["HEARTBEAT_INTERVAL_MS"] = "1000",
                ["BLOCKING_TIMEOUT_MS"] = "1500",
                ["VALIDATION_DURATION_MEDIAN_MS"] = "300",
                ["VALIDATION_DURATION_P95_MS"] = "3000",
                ["VALIDATION_FAILURE_RATE"] = "0",
                ["EXTERNAL_API_URL"] = $"http://127.0.0.1:{blackholePort}/slow",
                ["EXTERNAL_CALL_RATE"] = "1",
                ["EXTERNAL_API_TIMEOUT_MS"] = "200",
                ["HEARTBEAT_STALE_THRESHOLD_MS"] = "6000",
                ["HEARTBEAT_MONITOR_INTERVAL_MS"] = "500",
                ["HEARTBEAT_MAX_WARNINGS"] = "2",
            });
        await up.WaitForLineAsync(l => l == "ready", Startup);
        var endpoint = up.Lines.First(l => l.StartsWith("redis: ", StringComparison.Ordinal)).Split(' ')[1];

        // A coordinator of swarm-1 that died a minute ago: only its registry entry is left.
        const string ghost = "coordinator-ghost-metrics";
        await using (var redis = await ConnectionMultiplexer.ConnectAsync(endpoint))
        {
            var db = redis.GetDatabase();
            await db.HashSetAsync("coordinator:swarms", ghost, "swarm-1");
            await db.SortedSetAddAsync("blocking:coordinators", ghost, DateTimeOffset.UtcNow.AddMinutes(-1).ToUnixTimeMilliseconds());
        }

        using var client = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{http}"), Timeout = TimeSpan.FromSeconds(10) };
        Dictionary<string, ExpositionFamily> families = [];
        string[] missing = [];
        await EventuallyAsync(async () =>
        {
            families = ExpositionText.Parse(await client.GetStringAsync("/metrics"));
            missing = [.. Wanted(ghost).Where(w => !families.TryGetValue(w.Family, out var f) || !f.Samples.Any(w.Match)).Select(w => w.What)];
            return missing.Length == 0;
        }, TimeSpan.FromSeconds(45), pollMs: 1000);

        Assert.True(missing.Length == 0, $"no samples within 45 s for: {string.Join("; ", missing)}\n{up.Tail(30)}");

        foreach (var spec in MetricCatalog.Spec)
        {
            CheckFamily(families, spec, requireSamples: !TypeOnly.Contains(spec.Name));
        }

        CheckHeartbeatTimestamps(families["blocking_heartbeat_timestamp"]);
        CheckBreakers(families["circuit_breaker_state"], "redis", $"external:127.0.0.1:{blackholePort}");
        CheckProcessFamilies(families);

        // The same families, types and label names on the TS path /prometheus/metrics, in the text format's content type.
        var response = await client.GetAsync("/prometheus/metrics");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.StartsWith("text/plain", response.Content.Headers.ContentType?.ToString(), StringComparison.Ordinal);
        Assert.Contains("version=0.0.4", response.Content.Headers.ContentType?.ToString(), StringComparison.Ordinal);
        var legacy = ExpositionText.Parse(await response.Content.ReadAsStringAsync());
        foreach (var spec in MetricCatalog.Spec)
        {
            CheckFamily(legacy, spec, requireSamples: false);
        }

        // The docs' obsolete alias is not exported (SPEC §3.2).
        Assert.DoesNotContain("blocking_coordination_duration_seconds", families.Keys);
    }

    [Fact]
    public async Task Serve_EachRoleExportsTheFamiliesItOwns()
    {
        const int db = 34;
        var endpoint = TestRedis.Endpoint;
        await using var redis = await ConnectionMultiplexer.ConnectAsync($"{endpoint},allowAdmin=true");
        var server = redis.GetServer(redis.GetEndPoints()[0]);
        await server.FlushDatabaseAsync(db);
        var ports = new Dictionary<string, int>();
        var runs = new Dictionary<string, CfnRun>();
        CfnRun Serve(string role, params (string, string)[] extra)
        {
            ports[role] = CfnRun.FreePort();
            var env = new Dictionary<string, string?>
            {
                ["REDIS_URL"] = $"redis://{endpoint}/{db}",
                ["REDIS_HOST"] = null,
                ["REDIS_POOL_SIZE"] = "2",
                ["HTTP_PORT"] = ports[role].ToString(CultureInfo.InvariantCulture),
                ["BLOCKING_COORDINATION_SECRET"] = Secret,
                ["HEARTBEAT_INTERVAL_MS"] = "500",
                ["HEARTBEAT_STALE_THRESHOLD_MS"] = "6000",
                ["HEARTBEAT_MONITOR_INTERVAL_MS"] = "500",
                ["HEARTBEAT_MAX_WARNINGS"] = "2",
            };
            foreach (var (key, value) in extra)
            {
                env[key] = value;
            }

            var run = CfnRun.Start(["serve", "--role", role], env);
            runs[role] = run;
            return run;
        }

        try
        {
            Serve("timeout-handler");
            Serve("swarm-manager");
            Serve("coordinator", ("COORDINATOR_ID", "coordinator-m-0"), ("SWARM_ID", "swarm-m"));
            using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
            foreach (var (role, port) in ports)
            {
                await runs[role].WaitReadyAsync(port, within: Startup);
            }

            // A dead coordinator of swarm-m: the handler declares it dead, its escalation asks for a replacement, the swarm
            // manager has it started on the coordinator process (a host).
            const string ghost = "coordinator-ghost-m";
            var database = redis.GetDatabase(db);
            await database.HashSetAsync("coordinator:swarms", ghost, "swarm-m");
            await database.SortedSetAddAsync("blocking:coordinators", ghost, DateTimeOffset.UtcNow.AddMinutes(-1).ToUnixTimeMilliseconds());

            async Task<Dictionary<string, ExpositionFamily>> ScrapeUntil(string role, Func<Dictionary<string, ExpositionFamily>, bool> done, string what)
            {
                Dictionary<string, ExpositionFamily> families = [];
                var found = await EventuallyAsync(async () => done(families = ExpositionText.Parse(await client.GetStringAsync($"http://127.0.0.1:{ports[role]}/metrics"))),
                    TimeSpan.FromSeconds(45), pollMs: 500);
                Assert.True(found, $"{role} /metrics: no {what} within 45 s\n" + string.Join('\n', runs.Values.Select(r => r.Tail(15))));
                return families;
            }

            static bool Has(Dictionary<string, ExpositionFamily> f, string family, Func<ExpositionSample, bool> match) =>
                f.TryGetValue(family, out var x) && x.Samples.Any(match);

            // The timeout handler owns heartbeat (stale) failures, heartbeat timeouts and the recovery families.
            var handler = await ScrapeUntil("timeout-handler",
                f => Has(f, "timeout_events_total", s => s.Label("reason") == "heartbeat" && s.Label("coordinator_id") == ghost) &&
                     Has(f, "heartbeat_failures_total", s => s.Label("reason") == "stale" && s.Label("coordinator_id") == ghost) &&
                     Has(f, "dead_coordinators_total", s => s.Label("swarm_id") == "swarm-m") &&
                     Has(f, "escalations_total", _ => true),
                "timeout_events_total{reason=heartbeat} / heartbeat_failures_total{reason=stale} / dead_coordinators_total / escalations_total of the ghost");
            foreach (var name in new[] { "timeout_events_total", "heartbeat_failures_total", "dead_coordinators_total", "escalations_total", "cleanup_keys_deleted_total", "circuit_breaker_state" })
            {
                CheckFamily(handler, MetricCatalog.Get(name), requireSamples: true);
            }

            Assert.DoesNotContain("coordinator_spawns_total", handler.Keys);

            // The swarm manager owns coordinator_spawns_total, counted when the replacement actually runs.
            var manager = await ScrapeUntil("swarm-manager",
                f => Has(f, "coordinator_spawns_total", s => s.Label("swarm_id") == "swarm-m" && s.Label("reason") == "replacement"),
                "coordinator_spawns_total{swarm_id=swarm-m,reason=replacement}");
            CheckFamily(manager, MetricCatalog.Get("coordinator_spawns_total"), requireSamples: true);
            CheckFamily(manager, MetricCatalog.Get("circuit_breaker_state"), requireSamples: true);
            Assert.DoesNotContain("dead_coordinators_total", manager.Keys);
            CheckProcessFamilies(manager);

            // The coordinator owns its heartbeat timestamp (ms) and, as a host, also runs the replacement.
            var coordinator = await ScrapeUntil("coordinator",
                f => Has(f, "blocking_heartbeat_timestamp", s => s.Label("coordinator_id") == "coordinator-m-0"),
                "blocking_heartbeat_timestamp{coordinator_id=coordinator-m-0}");
            CheckFamily(coordinator, MetricCatalog.Get("blocking_heartbeat_timestamp"), requireSamples: true);
            CheckHeartbeatTimestamps(coordinator["blocking_heartbeat_timestamp"]);
            CheckBreakers(coordinator["circuit_breaker_state"], "redis");
            foreach (var name in new[] { "blocking_duration_seconds", "signal_delivery_latency_seconds", "signals_sent_total", "signals_failed_total", "blocking_coordinators_active" })
            {
                CheckFamily(coordinator, MetricCatalog.Get(name), requireSamples: false);
            }

            Assert.DoesNotContain("coordinator_spawns_total", coordinator.Keys);
            Assert.DoesNotContain("dead_coordinators_total", coordinator.Keys);
        }
        finally
        {
            foreach (var run in runs.Values)
            {
                await run.DisposeAsync();
            }

            await server.FlushDatabaseAsync(db);
        }
    }

    /// <summary>What must carry samples in the lively cfn up: (family, description, matching sample).</summary>
    private static IEnumerable<(string Family, string What, Func<ExpositionSample, bool> Match)> Wanted(string ghost) =>
    [
        ("blocking_coordinators_active", "a blocking coordinator", _ => true),
        ("blocking_coordinators_total", "a blocking count", _ => true),
        ("blocking_current_duration_seconds", "a running wait", _ => true),
        ("blocking_duration_seconds", "a completed wait", s => s.Label("status") == "completed"),
        ("blocking_duration_seconds", "a timed-out wait", s => s.Label("status") == "timeout"),
        ("signal_delivery_latency_seconds", "a latency", _ => true),
        ("heartbeat_failures_total", "the ghost's stale heartbeat", s => s.Label("reason") == "stale" && s.Label("coordinator_id") == ghost),
        ("timeout_events_total", "a blocking timeout", s => s.Label("reason") == "blocking"),
        ("timeout_events_total", "an external timeout", s => s.Label("reason") == "external"),
        ("timeout_events_total", "the ghost's heartbeat timeout", s => s.Label("reason") == "heartbeat" && s.Label("coordinator_id") == ghost),
        ("signals_sent_total", "a sent signal", _ => true),
        ("signals_failed_total", "an unacknowledged signal", s => s.Label("reason") == "ack_timeout"),
        ("coordinator_spawns_total", "the initial spawns", s => s.Label("reason") == "initial"),
        ("blocking_heartbeat_timestamp", "a heartbeat", _ => true),
        ("circuit_breaker_state", "the external breaker", s => s.Label("name")?.StartsWith("external:", StringComparison.Ordinal) == true),
        ("dead_coordinators_total", "the ghost's death", s => s.Label("swarm_id") == "swarm-1"),
        ("escalations_total", "the ghost's escalation", _ => true),
        ("cleanup_keys_deleted_total", "the cleanup counter", _ => true),
    ];

    /// <summary>Type, HELP, label names of every series, allowed label values, and for histograms the exact buckets.</summary>
    private static void CheckFamily(Dictionary<string, ExpositionFamily> families, MetricSpec spec, bool requireSamples)
    {
        Assert.True(families.TryGetValue(spec.Name, out var family), $"{spec.Name}: no # TYPE line or samples");
        Assert.True(spec.Type == family.Type, $"{spec.Name}: type {family.Type}, SPEC says {spec.Type}");
        Assert.False(string.IsNullOrWhiteSpace(family.Help), $"{spec.Name}: no # HELP text");
        if (requireSamples)
        {
            Assert.True(family.Samples.Count > 0, $"{spec.Name}: # TYPE but no samples");
        }

        foreach (var sample in family.Samples)
        {
            var context = $"{spec.Name}: series {sample.Name}{{{sample.SeriesKey}}}";
            Assert.True(spec.Labels.SequenceEqual(sample.LabelNamesWithoutLe), $"{context} has labels [{string.Join(',', sample.LabelNamesWithoutLe)}], SPEC says [{string.Join(',', spec.Labels)}]");
            foreach (var (label, allowed) in spec.Values ?? new Dictionary<string, string[]>())
            {
                Assert.True(allowed.Contains(sample.Label(label)), $"{context}: {label}={sample.Label(label)} is not one of {string.Join(',', allowed)}");
            }

            if (spec.Name == "heartbeat_failures_total")
            {
                Assert.Equal(sample.Label("reason"), sample.Label("failure_type"));
            }

            if (spec.Name == "timeout_events_total")
            {
                Assert.Equal(sample.Label("reason"), sample.Label("timeout_type"));
            }

            if (spec.Type == "counter")
            {
                Assert.True(sample.Value >= 0, $"{context}: negative counter");
            }

            if (spec.Type == "histogram")
            {
                Assert.Contains(sample.Name, new[] { spec.Name + "_bucket", spec.Name + "_sum", spec.Name + "_count" });
                Assert.Equal(sample.Name == spec.Name + "_bucket", sample.Label("le") is not null);
            }
            else
            {
                Assert.Equal(spec.Name, sample.Name);
            }
        }

        if (spec.Buckets is { } buckets)
        {
            foreach (var series in family.Samples.GroupBy(s => s.SeriesKey))
            {
                var bucketSamples = series.Where(s => s.Name.EndsWith("_bucket", StringComparison.Ordinal)).ToList();
                var bounds = bucketSamples.Select(s => ExpositionText.ParseValue(s.Label("le")!)).ToList();
                Assert.Equal([.. buckets, double.PositiveInfinity], bounds);
                var counts = bucketSamples.Select(s => s.Value).ToList();
                Assert.True(counts.Zip(counts.Skip(1)).All(p => p.First <= p.Second), $"{spec.Name}{{{series.Key}}}: buckets not cumulative");
                Assert.Equal(counts[^1], Assert.Single(series, s => s.Name == spec.Name + "_count").Value);
                Assert.Single(series, s => s.Name == spec.Name + "_sum");
            }
        }
    }

    /// <summary><c>blocking_heartbeat_timestamp</c> is milliseconds since the epoch (the runbook divides by 1000), recent.</summary>
    private static void CheckHeartbeatTimestamps(ExpositionFamily family)
    {
        var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        Assert.NotEmpty(family.Samples);
        Assert.All(family.Samples, s => Assert.InRange(s.Value, now - 60_000, now + 60_000));
    }

    /// <summary>Every breaker has exactly the three state series, valued 0 or 1, exactly one of them 1.</summary>
    private static void CheckBreakers(ExpositionFamily family, params string[] expectedNames)
    {
        var byName = family.Samples.GroupBy(s => s.Label("name")!).ToDictionary(g => g.Key, g => g.ToList());
        foreach (var name in expectedNames)
        {
            Assert.True(byName.ContainsKey(name), $"circuit_breaker_state has no breaker {name}; has {string.Join(',', byName.Keys)}");
        }

        foreach (var (name, series) in byName)
        {
            Assert.Equal(["closed", "half_open", "open"], series.Select(s => s.Label("state")!).Order(StringComparer.Ordinal));
            Assert.All(series, s => Assert.Contains(s.Value, new[] { 0d, 1d }));
            Assert.True(series.Count(s => s.Value == 1) == 1, $"breaker {name}: {series.Count(s => s.Value == 1)} states are 1");
        }
    }

    private static void CheckProcessFamilies(Dictionary<string, ExpositionFamily> families)
    {
        foreach (var (name, type) in MetricCatalog.Process)
        {
            Assert.True(families.TryGetValue(name, out var family), $"{name} is not exported");
            Assert.Equal(type, family.Type);
            Assert.NotEmpty(family.Samples);
        }

        Assert.InRange(families["process_start_time_seconds"].Samples[0].Value,
            DateTimeOffset.UtcNow.AddMinutes(-10).ToUnixTimeSeconds(), DateTimeOffset.UtcNow.ToUnixTimeSeconds() + 60);
    }
}

/// <summary>The collection of <see cref="MetricsExportTests"/>, not run in parallel with anything else.</summary>
[CollectionDefinition(MetricsExportTests.Name, DisableParallelization = true)]
public sealed class MetricsExportCollection;
