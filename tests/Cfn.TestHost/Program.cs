// Cfn.TestHost: runs ONE coordinator in its own process, for the fault-injection tests (SIGKILL, SIGSTOP, SIGTERM).
//
// Usage: dotnet Cfn.TestHost.dll --redis HOST:PORT --id ID --swarm SWARM --secret SECRET
//          [--items N] [--adopt] [--heartbeat-ms 100] [--progress-ms 50] [--complete-after K] [--complete-max M]
//
// It starts the coordinator (heartbeat loop on), then either creates N work items w0..w{N-1} with data {"n":0,"by":ID},
// or, with --adopt, adopts every item already stored under its ID (coordinator:work:SWARM:ID:*, e.g. after a transfer),
// and prints "ready". Then, every progress-ms, it writes progress on each unfinished item (data {"n":n+1,"by":ID}); an
// item is completed (data gets "completedBy":ID) on its write after K progress steps, by at most M items in all.
//
// stdout, one line per event: "created|adopted W", "skipped W OUTCOME" (not adoptable), "ready", "completed W",
// "refused W OUTCOME" (a refused write; the item is dropped unless the refusal was a conflict), "done" (nothing left),
// "superseded" (the coordinator learned it was superseded: SupersededToken fired or a write was Fenced; nothing else is
// written afterwards) and "stopped". Diagnostics go to stderr.
// Exit codes: 0 after SIGTERM/SIGINT (graceful StopAsync), 2 bad arguments or start-up failure, 3 superseded.
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using Cfn.Coordination;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Security;
using Cfn.Coordination.Work;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

string? redisEndpoint = null, id = null, swarm = null, secret = null;
int items = 0, heartbeatMs = 100, progressMs = 50, completeAfter = -1, completeMax = int.MaxValue;
var adopt = false;
try
{
    for (var i = 0; i < args.Length; i++)
    {
        string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
        int Number() => int.Parse(Next(), NumberStyles.None, CultureInfo.InvariantCulture);
        switch (args[i])
        {
            case "--redis": redisEndpoint = Next(); break;
            case "--id": id = Next(); break;
            case "--swarm": swarm = Next(); break;
            case "--secret": secret = Next(); break;
            case "--items": items = Number(); break;
            case "--adopt": adopt = true; break;
            case "--heartbeat-ms": heartbeatMs = Number(); break;
            case "--progress-ms": progressMs = Number(); break;
            case "--complete-after": completeAfter = Number(); break;
            case "--complete-max": completeMax = Number(); break;
            default: throw new ArgumentException("unknown argument " + args[i]);
        }
    }

    if (redisEndpoint is null || id is null || swarm is null || secret is null || progressMs <= 0)
    {
        throw new ArgumentException("--redis, --id, --swarm and --secret are required; --progress-ms must be positive");
    }
}
catch (Exception e) when (e is ArgumentException or FormatException or OverflowException)
{
    Console.Error.WriteLine("usage error: " + e.Message);
    return 2;
}

using var stop = new CancellationTokenSource();
using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Cancel(); });
using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.Cancel(); });
using var loggers = LoggerFactory.Create(b => b.SetMinimumLevel(LogLevel.Information).AddProvider(new StderrLoggerProvider()));

var options = new CoordinationOptions { HeartbeatInterval = TimeSpan.FromMilliseconds(heartbeatMs) };
RedisContext redis;
Coordinator coordinator;
try
{
    redis = await RedisContext.ConnectAsync(redisEndpoint, options, loggerFactory: loggers);
    coordinator = await Coordinator.StartAsync(redis, new SigningKeys(secret), id, swarm,
        new Cfn.Coordination.Metrics.CoordinationMetrics(Prometheus.Metrics.NewCustomRegistry()), runHeartbeatLoop: true);
}
catch (Exception e) when (e is RedisException or ArgumentException or InvalidOperationException)
{
    Console.Error.WriteLine("start-up failed: " + e.Message);
    return 2;
}

await using var redisOwner = redis;

// The unfinished items, with the number of progress steps each has had here.
var open = new SortedDictionary<string, (WorkItem Item, int Steps)>(StringComparer.Ordinal);
var completed = 0;
if (adopt)
{
    var server = redis.Multiplexer.GetServers().First(s => !s.IsReplica);
    var prefix = Keys.WorkPatternOf(swarm, id)[..^1];
    await foreach (var key in server.KeysAsync(redis.Database.Database, Keys.WorkPatternOf(swarm, id), pageSize: 1000))
    {
        var workId = ((string)key!)[prefix.Length..];
        var result = await coordinator.Work.AdoptAsync(workId);
        Console.WriteLine(result.Succeeded ? $"adopted {workId}" : $"skipped {workId} {result.Outcome}");
        if (result.Succeeded)
        {
            open[workId] = (result.Item!, 0);
        }
    }
}
else
{
    for (var i = 0; i < items; i++)
    {
        var result = await coordinator.Work.CreateAsync($"w{i}", Data(0, null));
        if (!result.Succeeded)
        {
            Console.Error.WriteLine($"could not create w{i}: {result.Outcome}");
            return 2;
        }

        Console.WriteLine($"created w{i}");
        open[$"w{i}"] = (result.Item!, 0);
    }
}

Console.WriteLine("ready");
using var running = CancellationTokenSource.CreateLinkedTokenSource(stop.Token, coordinator.SupersededToken);
using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(progressMs));
var saidDone = false;
try
{
    while (await timer.WaitForNextTickAsync(running.Token))
    {
        foreach (var workId in open.Keys.ToList())
        {
            if (running.IsCancellationRequested)
            {
                break;
            }

            var (item, steps) = open[workId];
            var n = item.Data is { ValueKind: JsonValueKind.Object } d && d.TryGetProperty("n", out var c) ? c.GetInt32() : 0;
            var finish = completeAfter >= 0 && steps >= completeAfter && completed < completeMax;
            WorkWriteResult result;
            try
            {
                result = finish
                    ? await coordinator.Work.CompleteAsync(item, Data(n, id))
                    : await coordinator.Work.ProgressAsync(item, Data(n + 1, null));
            }
            catch (Exception e) when (e is RedisException or TimeoutException)
            {
                Console.Error.WriteLine($"redis error on {workId}: {e.Message}");
                continue;
            }

            if (result.Succeeded && finish)
            {
                completed++;
                open.Remove(workId);
                Console.WriteLine($"completed {workId}");
            }
            else if (result.Succeeded)
            {
                open[workId] = (result.Item!, steps + 1);
            }
            else
            {
                Console.WriteLine($"refused {workId} {result.Outcome}");
                if (result.Outcome == WorkWriteOutcome.Fenced)
                {
                    break; // superseded: the token has fired
                }

                if (result.Outcome == WorkWriteOutcome.Conflict && result.Item is { } current)
                {
                    open[workId] = (current, steps);
                }
                else
                {
                    open.Remove(workId); // no longer ours
                }
            }
        }

        if (open.Count == 0 && !saidDone)
        {
            saidDone = true;
            Console.WriteLine("done");
        }
    }
}
catch (OperationCanceledException)
{
    // stopped or superseded, told apart below
}

if (coordinator.IsSuperseded)
{
    // Whoever superseded us owns the keys now: write nothing, not even a graceful stop.
    Console.WriteLine("superseded");
    return 3;
}

await coordinator.StopAsync();
Console.WriteLine("stopped");
return 0;

JsonElement Data(int n, string? completedBy)
{
    var data = new JsonObject { ["n"] = n, ["by"] = id };
    if (completedBy is not null)
    {
        data["completedBy"] = completedBy;
    }

    return JsonSerializer.SerializeToElement(data);
}

/// <summary>Log lines to stderr ("LEVEL category: message"), so stdout carries only the events the tests read.</summary>
internal sealed class StderrLoggerProvider : ILoggerProvider
{
    public ILogger CreateLogger(string categoryName) => new StderrLogger(categoryName);

    public void Dispose()
    {
    }

    private sealed class StderrLogger(string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Information;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            Console.Error.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} {logLevel} {category}: {formatter(state, exception)}");
    }
}
