using Cfn.Coordination.Recovery;
using Cfn.Coordination.Tests.Infrastructure;

namespace Cfn.Coordination.Tests.Recovery;

[Collection(RedisCollection.Name)]
public sealed class TimeoutHandlerTests(RedisServer server)
{
    [Fact]
    public async Task Start_DeadlockedPair_PeriodicCheckReportsItWithoutBeingAsked()
    {
        await using var h = Harness.Create(server);
        var a = await h.StartAsync(heartbeatLoop: true);
        var b = await h.StartAsync(heartbeatLoop: true);
        using var cts = new CancellationTokenSource();
        var waitA = a.Waiter.WaitForAcksAsync([b.Id], $"{a.Id}:{b.Id}:completion:1:x", TimeSpan.FromSeconds(30), cts.Token);
        var waitB = b.Waiter.WaitForAcksAsync([a.Id], $"{b.Id}:{a.Id}:completion:1:x", TimeSpan.FromSeconds(30), cts.Token);
        var options = new RecoveryOptions { StuckWaitGrace = TimeSpan.FromMilliseconds(100), CleanupInterval = TimeSpan.FromHours(1) };
        await using var handler = new TimeoutHandler(h.Redis, h.Keys, options, h.Metrics, new RecoveryMetrics(h.Registry), "handler-loop");

        handler.Start();
        await EventuallyAsync(() => handler.LastDeadlocks?.Deadlocks.Any(d => d.Coordinators.Contains(a.Id) && d.Coordinators.Contains(b.Id)) == true,
            "the handler's own loop never found the deadlock", TimeSpan.FromSeconds(10), pollMs: 50);

        Assert.Contains(handler.LastDeadlocks!.Deadlocks, d => d.Coordinators.Contains(a.Id) && d.Coordinators.Contains(b.Id));
        Assert.Contains(h.Messages, m => m.StartsWith("deadlock detected: ", StringComparison.Ordinal) && m.Contains(a.Id, StringComparison.Ordinal));
        await cts.CancelAsync();
        await Task.WhenAll(waitA, waitB);
    }

    [Fact]
    public async Task Start_MonitoringDisabled_LogsLoudlyAndDeclaresNoDeath()
    {
        await using var h = Harness.Create(server);
        var victim = await h.StartAsync();
        await victim.AbandonAsync();
        var options = RecoveryKit.FastOptions();
        options.EnableHeartbeatMonitoring = false;
        await using var handler = new TimeoutHandler(h.Redis, h.Keys, options, h.Metrics, new RecoveryMetrics(h.Registry), "handler-off");

        handler.Start();
        // Shows that nobody is declared dead: twice the time a silent coordinator takes to die, plus one monitor interval. A
        // negative check: with monitoring off no pass runs whose end could be awaited.
        await Task.Delay((2 * options.DeathAfter) + options.MonitorInterval);

        Assert.False(handler.Monitor.IsRunning);
        Assert.Contains(h.Messages, m => m.Contains("Heartbeat monitoring DISABLED", StringComparison.Ordinal));
        Assert.Equal(0, h.Metrics.TimeoutEvents.WithLabels(victim.Id, "heartbeat", "heartbeat").Value);
    }
}
