using System.Globalization;
using System.Text.Json;
using Cfn.Coordination;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Security;
using Cfn.Coordination.Signals;
using Cfn.Tests.Infrastructure;
using StackExchange.Redis;

namespace Cfn.Tests.Commands;

/// <summary>
/// <c>cfn up</c> as a real process: its private redis-server, the runbook's Redis and curl commands run verbatim apart
/// from host and port (SPEC §5 #2, #4, #5, #15, #36, #60, #65, #69, #84, #85), SIGQUIT (dump, keeps running) and
/// SIGTERM (exit 0, keys gone).
/// </summary>
public sealed class UpCommandTests
{
    private const string Secret = "up-test-secret-0123456789abcdef0123456789abcdef";

    private static readonly TimeSpan Startup = TimeSpan.FromSeconds(90);

    [Fact]
    public async Task Up_PrivateRedis_RunbookCommandsWork_SigquitDumps_SigtermStops()
    {
        var http = CfnRun.FreePort();
        // Validators that hold one request at a time (no queue): a validator ACKs a request on arrival, so only a busy
        // one keeps its next sender waiting long enough for #65 below to see a coordinator waiting for it.
        var environment = Environment();
        environment["VALIDATOR_QUEUE_CAPACITY"] = "0";
        await using var up = CfnRun.Start(["up", "--http-port", $"{http}", "--swarms", "2", "--coordinators", "3", "--validators", "3"], environment);
        await up.WaitForLineAsync(l => l == "ready", Startup);
        var redisLine = up.Lines.First(l => l.StartsWith("redis: ", StringComparison.Ordinal));
        var endpoint = redisLine.Split(' ')[1];
        Assert.Contains(up.Lines, l => l == $"http: http://127.0.0.1:{http}");
        var host = endpoint[..endpoint.LastIndexOf(':')];
        var port = endpoint[(endpoint.LastIndexOf(':') + 1)..];
        // The runbook's `redis-cli -h redis.prod.example.com` with the host (and port) of this run.
        var cli = $"redis-cli -h {host} -p {port}";
        var api = $"http://localhost:{http}";

        // #2: one K1 key per live coordinator (2 x 3); the 3 validators heartbeat to keys of their own.
        var actual = int.Parse((await CfnRun.ShellAsync($"{cli} --scan --pattern \"blocking:heartbeat:*\" | wc -l")).Trim(), CultureInfo.InvariantCulture);
        Assert.Equal(6, actual);
        Assert.Equal("3", (await CfnRun.ShellAsync($"{cli} --scan --pattern \"validator:heartbeat:*\" | wc -l")).Trim());

        // #4 and #5: spawn requests are single-line JSON strings naming the new coordinator, its swarm and priority.
        var spawns = await CfnRun.ShellAsync(
            $"{cli} --scan --pattern \"coordinator:spawn:*\" | head -10 | while read key; do {cli} get $key | jq -c '{{newId: .newCoordinatorId, swarmId: .swarmId, priority: .priority}}'; done");
        Assert.Contains("\"swarmId\":\"swarm-1\"", spawns, StringComparison.Ordinal);
        Assert.DoesNotContain("null", spawns, StringComparison.Ordinal);
        var bySwarm = await CfnRun.ShellAsync($"{cli} --scan --pattern \"coordinator:spawn:*\" | xargs {cli} mget | jq -r '.swarmId' | sort | uniq -c | sort -rn");
        Assert.Matches(@"^\s*3 swarm-[12]\n\s*3 swarm-[12]\n$", bySwarm);

        // #15: every activity record has lastActivity in ms, so the age is a few seconds, not decades.
        var ages = await CfnRun.ShellAsync(
            $"{cli} --scan --pattern \"coordinator:activity:*\" | while read key; do ACTIVITY=$({cli} get $key); LAST=$(echo $ACTIVITY | jq -r .lastActivity); " +
            "AGE=$(($(date +%s) - ($LAST / 1000))); COORD=$(echo $key | sed 's/coordinator:activity://'); echo \"$COORD: ${AGE}s since last activity\"; done | sort -t: -k2 -rn | head -10");
        var ageLines = ages.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.NotEmpty(ageLines);
        Assert.All(ageLines, l => Assert.Matches(@"^[a-z0-9-]+: \d{1,3}s since last activity$", l));

        // #36: pending signals, a number.
        Assert.Matches(@"^\d+\n$", await CfnRun.ShellAsync($"{cli} --scan --pattern \"blocking:signal:*\" | wc -l"));

        // #60: K1 has coordinatorId and timestamp in ms.
        var heartbeats = await CfnRun.ShellAsync(
            $"{cli} --scan --pattern \"blocking:heartbeat:*\" | head -5 | while read key; do {cli} get $key | jq -c '{{coordinator: .coordinatorId, age: (now - (.timestamp / 1000))}}'; done");
        foreach (var line in heartbeats.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            using var doc = JsonDocument.Parse(line);
            Assert.False(string.IsNullOrEmpty(doc.RootElement.GetProperty("coordinator").GetString()));
            Assert.InRange(doc.RootElement.GetProperty("age").GetDouble(), -5, 60);
        }

        // #65: the swarm works, so sooner or later a coordinator waits for its validators.
        var waitsFor = await EventuallyAsync(
            () => CfnRun.ShellAsync(
                $"{cli} --scan --pattern \"coordinator:activity:*\" | while read key; do ACTIVITY=$({cli} get $key); COORD=$(echo $key | sed 's/coordinator:activity://'); " +
                "WAITING_FOR=$(echo $ACTIVITY | jq -r '.waitingFor // \"none\"'); echo \"$COORD waits for $WAITING_FOR\"; done"),
            output => output.Contains("waits for validator-", StringComparison.Ordinal), "no coordinator ever waited for a validator",
            TimeSpan.FromSeconds(30), pollMs: 200);

        Assert.Contains("waits for validator-", waitsFor, StringComparison.Ordinal);

        // A validator's state shows its queue depth: accepted and waiting (none here, the capacity is 0) and validating.
        using (var validatorState = JsonDocument.Parse(await CfnRun.ShellAsync($"curl -s '{api}/api/coordinator/state?coordinatorId=validator-0'")))
        {
            var work = validatorState.RootElement.GetProperty("work");
            Assert.Equal("validator-0", work.GetProperty("validatorId").GetString());
            Assert.Equal(0, work.GetProperty("queued").GetInt64());
            Assert.InRange(work.GetProperty("validating").GetInt64(), 0, 1);
            Assert.Equal("0", validatorState.RootElement.GetProperty("config").GetProperty("VALIDATOR_QUEUE_CAPACITY").GetString());
            Assert.Equal("1", validatorState.RootElement.GetProperty("config").GetProperty("VALIDATOR_CONCURRENCY").GetString());
        }

        // #69: force-unblock-all answers with the count and the IDs.
        using (var unblock = JsonDocument.Parse(await CfnRun.ShellAsync($"curl -s -X POST {api}/api/timeouts/force-unblock-all")))
        {
            Assert.True(unblock.RootElement.GetProperty("unblocked").GetInt32() >= 0);
            Assert.Equal(JsonValueKind.Array, unblock.RootElement.GetProperty("coordinators").ValueKind);
        }

        // #84/#85: a coordinator that died without cleaning up (its connection simply dropped, like a forced pod
        // deletion) leaves keys; the manual cleanup removes every blocking:*{id}* key.
        var stuck = "coordinator-crashed-" + Guid.NewGuid().ToString("N")[..6];
        await CrashCoordinatorAsync(endpoint, stuck);
        Assert.NotEqual("", (await CfnRun.ShellAsync($"{cli} --scan --pattern \"blocking:*{stuck}*\"")).Trim());
        using (var cleanup = JsonDocument.Parse(await CfnRun.ShellAsync($"curl -s -X POST {api}/api/coordinators/{stuck}/cleanup")))
        {
            Assert.True(cleanup.RootElement.GetProperty("keysDeleted").GetInt64() > 0);
        }

        Assert.Equal("", (await CfnRun.ShellAsync($"{cli} --scan --pattern \"blocking:*{stuck}*\"")).Trim());

        // D15: SIGQUIT prints a dump of at most 200 lines and cfn keeps running; no cycle, so no "deadlock".
        await up.SignalAsync("QUIT");
        await up.WaitForLineAsync(l => l.StartsWith("=== end of dump", StringComparison.Ordinal), TimeSpan.FromSeconds(60));
        var dump = up.Lines.SkipWhile(l => !l.StartsWith("=== cfn diagnostic dump", StringComparison.Ordinal))
            .TakeWhile(l => !l.StartsWith("=== end of dump", StringComparison.Ordinal)).Where(l => !l.Contains(" [", StringComparison.Ordinal)).ToList();
        Assert.InRange(dump.Count, 5, 200);
        Assert.DoesNotContain(dump, l => l.Contains("deadlock", StringComparison.Ordinal));
        Assert.Contains(dump, l => l.Contains("pending wait", StringComparison.Ordinal) || l.Contains("coordinators in this process: ", StringComparison.Ordinal));
        // The dump must not stop the process (a "does not happen" check, so no event to await): still running half a second later.
        await Task.Delay(500);
        Assert.False(up.HasExited);
        Assert.Equal("ok", JsonDocument.Parse(await CfnRun.ShellAsync($"curl -s {api}/health/live")).RootElement.GetProperty("status").GetString());

        // SIGTERM: exit 0 within 10 s, and the private redis-server is gone with it.
        await up.SignalAsync("TERM");
        Assert.Equal(0, await up.WaitForExitAsync(TimeSpan.FromSeconds(10)));
        Assert.Contains("cfn stopped", up.Output, StringComparison.Ordinal);
        Assert.NotEqual("PONG", (await CfnRun.ShellAsync($"{cli} ping 2>/dev/null", allowFailure: true)).Trim());
    }

    [Fact]
    public async Task Up_GivenRedis_SigtermRemovesEveryCoordinatorKey()
    {
        const int Db = 15;
        var endpoint = TestRedis.Endpoint;
        await using var redis = await ConnectionMultiplexer.ConnectAsync($"{endpoint},allowAdmin=true");
        var server = redis.GetServer(redis.GetEndPoints()[0]);
        await server.FlushDatabaseAsync(Db);
        var db = redis.GetDatabase(Db);

        var http = CfnRun.FreePort();
        await using var up = CfnRun.Start(["up", "--redis", $"redis://{endpoint}/{Db}", "--http-port", $"{http}", "--swarms", "1", "--coordinators", "2", "--validators", "2"],
            Environment());
        await up.WaitForLineAsync(l => l == "ready", Startup);
        Assert.Contains(up.Lines, l => l == $"redis: {endpoint}");
        Assert.Equal(2, await CountAsync(server, Db, "blocking:heartbeat:*"));
        Assert.Equal(2, await CountAsync(server, Db, "validator:heartbeat:*"));
        Assert.True(await db.SortedSetLengthAsync(Keys.Registry) >= 4);

        await up.SignalAsync("TERM");
        Assert.Equal(0, await up.WaitForExitAsync(TimeSpan.FromSeconds(10)));

        Assert.Equal(0, await CountAsync(server, Db, "blocking:heartbeat:*"));
        Assert.Equal(0, await CountAsync(server, Db, "validator:heartbeat:*"));
        Assert.Equal(0, await CountAsync(server, Db, "blocking:ack:*"));
        Assert.Equal(0, await CountAsync(server, Db, "coordinator:activity:*"));
        Assert.Equal(0, await db.SortedSetLengthAsync(Keys.Registry));
        Assert.Equal(0, await CountAsync(server, Db, "coordinator:work:*:*:*", inProgressOnly: true, db));
        await server.FlushDatabaseAsync(Db);
    }

    [Fact]
    public async Task Up_CoordinatorDiesWithoutCleanup_DeclaredDeadEscalatedReplacedAndAcknowledged()
    {
        var env = Environment();
        env["HEARTBEAT_INTERVAL_MS"] = "500";
        env["HEARTBEAT_STALE_THRESHOLD_MS"] = "2000";
        env["HEARTBEAT_MONITOR_INTERVAL_MS"] = "500";
        env["HEARTBEAT_MAX_WARNINGS"] = "2";
        var http = CfnRun.FreePort();
        await using var up = CfnRun.Start(["up", "--http-port", $"{http}", "--swarms", "1", "--coordinators", "2", "--validators", "2"], env);
        await up.WaitForLineAsync(l => l == "ready", Startup);
        var endpoint = up.Lines.First(l => l.StartsWith("redis: ", StringComparison.Ordinal)).Split(' ')[1];

        var dead = "coordinator-doomed-" + Guid.NewGuid().ToString("N")[..6];
        await CrashCoordinatorAsync(endpoint, dead);
        var deadValidator = "validator-doomed-" + Guid.NewGuid().ToString("N")[..6];
        await CrashCoordinatorAsync(endpoint, deadValidator, "validators");

        // The timeout handler confirms the death, escalates (K8 lock, K9 replacement request), the swarm manager starts the
        // replacement on the coordinator host, and the swarm's coordinators acknowledge it (SPEC §2.9, §2.13, L7, L8).
        await up.WaitForLineAsync(l => l.Contains("Marking coordinator as DEAD", StringComparison.Ordinal) && l.Contains(dead, StringComparison.Ordinal), TimeSpan.FromSeconds(30));
        await up.WaitForLineAsync(l => l.Contains("Dead coordinator escalation", StringComparison.Ordinal) && l.Contains(dead, StringComparison.Ordinal), TimeSpan.FromSeconds(30));
        var acknowledged = await up.WaitForLineAsync(l => l.Contains("Replacement coordinator acknowledged", StringComparison.Ordinal) &&
                                                          l.Contains($"old={dead} ", StringComparison.Ordinal), TimeSpan.FromSeconds(30));
        var replacement = acknowledged.Split(' ').First(t => t.StartsWith("new=", StringComparison.Ordinal))[4..];
        Assert.Matches("^coordinator-[0-9]{13}-[0-9a-z]{8}$", replacement);
        var metrics = await CfnRun.ShellAsync($"curl -s http://127.0.0.1:{http}/metrics");
        Assert.Contains("coordinator_spawns_total{swarm_id=\"swarm-1\",reason=\"replacement\"} 1", metrics, StringComparison.Ordinal);

        // A dead validator is replaced by a validator (it answers the validations handed over to it), not by a coordinator loop.
        await up.WaitForLineAsync(l => l.Contains("Coordinator spawned", StringComparison.Ordinal) && l.Contains($"replaces={deadValidator}", StringComparison.Ordinal),
            TimeSpan.FromSeconds(30));
        var validatorStarted = await up.WaitForLineAsync(l => l.Contains("Validator started validatorId=coordinator-", StringComparison.Ordinal), TimeSpan.FromSeconds(10));
        // The replacement validator heartbeats to its own key, not K1, and nothing of the dead validator is left (#85).
        var newValidator = validatorStarted.Split(' ').First(t => t.StartsWith("validatorId=", StringComparison.Ordinal))["validatorId=".Length..];
        var cli = $"redis-cli -h {endpoint[..endpoint.LastIndexOf(':')]} -p {endpoint[(endpoint.LastIndexOf(':') + 1)..]}";
        Assert.Equal($"validator:heartbeat:{newValidator}", (await CfnRun.ShellAsync($"{cli} --scan --pattern \"validator:heartbeat:{newValidator}\"")).Trim());
        Assert.Equal("", (await CfnRun.ShellAsync($"{cli} --scan --pattern \"blocking:heartbeat:{newValidator}\"")).Trim());
        Assert.True(await EventuallyAsync(async () => (await CfnRun.ShellAsync(
                $"{cli} --scan --pattern \"blocking:*{deadValidator}*\"; {cli} --scan --pattern \"validator:heartbeat:{deadValidator}\"")).Trim() == "", TimeSpan.FromSeconds(30), pollMs: 200),
            $"keys of the dead validator {deadValidator} are left");
        Assert.Contains($"timeout_events_total{{coordinator_id=\"{dead}\",reason=\"heartbeat\"", metrics, StringComparison.Ordinal);

        await up.SignalAsync("TERM");
        Assert.Equal(0, await up.WaitForExitAsync(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public async Task Up_DefaultShape_Runbook2HeartbeatKeysEqualRunningCoordinators_ValidatorsStillListedAndLive()
    {
        // The default `cfn up` (2 swarms x 3 coordinators, 3 validators), with the ConfigMap's value for #1.
        var env = Environment();
        env["SWARM_EXPECTED_COORDINATORS"] = "6";
        var http = CfnRun.FreePort();
        await using var up = CfnRun.Start(["up", "--http-port", $"{http}"], env);
        await up.WaitForLineAsync(l => l == "ready", Startup);
        var endpoint = up.Lines.First(l => l.StartsWith("redis: ", StringComparison.Ordinal)).Split(' ')[1];
        var cli = $"redis-cli -h {endpoint[..endpoint.LastIndexOf(':')]} -p {endpoint[(endpoint.LastIndexOf(':') + 1)..]}";
        var api = $"http://127.0.0.1:{http}";

        // Runbook §5 step 1, #1 and #2 verbatim (host and port of this run), the `if` included: no warning.
        var step1 = await CfnRun.ShellAsync(
            $"ACTUAL=$({cli} --scan --pattern \"blocking:heartbeat:*\" | wc -l)\n" +
            $"EXPECTED=$(curl -s {api}/api/swarms/status | jq .expectedCoordinators)\n" +
            "if [ $ACTUAL -gt $((EXPECTED * 2)) ]; then\n  echo \"WARNING: Actual ($ACTUAL) exceeds expected ($EXPECTED) by 2x\"\nfi\n" +
            "echo \"$ACTUAL $EXPECTED\"");
        Assert.Equal("6 6", step1.Trim());

        // The same count as the swarm manager's running coordinators, the validators' pseudo-swarm left out.
        var actual = int.Parse((await CfnRun.ShellAsync($"{cli} --scan --pattern \"blocking:heartbeat:*\" | wc -l")).Trim(), CultureInfo.InvariantCulture);
        using var status = JsonDocument.Parse(await CfnRun.ShellAsync($"curl -s {api}/api/swarms/status"));
        var swarms = status.RootElement.GetProperty("swarms").EnumerateArray().ToList();
        var running = swarms.Where(s => s.GetProperty("swarmId").GetString() != "validators").Sum(s => s.GetProperty("coordinatorCount").GetInt32());
        Assert.Equal(running, actual);
        Assert.Equal(6, running);
        var k1Owners = (await CfnRun.ShellAsync($"{cli} --scan --pattern \"blocking:heartbeat:*\""))
            .Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(k => k["blocking:heartbeat:".Length..]).Order(StringComparer.Ordinal);
        Assert.Equal(swarms.Where(s => s.GetProperty("swarmId").GetString() != "validators")
            .SelectMany(s => s.GetProperty("coordinators").EnumerateArray().Select(c => c.GetString()!)).Order(StringComparer.Ordinal), k1Owners);

        // The validators are still monitored and listed: the pseudo-swarm, their own heartbeat keys, and they validate.
        var validators = Assert.Single(swarms, s => s.GetProperty("swarmId").GetString() == "validators");
        Assert.Equal("running", validators.GetProperty("status").GetString());
        Assert.Equal(["validator-0", "validator-1", "validator-2"], validators.GetProperty("coordinators").EnumerateArray().Select(c => c.GetString()!));
        Assert.Equal(["validator:heartbeat:validator-0", "validator:heartbeat:validator-1", "validator:heartbeat:validator-2"],
            (await CfnRun.ShellAsync($"{cli} --scan --pattern \"validator:heartbeat:*\"")).Split('\n', StringSplitOptions.RemoveEmptyEntries).Order(StringComparer.Ordinal));
        using (var state = JsonDocument.Parse(await CfnRun.ShellAsync($"curl -s \"{api}/api/coordinator/state?coordinatorId=validator-0\"")))
        {
            Assert.Equal("validator:heartbeat:validator-0", state.RootElement.GetProperty("heartbeat").GetProperty("key").GetString());
        }

        Assert.True(await EventuallyAsync(async () =>
        {
            using var performance = JsonDocument.Parse(await CfnRun.ShellAsync($"curl -s {api}/api/validators/performance"));
            return performance.RootElement.GetProperty("validators").EnumerateArray().Count(v => v.GetProperty("count").GetInt64() > 0) == 3;
        }, TimeSpan.FromSeconds(30), pollMs: 200), "not every validator recorded a validation");

        await up.SignalAsync("TERM");
        Assert.Equal(0, await up.WaitForExitAsync(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public async Task Up_TimeoutHooksEnabled_EveryWaitRunsOnBlockingStartAndOnSignalReceived()
    {
        var dir = Directory.CreateTempSubdirectory("cfn-hooks-").FullName;
        try
        {
            var log = Path.Combine(dir, "hooks.log");
            foreach (var hook in new[] { "on_blocking_start", "on_signal_received" })
            {
                await File.WriteAllTextAsync(Path.Combine(dir, hook), $"echo \"$HOOK_NAME $AGENT_ID $COORDINATOR_COUNT\" >> {log}\n");
            }

            var env = Environment();
            env["ENABLE_TIMEOUT_HOOKS"] = "true";
            env["TIMEOUT_HOOKS_DIR"] = dir;
            await using var up = CfnRun.Start(["up", "--http-port", $"{CfnRun.FreePort()}", "--swarms", "1", "--coordinators", "1", "--validators", "2"], env);
            await up.WaitForLineAsync(l => l == "ready", Startup);
            var lines = await EventuallyAsync(
                async () => File.Exists(log) ? await File.ReadAllLinesAsync(log) : [],
                read => read.Any(l => l.StartsWith("on_blocking_start coordinator-", StringComparison.Ordinal)) &&
                        read.Any(l => l.StartsWith("on_signal_received coordinator-", StringComparison.Ordinal)),
                "the hooks never logged a blocking start and a signal received", TimeSpan.FromSeconds(30), pollMs: 200);

            Assert.Contains(lines, l => l.StartsWith("on_blocking_start coordinator-", StringComparison.Ordinal) && l.EndsWith(" 2", StringComparison.Ordinal));
            Assert.Contains(lines, l => l.StartsWith("on_signal_received coordinator-", StringComparison.Ordinal));
            await up.SignalAsync("TERM");
            Assert.Equal(0, await up.WaitForExitAsync(TimeSpan.FromSeconds(10)));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task Up_NoRedisServerInstalled_OneLineWithTheInstallCommand()
    {
        var env = Environment();
        env["PATH"] = "/nonexistent";
        await using var up = CfnRun.Start(["up", "--http-port", $"{CfnRun.FreePort()}"], env);
        Assert.Equal(1, await up.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        var line = Assert.Single(up.Lines, l => l.Contains("redis-server", StringComparison.Ordinal));
        Assert.Contains("apt-get install -y redis-server", line, StringComparison.Ordinal);
    }

    private static Dictionary<string, string?> Environment() => new()
    {
        ["BLOCKING_COORDINATION_SECRET"] = Secret,
        ["REDIS_URL"] = null,
        ["REDIS_HOST"] = null,
        ["HEARTBEAT_INTERVAL_MS"] = "1000",
        ["BLOCKING_TIMEOUT_MS"] = "20000",
        ["VALIDATION_DURATION_MEDIAN_MS"] = "50",
        ["VALIDATION_DURATION_P95_MS"] = "200",
    };

    /// <summary>A coordinator in <paramref name="id"/>'s name that sends a signal and then loses its connection without any cleanup.</summary>
    private static async Task CrashCoordinatorAsync(string endpoint, string id, string swarm = "swarm-1")
    {
        var redis = await RedisContext.ConnectAsync(endpoint, new CoordinationOptions());
        var coordinator = await Coordinator.StartAsync(redis, new SigningKeys(Secret), id, swarm);
        await coordinator.Signals.SendAsync("validator-0", SignalTypes.StatusUpdate, iteration: 1);
        await redis.Multiplexer.CloseAsync(allowCommandsToComplete: false);
        await coordinator.DisposeAsync(); // its deletes fail on the closed connection: the keys stay, as after a crash
        await redis.DisposeAsync();
    }

    private static async Task<int> CountAsync(IServer server, int db, string pattern, bool inProgressOnly = false, IDatabase? database = null)
    {
        var count = 0;
        await foreach (var key in server.KeysAsync(db, pattern, pageSize: 500))
        {
            if (!inProgressOnly || ((string?)await database!.StringGetAsync(key))?.Contains("\"in-progress\"", StringComparison.Ordinal) == true)
            {
                count++;
            }
        }

        return count;
    }
}
