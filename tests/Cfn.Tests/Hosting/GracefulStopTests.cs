using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using Cfn.Tests.Infrastructure;
using StackExchange.Redis;

namespace Cfn.Tests.Hosting;

/// <summary>
/// The stop order of the hosted roles through a real <c>cfn serve --role all</c> process (database 29): SIGTERM while
/// its coordinator holds an item (a validation that takes a minute) gives the item back to the swarm's queue, the
/// coordinators stop before the host that runs them, and the process exits 0 within the stop budget, its keys gone.
/// </summary>
public sealed class GracefulStopTests
{
    private const int Db = 33;
    private const string Secret = "graceful-stop-secret-0123456789abcdef0123456789ab";

    [Fact]
    public async Task Serve_SigtermWhileHoldingAnItem_ItemBackInTheQueueAndCoordinatorsStopBeforeTheirHost()
    {
        var endpoint = TestRedis.Endpoint;
        var (redis, server, db) = await TestRedis.OpenEmptyAsync(Db);
        await using var connection = redis;
        var port = CfnRun.FreePort();
        await using var run = CfnRun.Start(["serve", "--role", "all"], new Dictionary<string, string?>
        {
            ["REDIS_URL"] = $"redis://{endpoint}/{Db}",
            ["HTTP_PORT"] = port.ToString(CultureInfo.InvariantCulture),
            ["BLOCKING_COORDINATION_SECRET"] = Secret,
            ["COORDINATOR_ID"] = "coordinator-g",
            ["SWARM_ID"] = "swarm-g",
            ["HEARTBEAT_INTERVAL_MS"] = "500",
            ["BLOCKING_TIMEOUT_MS"] = "120000",
            ["VALIDATION_DURATION_MEDIAN_MS"] = "60000",
            ["VALIDATION_DURATION_P95_MS"] = "60000",
            ["VALIDATORS_PER_ITEM"] = "1",
        });
        try
        {
            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(10) };
            Assert.True(await EventuallyAsync(run, async () => (await http.GetAsync("/health/ready")).StatusCode == HttpStatusCode.OK),
                "never ready:\n" + run.Tail(30));

            var body = new StringContent("""{"workId":"held-1","input":{"n":1}}""", Encoding.UTF8, "application/json");
            Assert.Equal(HttpStatusCode.OK, (await http.PostAsync("/api/swarms/swarm-g/work", body)).StatusCode);
            // Taken: off the queue and owned by the coordinator, whose validator takes a minute to answer.
            Assert.True(await EventuallyAsync(run, async () =>
                await db.ListLengthAsync("swarm:swarm-g:queue") == 0 && await db.KeyExistsAsync("coordinator:work:swarm-g:coordinator-g:held-1")),
                "the item was never taken:\n" + run.Tail(30));

            await run.SignalAsync("TERM");
            Assert.Equal(0, await run.WaitForExitAsync(TimeSpan.FromSeconds(15)));

            // Given back: at the front of the queue again, its record released for whoever takes it next.
            var queued = (await db.ListRangeAsync("swarm:swarm-g:queue")).Select(v => JsonDocument.Parse((string)v!).RootElement).ToList();
            Assert.Equal("held-1", Assert.Single(queued).GetProperty("workId").GetString());
            var record = JsonDocument.Parse((string)(await db.StringGetAsync("coordinator:work:swarm-g:coordinator-g:held-1"))!).RootElement;
            Assert.Equal("released", record.GetProperty("status").GetString());

            // The order: the work loop gave its item back before the host that ran the coordinator stopped, within the budget.
            var lines = run.Lines.ToList();
            var released = lines.FindIndex(l => l.Contains("Work item released workId=held-1", StringComparison.Ordinal));
            var hostStopped = lines.FindIndex(l => l.Contains("Coordinator host stopped", StringComparison.Ordinal));
            Assert.True(released >= 0 && hostStopped > released, run.Tail(40));
            Assert.DoesNotContain(lines, l => l.Contains("Stop budget", StringComparison.Ordinal));
            Assert.Contains(lines, l => l.Contains("cfn stopped exitCode=0", StringComparison.Ordinal));
            Assert.False(await db.KeyExistsAsync("blocking:heartbeat:coordinator-g"));
            Assert.Equal(0, await db.SortedSetLengthAsync("blocking:coordinators"));
        }
        finally
        {
            await server.FlushDatabaseAsync(Db);
        }
    }

    /// <summary>The shared poll, which also stops when the process exits and counts "not listening yet" as not yet.</summary>
    private static async Task<bool> EventuallyAsync(CfnRun run, Func<Task<bool>> condition)
    {
        var met = false;
        await Cfn.Testing.Eventually.EventuallyAsync(async () =>
        {
            try
            {
                met = await condition();
            }
            catch (HttpRequestException)
            {
                // not listening yet
            }

            return met || run.HasExited;
        }, TimeSpan.FromSeconds(60), pollMs: 100);
        return met;
    }
}
