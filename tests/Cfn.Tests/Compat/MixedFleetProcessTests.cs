using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Cfn.Tests.Infrastructure;
using StackExchange.Redis;
using Xunit.Abstractions;

namespace Cfn.Tests.Compat;

/// <summary>
/// A fleet mixing cfn with the original TypeScript coordinators (issue 16, D13), end to end through real <c>cfn serve</c>
/// processes. The TS side is played by this test with plain Redis commands, exactly what the TS code writes (SPEC K1,
/// K2, §2.1, §2.9): no TS code is needed, and nothing the product should do is done here.
/// </summary>
public sealed class MixedFleetProcessTests(ITestOutputHelper output)
{
    private const string Secret = "mixed-fleet-secret-0123456789abcdef0123456789ab";

    /// <summary>§2.4: HMAC-SHA256 keyed with the secret's UTF-8 bytes, lowercase hex (the TS waiter's check, written here).</summary>
    private static string TsHmac(string message) =>
        Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(Secret), Encoding.UTF8.GetBytes(message)));

    private static long NowMs() => DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();

    /// <summary>What TS <c>sendSignal</c> writes: the K2 value (TS field order, unsigned) and its idempotency record.</summary>
    private static async Task<string> SendAsTsAsync(IDatabase db, string senderId, string receiverId)
    {
        var timestamp = NowMs();
        var messageId = $"{senderId}:{receiverId}:completion:1:{timestamp}";
        var json = string.Create(CultureInfo.InvariantCulture,
            $$$"""{"timestamp":{{{timestamp}}},"senderId":"{{{senderId}}}","receiverId":"{{{receiverId}}}","iteration":1,"type":"completion","payload":{"phase":"loop-2"},"messageId":"{{{messageId}}}"}""");
        await db.StringSetAsync($"blocking:signal:{receiverId}", json, TimeSpan.FromSeconds(86_400));
        await db.StringSetAsync($"blocking:idempotency:{messageId}", "1", TimeSpan.FromSeconds(86_400));
        return messageId;
    }

    /// <summary>What TS <c>registerHeartbeat</c> writes: K1 with <c>lastHeartbeat</c> (its own clock), no timestamp, SETEX 300.</summary>
    private static Task<bool> HeartbeatAsTsAsync(IDatabase db, string id, long sequence, long skewMs = 0) =>
        db.StringSetAsync($"blocking:heartbeat:{id}",
            string.Create(CultureInfo.InvariantCulture,
                $$$"""{"coordinatorId":"{{{id}}}","lastHeartbeat":{{{NowMs() + skewMs}}},"sequence":{{{sequence}}},"iteration":1,"metadata":{"phase":"loop-2"}}"""),
            TimeSpan.FromSeconds(300));

    [Fact]
    public async Task Compat_TsSignalToACfnCoordinator_ReceivedOnce_AckedInTheTsShape_K2Consumed()
    {
        await using var fleet = await ServeFleet.StartAsync(60, Secret, output);
        var coordinator = await fleet.ServeAsync("coordinator", "coordinator",
            ("COORDINATOR_ID", "coordinator-c"), ("SWARM_ID", "swarm-a"), ("CFN_TS_COMPAT", "true"));
        await HeartbeatAsTsAsync(fleet.Db, "ts-1", 1);

        var messageId = await SendAsTsAsync(fleet.Db, "ts-1", "coordinator-c");

        // The TS waiter polls GET blocking:ack:{receiver}:{messageId} and checks the HMAC over the ACK's own fields.
        string? ack = null;
        await fleet.WaitForAsync(async () => (ack = await fleet.Db.StringGetAsync($"blocking:ack:coordinator-c:{messageId}")) is not null,
            "the cfn coordinator's ACK of the TS signal");
        var root = JsonDocument.Parse(ack!).RootElement;
        Assert.Equal("coordinator-c", root.GetProperty("coordinatorId").GetString());
        Assert.Equal(messageId, root.GetProperty("signalId").GetString());
        Assert.Equal("received", root.GetProperty("status").GetString());
        var signed = string.Create(CultureInfo.InvariantCulture,
            $"coordinator-c:{messageId}:{root.GetProperty("timestamp").GetInt64()}:{root.GetProperty("iteration").GetInt64()}");
        Assert.Equal(TsHmac(signed), root.GetProperty("signature").GetString());

        // Consumed: K2 goes (the runbook's signal backlog counts it no more), and it was said once.
        await fleet.WaitForAsync(async () => !await fleet.Db.KeyExistsAsync("blocking:signal:coordinator-c"), "K2 consumed");
        await Task.Delay(1000);
        Assert.Single(coordinator.Lines, l => l.Contains("Accepting unsigned TS signal", StringComparison.Ordinal) && l.Contains(messageId, StringComparison.Ordinal));
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        var metrics = await http.GetStringAsync($"http://127.0.0.1:{fleet.PortOf("coordinator")}/metrics");
        Assert.Contains("ts_signals_total{coordinator_id=\"coordinator-c\",reason=\"accepted_unsigned\"} 1", metrics, StringComparison.Ordinal);
    }

    [Fact]
    public async Task CompatOff_TsSignalLeftAndReportedOnce_GracefulStopKeepsIt()
    {
        await using var fleet = await ServeFleet.StartAsync(61, Secret, output);
        // Idle inboxes are looked at every 30 s (the fallback read): the signal is written before the coordinator starts.
        var messageId = await SendAsTsAsync(fleet.Db, "ts-1", "coordinator-c");
        var coordinator = await fleet.ServeAsync("coordinator", "coordinator", ("COORDINATOR_ID", "coordinator-c"), ("SWARM_ID", "swarm-a"));
        var k2 = (string?)await fleet.Db.StringGetAsync("blocking:signal:coordinator-c");

        // The idle inbox looks at K2 when it starts reading and after each idle period: reported once, not touched.
        await coordinator.WaitForLineAsync(l => l.Contains("TS signal left in", StringComparison.Ordinal) && l.Contains(messageId, StringComparison.Ordinal),
            TimeSpan.FromSeconds(30));
        await coordinator.SignalAsync("TERM");
        Assert.Equal(0, await coordinator.WaitForExitAsync(TimeSpan.FromSeconds(30)));

        Assert.Equal(k2, (string?)await fleet.Db.StringGetAsync("blocking:signal:coordinator-c"));
        Assert.False(await fleet.Db.KeyExistsAsync($"blocking:ack:coordinator-c:{messageId}"));
        Assert.Contains(coordinator.Lines, l => l.Contains("stopped with a TS signal", StringComparison.Ordinal));
        Assert.Single(coordinator.Lines, l => l.Contains("TS signal left in", StringComparison.Ordinal));

        // The next instance, in compat mode, gets it.
        await fleet.ServeAsync("next", "coordinator", ("COORDINATOR_ID", "coordinator-c"), ("SWARM_ID", "swarm-a"), ("CFN_TS_COMPAT", "true"));
        await fleet.WaitForAsync(async () => await fleet.Db.KeyExistsAsync($"blocking:ack:coordinator-c:{messageId}"), "the next instance's ACK");
    }

    [Fact]
    public async Task Compat_TsCoordinatorWhoseHeartbeatStops_WarnedDeclaredDeadEscalatedAndCleanedUp()
    {
        await using var fleet = await ServeFleet.StartAsync(62, Secret, output);
        var handler = await fleet.ServeAsync("handler", "timeout-handler", ("CFN_TS_COMPAT", "true"));
        await fleet.ServeAsync("manager", "swarm-manager");
        await fleet.ServeAsync("coordinator", "coordinator", ("COORDINATOR_ID", "coordinator-c"), ("SWARM_ID", "swarm-a"),
            ("CFN_TS_COMPAT", "true"), ("COORDINATOR_HOST_CAPACITY", "4"));

        // The TS coordinator heartbeats every 200 ms with a clock two minutes behind (its lastHeartbeat alone would look
        // dead at once against the 1 s threshold), and signals a cfn coordinator: the traffic that puts it under watch.
        using var stopBeats = new CancellationTokenSource();
        var beats = Task.Run(async () =>
        {
            for (var sequence = 1L; !stopBeats.IsCancellationRequested; sequence++)
            {
                await HeartbeatAsTsAsync(fleet.Db, "ts-1", sequence, skewMs: -120_000);
                await Task.Delay(200);
            }
        });
        var messageId = await SendAsTsAsync(fleet.Db, "ts-1", "coordinator-c");
        await fleet.WaitForAsync(async () => await fleet.Db.KeyExistsAsync($"blocking:ack:coordinator-c:{messageId}"), "the ACK of the TS signal");

        // Alive while it heartbeats, whatever its clock says; `cfn status` lists it with the cfn coordinators.
        await Task.Delay(3000);
        Assert.DoesNotContain(handler.Lines, l => l.Contains("coordinator=ts-1", StringComparison.Ordinal));
        var (code, status, _) = await CfnRun.RunToEndAsync(["status"], new Dictionary<string, string?> { ["REDIS_URL"] = fleet.RedisUrl });
        Assert.Equal(0, code);
        var row = Assert.Single(status.Split('\n'), l => l.StartsWith("ts-1 (ts)", StringComparison.Ordinal));
        Assert.Contains("swarm-a", row, StringComparison.Ordinal);
        Assert.Contains("live", row, StringComparison.Ordinal);

        await stopBeats.CancelAsync();
        await beats;
        var stopped = DateTime.UtcNow;
        await handler.WaitForLineAsync(l => l.Contains("Stale heartbeat detected coordinator=ts-1", StringComparison.Ordinal), TimeSpan.FromSeconds(30));
        await handler.WaitForLineAsync(l => l.Contains("Marking coordinator as DEAD coordinator=ts-1 swarm=swarm-a", StringComparison.Ordinal),
            TimeSpan.FromSeconds(30));
        var detected = DateTime.UtcNow - stopped;
        output.WriteLine($"declared dead {detected.TotalMilliseconds:0} ms after its last heartbeat (threshold 1000 ms, 3 warnings 250 ms apart)");
        Assert.True(detected < TimeSpan.FromSeconds(10), $"declared dead only after {detected}");

        // Escalated like a cfn coordinator: a replacement is asked for in its swarm, and its keys go (runbook #85).
        await fleet.WaitForAsync(async () =>
        {
            await foreach (var key in fleet.Server.KeysAsync(62, "coordinator:spawn:*"))
            {
                if (((string?)await fleet.Db.StringGetAsync(key))?.Contains("\"swarmId\":\"swarm-a\"", StringComparison.Ordinal) == true)
                {
                    return true;
                }
            }

            return false;
        }, "a spawn request for the replacement in swarm-a");
        await fleet.WaitForAsync(async () => !await fleet.Server.KeysAsync(62, "blocking:*ts-1*").AnyAsync(), "blocking:*ts-1* empty after the cleanup");
        Assert.False(await fleet.Db.HashExistsAsync("coordinator:ts-heartbeats", "ts-1"));
        Assert.Single(handler.Lines, l => l.Contains("Marking coordinator as DEAD coordinator=ts-1", StringComparison.Ordinal));
    }
}
