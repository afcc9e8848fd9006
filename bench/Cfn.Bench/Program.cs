// cfn benchmarks: each figure is printed beside the Redis round-trip floor (PING) measured in the same run.
// Usage: dotnet run -c Release --project bench/Cfn.Bench -- --redis 127.0.0.1:6379 [--quick] [--out bench.json]
// (bench/run.sh starts a private redis-server and passes --redis.)
using System.Diagnostics;
using System.Text.Json;
using Cfn.Coordination;
using Cfn.Coordination.Acks;
using Cfn.Coordination.Redis;

using Cfn.Coordination.Security;
using Cfn.Coordination.Signals;
using Prometheus;

var redisEndpoint = Arg("--redis") ?? throw new ArgumentException("--redis HOST:PORT is required (bench/run.sh starts one)");
var quick = args.Contains("--quick");
var outPath = Arg("--out") ?? "bench-results.json";
var rounds = quick ? 50 : 500;

var options = new CoordinationOptions();
await using var redis = await RedisContext.ConnectAsync(redisEndpoint + ",abortConnect=false,allowAdmin=true", options);
var keys = new SigningKeys("bench-secret-0123456789abcdef0123456789abcdef");
var metrics = new Cfn.Coordination.Metrics.CoordinationMetrics(Metrics.NewCustomRegistry());
var results = new Dictionary<string, object>();

// Floor: one PING round trip.
var ping = new List<double>();
for (var i = 0; i < rounds * 2; i++)
{
    var sw = Stopwatch.StartNew();
    await redis.Database.PingAsync();
    ping.Add(sw.Elapsed.TotalMilliseconds);
}

results["ping_ms"] = Summary(ping);

var run = Guid.NewGuid().ToString("N")[..6];
await using var sender = await Coordinator.StartAsync(redis, keys, $"bench-s-{run}", "bench", metrics, runHeartbeatLoop: false);
await using var receiver = await Coordinator.StartAsync(redis, keys, $"bench-r-{run}", "bench", metrics, runHeartbeatLoop: false);

// a: ACK written → waiter released (the waiter is already blocking when the ACK is written).
var release = new List<double>();
for (var i = 0; i < rounds; i++)
{
    var signalId = $"{sender.Id}:{receiver.Id}:completion:{i}:a";
    var waiting = sender.Waiter.WaitForAcksAsync([receiver.Id], signalId, TimeSpan.FromSeconds(10));
    await Task.Delay(2);
    var sw = Stopwatch.StartNew();
    await receiver.Acks.AcknowledgeAsync(signalId, sender.Id, SignalTypes.Completion, null, 0);
    var result = await waiting;
    release.Add(sw.Elapsed.TotalMilliseconds);
    if (result.Status != AckWaitStatus.Completed)
    {
        throw new InvalidOperationException("wait did not complete: " + result.Status);
    }
}

results["a_ack_to_release_ms"] = Summary(release);

// a2: the whole wait when the ACK is already there.
var already = new List<double>();
for (var i = 0; i < rounds; i++)
{
    var signalId = $"{sender.Id}:{receiver.Id}:completion:{i}:b";
    await receiver.Acks.AcknowledgeAsync(signalId, sender.Id, SignalTypes.Completion, null, 0);
    var sw = Stopwatch.StartNew();
    await sender.Waiter.WaitForAcksAsync([receiver.Id], signalId, TimeSpan.FromSeconds(10));
    already.Add(sw.Elapsed.TotalMilliseconds);
}

results["a2_wait_ack_present_ms"] = Summary(already);
// d: one detection pass over N registered coordinators (1 % stale) plus 100,000 unrelated keys.
var detection = new List<object>();
var server = redis.Multiplexer.GetServer(redis.Multiplexer.GetEndPoints()[0]);
var unrelated = quick ? 10_000 : 100_000;
for (var i = 0; i < unrelated; i += 1000)
{
    var batch = redis.Database.CreateBatch();
    var writes = Enumerable.Range(i, 1000).Select(j => batch.StringSetAsync($"unrelated:{run}:{j}", "x")).ToList();
    batch.Execute();
    await Task.WhenAll(writes);
}

foreach (var count in quick ? new[] { 1_000 } : new[] { 1_000, 10_000, 100_000 })
{
    await redis.Database.KeyDeleteAsync([Keys.Registry, Keys.Health]);
    var now = await RedisTime.NowMsAsync(redis.Database);
    for (var i = 0; i < count; i += 1000)
    {
        var entries = Enumerable.Range(i, Math.Min(1000, count - i))
            .Select(j => new StackExchange.Redis.SortedSetEntry($"bench-{run}-{j}", j % 100 == 0 ? now - 200_000 : now))
            .ToArray();
        await redis.Database.SortedSetAddAsync(Keys.Registry, entries);
    }

    var recoveryOptions = new Cfn.Coordination.Recovery.RecoveryOptions();
    await using var monitor = new Cfn.Coordination.Detection.HeartbeatMonitor(redis, recoveryOptions, metrics,
        new Cfn.Coordination.Recovery.RecoveryMetrics(Metrics.NewCustomRegistry()), escalation: null, "bench-monitor");
    await server.ExecuteAsync("CONFIG", "RESETSTAT");
    var sw = Stopwatch.StartNew();
    var pass = await monitor.RunOnceAsync();
    var elapsed = sw.Elapsed.TotalMilliseconds;
    var info = (string)(await server.ExecuteAsync("INFO", "commandstats"))!;
    var commands = System.Text.RegularExpressions.Regex.Matches(info, @"cmdstat_(\w+):calls=(\d+)")
        .Where(m => m.Groups[1].Value is not ("config" or "info"))
        .Sum(m => long.Parse(m.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture));
    detection.Add(new { coordinators = count, stale = count / 100, judged = pass.Checked, pass_ms = Math.Round(elapsed, 2), redis_commands = commands });
}

await redis.Database.KeyDeleteAsync([Keys.Registry, Keys.Health]);
results["d_detection_pass"] = detection;
results["machine"] = new { cores = Environment.ProcessorCount, os = System.Runtime.InteropServices.RuntimeInformation.OSDescription };
results["mode"] = quick ? "quick" : "full";

var json = JsonSerializer.Serialize(results, new JsonSerializerOptions { WriteIndented = true });
await File.WriteAllTextAsync(outPath, json);
Console.WriteLine(json);
return 0;

string? Arg(string name)
{
    var i = Array.IndexOf(args, name);
    return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
}

static object Summary(List<double> samples)
{
    samples.Sort();
    double P(double q) => samples[(int)Math.Min(samples.Count - 1, Math.Ceiling(q * samples.Count) - 1)];
    return new { n = samples.Count, p50 = Math.Round(P(0.50), 3), p99 = Math.Round(P(0.99), 3), max = Math.Round(samples[^1], 3) };
}
