using System.Diagnostics;
using System.Text.Json;
using System.Text.RegularExpressions;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Signals;

using Cfn.Coordination.Tests.Infrastructure;
using Cfn.Coordination.Work;
using StackExchange.Redis;

namespace Cfn.Coordination.Tests.Recovery;

/// <summary>
/// Escalation of a dead coordinator (SPEC §2.13, K8, K9, K10, C1, L7, L16, W38–W40, §7.14 items 8 and 9): the K8 lock,
/// the spawn request, the notice, fenced work transfer and the hand-over of unconsumed signals.
/// </summary>
[Collection(RedisCollection.Name)]
public sealed partial class EscalationServiceTests(RedisServer server)
{
    private sealed record Setup(EscalationService Service, RecoveryMetrics Metrics);

    private static Setup Build(Harness h, RecoveryOptions? options = null)
    {
        options ??= new RecoveryOptions();
        var metrics = new RecoveryMetrics(h.Registry);
        var cleanup = new CoordinatorCleanup(h.Redis, options, metrics);
        return new Setup(new EscalationService(h.Redis, h.Keys, options, metrics, cleanup), metrics);
    }

    /// <summary>What the monitor does when it confirms a death: the dead instance's epoch moves on (the fence).</summary>
    private static async Task<long> FenceAsync(Harness h, string deadId) => await h.Database.StringIncrementAsync(Keys.Epoch(deadId));

    private static async Task<JsonElement> ReadJsonAsync(IDatabase db, RedisKey key)
    {
        var raw = (string?)await db.StringGetAsync(key);
        Assert.True(raw is not null, $"{key} is missing");
        return JsonDocument.Parse(raw).RootElement.Clone();
    }

    private static async Task<List<JsonElement>> SpawnsReplacingAsync(IDatabase db, string deadId, long sinceMs)
    {
        var found = new List<JsonElement>();
        foreach (var member in await db.SortedSetRangeByScoreAsync(Keys.SpawnIndex, sinceMs - 1000))
        {
            var raw = (string?)await db.StringGetAsync(Keys.Spawn((string)member!));
            if (raw is null)
            {
                continue;
            }

            var spawn = JsonDocument.Parse(raw).RootElement.Clone();
            if (spawn.GetProperty("replacesCoordinatorId").GetString() == deadId)
            {
                found.Add(spawn);
            }
        }

        return found;
    }

    [Fact]
    public async Task EscalateAsync_DeadCoordinator_WritesEscalationAndSpawnRecordsWithAllFields()
    {
        await using var h = Harness.Create(server);
        var (service, _) = Build(h);
        var swarm = TestIds.New("swarm");
        var dead = await h.StartAsync(swarmId: swarm);
        var peer = await h.StartAsync(swarmId: swarm);
        await dead.Work.CreateAsync("w0");
        await dead.Work.CreateAsync("w1");
        await peer.Signals.SendAsync(dead.Id, SignalTypes.Completion, 1);
        var lastBeat = dead.Heartbeats.LastSentAt;
        await dead.AbandonAsync();
        var fence = await FenceAsync(h, dead.Id);
        var before = await RedisKit.NowAsync(h.Database);

        var result = await service.EscalateAsync(dead.Id, swarm, fence, lastBeat, "handler-x");

        Assert.Equal(EscalationOutcome.Escalated, result.Outcome);
        var newId = result.NewCoordinatorId!;
        Assert.Matches(NewIdPattern(), newId);
        var k8 = await ReadJsonAsync(h.Database, Keys.Escalation(dead.Id));
        Assert.Equal(dead.Id, k8.GetProperty("deadCoordinatorId").GetString());
        Assert.Equal(swarm, k8.GetProperty("swarmId").GetString());
        Assert.InRange(k8.GetProperty("timestamp").GetInt64(), before - 1000, before + 10_000);
        Assert.Equal("coordinator_timeout", k8.GetProperty("reason").GetString());
        Assert.Equal("replacement_requested", k8.GetProperty("status").GetString());
        Assert.Equal(newId, k8.GetProperty("newCoordinatorId").GetString());
        Assert.Equal(fence, k8.GetProperty("fencingToken").GetInt64());
        Assert.Equal(2, k8.GetProperty("workItemsTransferred").GetInt64());
        Assert.Equal(1, k8.GetProperty("signalsHandedOver").GetInt64());
        Assert.Equal(lastBeat, k8.GetProperty("lastHeartbeat").GetInt64());
        Assert.Equal("handler-x", k8.GetProperty("detectedBy").GetString());
        Assert.InRange((await h.Database.KeyTimeToLiveAsync(Keys.Escalation(dead.Id)))!.Value.TotalSeconds, 3500, 3600);

        var k9 = await ReadJsonAsync(h.Database, Keys.Spawn(newId));
        Assert.Equal(newId, k9.GetProperty("newCoordinatorId").GetString());
        Assert.Equal(dead.Id, k9.GetProperty("replacesCoordinatorId").GetString());
        Assert.Equal(swarm, k9.GetProperty("swarmId").GetString());
        Assert.Equal("high", k9.GetProperty("priority").GetString());
        Assert.Equal("pending", k9.GetProperty("status").GetString());
        Assert.Equal("replacement", k9.GetProperty("reason").GetString());
        Assert.Equal(JsonValueKind.Number, k9.GetProperty("timestamp").ValueKind);
        Assert.InRange((await h.Database.KeyTimeToLiveAsync(Keys.Spawn(newId)))!.Value.TotalSeconds, 3500, 3600);

        // The log lines, in order (L7, L16): the hand-over comes before the spawn request, so the replacement finds its work at start (D16).
        var messages = h.Messages.ToList();
        var order = new[] { "Escalating dead coordinator", "Work transfer complete", "Spawn request created for new coordinator", "Dead coordinator escalation complete" }
            .Select(literal => messages.FindIndex(m => m.Contains(literal, StringComparison.Ordinal) && m.Contains(dead.Id, StringComparison.Ordinal)))
            .ToList();
        Assert.DoesNotContain(-1, order);
        Assert.Equal(order.Order(), order);
        var complete = messages[order[^1]];
        Assert.Contains(newId, complete, StringComparison.Ordinal);
        Assert.Contains(swarm, complete, StringComparison.Ordinal);
    }

    [Fact]
    public async Task EscalateAsync_RunbookSpawnCommand_JqPrintsNewIdSwarmAndPriority()
    {
        await using var h = Harness.Create(server);
        var (service, _) = Build(h);
        var swarm = TestIds.New("swarm");
        var dead = await h.StartAsync(swarmId: swarm);
        await dead.AbandonAsync();
        var result = await service.EscalateAsync(dead.Id, swarm, await FenceAsync(h, dead.Id), dead.Heartbeats.LastSentAt, "handler-x");
        var newId = result.NewCoordinatorId!;

        var shell = await RunBashAsync(
            $"redis-cli get coordinator:spawn:{newId} | jq '{{newId: .newCoordinatorId, swarmId: .swarmId, priority: .priority}}'");

        Assert.True(shell.ExitCode == 0 && shell.Stderr.Length == 0, shell.ToString());
        using var printed = JsonDocument.Parse(shell.Stdout);
        Assert.Equal(newId, printed.RootElement.GetProperty("newId").GetString());
        Assert.Equal(swarm, printed.RootElement.GetProperty("swarmId").GetString());
        Assert.Equal("high", printed.RootElement.GetProperty("priority").GetString());
    }

    [Fact]
    public async Task EscalateAsync_SubscriberOnSwarmDeadChannel_ReceivesNotice()
    {
        await using var h = Harness.Create(server);
        var (service, _) = Build(h);
        var swarm = TestIds.New("swarm");
        var dead = await h.StartAsync(swarmId: swarm);
        await dead.AbandonAsync();
        await using var listener = await server.ConnectAsync();
        var received = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        await listener.GetSubscriber().SubscribeAsync(RedisChannel.Literal($"swarm:{swarm}:coordinator:dead"), (_, m) => received.TrySetResult(m!));

        var result = await service.EscalateAsync(dead.Id, swarm, await FenceAsync(h, dead.Id), dead.Heartbeats.LastSentAt, "handler-x");

        var raw = await received.Task.WaitAsync(TimeSpan.FromSeconds(5));
        using var notice = JsonDocument.Parse(raw);
        Assert.Equal(dead.Id, notice.RootElement.GetProperty("deadCoordinatorId").GetString());
        Assert.Equal(swarm, notice.RootElement.GetProperty("swarmId").GetString());
        Assert.Equal("spawn_replacement", notice.RootElement.GetProperty("action").GetString());
        Assert.Equal(result.NewCoordinatorId, notice.RootElement.GetProperty("newCoordinatorId").GetString());
        Assert.Equal(JsonValueKind.Number, notice.RootElement.GetProperty("timestamp").ValueKind);
        // At least our listener: pub/sub is server-wide, and other tests' pattern subscribers (swarm:*:coordinator:dead) count too.
        Assert.Contains(h.Messages, m => m.Contains("Notified parent coordinator", StringComparison.Ordinal) &&
                                         System.Text.RegularExpressions.Regex.IsMatch(m, @"subscribers=[1-9]\d*$"));
    }

    [Fact]
    public async Task EscalateAsync_SameIncidentTwice_SecondAlreadyEscalatedAndOneSpawn()
    {
        await using var h = Harness.Create(server);
        var (service, metrics) = Build(h);
        var swarm = TestIds.New("swarm");
        var since = await RedisKit.NowAsync(h.Database);
        var dead = await h.StartAsync(swarmId: swarm);
        await dead.AbandonAsync();
        var fence = await FenceAsync(h, dead.Id);

        var first = await service.EscalateAsync(dead.Id, swarm, fence, dead.Heartbeats.LastSentAt, "handler-a");
        var second = await service.EscalateAsync(dead.Id, swarm, fence, dead.Heartbeats.LastSentAt, "handler-b");

        Assert.Equal(EscalationOutcome.Escalated, first.Outcome);
        Assert.Equal(EscalationOutcome.AlreadyEscalated, second.Outcome);
        Assert.Null(second.NewCoordinatorId);
        var k8 = await ReadJsonAsync(h.Database, Keys.Escalation(dead.Id));
        Assert.Equal(first.NewCoordinatorId, k8.GetProperty("newCoordinatorId").GetString());
        Assert.Equal("handler-a", k8.GetProperty("detectedBy").GetString());
        Assert.Single(await SpawnsReplacingAsync(h.Database, dead.Id, since));
        Assert.Equal(1, metrics.Escalations.WithLabels("escalated").Value);
        Assert.Equal(1, metrics.Escalations.WithLabels("already_escalated").Value);
    }

    [Fact]
    public async Task EscalateAsync_ThreeConcurrentCallsSameIncident_ExactlyOneEscalates()
    {
        await using var h = Harness.Create(server);
        var (service, _) = Build(h);
        var swarm = TestIds.New("swarm");
        var since = await RedisKit.NowAsync(h.Database);
        var dead = await h.StartAsync(swarmId: swarm);
        await dead.Work.CreateAsync("w0");
        await dead.AbandonAsync();
        var fence = await FenceAsync(h, dead.Id);

        var results = await Task.WhenAll(Enumerable.Range(0, 3)
            .Select(i => Task.Run(() => service.EscalateAsync(dead.Id, swarm, fence, dead.Heartbeats.LastSentAt, $"handler-{i}"))));

        Assert.Single(results, r => r.Outcome == EscalationOutcome.Escalated);
        Assert.Equal(2, results.Count(r => r.Outcome == EscalationOutcome.AlreadyEscalated));
        Assert.Single(await SpawnsReplacingAsync(h.Database, dead.Id, since));
        var winner = results.Single(r => r.Outcome == EscalationOutcome.Escalated).NewCoordinatorId!;
        Assert.True(await h.Database.KeyExistsAsync(Keys.Work(swarm, winner, "w0")));
    }

    [Fact]
    public async Task EscalateAsync_LaterIncidentHigherFence_EscalatesAgain()
    {
        await using var h = Harness.Create(server);
        var (service, _) = Build(h);
        var swarm = TestIds.New("swarm");
        var id = TestIds.New("coord");
        var since = await RedisKit.NowAsync(h.Database);
        var firstLife = await h.StartAsync(id, swarm);
        await firstLife.AbandonAsync();
        var fence1 = await FenceAsync(h, id);
        var first = await service.EscalateAsync(id, swarm, fence1, firstLife.Heartbeats.LastSentAt, "handler-a");

        // The ID is restarted (a new instance, a new epoch) and dies again.
        var secondLife = await h.StartAsync(id, swarm);
        await secondLife.Work.CreateAsync("w-late");
        await secondLife.AbandonAsync();
        var fence2 = await FenceAsync(h, id);
        var second = await service.EscalateAsync(id, swarm, fence2, secondLife.Heartbeats.LastSentAt, "handler-a");

        Assert.Equal(EscalationOutcome.Escalated, first.Outcome);
        Assert.Equal(EscalationOutcome.Escalated, second.Outcome);
        Assert.True(fence2 > fence1);
        Assert.NotEqual(first.NewCoordinatorId, second.NewCoordinatorId);
        var k8 = await ReadJsonAsync(h.Database, Keys.Escalation(id));
        Assert.Equal(fence2, k8.GetProperty("fencingToken").GetInt64());
        Assert.Equal(second.NewCoordinatorId, k8.GetProperty("newCoordinatorId").GetString());
        Assert.Equal(2, (await SpawnsReplacingAsync(h.Database, id, since)).Count);
        Assert.True(await h.Database.KeyExistsAsync(Keys.Work(swarm, second.NewCoordinatorId!, "w-late")));

        // ... and the stale fence of the first incident cannot take it back.
        var replay = await service.EscalateAsync(id, swarm, fence1, firstLife.Heartbeats.LastSentAt, "handler-b");
        Assert.Equal(EscalationOutcome.AlreadyEscalated, replay.Outcome);
    }

    [Fact]
    public async Task EscalateAsync_HundredItemsAndCompletedOnes_UnfinishedMovedFencedCompletedLeft()
    {
        await using var h = Harness.Create(server);
        var (service, metrics) = Build(h);
        var swarm = TestIds.New("swarm");
        var dead = await h.StartAsync(swarmId: swarm);
        var originals = new Dictionary<string, WorkItem>(StringComparer.Ordinal);
        for (var i = 0; i < 100; i++)
        {
            var created = await dead.Work.CreateAsync($"w{i}", JsonDocument.Parse($"{{\"n\":{i}}}").RootElement);
            originals[$"w{i}"] = created.Item!;
        }

        for (var i = 0; i < 2; i++)
        {
            var done = (await dead.Work.CreateAsync($"done{i}")).Item!;
            Assert.Equal(WorkWriteOutcome.Ok, (await dead.Work.CompleteAsync(done)).Outcome);
        }

        var shortLived = Keys.Work(swarm, dead.Id, "w0");
        Assert.True(await h.Database.KeyExpireAsync(shortLived, TimeSpan.FromSeconds(30)));
        await dead.AbandonAsync();
        var fence = await FenceAsync(h, dead.Id);
        var before = await RedisKit.NowAsync(h.Database);

        var result = await service.EscalateAsync(dead.Id, swarm, fence, dead.Heartbeats.LastSentAt, "handler-x");

        Assert.Equal(EscalationOutcome.Escalated, result.Outcome);
        var newId = result.NewCoordinatorId!;
        Assert.Equal(100, result.Work!.Transferred);
        Assert.Equal(0, result.Work.SkippedCompleted); // completed items leave their owner's index, so the transfer never sees them
        Assert.Equal(0, result.Work.Failed);
        Assert.False(result.Work.Aborted);
        Assert.Equal(100, metrics.WorkItemsTransferred.Value);
        foreach (var (workId, original) in originals)
        {
            Assert.False(await h.Database.KeyExistsAsync(Keys.Work(swarm, dead.Id, workId)), $"old key of {workId} remains");
            var moved = await ReadJsonAsync(h.Database, Keys.Work(swarm, newId, workId));
            Assert.Equal(workId, moved.GetProperty("workId").GetString());
            Assert.Equal(newId, moved.GetProperty("assignedTo").GetString());
            Assert.Equal(0, moved.GetProperty("ownerEpoch").GetInt64());
            Assert.Equal(original.Epoch + 1, moved.GetProperty("epoch").GetInt64());
            Assert.Equal("transferred", moved.GetProperty("status").GetString());
            Assert.Equal(dead.Id, moved.GetProperty("transferredFrom").GetString());
            Assert.InRange(moved.GetProperty("transferredAt").GetInt64(), before - 1000, before + 30_000);
            Assert.Equal(original.Data!.Value.GetProperty("n").GetInt32(), moved.GetProperty("data").GetProperty("n").GetInt32());
            Assert.Equal(original.StartedAt, moved.GetProperty("startedAt").GetInt64());
        }

        // The remaining TTL travels with the item; it is not reset.
        var ttl = await h.Database.KeyTimeToLiveAsync(Keys.Work(swarm, newId, "w0"));
        Assert.NotNull(ttl);
        Assert.InRange(ttl.Value.TotalSeconds, 0.001, 30);
        Assert.InRange((await h.Database.KeyTimeToLiveAsync(Keys.Work(swarm, newId, "w1")))!.Value.TotalSeconds, 3000, 3600);

        for (var i = 0; i < 2; i++)
        {
            var left = await ReadJsonAsync(h.Database, Keys.Work(swarm, dead.Id, $"done{i}"));
            Assert.Equal("completed", left.GetProperty("status").GetString());
            Assert.Equal(dead.Id, left.GetProperty("assignedTo").GetString());
            Assert.False(await h.Database.KeyExistsAsync(Keys.Work(swarm, newId, $"done{i}")));
        }

        Assert.Contains(h.Messages, m => m.Contains("Work transfer complete", StringComparison.Ordinal)
                                         && m.Contains("itemsTransferred=100", StringComparison.Ordinal));
        Assert.Equal(100, (await ReadJsonAsync(h.Database, Keys.Escalation(dead.Id))).GetProperty("workItemsTransferred").GetInt64());

        // The replacement adopts what it was given.
        var replacement = await h.StartAsync(newId, swarm);
        var adopted = await replacement.Work.AdoptAsync("w5");
        Assert.Equal(WorkWriteOutcome.Ok, adopted.Outcome);
        Assert.Equal(replacement.Epoch, adopted.Item!.OwnerEpoch);
    }

    [Fact]
    public async Task EscalateAsync_MalformedWorkItem_SkippedCountedOthersMoved()
    {
        await using var h = Harness.Create(server);
        var (service, metrics) = Build(h);
        var swarm = TestIds.New("swarm");
        var dead = await h.StartAsync(swarmId: swarm);
        await dead.Work.CreateAsync("good");
        await h.Database.StringSetAsync(Keys.Work(swarm, dead.Id, "bad"), "{\"workId\":\"bad\",", TimeSpan.FromMinutes(10));
        await h.Database.SetAddAsync(Keys.Owned(swarm, dead.Id), "bad"); // listed in its owner's index, as a real item would be
        await dead.AbandonAsync();

        var result = await service.EscalateAsync(dead.Id, swarm, await FenceAsync(h, dead.Id), dead.Heartbeats.LastSentAt, "handler-x");

        Assert.Equal(EscalationOutcome.Escalated, result.Outcome);
        Assert.Equal(1, result.Work!.Transferred);
        Assert.Equal(1, result.Work.Failed);
        Assert.Equal(1, metrics.MalformedValues.WithLabels("work").Value);
        Assert.True(await h.Database.KeyExistsAsync(Keys.Work(swarm, result.NewCoordinatorId!, "good")));
        Assert.False(await h.Database.KeyExistsAsync(Keys.Work(swarm, result.NewCoordinatorId!, "bad")));
        Assert.Contains(h.Messages, m => m.Contains("Malformed work item skipped", StringComparison.Ordinal) && m.Contains(dead.Id, StringComparison.Ordinal));
    }

    [Fact]
    public async Task EscalateAsync_ThreeUnconsumedSignalsFromTwoSenders_ArriveAtReplacementInOrderSigned()
    {
        await using var h = Harness.Create(server);
        var (service, metrics) = Build(h);
        var swarm = TestIds.New("swarm");
        var dead = await h.StartAsync(swarmId: swarm);
        var s1 = await h.StartAsync(swarmId: swarm);
        var s2 = await h.StartAsync(swarmId: swarm);
        var sent = new List<SignalDeliveryResult>
        {
            await s1.Signals.SendAsync(dead.Id, SignalTypes.Completion, 1, JsonDocument.Parse("{\"n\":1}").RootElement),
            await s2.Signals.SendAsync(dead.Id, SignalTypes.StatusUpdate, 2, JsonDocument.Parse("{\"n\":2}").RootElement),
            await s1.Signals.SendAsync(dead.Id, SignalTypes.Error, 3, JsonDocument.Parse("{\"n\":3}").RootElement),
        };
        var senders = new[] { s1.Id, s2.Id, s1.Id };
        await dead.AbandonAsync();

        var result = await service.EscalateAsync(dead.Id, swarm, await FenceAsync(h, dead.Id), dead.Heartbeats.LastSentAt, "handler-x");

        Assert.Equal(EscalationOutcome.Escalated, result.Outcome);
        Assert.Equal(3, result.SignalsHandedOver);
        Assert.Equal(3, metrics.SignalsHandedOver.Value);
        Assert.False(await h.Database.KeyExistsAsync(Keys.Inbox(dead.Id)));
        Assert.False(await h.Database.KeyExistsAsync(Keys.Signal(dead.Id)));
        var newId = result.NewCoordinatorId!;
        var replacement = await h.StartAsync(newId, swarm);
        var received = new List<ReceivedSignal>();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await foreach (var r in replacement.Inbox.ReadAllAsync(cts.Token))
        {
            received.Add(r);
            if (received.Count == 3)
            {
                break;
            }
        }

        Assert.Equal(3, received.Count);
        for (var i = 0; i < 3; i++)
        {
            var signal = received[i].Signal;
            Assert.Equal(i + 1, signal.Payload!.Value.GetProperty("n").GetInt32());
            Assert.Equal(sent[i].MessageId, signal.HandedOverFrom);
            Assert.Equal(senders[i], signal.SenderId);
            Assert.Equal(newId, signal.ReceiverId);
            Assert.Equal(sent[i].MessageId.Split(':')[0], signal.MessageId.Split(':')[0]);
            Assert.Equal(newId, signal.MessageId.Split(':')[1]);
            Assert.True(SignalSignatures.Verify(h.Keys, signal), $"signal {i} does not verify");
            Assert.True(await h.Database.KeyExistsAsync(Keys.Ack(newId, signal.MessageId)), $"signal {i} was not ACKed by the replacement");
        }
    }

    private async Task<ShellResult> RunBashAsync(string script)
    {
        var endpoint = server.Endpoint;
        var colon = endpoint.LastIndexOf(':');
        var prelude = $"set -o pipefail\nredis-cli() {{ command redis-cli -h {endpoint[..colon]} -p {endpoint[(colon + 1)..]} \"$@\"; }}\n";
        var start = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add("-c");
        start.ArgumentList.Add(prelude + script);
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(timeout.Token);
        return new ShellResult(process.ExitCode, await stdout, await stderr);
    }

    private sealed record ShellResult(int ExitCode, string Stdout, string Stderr)
    {
        public override string ToString() => $"exit {ExitCode}\nstdout: {Stdout}\nstderr: {Stderr}";
    }

    [GeneratedRegex(@"^coordinator-\d{13}-[0-9a-z]{8}$")]
    private static partial Regex NewIdPattern();
}
