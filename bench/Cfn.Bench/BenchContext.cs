using System.Globalization;
using Cfn.Coordination;
using Cfn.Coordination.Metrics;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Security;
using StackExchange.Redis;

namespace Cfn.Bench;

/// <summary>
/// What every row shares: the Redis connection (with admin commands), the signing keys, a private metrics registry,
/// the mode, a run ID that makes coordinator IDs unique, and the server-wide readings (INFO commandstats, CPU).
/// </summary>
internal sealed class BenchContext : IAsyncDisposable
{
    private BenchContext(RedisContext redis, string configuration, int database, bool quick, Floor? floor)
    {
        Redis = redis;
        Configuration = configuration;
        DatabaseIndex = database;
        Quick = quick;
        Server = redis.Multiplexer.GetServer(redis.Multiplexer.GetEndPoints()[0]);
        Floor = floor!;
    }

    public RedisContext Redis { get; }

    /// <summary>The StackExchange.Redis configuration string (rows that need their own connection use it).</summary>
    public string Configuration { get; }

    public int DatabaseIndex { get; }

    public bool Quick { get; }

    public IServer Server { get; }

    public IDatabase Database => Redis.Database;

    /// <summary>The shared secret of the bench's agents (the <c>cfn</c> processes row i starts get it too).</summary>
    public const string Secret = "bench-secret-0123456789abcdef0123456789abcdef";

    public SigningKeys Keys { get; } = new(Secret);

    public CoordinationMetrics Metrics { get; } = new(Prometheus.Metrics.NewCustomRegistry());

    public string Run { get; } = Guid.NewGuid().ToString("N")[..6];

    public Floor Floor { get; set; }

    /// <summary>Row c's pair counts when <c>--pairs</c> names them (null: the mode's own).</summary>
    public int[]? PairCounts { get; set; }

    /// <summary>Row h's cycles per second when <c>--h-rate</c> gives it (null: 200).</summary>
    public double? RetentionRate { get; set; }

    /// <summary>Row h's work items per second when <c>--h-work-rate</c> gives it (null: 50).</summary>
    public double? RetentionWorkRate { get; set; }

    /// <summary>Row h's seconds per sub-run when <c>--h-seconds</c> gives them (null: the mode's own).</summary>
    public double? RetentionSeconds { get; set; }

    public static async Task<BenchContext> ConnectAsync(string endpoint, int database, bool quick)
    {
        var configuration = $"{endpoint},abortConnect=false,allowAdmin=true,defaultDatabase={database},syncTimeout=30000,asyncTimeout=30000";
        var redis = await RedisContext.ConnectAsync(configuration, new CoordinationOptions());
        return new BenchContext(redis, configuration, database, quick, null);
    }

    /// <summary>A coordinator ID unique to this run: <c>bench-{row}-{run}-{n}</c>.</summary>
    public string Id(string row, int n) => string.Create(CultureInfo.InvariantCulture, $"bench-{row}-{Run}-{n}");

    public Task<Coordinator> StartAsync(string id, RedisContext? redis = null, bool heartbeat = false) =>
        Coordinator.StartAsync(redis ?? Redis, Keys, id, "bench", Metrics, runHeartbeatLoop: heartbeat);

    /// <summary>Starts <paramref name="count"/> coordinators, a bounded number at a time.</summary>
    public async Task<List<Coordinator>> StartManyAsync(string row, int count, int parallel = 200)
    {
        var started = new Coordinator[count];
        for (var i = 0; i < count; i += parallel)
        {
            var batch = Enumerable.Range(i, Math.Min(parallel, count - i))
                .Select(async j => started[j] = await StartAsync(Id(row, j)));
            await Task.WhenAll(batch);
        }

        return [.. started];
    }

    /// <summary>
    /// Drops coordinators without the graceful stop: a graceful stop scans the keyspace for each one's ACKs, which is
    /// not what these rows measure. Their keys go with the next <see cref="FlushAsync"/>.
    /// </summary>
    public static async Task DropAsync(IEnumerable<Coordinator> coordinators)
    {
        foreach (var chunk in coordinators.Chunk(200))
        {
            await Task.WhenAll(chunk.Select(async c =>
            {
                await c.AbandonAsync();
                await c.DisposeAsync();
            }));
        }
    }

    /// <summary>Empties the bench's database between rows, so each row starts from a known keyspace.</summary>
    public Task FlushAsync() => Server.FlushDatabaseAsync(DatabaseIndex);

    public Task ResetStatsAsync() => Server.ExecuteAsync("CONFIG", "RESETSTAT");

    /// <summary>INFO commandstats as command → calls, without the bench's own INFO/CONFIG/SLOWLOG reads.</summary>
    public async Task<Dictionary<string, long>> CommandCallsAsync()
    {
        var calls = await CommandStats.CallsAsync(Server);
        calls.Keys.Where(IsBenchReading).ToList().ForEach(name => calls.Remove(name));
        return calls;
    }

    /// <summary>INFO commandstats as command → microseconds Redis spent in it, without the bench's own readings.</summary>
    /// <remarks>A script's time (evalsha) includes the commands it calls, which are also listed under their own names.</remarks>
    public async Task<Dictionary<string, long>> CommandMicrosecondsAsync()
    {
        var usec = await CommandStats.MicrosecondsAsync(Server);
        usec.Keys.Where(IsBenchReading).ToList().ForEach(name => usec.Remove(name));
        return usec;
    }

    private static bool IsBenchReading(string name) =>
        name is "info" or "config" or "slowlog" || name.StartsWith("config|", StringComparison.Ordinal) ||
        name.StartsWith("slowlog|", StringComparison.Ordinal);

    /// <summary>redis-server's process ID when it runs on this machine (<c>CFN_BENCH_REDIS_PID</c>, else INFO server).</summary>
    public async Task<int?> RedisPidAsync()
    {
        if (int.TryParse(Environment.GetEnvironmentVariable("CFN_BENCH_REDIS_PID"), out var fromEnv))
        {
            return fromEnv;
        }

        var info = (string?)await Server.ExecuteAsync("INFO", "server") ?? "";
        var line = info.Split('\n').Select(l => l.Trim()).FirstOrDefault(l => l.StartsWith("process_id:", StringComparison.Ordinal));
        if (line is null || !int.TryParse(line["process_id:".Length..], out var pid))
        {
            return null;
        }

        // Only meaningful when that process is a local redis-server (not a remote one that happens to share the number).
        var comm = $"/proc/{pid}/comm";
        return File.Exists(comm) && File.ReadAllText(comm).Contains("redis", StringComparison.Ordinal) ? pid : null;
    }

    public async Task<string> RedisVersionAsync()
    {
        var info = (string?)await Server.ExecuteAsync("INFO", "server") ?? "";
        var line = info.Split('\n').Select(l => l.Trim()).FirstOrDefault(l => l.StartsWith("redis_version:", StringComparison.Ordinal));
        return line?["redis_version:".Length..] ?? "unknown";
    }

    public ValueTask DisposeAsync() => Redis.DisposeAsync();
}

/// <summary>CPU time of a process from /proc/&lt;pid&gt;/stat (utime + stime), in seconds.</summary>
internal static class ProcessCpu
{
    private const double TicksPerSecond = 100; // USER_HZ on Linux

    public static double? Seconds(int? pid)
    {
        if (pid is null)
        {
            return null;
        }

        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
            var rest = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            return (long.Parse(rest[11], CultureInfo.InvariantCulture) + long.Parse(rest[12], CultureInfo.InvariantCulture)) / TicksPerSecond;
        }
        catch (IOException)
        {
            return null;
        }
    }

    public static double Self() => System.Diagnostics.Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds;
}
