using System.Globalization;
using System.Net;
using System.Text;
using Cfn.Tests.Infrastructure;
using StackExchange.Redis;

namespace Cfn.Tests.Commands;

/// <summary>
/// D18 through real processes: a coordinator waits for a validator's ACK, the validator process is frozen and then
/// SIGKILLed; the timeout handler declares it dead and escalates, the swarm manager starts its replacement on the
/// coordinator's host, the replacement ACKs the handed-over validation signal, and the coordinator's wait completes
/// with that ACK instead of running to its timeout. Redis db 22.
/// </summary>
public sealed class ServePeerDeathTests
{
    private const int Db = 22;
    private const string Secret = "serve-d18-secret-0123456789abcdef0123456789abcdef";

    [Fact]
    public async Task Serve_ValidatorKilledWhileCoordinatorWaits_WaitCompletesWithReplacementAck()
    {
        var endpoint = TestRedis.Endpoint;
        var (redis, server, db) = await TestRedis.OpenEmptyAsync(Db);
        await using var connection = redis;

        var ports = new Dictionary<string, int>();
        var runs = new Dictionary<string, CfnRun>();
        CfnRun Serve(string name, string role, params (string, string)[] extra)
        {
            ports[name] = CfnRun.FreePort();
            var env = new Dictionary<string, string?>
            {
                ["REDIS_URL"] = null,
                ["REDIS_HOST"] = endpoint[..endpoint.LastIndexOf(':')],
                ["REDIS_PORT"] = endpoint[(endpoint.LastIndexOf(':') + 1)..],
                ["REDIS_DB"] = Db.ToString(CultureInfo.InvariantCulture),
                ["HTTP_PORT"] = ports[name].ToString(CultureInfo.InvariantCulture),
                ["BLOCKING_COORDINATION_SECRET"] = Secret,
                ["HEARTBEAT_INTERVAL_MS"] = "500",
                ["HEARTBEAT_STALE_THRESHOLD_MS"] = "3000",
                ["HEARTBEAT_MONITOR_INTERVAL_MS"] = "500",
                ["HEARTBEAT_MAX_WARNINGS"] = "2",
                ["BLOCKING_TIMEOUT_MS"] = "90000", // far beyond the test: only the replacement's ACK can end the wait in time
                ["VALIDATION_DURATION_MEDIAN_MS"] = "20",
                ["VALIDATION_DURATION_P95_MS"] = "50",
                ["VALIDATION_FAILURE_RATE"] = "0",
                ["VALIDATORS_PER_ITEM"] = "1",
                ["SWARM_EXPECTED_COORDINATORS"] = "1",
            };
            foreach (var (key, value) in extra)
            {
                env[key] = value;
            }

            return runs[name] = CfnRun.Start(["serve", "--role", role], env);
        }

        try
        {
            Serve("timeout-handler", "timeout-handler");
            Serve("swarm-manager", "swarm-manager");
            Serve("coordinator-1", "coordinator", ("COORDINATOR_ID", "coordinator-1"), ("SWARM_ID", "swarm-a"));
            Serve("validator", "validator", ("COORDINATOR_ID", "validator-1"));
            foreach (var (name, port) in ports)
            {
                await runs[name].WaitReadyAsync(port);
            }

            // Frozen, the validator cannot ACK; it still looks live for a few seconds, so the coordinator picks it.
            await runs["validator"].SignalAsync("STOP");
            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
            var body = new StringContent("""{"workId":"job-d18","input":{"n":1}}""", Encoding.UTF8, "application/json");
            Assert.Equal(HttpStatusCode.OK, (await http.PostAsync($"http://127.0.0.1:{ports["swarm-manager"]}/api/swarms/swarm-a/work", body)).StatusCode);
            var coordinator = runs["coordinator-1"];
            var waiting = await coordinator.WaitForLineAsync(
                l => l.Contains("Waiting for ACKs", StringComparison.Ordinal) && l.Contains("coordinators=validator-1", StringComparison.Ordinal),
                TimeSpan.FromSeconds(30));
            var signalId = waiting[(waiting.IndexOf("signalId=", StringComparison.Ordinal) + "signalId=".Length)..].Split(' ')[0];
            await runs["validator"].SignalAsync("KILL");

            var follows = await coordinator.WaitForLineAsync(
                l => l.Contains("ACK wait follows hand-over", StringComparison.Ordinal) && l.Contains("dead=validator-1 ", StringComparison.Ordinal),
                TimeSpan.FromSeconds(45));
            var replacement = follows[(follows.IndexOf("replacement=", StringComparison.Ordinal) + "replacement=".Length)..].Split(' ')[0];
            var complete = await coordinator.WaitForLineAsync(
                l => l.Contains("ACK wait complete", StringComparison.Ordinal) && l.Contains($"signalId={signalId} ", StringComparison.Ordinal),
                TimeSpan.FromSeconds(45));

            Assert.Contains("status=completed", complete, StringComparison.Ordinal);
            Assert.StartsWith("coordinator-", replacement, StringComparison.Ordinal);
            Assert.NotEqual("validator-1", replacement);
            // The replacement's stored ACK is of the handed-over signal and names the original message ID.
            var handedOverId = string.Join(':', signalId.Split(':').Select((part, i) => i == 1 ? replacement : part));
            var ack = (string?)await db.StringGetAsync($"blocking:ack:{replacement}:{handedOverId}");
            Assert.True(ack is not null, "no ACK by the replacement:\n" + coordinator.Tail(40));
            Assert.Contains($"\"handedOverFrom\":\"{signalId}\"", ack, StringComparison.Ordinal);
        }
        finally
        {
            foreach (var run in runs.Values)
            {
                await run.DisposeAsync();
            }

            await server.FlushDatabaseAsync(Db);
        }
    }
}
