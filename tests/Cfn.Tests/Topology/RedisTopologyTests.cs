using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using Cfn.Tests.Infrastructure;
using StackExchange.Redis;
using Xunit.Abstractions;

namespace Cfn.Tests.Topology;

/// <summary>
/// cfn against Redis as production runs it (SPEC D19), every server a real Debian redis-server on loopback started by
/// the test: an ACL user with only the documented commands, TLS with a CA the test makes with openssl, and Sentinel (a
/// primary, a replica, three sentinels) failed over while work flows, then the old primary killed outright.
/// </summary>
public sealed class RedisTopologyTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const string Secret = "topology-secret-0123456789abcdef0123456789abcdef";
    private readonly string _dir = Directory.CreateTempSubdirectory("cfn-topology-").FullName;
    private readonly List<IAsyncDisposable> _owned = [];

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        foreach (var owned in Enumerable.Reverse(_owned))
        {
            await owned.DisposeAsync();
        }

        Directory.Delete(_dir, recursive: true);
    }

    private async Task<RedisNode> NodeAsync(IEnumerable<string> arguments, int? port = null, bool sentinel = false, string? configFile = null)
    {
        port ??= CfnRun.FreePort();
        var node = await RedisNode.StartAsync(Path.Combine(_dir, $"node-{port}"), port.Value, (configFile is null ? new[] { "--port", $"{port}" } : []).Concat(arguments), configFile, sentinel);
        _owned.Add(node);
        return node;
    }

    /// <summary>A small <c>cfn up</c> on <paramref name="redis"/>; returns once it is ready, with its HTTP port.</summary>
    private async Task<(CfnRun Run, int Port)> UpAsync(string redis, Dictionary<string, string?>? extra = null)
    {
        var port = CfnRun.FreePort();
        var env = new Dictionary<string, string?>
        {
            ["BLOCKING_COORDINATION_SECRET"] = Secret,
            ["REDIS_URL"] = null,
            ["REDIS_HOST"] = null,
            ["VALIDATION_DURATION_MEDIAN_MS"] = "20",
            ["VALIDATION_DURATION_P95_MS"] = "50",
            ["VALIDATION_FAILURE_RATE"] = "0",
        };
        foreach (var (key, value) in extra ?? [])
        {
            env[key] = value;
        }

        var run = CfnRun.Start(["up", "--redis", redis, "--swarms", "1", "--coordinators", "2", "--validators", "2", "--http-port", $"{port}"], env);
        _owned.Add(run);
        await run.WaitForLineAsync(l => l == "ready", TimeSpan.FromSeconds(60));
        return (run, port);
    }

    private static Task<string> WorkCompletesAsync(CfnRun run, int items) =>
        run.WaitForLineAsync(l => run.Lines.Count(x => x.Contains("Work item complete", StringComparison.Ordinal)) >= items, TimeSpan.FromSeconds(60));

    [Fact]
    public async Task AclUser_CfnUpRunsWithOnlyTheDocumentedCommands()
    {
        var server = await NodeAsync(["--requirepass", "admin-pw-0123456789", "--save", "", "--appendonly", "no"]);
        await using var admin = await ConnectionMultiplexer.ConnectAsync($"127.0.0.1:{server.Port},password=admin-pw-0123456789,allowAdmin=true");
        // The ACL as docs/configuration.md gives it, read from the page so that the page cannot drift from what was tested.
        var rules = File.ReadAllLines(Repository.PathOf("docs/configuration.md")).Single(l => l.StartsWith("ACL SETUSER cfn on ", StringComparison.Ordinal))
            .Split(' ', StringSplitOptions.RemoveEmptyEntries)[2..].Select(r => r == ">CHANGE-ME" ? ">cfn-pw-0123456789" : r).ToArray();
        await admin.GetDatabase().ExecuteAsync("ACL", ["SETUSER", .. rules]);

        var (run, _) = await UpAsync($"redis://cfn:cfn-pw-0123456789@127.0.0.1:{server.Port}/0");
        await WorkCompletesAsync(run, 10);
        await run.SignalAsync("TERM");

        Assert.Equal(0, await run.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        Assert.DoesNotContain(run.Lines, l => l.Contains("NOPERM", StringComparison.Ordinal) || l.Contains("ERROR", StringComparison.Ordinal));
        Assert.DoesNotContain(run.Lines, l => l.Contains("cfn-pw-0123456789", StringComparison.Ordinal));
        // What the server refused: only the client library's own probes, which it does without.
        var refused = (RedisResult[])(await admin.GetDatabase().ExecuteAsync("ACL", "LOG"))!;
        var objects = refused.Select(e => ((RedisResult[])e!).Chunk(2).Single(p => (string?)p[0] == "object")[1].ToString()).Distinct().ToList();
        Assert.All(objects, o => Assert.Contains(o, new[] { "cluster|nodes", "cluster|slots", "config|get", "cluster", "config" }));
    }

    [Fact]
    public async Task Status_WithoutOrWithAWrongPassword_SaysRedisRefusedTheCredentials_PasswordNeverPrinted()
    {
        var server = await NodeAsync(["--requirepass", "right-pw-0123456789", "--save", "", "--appendonly", "no"]);
        foreach (var url in new[] { $"redis://127.0.0.1:{server.Port}/0", $"redis://:wrong-pw-0123456789@127.0.0.1:{server.Port}/0" })
        {
            var (code, stdout, stderr) = await CfnRun.RunToEndAsync(["status"], new Dictionary<string, string?> { ["REDIS_URL"] = url, ["REDIS_HOST"] = null });
            Assert.Equal(1, code);
            Assert.Equal("", stdout);
            Assert.Contains("Redis connection failed", stderr, StringComparison.Ordinal);
            Assert.Contains("Redis refused the credentials (NOAUTH or WRONGPASS)", stderr, StringComparison.Ordinal);
            Assert.Contains("REDIS_URL", stderr, StringComparison.Ordinal);
            Assert.DoesNotContain("wrong-pw", stderr, StringComparison.Ordinal);
        }

        var (ok, text, _) = await CfnRun.RunToEndAsync(["status"],
            new Dictionary<string, string?> { ["REDIS_URL"] = $"redis://:right-pw-0123456789@127.0.0.1:{server.Port}/0", ["REDIS_HOST"] = null });
        Assert.Equal(0, ok);
        Assert.StartsWith("SWARMS (0)", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Tls_CfnUpRunsOverRedissWithTheTestCa()
    {
        var ca = await MakeCertificatesAsync();
        var port = CfnRun.FreePort();
        await NodeAsync(["--port", "0", "--tls-port", $"{port}", "--tls-cert-file", Path.Combine(_dir, "server.crt"), "--tls-key-file",
            Path.Combine(_dir, "server.key"), "--tls-ca-cert-file", ca, "--tls-auth-clients", "no", "--save", "", "--appendonly", "no"], port);

        var (run, _) = await UpAsync($"rediss://127.0.0.1:{port}/0", new() { ["REDIS_TLS_CA_FILE"] = ca });
        await WorkCompletesAsync(run, 10);

        Assert.Contains(run.Lines, l => l.Contains($"REDIS=rediss://127.0.0.1:{port}/0 ", StringComparison.Ordinal));
        Assert.DoesNotContain(run.Lines, l => l.Contains("Redis connection failed", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Tls_UntrustedServerCertificate_ConnectionRefusedAndReported()
    {
        var ca = await MakeCertificatesAsync();
        var port = CfnRun.FreePort();
        await NodeAsync(["--port", "0", "--tls-port", $"{port}", "--tls-cert-file", Path.Combine(_dir, "server.crt"), "--tls-key-file",
            Path.Combine(_dir, "server.key"), "--tls-ca-cert-file", ca, "--tls-auth-clients", "no", "--save", "", "--appendonly", "no"], port);
        var httpPort = CfnRun.FreePort();

        await using var run = CfnRun.Start(["up", "--redis", $"rediss://127.0.0.1:{port}/0", "--http-port", $"{httpPort}"],
            new Dictionary<string, string?> { ["BLOCKING_COORDINATION_SECRET"] = Secret, ["REDIS_TLS_CA_FILE"] = null });

        await run.WaitForLineAsync(l => l.Contains($"Redis connection failed host=127.0.0.1 port={port}", StringComparison.Ordinal), TimeSpan.FromSeconds(30));
        Assert.DoesNotContain(run.Lines, l => l == "ready");
    }

    [Fact]
    public async Task Sentinel_FailoverDuringLoad_EveryItemCompletesOnceAndNoFalseDeath()
    {
        var primary = await NodeAsync(["--save", "", "--appendonly", "no"]);
        var replica = await NodeAsync(["--save", "", "--appendonly", "no", "--replicaof", "127.0.0.1", $"{primary.Port}"]);
        var sentinels = new List<RedisNode>();
        for (var i = 0; i < 3; i++)
        {
            var port = CfnRun.FreePort();
            var conf = Path.Combine(_dir, $"sentinel-{port}.conf");
            await File.WriteAllTextAsync(conf, $"port {port}\nsentinel monitor mymaster 127.0.0.1 {primary.Port} 2\n" +
                "sentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 5000\n");
            sentinels.Add(await NodeAsync([], port, sentinel: true, configFile: conf));
        }

        var url = $"redis://{string.Join(',', sentinels.Select(s => $"127.0.0.1:{s.Port}"))}/0?serviceName=mymaster";
        // Heartbeats fast and staleness short, so that a failover that made healthy coordinators look dead would show.
        var (run, httpPort) = await UpAsync(url, new()
        {
            ["HEARTBEAT_INTERVAL_MS"] = "500",
            ["HEARTBEAT_STALE_THRESHOLD_MS"] = "4000",
            ["HEARTBEAT_MONITOR_INTERVAL_MS"] = "500",
            ["HEARTBEAT_MAX_WARNINGS"] = "2",
        });
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{httpPort}"), Timeout = TimeSpan.FromSeconds(10) };

        // The ledger: every item the API accepted, submitted at a steady rate across the failover.
        var accepted = new List<string>();
        var submitting = SubmitAsync(http, "before", 60, accepted);
        await Task.Delay(1500);
        var failoverAt = Stopwatch.StartNew();
        var failoverStarted = DateTime.UtcNow;
        await CfnRun.ShellAsync($"redis-cli -p {sentinels[0].Port} SENTINEL FAILOVER mymaster");
        await submitting;
        Assert.True(await EventuallyAsync(async () => (await CfnRun.ShellAsync($"redis-cli -p {replica.Port} ROLE")).StartsWith("master", StringComparison.Ordinal),
            TimeSpan.FromSeconds(30)), "the replica was never promoted");
        try
        {
            await SavingOutputOnFailureAsync(run, httpPort, () => WaitAllCompletedAsync(http, accepted, run));
        }
        finally
        {
            // Which failovers the sentinels made: a second one back to the old primary loses writes it never received.
            foreach (var line in sentinels.SelectMany(s => s.Log.Split('\n')).Where(l => l.Contains("+switch-master", StringComparison.Ordinal) || l.Contains("+odown", StringComparison.Ordinal) || l.Contains("+sdown master", StringComparison.Ordinal)))
            {
                output.WriteLine($"sentinel: {line}");
            }
        }

        output.WriteLine($"failover: {accepted.Count} of 60 submissions accepted, every one completed once; all done {failoverAt.Elapsed.TotalSeconds:F1} s after SENTINEL FAILOVER");
        output.WriteLine($"longest pause between two completed items around the failover: {LongestPause(run, failoverStarted).TotalMilliseconds:F0} ms");

        // Then the old primary (the only replica now) is killed outright. Through Sentinel a primary needs a replica to
        // confirm work (REDIS_MIN_REPLICAS unset: 1), so intake is refused, with its reason, until one is back; what was
        // accepted is not lost. A new replica (what the StatefulSet restarting the pod gives) and intake resumes.
        await primary.KillAsync();
        var refused = await CfnRun.ShellAsync(
            $"curl -s -X POST http://127.0.0.1:{httpPort}/api/swarms/swarm-1/work -H 'Content-Type: application/json' -d '{{\"workId\":\"no-replica\",\"input\":1}}'");
        Assert.Contains("not confirmed by a replica", refused, StringComparison.Ordinal);
        Assert.Contains("REDIS_MIN_REPLICAS", refused, StringComparison.Ordinal);
        var newPrimary = replica.Port;
        await NodeAsync(["--save", "", "--appendonly", "no", "--replicaof", "127.0.0.1", $"{newPrimary}"]);
        Assert.True(await EventuallyAsync(async () => (await CfnRun.ShellAsync($"redis-cli -p {newPrimary} INFO replication")).Contains(",state=online,", StringComparison.Ordinal),
            TimeSpan.FromSeconds(30)), "the new replica never came online");
        var after = new List<string>();
        await SubmitAsync(http, "after", 20, after);
        await SavingOutputOnFailureAsync(run, httpPort, () => WaitAllCompletedAsync(http, after, run));

        foreach (var refusal in Refusals.Take(10))
        {
            output.WriteLine($"refused: {refusal}");
        }

        output.WriteLine($"old primary killed: intake refused while no replica confirmed it; with a new replica {after.Count} of 20 submissions accepted, every one completed once");

        foreach (var line in run.Lines.Where(l => l.Contains("primary changed", StringComparison.Ordinal) || l.Contains("staleness is counted", StringComparison.Ordinal) ||
                     l.Contains(" WARN ", StringComparison.Ordinal) || l.Contains(" ERROR ", StringComparison.Ordinal)).Take(80))
        {
            output.WriteLine(line);
        }

        foreach (var refusal in Refusals.Take(10))
        {
            output.WriteLine($"refused: {refusal}");
        }

        Assert.DoesNotContain(run.Lines, l => l.Contains("Marking coordinator as DEAD", StringComparison.Ordinal));
        Assert.True(accepted.Count >= 30, $"only {accepted.Count} of 60 submissions accepted");
        Assert.True(after.Count >= 15, $"only {after.Count} of 20 submissions accepted once a new replica was up");
    }

    /// <summary>Runs <paramref name="check"/>; when it fails, <c>cfn up</c>'s whole output is saved to a file the test names.</summary>
    private async Task SavingOutputOnFailureAsync(CfnRun run, int httpPort, Func<Task> check)
    {
        try
        {
            await check();
        }
        catch
        {
            var saved = Path.Combine(Path.GetTempPath(), $"cfn-failover-{httpPort}.log");
            await File.WriteAllTextAsync(saved, run.Output);
            output.WriteLine($"cfn up's output: {saved}");
            throw;
        }
    }

    /// <summary>The longest time between two "Work item complete" lines from 2 s before <paramref name="from"/> to 30 s after it.</summary>
    private static TimeSpan LongestPause(CfnRun run, DateTime from)
    {
        var times = run.Lines.Where(l => l.Contains("Work item complete", StringComparison.Ordinal))
            .Select(l => DateTime.Parse(l.Split(' ')[0], CultureInfo.InvariantCulture, DateTimeStyles.AdjustToUniversal))
            .Where(t => t > from.AddSeconds(-2) && t < from.AddSeconds(30)).Order().ToList();
        return times.Count < 2 ? TimeSpan.Zero : times.Zip(times.Skip(1), (a, b) => b - a).Max();
    }

    /// <summary>Refused submissions with their answers (printed by the failover test).</summary>
    private static readonly System.Collections.Concurrent.ConcurrentBag<string> Refusals = [];

    /// <summary>
    /// Submits <paramref name="count"/> items, 20 per second, as a client that follows the API's advice: a refused one
    /// (503, not confirmed by a replica) is sent again with the same work ID, up to three times. The accepted ones (200)
    /// go in <paramref name="ledger"/>; a retry of an item whose first send did reach Redis must still complete once.
    /// </summary>
    private static async Task SubmitAsync(HttpClient http, string prefix, int count, List<string> ledger)
    {
        for (var i = 0; i < count; i++)
        {
            var id = $"ledger-{prefix}-{i}";
            for (var attempt = 0; attempt < 3; attempt++)
            {
                try
                {
                    using var response = await http.PostAsync("/api/swarms/swarm-1/work",
                        new StringContent($$$"""{"workId":"{{{id}}}","input":{"n":{{{i}}}}}""", Encoding.UTF8, "application/json"));
                    if (response.StatusCode == HttpStatusCode.OK)
                    {
                        ledger.Add(id);
                        break;
                    }

                    Refusals.Add($"{id}: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
                }
                catch (HttpRequestException)
                {
                    // not accepted: not in the ledger
                }
                catch (TaskCanceledException)
                {
                    // not answered in time: not in the ledger
                }

                await Task.Delay(300);
            }

            await Task.Delay(50);
        }
    }

    /// <summary>Waits until every ledger item's record is completed, with exactly one completion; returns how long it took.</summary>
    private static async Task<TimeSpan> WaitAllCompletedAsync(HttpClient http, List<string> ledger, CfnRun? run = null)
    {
        var clock = Stopwatch.StartNew();
        var open = new HashSet<string>(ledger);
        var deadline = TimeSpan.FromSeconds(90);
        while (open.Count > 0 && clock.Elapsed < deadline)
        {
            foreach (var id in open.ToList())
            {
                try
                {
                    using var response = await http.GetAsync($"/api/swarms/swarm-1/work/{id}");
                    if (response.StatusCode != HttpStatusCode.OK)
                    {
                        continue;
                    }

                    using var record = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
                    var status = record.RootElement.GetProperty("status").GetString();
                    Assert.NotEqual("failed", status);
                    if (status == "completed")
                    {
                        var completions = record.RootElement.GetProperty("history").EnumerateArray()
                            .Count(e => e.GetProperty("event").GetString() == "completed");
                        Assert.True(completions == 1, $"{id} completed {completions} times: {record.RootElement}");
                        open.Remove(id);
                    }
                }
                catch (HttpRequestException)
                {
                    // the API is reconnecting to the new primary: ask again
                }
            }

            await Task.Delay(200);
        }

        var records = new List<string>();
        foreach (var id in open.Take(5))
        {
            using var response = await http.GetAsync($"/api/swarms/swarm-1/work/{id}").ConfigureAwait(false);
            records.Add($"{id}: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync().ConfigureAwait(false)}");
            records.AddRange(run?.Lines.Where(l => l.Contains(id, StringComparison.Ordinal) || l.Contains("primary changed", StringComparison.Ordinal) || l.Contains("not confirmed", StringComparison.Ordinal) || l.Contains("record lost", StringComparison.Ordinal)).Take(40) ?? []);
        }

        Assert.True(open.Count == 0, $"{open.Count} accepted item(s) never completed: {string.Join("\n", records)}");
        return clock.Elapsed;
    }

    /// <summary>A test CA and a server certificate for 127.0.0.1 signed by it (openssl); returns the CA's path.</summary>
    private async Task<string> MakeCertificatesAsync()
    {
        string P(string name) => Path.Combine(_dir, name);
        await File.WriteAllTextAsync(P("ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
        foreach (var command in new[]
        {
            $"openssl req -x509 -newkey rsa:2048 -nodes -keyout {P("ca.key")} -out {P("ca.crt")} -days 2 -subj /CN=cfn-test-ca",
            $"openssl req -newkey rsa:2048 -nodes -keyout {P("server.key")} -out {P("server.csr")} -subj /CN=localhost",
            $"openssl x509 -req -in {P("server.csr")} -CA {P("ca.crt")} -CAkey {P("ca.key")} -CAcreateserial -out {P("server.crt")} -days 2 -extfile {P("ext.cnf")}",
        })
        {
            await CfnRun.ShellAsync(command);
        }

        return P("ca.crt");
    }
}
