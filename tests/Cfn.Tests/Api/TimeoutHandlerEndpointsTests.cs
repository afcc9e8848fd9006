using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using Cfn.Api;
using Cfn.Coordination;
using Cfn.Coordination.Acks;
using Cfn.Coordination.Metrics;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Security;
using Cfn.Tests.Infrastructure;

namespace Cfn.Tests.Api;

/// <summary>
/// The timeout handler's endpoints against coordinators that really block (SPEC §3.1 #6, §5 #69, the playbook's unblock
/// and deadlock reads), over real HTTP on loopback and from a non-loopback address (D12), on test Redis database 17.
/// </summary>
public sealed class TimeoutHandlerEndpointsTests
{
    private const int Db = 17;
    private const string Token = "timeout-handler-admin-token";

    [Fact]
    public async Task ForceUnblockAll_UnblockOne_Deadlocks_AgainstRealWaits()
    {
        var endpoint = TestRedis.Endpoint;
        await using var redis = await RedisContext.ConnectAsync($"{endpoint},allowAdmin=true,defaultDatabase={Db}", new CoordinationOptions());
        await redis.Database.ExecuteAsync("FLUSHDB");
        var keys = new SigningKeys("timeout-handler-endpoints-secret-0123456789abcdef");
        var metrics = new CoordinationMetrics(Prometheus.Metrics.NewCustomRegistry());
        await using var handler = new TimeoutHandler(redis, keys, new RecoveryOptions(), metrics, new RecoveryMetrics(Prometheus.Metrics.NewCustomRegistry()), "th-test");
        await using var web = await TestWebApp.StartAsync(app => app.MapTimeoutHandlerApi(handler, new AdminAccess(Token)), listenExternally: true);

        await using var a = await Coordinator.StartAsync(redis, keys, "coordinator-a", "swarm-t", metrics, runHeartbeatLoop: false);
        await using var b = await Coordinator.StartAsync(redis, keys, "coordinator-b", "swarm-t", metrics, runHeartbeatLoop: false);
        await using var c = await Coordinator.StartAsync(redis, keys, "coordinator-c", "swarm-t", metrics, runHeartbeatLoop: false);

        // a and b wait for each other (a cycle), c waits for a peer that never answers.
        var waitA = a.Waiter.WaitForAcksAsync(["coordinator-b"], "coordinator-a:coordinator-b:validation:1:1", TimeSpan.FromMinutes(5));
        var waitB = b.Waiter.WaitForAcksAsync(["coordinator-a"], "coordinator-b:coordinator-a:validation:1:1", TimeSpan.FromMinutes(5));
        var waitC = c.Waiter.WaitForAcksAsync(["validator-gone"], "coordinator-c:validator-gone:validation:1:1", TimeSpan.FromMinutes(5));
        await EventuallyAsync(async () => await redis.Database.SortedSetLengthAsync(Keys.Deadlines) >= 3, "the three waits never entered the deadlines index");

        // GET /api/deadlocks is open, also from outside: it names the cycle.
        var deadlocks = JsonDocument.Parse(await web.External!.GetStringAsync("/api/deadlocks"));
        var cycle = Assert.Single(deadlocks.RootElement.GetProperty("deadlocks").EnumerateArray());
        Assert.Equal(["coordinator-a", "coordinator-b"], cycle.GetProperty("coordinators").EnumerateArray().Select(e => e.GetString()).Order());

        // Mutating endpoints: 401 from outside without the token, nothing unblocked.
        Assert.Equal(HttpStatusCode.Unauthorized, (await web.External.PostAsync("/api/coordinators/coordinator-c/unblock", null)).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await web.External.PostAsync("/api/timeouts/force-unblock-all", null)).StatusCode);
        Assert.False(waitC.IsCompleted);

        // One coordinator: its wait ends forced, with the partial result.
        var bad = await web.Loopback.PostAsync("/api/coordinators/coordinator%20c/unblock", null);
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        using (var request = new HttpRequestMessage(HttpMethod.Post, "/api/coordinators/coordinator-c/unblock"))
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", Token);
            var one = JsonDocument.Parse(await (await web.External.SendAsync(request)).Content.ReadAsStringAsync());
            Assert.True(one.RootElement.GetProperty("unblocked").GetBoolean());
        }

        var resultC = await waitC.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(AckWaitStatus.Forced, resultC.Status);
        Assert.Equal(["validator-gone"], resultC.Missing);

        // #69: force-unblock-all ends every remaining wait and names them.
        var all = JsonDocument.Parse(await (await web.Loopback.PostAsync("/api/timeouts/force-unblock-all", null)).Content.ReadAsStringAsync());
        Assert.Equal(2, all.RootElement.GetProperty("unblocked").GetInt32());
        Assert.Equal(["coordinator-a", "coordinator-b"], all.RootElement.GetProperty("coordinators").EnumerateArray().Select(e => e.GetString()).Order());
        Assert.Equal(AckWaitStatus.Forced, (await waitA.WaitAsync(TimeSpan.FromSeconds(10))).Status);
        Assert.Equal(AckWaitStatus.Forced, (await waitB.WaitAsync(TimeSpan.FromSeconds(10))).Status);

        // Nothing is blocking any more: an unblock of a coordinator that is not waiting says so.
        var idle = JsonDocument.Parse(await (await web.Loopback.PostAsync("/api/coordinators/coordinator-a/unblock", null)).Content.ReadAsStringAsync());
        Assert.False(idle.RootElement.GetProperty("unblocked").GetBoolean());
        await redis.Database.ExecuteAsync("FLUSHDB");
    }
}
