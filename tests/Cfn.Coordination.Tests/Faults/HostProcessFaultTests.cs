using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Cfn.Coordination.Detection;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Cfn.Coordination.Tests.Faults;

/// <summary>
/// Real coordinator processes (tests/Cfn.TestHost) killed with SIGKILL or frozen with SIGSTOP (SPEC D6, §2.9, §2.13,
/// W22, W40, W41, §7.13, §7.14 item 9): the death is found in the configured time, escalated once, the work moves to
/// exactly one replacement, which finishes it exactly once; a frozen coordinator that wakes up is fenced and stops.
/// </summary>
[Collection(FaultsCollection.Name)]
public sealed class HostProcessFaultTests(ITestOutputHelper output)
{
    private static readonly RecoveryOptions FastDetection = new()
    {
        HeartbeatStaleThreshold = TimeSpan.FromSeconds(1),
        MonitorInterval = TimeSpan.FromMilliseconds(200),
        MaxWarnings = 3,
    };

    [Fact]
    public async Task Sigkill_HostHolding100Items_DeclaredDeadOnceAndReplacementProcessCompletesEachItemOnce()
    {
        await using var redis = await PrivateRedisServer.StartAsync();
        await using var inspect = await redis.ConnectAsync();
        var database = inspect.GetDatabase();
        await using var world = await FaultWorld.ConnectAsync(redis.Endpoint);
        var swarm = TestIds.New("swarm");
        var deadId = TestIds.New("host");
        // 30 items are completed by the first host before the kill; the other 70 are in progress when it dies.
        await using var first = HostProcess.Start("first-host", HostArgs(redis, deadId, swarm,
            "--items", "100", "--complete-after", "2", "--complete-max", "30"));
        HostProcess? second = null;
        try
        {
            await first.WaitForLineAsync(l => l == "ready", TimeSpan.FromSeconds(60), "ready");
            await first.WaitForCountAsync(l => l.StartsWith("completed ", StringComparison.Ordinal), 30, TimeSpan.FromSeconds(60), "completed");
            var completedByFirst = first.Lines.Where(l => l.StartsWith("completed ", StringComparison.Ordinal)).Select(l => l[10..]).ToHashSet();
            Assert.Equal(30, completedByFirst.Count);

            var handler = world.NewHandler(FastDetection, "handler-kill");
            var deaths = new ConcurrentQueue<(CoordinatorDeath Death, long At)>();
            handler.Monitor.CoordinatorDied += d => deaths.Enqueue((d, Stopwatch.GetTimestamp()));
            handler.Start();
            // The live host, busy writing progress, is not declared dead: the time a silent one takes to die, and some. A
            // negative check on the Redis clock, which the monitor judges by: no event marks "not declared dead".
            await Task.Delay(FastDetection.DeathAfter + TimeSpan.FromMilliseconds(500));
            Assert.Empty(deaths);

            var killedAt = Stopwatch.GetTimestamp();
            var killedAtUtc = DateTimeOffset.UtcNow;
            first.Kill();
            Assert.Equal(128 + 9, await first.WaitForExitAsync(TimeSpan.FromSeconds(10)));
            await EventuallyAsync(() => !deaths.IsEmpty, "no death declared after the SIGKILL", FastDetection.DeathAfter + TimeSpan.FromSeconds(15), pollMs: 10);
            var (death, diedAt) = deaths.First();
            var delay = Stopwatch.GetElapsedTime(killedAt, diedAt);
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"SIGKILL detection delay: {delay.TotalMilliseconds:0} ms from the kill to CoordinatorDied (escalation included); configured death time {FastDetection.DeathAfter.TotalMilliseconds:0} ms after the last heartbeat (stale {FastDetection.HeartbeatStaleThreshold.TotalMilliseconds:0} ms + 2 x {FastDetection.MonitorInterval.TotalMilliseconds:0} ms), heartbeat every 100 ms; heartbeat age at death {death.StaleForMs} ms"));
            foreach (var line in world.Logs.GetSnapshot().Where(r => r.Timestamp >= killedAtUtc && r.Message.Contains(deadId, StringComparison.Ordinal)).Take(6))
            {
                output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  +{(line.Timestamp - killedAtUtc).TotalMilliseconds:0} ms {line.Message}"));
            }

            Assert.Equal(deadId, death.CoordinatorId);
            Assert.Equal(swarm, death.SwarmId);
            Assert.True(death.StaleForMs >= FastDetection.DeathAfter.TotalMilliseconds, $"declared dead after only {death.StaleForMs} ms of silence");
            Assert.True(delay <= FastDetection.DeathAfter + TimeSpan.FromSeconds(5), $"detection took {delay.TotalMilliseconds} ms");
            var escalation = death.Escalation!;
            Assert.Equal(EscalationOutcome.Escalated, escalation.Outcome);
            var newId = escalation.NewCoordinatorId!;
            Assert.Equal(70, escalation.Work!.Transferred);
            Assert.Equal(0, escalation.Work.SkippedCompleted); // completed items left the owner index; the transfer never sees them
            Assert.Equal(0, escalation.Work.Failed);

            // More passes change nothing: one death, one escalation, one spawn request (five monitor intervals of passes). A
            // negative check: no event marks a death or escalation that does not happen.
            await Task.Delay(FastDetection.MonitorInterval * 5);
            Assert.Single(deaths);
            Assert.Equal(["coordinator:escalation:" + deadId], await inspect.ScanAsync("coordinator:escalation:*"));
            var record = await database.ReadJsonAsync("coordinator:escalation:" + deadId);
            Assert.Equal(newId, record.Str("newCoordinatorId"));
            Assert.Equal(70, record.GetProperty("workItemsTransferred").GetInt64());
            var spawns = await inspect.ScanAsync("coordinator:spawn:*");
            Assert.Equal(["coordinator:spawn:" + newId], spawns);
            var spawn = await database.ReadJsonAsync(spawns[0]);
            Assert.Equal(deadId, spawn.Str("replacesCoordinatorId"));
            Assert.Equal(swarm, spawn.Str("swarmId"));
            Assert.Equal(1, world.Recovery.Escalations.WithLabels("escalated").Value);
            Assert.Equal(0, world.Recovery.Escalations.WithLabels("already_escalated").Value);
            Assert.Equal(0, world.Recovery.Escalations.WithLabels("failed").Value);
            Assert.Equal(1, world.Recovery.DeadCoordinators.WithLabels(swarm).Value);

            // Unfinished items now belong to the replacement; completed ones stay where they were.
            var moved = await inspect.SnapshotAsync($"coordinator:work:{swarm}:{newId}:*");
            Assert.Equal(70, moved.Count);
            foreach (var (key, raw) in moved)
            {
                using var item = JsonDocument.Parse(raw);
                var root = item.RootElement;
                Assert.Equal(newId, root.Str("assignedTo"));
                Assert.Equal(deadId, root.Str("transferredFrom"));
                Assert.Equal("transferred", root.Str("status"));
                Assert.DoesNotContain(root.Str("workId"), completedByFirst);
                Assert.EndsWith(":" + root.Str("workId"), key, StringComparison.Ordinal);
                Assert.True(root.GetProperty("data").GetProperty("n").GetInt32() > 0, "progress data was kept: " + raw);
            }

            var left = await inspect.SnapshotAsync($"coordinator:work:{swarm}:{deadId}:*");
            Assert.Equal(completedByFirst.Order(), left.Keys.Select(k => k.Split(':')[^1]).Order());
            Assert.All(left.Values, raw => Assert.Contains("\"status\":\"completed\"", raw, StringComparison.Ordinal));

            // The replacement, as its own process, adopts the 70 items and completes each.
            second = HostProcess.Start("replacement-host", HostArgs(redis, newId, swarm, "--adopt", "--complete-after", "1"));
            await second.WaitForLineAsync(l => l == "ready", TimeSpan.FromSeconds(60), "ready");
            await second.WaitForLineAsync(l => l == "done", TimeSpan.FromSeconds(60), "done");
            Assert.Equal(70, second.Lines.Count(l => l.StartsWith("adopted ", StringComparison.Ordinal)));
            Assert.DoesNotContain(second.Lines, l => l.StartsWith("skipped ", StringComparison.Ordinal) || l.StartsWith("refused ", StringComparison.Ordinal));
            second.Signal("TERM");
            Assert.Equal(0, await second.WaitForExitAsync(TimeSpan.FromSeconds(30)));
            Assert.Equal("stopped", second.Lines[^1]);

            // Every work ID: exactly one item, completed, and completed exactly once (by exactly one coordinator).
            var all = await inspect.SnapshotAsync($"coordinator:work:{swarm}:*");
            var byWorkId = all.GroupBy(kv => kv.Key.Split(':')[^1]).ToDictionary(g => g.Key, g => g.ToList());
            Assert.Equal(Enumerable.Range(0, 100).Select(i => $"w{i}").Order(), byWorkId.Keys.Order());
            var completions = first.Lines.Concat(second.Lines).Where(l => l.StartsWith("completed ", StringComparison.Ordinal))
                .GroupBy(l => l[10..]).ToDictionary(g => g.Key, g => g.Count());
            foreach (var (workId, items) in byWorkId)
            {
                var (key, raw) = Assert.Single(items);
                using var item = JsonDocument.Parse(raw);
                var root = item.RootElement;
                Assert.Equal("completed", root.Str("status"));
                var owner = completedByFirst.Contains(workId) ? deadId : newId;
                Assert.Equal($"coordinator:work:{swarm}:{owner}:{workId}", key);
                Assert.Equal(owner, root.GetProperty("data").Str("completedBy"));
                Assert.True(completions.TryGetValue(workId, out var times) && times == 1, $"{workId} completed {times} times");
            }

            Assert.Single(deaths); // the replacement was never taken for dead
            output.WriteLine($"first host completed {completedByFirst.Count}, replacement adopted and completed {completions.Count - completedByFirst.Count}");
        }
        finally
        {
            output.WriteLine(first.Dump());
            if (second is not null)
            {
                output.WriteLine(second.Dump());
                await second.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task Sigstop_HostFrozenPastDeathTime_WorkHandedOverAndZombieFencedOnSigcont()
    {
        await using var redis = await PrivateRedisServer.StartAsync();
        await using var inspect = await redis.ConnectAsync();
        var database = inspect.GetDatabase();
        await using var world = await FaultWorld.ConnectAsync(redis.Endpoint);
        var swarm = TestIds.New("swarm");
        var zombieId = TestIds.New("host");
        await using var host = HostProcess.Start("frozen-host", HostArgs(redis, zombieId, swarm, "--items", "20"));
        var stopped = false;
        try
        {
            await host.WaitForLineAsync(l => l == "ready", TimeSpan.FromSeconds(60), "ready");
            var handler = world.NewHandler(FastDetection, "handler-stop");
            var deaths = new ConcurrentQueue<CoordinatorDeath>();
            handler.Monitor.CoordinatorDied += deaths.Enqueue;
            handler.Start();
            // The live host is not declared dead: the time a silent one takes to die, and some. A negative check on the
            // Redis clock, which the monitor judges by: no event marks "not declared dead".
            await Task.Delay(FastDetection.DeathAfter + TimeSpan.FromMilliseconds(500));
            Assert.Empty(deaths);
            Assert.Contains("\"n\":", (string?)await database.StringGetAsync($"coordinator:work:{swarm}:{zombieId}:w0"), StringComparison.Ordinal);

            var frozenAt = Stopwatch.GetTimestamp();
            host.Signal("STOP");
            stopped = true;
            await EventuallyAsync(() => !deaths.IsEmpty, "the frozen host was never declared dead", FastDetection.DeathAfter + TimeSpan.FromSeconds(15), pollMs: 10);

            var death = Assert.Single(deaths);
            Assert.Equal(zombieId, death.CoordinatorId);
            var newId = death.Escalation!.NewCoordinatorId!;
            Assert.Equal(20, death.Escalation.Work!.Transferred);
            // Three more monitor intervals frozen: later passes must not judge it again. A negative check (and the length
            // of the freeze): no event marks a second verdict that does not come.
            await Task.Delay(FastDetection.MonitorInterval * 3);
            var frozenFor = Stopwatch.GetElapsedTime(frozenAt);

            // The hand-over as it stands before the zombie wakes up.
            var before = await inspect.SnapshotAsync($"coordinator:work:{swarm}:{newId}:*");
            Assert.Equal(20, before.Count);
            Assert.Empty(await inspect.ScanAsync($"coordinator:work:{swarm}:{zombieId}:*"));
            var epochBefore = (long)await database.StringGetAsync("coordinator:epoch:" + zombieId);
            var linesBefore = host.Lines.Count;

            var wokenAt = Stopwatch.GetTimestamp();
            host.Signal("CONT");
            stopped = false;
            var exitCode = await host.WaitForExitAsync(TimeSpan.FromSeconds(20));
            var exitedAfter = Stopwatch.GetElapsedTime(wokenAt);

            var after = host.Lines.Skip(linesBefore).ToList();
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"frozen {frozenFor.TotalMilliseconds:0} ms (death time {FastDetection.DeathAfter.TotalMilliseconds:0} ms); after SIGCONT the zombie exited with {exitCode} in {exitedAfter.TotalMilliseconds:0} ms, printing: {string.Join(" | ", after)}"));
            Assert.Equal(3, exitCode);
            Assert.Equal("superseded", after[^1]);
            Assert.All(after.SkipLast(1), l => Assert.StartsWith("refused ", l, StringComparison.Ordinal));
            Assert.True(exitedAfter < TimeSpan.FromSeconds(10), $"the zombie took {exitedAfter.TotalSeconds} s to stop");

            // Nothing the zombie did after waking up landed.
            Assert.Equal(before, await inspect.SnapshotAsync($"coordinator:work:{swarm}:{newId}:*"));
            Assert.Empty(await inspect.ScanAsync($"coordinator:work:{swarm}:{zombieId}:*"));
            Assert.False(await database.KeyExistsAsync("blocking:heartbeat:" + zombieId));
            Assert.Null(await database.SortedSetScoreAsync("blocking:coordinators", zombieId));
            Assert.Equal(epochBefore, (long)await database.StringGetAsync("coordinator:epoch:" + zombieId));
            Assert.Single(deaths);
        }
        finally
        {
            if (stopped)
            {
                host.Signal("CONT"); // so that disposal's SIGKILL is not held up by a stopped process
            }

            output.WriteLine(host.Dump());
        }
    }

    private static string[] HostArgs(PrivateRedisServer redis, string id, string swarm, params string[] more) =>
    [
        "--redis", redis.Endpoint, "--id", id, "--swarm", swarm, "--secret", Harness.Secret,
        "--heartbeat-ms", "100", "--progress-ms", "50", .. more,
    ];
}
