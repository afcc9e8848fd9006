using System.Globalization;
using System.Text.Json;
using Cfn.Tests.Infrastructure;
using StackExchange.Redis;

namespace Cfn.Tests.Commands;

#pragma warning disable CA1416 // the agents are bash scripts: these tests run on Linux only, as the whole suite does

/// <summary>
/// <c>cfn agent …</c> through real processes and the real redis-server (database 38): bash agents, each kept alive by
/// <c>cfn agent run</c>, talk through the verbs only, as a user's shell agent would. Every exit code is produced for real;
/// the full CFN loop of bash agents is the example's test (<c>Examples/ExampleAgentsTests</c>).
/// </summary>
public sealed class AgentCommandTests : IAsyncLifetime
{
    private const int Db = 38;
    private const string Secret = "agent-command-secret-0123456789abcdef0123456789";
    private readonly string _dir = Directory.CreateTempSubdirectory("cfn-agent-").FullName;
    private ConnectionMultiplexer _redis = null!;
    private string _endpoint = "";

    private IDatabase Database => _redis.GetDatabase(Db);

    public async Task InitializeAsync()
    {
        _endpoint = TestRedis.Endpoint;
        (_redis, _, _) = await TestRedis.OpenEmptyAsync(Db);
        await CfnRun.InstallLauncherAsync(_dir);
    }

    public async Task DisposeAsync()
    {
        await Server.FlushDatabaseAsync(Db);
        await _redis.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    private IServer Server => _redis.GetServer(_redis.GetEndPoints()[0]);

    private Dictionary<string, string?> Environment(Dictionary<string, string?>? extra = null)
    {
        var env = new Dictionary<string, string?>
        {
            ["REDIS_URL"] = $"redis://{_endpoint}/{Db}",
            ["BLOCKING_COORDINATION_SECRET"] = Secret,
            ["PATH"] = _dir + ":" + System.Environment.GetEnvironmentVariable("PATH"),
            ["CFN_AGENT_ID"] = null,
            ["CFN_SWARM_ID"] = null,
            ["CFN_AGENT_EPOCH"] = null,
        };
        foreach (var (k, v) in extra ?? [])
        {
            env[k] = v;
        }

        return env;
    }

    private string Script(string name, string body)
    {
        var path = Path.Combine(_dir, name);
        File.WriteAllText(path, "#!/bin/bash\nset -u\n" + body + "\n");
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        return path;
    }

    [Theory]
    [InlineData(new[] { "send", "--to", "bad id!", "--type", "validation" }, "--to")]
    [InlineData(new[] { "send", "--to", "val-x", "--type", "gossip" }, "--type")]
    [InlineData(new[] { "send", "--to", "val-x", "--type", "validation", "--payload", "{not json" }, "--payload")]
    [InlineData(new[] { "send", "--to", "val-x", "--type", "validation", "--wait", "--timeout-ms", "-5" }, "--timeout-ms")]
    [InlineData(new[] { "reply", "--to", "val-x", "--in-reply-to", "val-x:agent-1:validation:1:5", "--payload", "[1]" }, "--payload")]
    [InlineData(new[] { "wait", "--for", "val-x,", "--message-id", "a b" }, "--message-id")]
    public async Task BadInput_Exit2NamingTheFieldAndNothingWritten(string[] args, string field)
    {
        var (epoch, keep) = await StartHeldAgentAsync("agent-1");
        await using (keep)
        {
            var before = await Server.DatabaseSizeAsync(Db);

            var (code, stdout, stderr) = await VerbAsync(args, "agent-1", epoch);

            Assert.Equal(2, code);
            Assert.Equal("", stdout);
            Assert.StartsWith($"cfn agent {args[0]}: {field}: ", stderr, StringComparison.Ordinal);
            Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
            Assert.Equal(before, await Server.DatabaseSizeAsync(Db));
        }
    }

    [Fact]
    public async Task Verb_OutsideRun_Exit2()
    {
        var (code, _, stderr) = await CfnRun.RunToEndAsync(["agent", "receive", "--timeout-ms", "100"], Environment());

        Assert.Equal(2, code);
        Assert.Contains("runs inside `cfn agent run`", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Wait_NobodyAcks_Exit3WithThePartialResult()
    {
        var (epoch, keep) = await StartHeldAgentAsync("agent-2");
        await using (keep)
        {
            var (code, stdout, _) = await VerbAsync(["wait", "--for", "peer-1,peer-2", "--message-id", "agent-2:peer-1:validation:1:77", "--timeout-ms", "400"], "agent-2", epoch);

            Assert.Equal(3, code);
            var result = JsonDocument.Parse(stdout).RootElement;
            Assert.Equal("timeout", result.GetProperty("status").GetString());
            Assert.Equal(["peer-1", "peer-2"], result.GetProperty("missing").EnumerateArray().Select(e => e.GetString()!).ToArray());
        }
    }

    [Fact]
    public async Task Verb_StaleEpoch_Exit5AndNothingSent()
    {
        var (epoch, keep) = await StartHeldAgentAsync("agent-3");
        await using (keep)
        {
            // Not the current epoch (the one a superseded instance would still hold).
            var (code, _, stderr) = await VerbAsync(["send", "--to", "peer-3", "--type", "validation"], "agent-3", epoch + 1);

            Assert.Equal(5, code);
            Assert.Contains("superseded", stderr, StringComparison.Ordinal);
            Assert.False(await Database.KeyExistsAsync("blocking:inbox:peer-3"));
        }
    }

    [Fact]
    public async Task Run_ProgramDies_HeartbeatStopsAndKeysStayForRecovery_ExitCodePassedOn()
    {
        var script = Script("dies.sh", "exit 7");

        var (code, _, stderr) = await CfnRun.RunToEndAsync(["agent", "run", "--id", "agent-4", "--swarm", "swarm-d", "--", script], Environment());

        Assert.Equal(7, code);
        Assert.Contains("left for recovery", stderr, StringComparison.Ordinal);
        Assert.True(await Database.KeyExistsAsync("blocking:heartbeat:agent-4"), "a died agent's heartbeat key must stay for the monitor to judge");
        Assert.NotNull(await Database.SortedSetScoreAsync("blocking:coordinators", "agent-4"));
    }

    [Fact]
    public async Task Run_KilledWhileAPeerWaits_DetectedAndNotReplaced_WaiterGetsPeerDeadExit4()
    {
        var fast = new Dictionary<string, string?>
        {
            ["HEARTBEAT_INTERVAL_MS"] = "300",
            ["HEARTBEAT_STALE_THRESHOLD_MS"] = "1500",
            ["HEARTBEAT_MONITOR_INTERVAL_MS"] = "300",
            ["HEARTBEAT_MAX_WARNINGS"] = "2",
        };
        var port = CfnRun.FreePort();
        await using var handler = CfnRun.Start(["serve", "--role", "timeout-handler"],
            Environment(new(fast) { ["HTTP_PORT"] = port.ToString(CultureInfo.InvariantCulture) }));
        await handler.WaitReadyAsync(port);
        // The validator's program never reads its inbox; once `go` exists it tries a verb as the (by then dead) agent.
        var go = Path.Combine(_dir, "go");
        var validator = Script("slow-validator.sh", $"""
            echo $$ > "{_dir}/validator.pid"
            while [[ ! -e "{go}" ]]; do sleep 0.1; done
            cfn agent receive --timeout-ms 1000 >/dev/null 2>"{_dir}/late.err"
            echo $? > "{_dir}/late.code"
            """);
        var coordinator = Script("waiting-coordinator.sh", """
            cfn agent send --to val-k --type validation --payload '{"n":1}' --wait --timeout-ms 60000 > "$OUT"
            echo $? > "$OUT.code"
            """);
        var runs = new List<CfnRun>();
        try
        {
            var killed = CfnRun.Start(["agent", "run", "--id", "val-k", "--swarm", "validators", "--", validator], Environment(fast));
            runs.Add(killed);
            await WaitRegisteredAsync("val-k");
            Assert.Equal("shell", (string?)await Database.HashGetAsync("coordinator:agents", "val-k"));
            var output = Path.Combine(_dir, "wait.json");
            var waiter = CfnRun.Start(["agent", "run", "--id", "coord-k", "--swarm", "swarm-k", "--", coordinator],
                Environment(new(fast) { ["OUT"] = output }));
            runs.Add(waiter);
            // The send went out and the wait runs (the signal sits unread in val-k's inbox).
            Assert.True(await EventuallyAsync(async () => await Database.StreamLengthAsync("blocking:inbox:val-k") == 1, TimeSpan.FromSeconds(30)),
                waiter.Tail(20));

            await killed.SignalAsync("KILL");

            Assert.True(0 == await waiter.WaitForExitAsync(TimeSpan.FromSeconds(30)), waiter.Tail(30) + "\n" + handler.Tail(30));
            Assert.Equal("4", (await File.ReadAllTextAsync(output + ".code")).Trim());
            var result = JsonDocument.Parse(await File.ReadAllTextAsync(output)).RootElement;
            Assert.Equal("peer_dead", result.GetProperty("status").GetString());
            Assert.Equal(["val-k"], result.GetProperty("missing").EnumerateArray().Select(e => e.GetString()!).ToArray());
            Assert.Contains(handler.Lines, l => l.Contains("Marking coordinator as DEAD coordinator=val-k", StringComparison.Ordinal));
            Assert.Contains(handler.Lines, l => l.Contains("Dead agent is not replaced agent=val-k kind=shell", StringComparison.Ordinal));
            // No replacement asked for (a built-in coordinator would ACK and never answer), the agent deregistered.
            Assert.Equal(0, await Database.SortedSetLengthAsync("coordinator:spawns"));
            Assert.Null(await Database.SortedSetScoreAsync("blocking:coordinators", "val-k"));
            Assert.False(await Database.HashExistsAsync("coordinator:agents", "val-k"));

            // The orphaned program outlives its `cfn agent run`; the ID was fenced at its death, so its verbs are refused.
            await File.WriteAllTextAsync(go, "");
            Assert.True(await EventuallyAsync(() => Task.FromResult(File.Exists(Path.Combine(_dir, "late.code"))), TimeSpan.FromSeconds(30)));
            Assert.Equal("5", (await File.ReadAllTextAsync(Path.Combine(_dir, "late.code"))).Trim());
        }
        finally
        {
            if (File.Exists(Path.Combine(_dir, "validator.pid")))
            {
                await CfnRun.ShellAsync($"kill -9 {(await File.ReadAllTextAsync(Path.Combine(_dir, "validator.pid"))).Trim()}", allowFailure: true);
            }

            foreach (var run in runs)
            {
                await run.DisposeAsync();
            }
        }
    }

    /// <summary>An agent kept alive by <c>cfn agent run</c> around <c>sleep</c>; returns its epoch and the run to dispose.</summary>
    private async Task<(long Epoch, CfnRun Run)> StartHeldAgentAsync(string id)
    {
        var run = CfnRun.Start(["agent", "run", "--id", id, "--swarm", "swarm-t", "--", "sleep", "60"], Environment());
        await WaitRegisteredAsync(id);
        return ((long)await Database.StringGetAsync($"coordinator:epoch:{id}"), run);
    }

    /// <summary>Waits until the agent's start has written everything it writes (epoch, registry, heartbeat, activity).</summary>
    private async Task WaitRegisteredAsync(string id) =>
        Assert.True(await EventuallyAsync(async () => await Database.KeyExistsAsync($"coordinator:epoch:{id}") &&
            (await Database.SortedSetScoreAsync("blocking:coordinators", id)).HasValue &&
            (await Database.KeyExistsAsync($"blocking:heartbeat:{id}") || await Database.KeyExistsAsync($"validator:heartbeat:{id}")) &&
            await Database.KeyExistsAsync($"coordinator:activity:{id}"), TimeSpan.FromSeconds(30)), $"{id} never started");

    private Task<(int Code, string Stdout, string Stderr)> VerbAsync(string[] args, string id, long epoch) =>
        CfnRun.RunToEndAsync(["agent", .. args], Environment(new()
        {
            ["CFN_AGENT_ID"] = id,
            ["CFN_SWARM_ID"] = "swarm-t",
            ["CFN_AGENT_EPOCH"] = epoch.ToString(CultureInfo.InvariantCulture),
        }));
}
