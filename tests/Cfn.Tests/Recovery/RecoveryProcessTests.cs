using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using Cfn.Tests.Infrastructure;
using StackExchange.Redis;
using Xunit.Abstractions;

namespace Cfn.Tests.Recovery;

/// <summary>
/// Recovery that finishes the work (issue 11, D16, D17), end to end through real <c>cfn serve</c> processes on the test
/// redis-server: a coordinator SIGKILLed while it holds an item in the middle of its validation, and a timeout handler
/// SIGKILLed in the middle of the escalation. What is checked is what a user cares about: the item ends completed exactly
/// once (one <c>Work item complete</c> line across every process, one completed K10 record), by whom it should.
/// </summary>
public sealed class RecoveryProcessTests(ITestOutputHelper output)
{
    private const string Secret = "recovery-test-secret-0123456789abcdef0123456789ab";

    [Fact]
    public async Task Sigkill_CoordinatorMidValidation_ReplacementAdoptsAndCompletesTheItemOnce()
    {
        await using var cluster = await Cluster.StartAsync(28, output);
        await cluster.ServeAsync("handler", "timeout-handler");
        await cluster.ServeAsync("manager", "swarm-manager");
        await cluster.ServeAsync("validator", "validator", ("COORDINATOR_ID", "validator-1"));
        var victim = await cluster.ServeAsync("victim", "coordinator", ("COORDINATOR_ID", "coordinator-v"), ("SWARM_ID", "swarm-a"));
        // A coordinator of another swarm: the host the swarm manager starts the replacement on.
        await cluster.ServeAsync("host", "coordinator", ("COORDINATOR_ID", "coordinator-h"), ("SWARM_ID", "swarm-b"));

        await cluster.EnqueueAsync("swarm-a", "job-1");
        // Mid-validation: the validator ACKed the request (on receipt) and is still deciding, and the coordinator knows it.
        await cluster.WaitForAckedAsync("swarm-a", "coordinator-v", "job-1");
        Assert.Contains("\"status\":\"in-progress\"", (string?)await cluster.Db.StringGetAsync("coordinator:work:swarm-a:coordinator-v:job-1"),
            StringComparison.Ordinal);
        await victim.SignalAsync("KILL");

        var completed = await cluster.WaitForCompletedAsync("swarm-a", "job-1", TimeSpan.FromSeconds(60));
        var owner = completed.GetProperty("assignedTo").GetString()!;
        Assert.StartsWith("coordinator-", owner, StringComparison.Ordinal);
        Assert.NotEqual("coordinator-v", owner);
        Assert.Equal("coordinator-v", completed.GetProperty("transferredFrom").GetString());
        var result = completed.GetProperty("data");
        // The request the victim sent was ACKed before it died: the replacement did not ask again, and the validator's
        // verdict (addressed to the dead coordinator) reached it.
        Assert.Equal("pass", result.GetProperty("outcome").GetString());
        Assert.Equal(1, result.GetProperty("verdicts").GetArrayLength());
        Assert.Equal(1, cluster.Lines("validator").Count(l => l.Contains("Validation complete workId=job-1", StringComparison.Ordinal)));
        Assert.Equal(1, await cluster.CountLinesAsync("Work item complete workId=job-1 "));
        Assert.Contains(cluster.Lines("host"), l => l.Contains("Work item adopted workId=job-1", StringComparison.Ordinal));

        // The replacement's state shows what it adopted.
        var state = await cluster.StateOfAsync("host", owner);
        Assert.Contains("job-1", state, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Sigkill_CoordinatorMidValidation_AutoEscalationOff_ItemBackInQueueAndCompletedByAnother()
    {
        await using var cluster = await Cluster.StartAsync(29, output);
        await cluster.ServeAsync("handler", "timeout-handler", ("ENABLE_AUTO_ESCALATION", "false"));
        await cluster.ServeAsync("manager", "swarm-manager");
        await cluster.ServeAsync("validator", "validator", ("COORDINATOR_ID", "validator-1"));
        var victim = await cluster.ServeAsync("victim", "coordinator", ("COORDINATOR_ID", "coordinator-v"), ("SWARM_ID", "swarm-a"));
        await cluster.EnqueueAsync("swarm-a", "job-2");
        await cluster.WaitForAckedAsync("swarm-a", "coordinator-v", "job-2");
        await victim.SignalAsync("KILL");
        // Another coordinator of the swarm, started after the kill so the item was surely the victim's.
        await cluster.ServeAsync("other", "coordinator", ("COORDINATOR_ID", "coordinator-o"), ("SWARM_ID", "swarm-a"));

        var completed = await cluster.WaitForCompletedAsync("swarm-a", "job-2", TimeSpan.FromSeconds(60));
        Assert.Equal("coordinator-o", completed.GetProperty("assignedTo").GetString());
        Assert.Equal("coordinator-v", completed.GetProperty("transferredFrom").GetString());
        Assert.Equal("pass", completed.GetProperty("data").GetProperty("outcome").GetString());
        Assert.Equal(1, await cluster.CountLinesAsync("Work item complete workId=job-2 "));
        Assert.Contains(cluster.Lines("handler"), l => l.Contains("Work item requeued workId=job-2", StringComparison.Ordinal));
        Assert.Empty(await cluster.Server.KeysAsync(29, "coordinator:spawn:*").ToListAsync()); // no replacement was asked for
    }

    [Fact]
    public async Task Sigkill_TimeoutHandlerMidEscalation_AnotherHandlerResumesIt_ItemCompletedOnce()
    {
        await using var cluster = await Cluster.StartAsync(30, output);
        // The first handler pauses after each escalation step (fault injection), so it can be killed between two steps.
        var first = await cluster.ServeAsync("handler-1", "timeout-handler", ("ESCALATION_STEP_DELAY_MS", "4000"), ("ESCALATION_LEASE_MS", "5000"));
        await cluster.ServeAsync("manager", "swarm-manager");
        await cluster.ServeAsync("validator", "validator", ("COORDINATOR_ID", "validator-1"));
        var victim = await cluster.ServeAsync("victim", "coordinator", ("COORDINATOR_ID", "coordinator-v"), ("SWARM_ID", "swarm-a"));
        await cluster.ServeAsync("host", "coordinator", ("COORDINATOR_ID", "coordinator-h"), ("SWARM_ID", "swarm-b"));
        await cluster.EnqueueAsync("swarm-a", "job-3");
        await cluster.WaitForAckedAsync("swarm-a", "coordinator-v", "job-3");
        await victim.SignalAsync("KILL");

        // The death is confirmed and the escalation is under way (its work moved): the handler dies right there.
        await first.WaitForLineAsync(l => l.Contains("Escalation step coordinator=coordinator-v step=work_transferred", StringComparison.Ordinal),
            TimeSpan.FromSeconds(30));
        await first.SignalAsync("KILL");
        var k8 = JsonDocument.Parse((string)(await cluster.Db.StringGetAsync("coordinator:escalation:coordinator-v"))!).RootElement;
        Assert.Equal("escalated", k8.GetProperty("status").GetString());
        Assert.Equal("work_transferred", k8.GetProperty("step").GetString());
        Assert.False(await cluster.Db.KeyExistsAsync("coordinator:spawn:" + k8.GetProperty("newCoordinatorId").GetString()));

        var second = await cluster.ServeAsync("handler-2", "timeout-handler", ("ESCALATION_LEASE_MS", "5000"));
        await second.WaitForLineAsync(l => l.Contains("Resuming escalation coordinator=coordinator-v step=work_transferred", StringComparison.Ordinal),
            TimeSpan.FromSeconds(30));
        var completed = await cluster.WaitForCompletedAsync("swarm-a", "job-3", TimeSpan.FromSeconds(60));
        Assert.Equal(k8.GetProperty("newCoordinatorId").GetString(), completed.GetProperty("assignedTo").GetString());
        Assert.Equal(1, await cluster.CountLinesAsync("Work item complete workId=job-3 "));
        var done = JsonDocument.Parse((string)(await cluster.Db.StringGetAsync("coordinator:escalation:coordinator-v"))!).RootElement;
        Assert.Equal("cleaned", done.GetProperty("step").GetString());
        Assert.Equal("replaced", done.GetProperty("status").GetString());
        Assert.Single(await cluster.Server.KeysAsync(30, "coordinator:spawn:*").ToListAsync()); // one replacement, not two
        Assert.Empty(await cluster.Server.KeysAsync(30, "blocking:*coordinator-v*").ToListAsync()); // runbook #85
    }

    /// <summary>The fleet of these tests (fast detection, 3 s validations) and what they ask of it.</summary>
    private sealed class Cluster : IAsyncDisposable
    {
        private readonly ServeFleet _fleet;
        private readonly ITestOutputHelper _output;
        private readonly int _db;

        private Cluster(ServeFleet fleet, int db, ITestOutputHelper output)
        {
            _fleet = fleet;
            _db = db;
            _output = output;
        }

        public IDatabase Db => _fleet.Db;

        public IServer Server => _fleet.Server;

        public static async Task<Cluster> StartAsync(int db, ITestOutputHelper output) =>
            new(await ServeFleet.StartAsync(db, Secret, output, new Dictionary<string, string>
            {
                ["BLOCKING_TIMEOUT_MS"] = "30000",
                ["VALIDATION_DURATION_MEDIAN_MS"] = "3000",
                ["VALIDATION_DURATION_P95_MS"] = "3500",
                ["VALIDATION_FAILURE_RATE"] = "0",
                ["VALIDATORS_PER_ITEM"] = "1",
                ["VALIDATOR_STALE_THRESHOLD_MS"] = "1000",
                ["VALIDATOR_REGISTRATION_INTERVAL_MS"] = "250",
                ["COORDINATOR_HOST_CAPACITY"] = "4",
            }), db, output);

        public Task<CfnRun> ServeAsync(string name, string role, params (string, string)[] extra) => _fleet.ServeAsync(name, role, extra);

        public IReadOnlyList<string> Lines(string name) => _fleet.Lines(name);

        /// <summary>
        /// Lines containing <paramref name="text"/> across every process, counted once the first has been read (a process's
        /// log line can trail its Redis write) and any second one has had a moment to show.
        /// </summary>
        public async Task<int> CountLinesAsync(string text)
        {
            await WaitForAsync(() => Task.FromResult(_fleet.Runs.SelectMany(r => r.Lines).Any(l => l.Contains(text, StringComparison.Ordinal)) ? true : (bool?)null),
                $"a line with \"{text}\"");
            // A second one would show within two of the processes' 250 ms monitor intervals. A negative check on other
            // processes' clocks: no event marks a line that is not written.
            await Task.Delay(TimeSpan.FromMilliseconds(2 * 250));
            return _fleet.Runs.SelectMany(r => r.Lines).Count(l => l.Contains(text, StringComparison.Ordinal));
        }

        public async Task EnqueueAsync(string swarmId, string workId)
        {
            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
            var body = new StringContent($"{{\"workId\":\"{workId}\",\"input\":{{\"n\":1}}}}", Encoding.UTF8, "application/json");
            var response = await http.PostAsync($"http://127.0.0.1:{_fleet.PortOf("manager")}/api/swarms/{swarmId}/work", body);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        public async Task<string> StateOfAsync(string name, string coordinatorId)
        {
            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
            return await http.GetStringAsync($"http://127.0.0.1:{_fleet.PortOf(name)}/api/coordinator/state?coordinatorId={coordinatorId}");
        }

        /// <summary>The one completed K10 record of <paramref name="workId"/> (fails when there are two records of it).</summary>
        public async Task<JsonElement> WaitForCompletedAsync(string swarmId, string workId, TimeSpan timeout)
        {
            JsonElement? completed = null;
            List<RedisKey> keys = [];
            var done = await EventuallyAsync(async () =>
            {
                keys = await Server.KeysAsync(_db, $"coordinator:work:{swarmId}:*:{workId}").ToListAsync();
                Assert.True(keys.Count <= 1, $"{workId} has {keys.Count} records: {string.Join(", ", keys)}");
                if (keys.Count == 1 && (string?)await Db.StringGetAsync(keys[0]) is { } raw && raw.Contains("\"status\":\"completed\"", StringComparison.Ordinal))
                {
                    _output.WriteLine($"{keys[0]} = {raw}");
                    completed = JsonDocument.Parse(raw).RootElement.Clone();
                }

                return completed is not null;
            }, timeout, pollMs: 100);
            if (!done)
            {
                Dump();
                Assert.Fail($"{workId} not completed within {timeout.TotalSeconds} s; records: {string.Join(", ", keys)}");
            }

            return completed!.Value;
        }

        /// <summary>Until <paramref name="coordinatorId"/>'s item records that its validator ACKed the request (it is being validated).</summary>
        public Task WaitForAckedAsync(string swarmId, string coordinatorId, string workId) =>
            WaitForAsync(async () => ((string?)await Db.StringGetAsync($"coordinator:work:{swarmId}:{coordinatorId}:{workId}"))?
                .Contains("\"acked\":true", StringComparison.Ordinal) == true ? true : null, $"{workId} ACKed by its validator");

        public async Task WaitForAsync(Func<Task<bool?>> probe, string what)
        {
            if (!await EventuallyAsync(async () => await probe() is not null, TimeSpan.FromSeconds(30), pollMs: 50))
            {
                Dump();
                Assert.Fail($"{what}: not within 30 s");
            }
        }

        private void Dump() => _fleet.Dump();

        public ValueTask DisposeAsync() => _fleet.DisposeAsync();
    }
}
