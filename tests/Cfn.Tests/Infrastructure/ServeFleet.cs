using System.Globalization;
using StackExchange.Redis;
using Xunit.Abstractions;

namespace Cfn.Tests.Infrastructure;

/// <summary>
/// A set of <c>cfn serve</c> processes on one database of the test redis-server (flushed before and after), with fast
/// detection settings; each process by name, its HTTP port and its output. What the recovery and mixed-fleet process
/// tests share.
/// </summary>
public sealed class ServeFleet : IAsyncDisposable
{
    private readonly Dictionary<string, CfnRun> _runs = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> _ports = new(StringComparer.Ordinal);
    private readonly ITestOutputHelper _output;
    private readonly string _endpoint;
    private readonly int _db;
    private readonly string _secret;
    private readonly IReadOnlyDictionary<string, string> _settings;
    private ConnectionMultiplexer _redis = null!;

    private ServeFleet(string endpoint, int db, string secret, IReadOnlyDictionary<string, string> settings, ITestOutputHelper output)
    {
        _endpoint = endpoint;
        _db = db;
        _secret = secret;
        _settings = settings;
        _output = output;
    }

    /// <summary>Fast detection: 200 ms heartbeats, stale after 1 s, monitor and fallback every 250 ms.</summary>
    public static IReadOnlyDictionary<string, string> FastDetection { get; } = new Dictionary<string, string>(StringComparer.Ordinal)
    {
        ["HEARTBEAT_INTERVAL_MS"] = "200",
        ["HEARTBEAT_STALE_THRESHOLD_MS"] = "1000",
        ["HEARTBEAT_MONITOR_INTERVAL_MS"] = "250",
        ["ACK_POLL_INTERVAL_MS"] = "250",
        ["SWARM_MANAGER_INTERVAL_MS"] = "250",
        ["SPAWN_TIMEOUT_MS"] = "15000",
    };

    public IDatabase Db => _redis.GetDatabase(_db);

    public IServer Server => _redis.GetServer(_redis.GetEndPoints()[0]);

    /// <summary>The <c>REDIS_URL</c> every process of the fleet is given.</summary>
    public string RedisUrl => $"redis://{_endpoint}/{_db}";

    /// <summary>Every process started so far.</summary>
    public IEnumerable<CfnRun> Runs => _runs.Values;

    /// <param name="settings">Environment of every process on top of <see cref="FastDetection"/>.</param>
    public static async Task<ServeFleet> StartAsync(int db, string secret, ITestOutputHelper output, IReadOnlyDictionary<string, string>? settings = null)
    {
        var endpoint = TestRedis.Endpoint;
        var merged = new Dictionary<string, string>(FastDetection, StringComparer.Ordinal);
        foreach (var (key, value) in settings ?? new Dictionary<string, string>())
        {
            merged[key] = value;
        }

        var fleet = new ServeFleet(endpoint, db, secret, merged, output)
        {
            _redis = await ConnectionMultiplexer.ConnectAsync($"{endpoint},allowAdmin=true"),
        };
        await fleet.Server.FlushDatabaseAsync(db);
        return fleet;
    }

    /// <summary>Starts <c>cfn serve --role <paramref name="role"/></c> as <paramref name="name"/> and waits until it is live.</summary>
    public async Task<CfnRun> ServeAsync(string name, string role, params (string, string)[] extra)
    {
        _ports[name] = CfnRun.FreePort();
        var env = new Dictionary<string, string?>
        {
            ["REDIS_URL"] = RedisUrl,
            ["HTTP_PORT"] = _ports[name].ToString(CultureInfo.InvariantCulture),
            ["BLOCKING_COORDINATION_SECRET"] = _secret,
        };
        foreach (var (key, value) in _settings)
        {
            env[key] = value;
        }

        foreach (var (key, value) in extra)
        {
            env[key] = value;
        }

        var run = _runs[name] = CfnRun.Start(["serve", "--role", role], env);
        await run.WaitReadyAsync(_ports[name], "/health/live");
        return run;
    }

    public int PortOf(string name) => _ports[name];

    public IReadOnlyList<string> Lines(string name) => _runs[name].Lines;

    /// <summary>Polls <paramref name="probe"/> every 50 ms; fails naming <paramref name="what"/>, with every process's last lines, after <paramref name="seconds"/>.</summary>
    public async Task WaitForAsync(Func<Task<bool>> probe, string what, int seconds = 30)
    {
        var until = DateTime.UtcNow.AddSeconds(seconds);
        while (!await probe())
        {
            if (DateTime.UtcNow > until)
            {
                Dump();
                Assert.Fail($"{what}: not within {seconds} s");
            }

            await Task.Delay(50);
        }
    }

    /// <summary>Writes the last 40 lines of every process to the test output.</summary>
    public void Dump()
    {
        foreach (var (name, run) in _runs)
        {
            _output.WriteLine($"--- {name}");
            _output.WriteLine(run.Tail(40));
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var run in _runs.Values)
        {
            await run.DisposeAsync();
        }

        await Server.FlushDatabaseAsync(_db);
        await _redis.DisposeAsync();
    }
}
